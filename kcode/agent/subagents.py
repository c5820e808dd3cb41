"""Sub-agents: a fresh agent for one part of a task, with its own context and session log
(its parent recorded), started by the ``task`` and ``swarm`` tools.

- ``explore``: runs in the parent's work tree under the read-only sandbox, with tools that
  cannot write (no edit_file, write_file); it reports what it found.
- ``edit``: its own git work tree and branch, from the parent's current checkpoint. When it
  ends, its commits are merged 3-way into the parent's work tree (:mod:`kcode.vcs.merge`). A
  conflict leaves both sides on their branches and is reported: work is never dropped.

Limits (a run's, shared by all its sub-agents): at most ``max_agents`` sub-agents (300) and
``max_steps`` steps across them (4,000), each at most ``agent_steps``; a sub-agent cannot
start sub-agents. Concurrency is bounded by ``max_parallel`` and adapts to rate limits: a 429
halves the number of model calls in flight, and each success lets one more back, up to the
bound (:class:`RateGate`).

A parent's sub-agents are recorded in its session folder (``subagents.json``, by a key of
mode, description and prompt): a resumed parent that asks for the same sub-agent gets the
finished one's report instead of a rerun, and a sub-agent that was still running continues
from its own log.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kcode.cancel import CancelToken
from kcode.config import Config
from kcode.errors import KcodeError, RateLimited, ToolError
from kcode.events import Checkpoint, Event, EventBus
from kcode.llm.base import ChatModel, Message, StreamChunk, ToolSpec
from kcode.session import SessionMeta, SessionStore
from kcode.tools.base import ToolRegistry
from kcode.vcs.merge import merge_into
from kcode.vcs.workspace import Workspace

__all__ = ["RateGate", "SubagentLimits", "SubagentReport", "SubagentSpec", "Subagents", "REPORT_LIMIT", "serving_line"]

REPORT_LIMIT = 4096  # bytes of a sub-agent's report the parent reads
MODES = ("explore", "edit")


@dataclass
class SubagentSpec:
    description: str
    prompt: str
    mode: str = "explore"
    max_steps: int | None = None

    def key(self) -> str:
        return hashlib.sha256(f"{self.mode}\0{self.description}\0{self.prompt}".encode()).hexdigest()[:16]


@dataclass
class SubagentLimits:
    max_agents: int = 300
    max_steps: int = 4000
    agent_steps: int = 30
    agent_time: float | None = None  # seconds per sub-agent
    agent_tokens: int | None = None
    max_parallel: int = 8


@dataclass
class SubagentReport:
    description: str
    mode: str
    session_id: str = ""
    status: str = "error"
    summary: str = ""
    steps: int = 0
    changed_files: list[str] = field(default_factory=list)
    merged: bool = False
    conflicts: list[str] = field(default_factory=list)
    branch: str = ""
    error: str = ""
    base: str = ""  # an edit sub-agent's start and end commits (merged again after the parent resumes)
    head: str = ""
    reused: bool = False  # a finished sub-agent's report, from before the parent resumed

    def render(self, limit: int = REPORT_LIMIT) -> str:
        """What the parent reads: outcome, files, findings, where the rest is (≤ ``limit`` bytes)."""
        head = [f"sub-agent {self.session_id or '?'} ({self.mode}: {self.description}): {self.status} after {self.steps} steps"]
        if self.error:
            head.append(f"error: {self.error}")
        if self.mode == "edit":
            if self.conflicts:
                head.append(f"CONFLICT: not merged; its work is on branch {self.branch}, yours is unchanged. Conflicting files: {', '.join(self.conflicts[:20])}")
            elif self.merged:
                head.append(f"merged into your work tree: {', '.join(self.changed_files[:30]) or '(no files)'}")
            elif self.changed_files:
                head.append(f"not merged; its work is on branch {self.branch}")
            else:
                head.append("changed no files")
        tail = f"\nfull trajectory: kcode replay {self.session_id}" if self.session_id else ""
        text = "\n".join(head) + "\nfindings:\n"
        room = limit - len(text.encode()) - len(tail.encode()) - 20
        findings = self.summary.strip() or "(none)"
        if len(findings.encode()) > room:
            findings = findings.encode()[: max(0, room)].decode("utf-8", errors="ignore") + " [...]"
        return text + findings + tail


class SubagentRefused(ToolError):
    """A limit refuses another sub-agent."""


class RateGate:
    """Bounds the model calls in flight; halves the bound on a rate limit and lets one more
    back after each run of ``recover_after`` successes (additive increase, multiplicative
    decrease), never above ``ceiling``."""

    def __init__(self, ceiling: int, recover_after: int = 4) -> None:
        self.ceiling = max(1, ceiling)
        self.limit = self.ceiling
        self.in_flight = 0
        self.rate_limits = 0
        self._successes = 0
        self._recover_after = recover_after
        self._cond = threading.Condition()

    def acquire(self, cancel: CancelToken | None = None) -> None:
        with self._cond:
            while self.in_flight >= self.limit:
                if cancel is not None and cancel.cancelled:
                    raise KcodeError("cancelled")
                self._cond.wait(0.1)
            self.in_flight += 1

    def release(self, rate_limited: bool = False) -> None:
        with self._cond:
            self.in_flight -= 1
            if rate_limited:
                self.rate_limits += 1
                self.limit = max(1, self.limit // 2)
                self._successes = 0
            else:
                self._successes += 1
                if self._successes >= self._recover_after and self.limit < self.ceiling:
                    self.limit += 1
                    self._successes = 0
            self._cond.notify_all()


class GatedModel:
    """A sub-agent's model: each call passes the run's :class:`RateGate`."""

    def __init__(self, inner: ChatModel, gate: RateGate, cancel: CancelToken) -> None:
        self._inner, self._gate, self._cancel = inner, gate, cancel

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def stream(self, messages: list[Message], tools: Sequence[ToolSpec], cancel: CancelToken | None = None, **kwargs: Any) -> Iterator[StreamChunk]:
        self._gate.acquire(cancel or self._cancel)
        limited = False
        try:
            yield from self._inner.stream(messages, tools, cancel=cancel, **kwargs)
        except RateLimited:
            limited = True
            raise
        finally:
            self._gate.release(limited)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "subagent"


class Subagents:
    """What a run lends its sub-agents: the parent's work tree, session store, event bus,
    cancel token and model settings, and the limits they share."""

    def __init__(self, *, config: Config, store: SessionStore, meta: SessionMeta, workspace: Workspace, bus: EventBus,
                 cancel: CancelToken, limits: SubagentLimits | None = None, parent_model: ChatModel | None = None,
                 model_factory: Callable[[SubagentSpec, Config], ChatModel] | None = None) -> None:
        self.config, self.store, self.meta, self.workspace, self.bus, self.cancel = config, store, meta, workspace, bus, cancel
        self.limits = limits or SubagentLimits()
        # an in-process model serves one conversation at a time: its sub-agents take turns on it
        self.serial = parent_model is not None and getattr(parent_model, "serves_one_at_a_time", False)
        self._parent_model = parent_model
        self._model_factory = model_factory or _default_model_factory
        self.gate = RateGate(1 if self.serial else self.limits.max_parallel)
        self._lock = threading.RLock()  # the registry, the budget, the merges, the parent's log
        # the parent's work tree does not move while a sub-agent's work tree is made from it
        self._tree = threading.Lock()
        self._making = threading.local()
        # while a swarm runs the parent waits in its tool call: only the merges (committed)
        # change its tree, so it is checkpointed once, not before every sub-agent and merge
        self._quiet = 0
        # --executor ray: sub-agents as Ray tasks (kcode.agent.remote), made at the first one
        self.remote = config.executor.startswith("ray") and not self.serial
        self._executor: Any = None
        self._executor_error: str | None = None  # why it could not start (then not tried again)
        self._keeper: Any = None
        self._shipped: tuple[str, bytes] = ("", b"")  # the last start commit shipped, and its bundle
        self._registry_path = store.dir(meta.session_id) / "subagents.json"
        self._registry: dict[str, dict] = self._load_registry()
        self.started = sum(1 for entry in self._registry.values() if entry.get("session_id"))
        self.steps_used = sum(int(entry.get("steps", 0)) for entry in self._registry.values())
        self._reserved = 0
        # sub-agents of this parent from before a resume, by their task: one killed before the
        # registry learned its id is continued, not started again
        self._earlier = {m.task: m.session_id for m in store.list() if m.parent_id == meta.session_id}
        self._earlier.update(_remote_earlier(store.dir(meta.session_id) / "remote"))

    # ---- limits and the registry ----
    def _load_registry(self) -> dict[str, dict]:
        try:
            data = json.loads(self._registry_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save_registry(self) -> None:
        self._registry_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._registry_path.with_name("subagents.json.tmp")
        tmp.write_text(json.dumps(self._registry, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self._registry_path)

    def _reserve(self, spec: SubagentSpec, fresh: bool) -> int:
        """Steps granted to a sub-agent; raises :class:`SubagentRefused` past a limit."""
        with self._lock:
            if fresh and self.started >= self.limits.max_agents:
                raise SubagentRefused(f"sub-agent limit reached: this run may start at most {self.limits.max_agents} sub-agents "
                                      f"({self.started} started); do the rest yourself or in fewer, larger sub-agents")
            left = self.limits.max_steps - self.steps_used - self._reserved
            if left <= 0:
                raise SubagentRefused(f"sub-agent step budget spent: {self.limits.max_steps} steps across all sub-agents")
            steps = min(spec.max_steps or self.limits.agent_steps, self.limits.agent_steps, left)
            self._reserved += steps
            if fresh:
                self.started += 1
            return steps

    def _settle(self, reserved: int, used: int) -> None:
        with self._lock:
            self._reserved -= reserved
            self.steps_used += used

    # ---- running ----
    def run(self, spec: SubagentSpec) -> SubagentReport:
        if spec.mode not in MODES:
            raise ToolError(f"mode must be explore or edit, not {spec.mode!r}")
        if self.cancel.cancelled:
            return SubagentReport(spec.description, spec.mode, status="interrupted", error="the run was cancelled")
        key = spec.key()
        with self._lock:
            entry = dict(self._registry.get(key) or {})
        if entry.get("status") and entry.get("status") != "running" and entry.get("report"):
            report = SubagentReport(**entry["report"])
            report.reused = True
            if report.mode == "edit" and report.merged and report.head:
                self._merge(report, report.base, report.head)  # a resumed parent went back to before the merge
            return report
        if not entry.get("session_id") and _child_task(spec) in self._earlier:
            entry["session_id"] = self._earlier[_child_task(spec)]
        steps = self._reserve(spec, fresh=not entry.get("session_id"))
        report = SubagentReport(spec.description, spec.mode)
        try:
            report = self._run(spec, key, entry.get("session_id"), steps)
        except KcodeError as error:
            report.error = str(error)
        finally:
            self._settle(steps, report.steps)
        with self._lock:
            self._registry[key] = {"session_id": report.session_id, "status": report.status, "steps": report.steps, "report": dataclasses.asdict(report)}
            self._save_registry()
        return report

    def run_many(self, specs: Sequence[SubagentSpec], max_parallel: int | None = None) -> list[SubagentReport]:
        """Every spec, at most ``max_parallel`` at once (1 on an in-process model), the rest queued."""
        width = 1 if self.serial else max(1, min(max_parallel or self.limits.max_parallel, self.limits.max_parallel))
        if any(spec.mode == "edit" for spec in specs):
            with self._tree, self._lock:
                self._checkpoint_parent("kcode: before sub-agents")
        with self._lock:
            self._quiet += 1
        try:
            if width == 1:
                return [self.run(spec) for spec in specs]
            with ThreadPoolExecutor(width, thread_name_prefix="kcode-subagent") as pool:
                return list(pool.map(self.run, specs))
        finally:
            with self._lock:
                self._quiet -= 1

    def _child_config(self, spec: SubagentSpec, steps: int) -> Config:
        changes: dict[str, Any] = {"max_steps": steps, "repair": "off"}  # the parent's task, not a sub-agent's, is repaired
        if self.limits.agent_time is not None:
            changes["max_time"] = self.limits.agent_time
        if self.limits.agent_tokens is not None:
            changes["max_tokens"] = self.limits.agent_tokens
        if spec.mode == "explore":
            changes["sandbox"] = "read-only"
            changes["auto_test"] = False
        if getattr(self.config, "subagent_model", None):
            changes["model"] = self.config.subagent_model
        elif self.config.context_window is None and self._parent_model is not None:
            # the parent's model, whose window the parent asked its server for: not again per sub-agent
            changes["context_window"] = self._parent_model.context_window
        return dataclasses.replace(self.config, **{k: v for k, v in changes.items() if hasattr(self.config, k)})

    def _forward(self, key: str) -> Callable[[Event], None]:
        def forward(event: Event) -> None:
            if event.type == "session.started":
                self._tree_made()
                with self._lock:
                    entry = self._registry.setdefault(key, {})
                    if not entry.get("session_id"):
                        entry.update(session_id=event.session_id, status="running")
                        self._save_registry()
            with self._lock:  # one writer at a time on the parent's log and stream
                self.bus.emit(event)
        return forward

    def _run(self, spec: SubagentSpec, key: str, resume_id: str | None, steps: int) -> SubagentReport:

        config = self._child_config(spec, steps)
        cancel = self.cancel.child()
        if self.remote:
            from kcode.agent.remote_parent import run_remote

            return run_remote(self, spec, key, steps, config, cancel)
        tools = subagent_tools(spec.mode)
        model = GatedModel(self._parent_model if self.serial else self._model_factory(spec, config), self.gate, cancel)
        if spec.mode == "edit" and not self._quiet:
            with self._tree, self._lock:
                self._checkpoint_parent("kcode: before sub-agent " + spec.description[:60])
        subscribers = [self._forward(key)]
        try:
            return self._start(spec, key, resume_id, steps, config, model, tools, cancel, subscribers)
        finally:
            if not self.serial:
                model.close()

    def _start(self, spec, key, resume_id, steps, config, model, tools, cancel, subscribers) -> SubagentReport:
        from kcode.agent.runner import resume_task, run_task

        if resume_id:
            done = self.store.read_meta(resume_id)
            if done.status == "finished":  # it finished, and the parent was killed before it heard
                return self._finished_report(spec, done)
        self._tree.acquire()  # released once the sub-agent's session has started (its work tree made)
        self._making.held = True
        try:
            if resume_id:
                outcome = resume_task(resume_id, {"max_steps": steps}, model=model, tools=tools, store=self.store, subscribers=subscribers, cancel=cancel)
            else:
                outcome = run_task(_child_task(spec), config, repo=self.workspace.path, in_place=spec.mode == "explore", model=model, tools=tools,
                                   store=self.store, subscribers=subscribers, cancel=cancel, parent_id=self.meta.session_id,
                                   start=self.workspace.head if spec.mode == "edit" else None)
        finally:
            self._tree_made()
        result = outcome.result
        report = SubagentReport(spec.description, spec.mode, session_id=outcome.meta.session_id, status=result.status,
                                summary=result.summary or result.last_message, steps=result.steps, branch=outcome.meta.branch)
        if spec.mode == "edit":
            report.changed_files = [c.get("path", "") for c in outcome.changed_files]
            report.base, report.head = outcome.meta.base_commit, outcome.workspace.head
            try:
                self._merge(report, report.base, report.head)
            except KcodeError as error:  # its work stays on its branch
                report.error = f"could not merge (its work is on {report.branch}): {error}"
        return report

    def _finished_report(self, spec: SubagentSpec, meta: SessionMeta) -> SubagentReport:
        from kcode.vcs.git import git

        report = SubagentReport(spec.description, spec.mode, session_id=meta.session_id, status=meta.status, summary=meta.summary,
                                steps=meta.steps, branch=meta.branch, reused=True)
        if spec.mode == "edit":
            repo = Path(meta.repo)
            report.base, report.head = meta.base_commit, str(git(["rev-parse", meta.branch], repo)).strip()
            report.changed_files = str(git(["diff", "--name-only", report.base, report.head], repo)).split()
            self._merge(report, report.base, report.head)
        return report

    def _tree_made(self) -> None:
        if getattr(self._making, "held", False):
            self._making.held = False
            self._tree.release()

    def _merge(self, report: SubagentReport, base: str, head: str) -> None:
        with self._tree, self._lock:
            if not self._quiet:
                self._checkpoint_parent("kcode: before merging sub-agent " + report.session_id)
            parent_head = self.workspace.head
            result = merge_into(self.workspace.path, parent_head, head, base, f"kcode: merge sub-agent {report.session_id} ({report.description[:60]})",
                                in_place=self.workspace.mode == "in-place")
            if result.conflicts:
                report.conflicts = result.conflicts
                return
            report.merged = result.merged
            if result.merged and result.commit != parent_head:
                if self.workspace.mode == "in-place":
                    info = self.workspace.checkpoint(f"kcode: merge sub-agent {report.session_id}")
                    commit = info.commit if info else self.workspace.head
                else:
                    self.workspace.head = commit = result.commit
                self.bus.emit(Checkpoint(step=0, commit=commit, ref=self.workspace.branch))


    def close(self) -> None:
        """Stop the executor of remote sub-agents, if one was started."""
        from kcode.agent.remote_parent import close_remote

        close_remote(self)

    def _checkpoint_parent(self, message: str) -> None:
        """Commit what the parent changed since its last checkpoint (a sub-agent starts from it)."""
        info = self.workspace.checkpoint(message)
        if info is not None:
            self.bus.emit(Checkpoint(step=0, commit=info.commit, ref=self.workspace.branch))


def _remote_earlier(folder: Path) -> dict[str, str]:
    """Remote sub-agents of a parent from before a resume, by their task: the keeper's copies
    of their metadata (kcode.agent.remote), for those whose session did not come back."""
    earlier = {}
    for path in sorted(folder.glob("*/meta.json")) if folder.is_dir() else []:
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and meta.get("task") and meta.get("session_id"):
            earlier[meta["task"]] = meta["session_id"]
    return earlier


def _child_task(spec: SubagentSpec) -> str:
    from kcode.resources import read_prompt

    template = read_prompt(f"subagents/{spec.mode}.md").strip()
    return template.replace("{description}", spec.description).replace("{prompt}", spec.prompt)


def subagent_tools(mode: str) -> ToolRegistry:
    """A sub-agent's tools: no task or swarm (sub-agents start none), and for ``explore``
    nothing that writes files."""
    from kcode.tools import default_tools

    tools = default_tools().without("task", "swarm")
    return tools.without("edit_file", "write_file") if mode == "explore" else tools


def _default_model_factory(spec: SubagentSpec, config: Config) -> ChatModel:
    """The configured model (``subagent_model``, else the run's). ``scripted:DIR`` (a folder)
    gives each sub-agent DIR/<description as a slug>.json (tests, demos)."""
    spec_text = config.model or ""
    kind, _, rest = spec_text.partition(":")
    if kind == "scripted" and Path(rest).is_dir():
        from kcode.llm.scripted import ScriptedModel

        script = Path(rest) / f"{_slug(spec.description)}.json"
        if not script.exists():
            raise KcodeError(f"scripted sub-agent: no script {script}")
        return ScriptedModel.from_file(script)
    from kcode.agent.runner import _model

    return _model(config, f"subagent-{spec.key()}")


def serving_line(config: Config, model: ChatModel, parent_id: str | None = None) -> str:
    """How ``model`` serves this run's sub-agents, for the run header."""
    if config.subagents == "off":
        return "off"
    if parent_id:
        return "off (a sub-agent starts none)"
    if getattr(model, "parallel_requests", False):
        slots = getattr(model, "parallel_slots", None)
        return f"{slots} parallel slots on {model.name}" if slots else f"up to {config.max_parallel} in parallel on {model.name}"
    if config.subagents == "auto":
        return "off (the model serves one conversation at a time; subagents = on queues them on it)"
    if not getattr(model, "serves_one_at_a_time", False):
        return f"up to {config.max_parallel} at once, each on a model of its own"
    if getattr(model, "serving", "in process") == "in process":
        return "queued on the in-process model"
    return "queued on the kept-alive model server (one conversation at a time)"
