"""Sub-agents as Ray tasks (``executor = "ray"`` or ``"ray:ADDRESS"``, ``kcode run --executor``).

The parent ships its checkpoint as a git bundle; the task makes a repository from it on its
worker, runs the sub-agent there in a work tree of its own, and sends its branch back as a
bundle, which the parent fetches and merges like a local sub-agent's.

While it runs, the task hands its session log (the lines since the last step's end), its
metadata and, at each checkpoint, its branch as a bundle to a :class:`Keeper`: an actor on
the parent's machine that writes them into the parent's session folder. A task run again
(Ray retries one whose worker died; a parent resumed after a kill starts it again) finds them
there and resumes the sub-agent from its log: the steps it logged are not taken again, and a
tool call cut short is rolled back to the last checkpoint first, as for any resumed session.
A sub-agent resumed after its parent was resumed (a kill, then ``kcode resume``) may have
started from a commit the parent's line no longer holds (the parent went back to before the
merges it was made on, and merged again): that commit is shipped too, and the parent keeps
a ref on each remote sub-agent's start until its task is back. A cancel goes through the keeper too: the task polls it and cancels its run's token, so the
sub-agent stops as a local one does (its commands killed, its log kept).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kcode.cancel import CancelToken
from kcode.config import Config
from kcode.events import Event
from kcode.session import SessionMeta, SessionStore
from kcode.vcs.bundle import bundle_commits, fetch_bundle, repo_from_bundle
from kcode.vcs.git import git

__all__ = ["Keeper", "RemoteJob", "RemoteResult", "run_shipped", "ship_start", "start_keeper", "take_back"]

_START_REF = "refs/kcode/ship/start"  # the start commit, in the bundle the parent ships
_BRANCH_REF = "refs/kcode/ship/branch"  # the sub-agent's branch, in the bundles it sends back
_RESUME_REF = "refs/kcode/ship/resume-base"  # a resumed sub-agent's own start, when it is not in the start's history
_SYNC_AFTER = ("turn.completed", "checkpoint", "session.finished")


@dataclass
class RemoteJob:
    """What a Ray task needs to run one sub-agent (plain data: it is pickled)."""

    key: str  # the sub-agent's key in its parent's registry
    description: str
    prompt: str
    mode: str
    task: str  # the sub-agent's task: its mode's prompt, filled in
    config: Config
    steps: int
    parent_id: str
    base: str  # the parent's checkpoint the sub-agent starts from
    bundle: bytes  # holds ``base`` as _START_REF (and ``resume_base`` as _RESUME_REF)
    keeper: Any  # the Keeper actor
    # a sub-agent resumed after its parent was: the commit it started from, when the parent's
    # line no longer holds it (the resumed parent went back to before the merges it was made on)
    resume_base: str = ""


@dataclass
class RemoteResult:
    session_id: str
    meta: dict
    log: bytes  # the whole session log
    bundle: bytes | None  # its branch as _BRANCH_REF; None when it made no commit
    head: str
    changed_files: list[str]


class Keeper:
    """Holds each remote sub-agent's log, metadata and branch in ``folder`` (the parent's
    session folder, on the parent's machine), by the sub-agent's key."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.cancelled: set[str] = set()

    def cancel(self, key: str) -> None:
        """Ask the sub-agent to stop (its task polls :meth:`is_cancelled`)."""
        self.cancelled.add(key)

    def is_cancelled(self, key: str) -> bool:
        return key in self.cancelled

    def load(self, key: str) -> dict | None:
        where = self.folder / key
        try:
            meta = json.loads((where / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        log = (where / "events.jsonl").read_bytes() if (where / "events.jsonl").exists() else b""
        bundle = (where / "branch.bundle").read_bytes() if (where / "branch.bundle").exists() else None
        return {"meta": meta, "log": log[: log.rfind(b"\n") + 1], "bundle": bundle}

    def save(self, key: str, log: bytes, meta: dict, bundle: bytes | None) -> None:
        where = self.folder / key
        where.mkdir(parents=True, exist_ok=True)
        if bundle is not None:
            _write_atomically(where / "branch.bundle", bundle)
        with (where / "events.jsonl").open("ab") as handle:
            handle.write(log)
            handle.flush()
            os.fsync(handle.fileno())
        _write_atomically(where / "meta.json", json.dumps(meta).encode())


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".tmp")
    partial.write_bytes(data)
    os.replace(partial, path)


def start_keeper(folder: Path) -> Any:
    """A :class:`Keeper` actor on this machine (a task on any node reaches it)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    actor = ray.remote(num_cpus=0)(Keeper)
    return actor.options(scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote(str(folder))


class _Relay:
    """The task's subscriber: at every step's end, what the log gained since the last one
    goes to the keeper, with the metadata and (after a checkpoint) the branch."""

    def __init__(self, job: RemoteJob, store: SessionStore, repo: Path, offset: int = 0, session_id: str = "") -> None:
        self.job, self.store, self.repo, self.offset, self.session_id = job, store, repo, offset, session_id

    def __call__(self, event: Event) -> None:
        if event.type == "session.started" and event.agent_id == event.session_id:
            self.session_id = event.session_id
        if event.type in _SYNC_AFTER and event.agent_id == self.session_id:
            self.sync(getattr(event, "commit", None) if event.type == "checkpoint" else None)

    def sync(self, head: str | None) -> None:
        import ray

        with self.store.log_path(self.session_id).open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        data = data[: data.rfind(b"\n") + 1]  # whole lines only
        self.offset += len(data)
        meta = dataclasses.asdict(self.store.read_meta(self.session_id))
        bundle = bundle_commits(self.repo, head, _BRANCH_REF, exclude=self.job.base) if head and head != self.job.base else None
        ray.get(self.job.keeper.save.remote(self.job.key, data, meta, bundle))


def run_shipped(job: RemoteJob) -> RemoteResult:
    """The Ray task: run (or resume) one sub-agent on this worker; see the module's doc."""
    import ray

    from kcode.agent.runner import resume_task, run_task
    from kcode.agent.subagents import SubagentSpec, _default_model_factory, subagent_tools

    # the same folders on every try, so the paths its metadata names hold again
    root = Path(tempfile.gettempdir()) / "kcode-ray" / f"{job.parent_id}-{job.key}"
    shutil.rmtree(root, ignore_errors=True)
    os.environ["KCODE_HOME"] = str(root / "home")
    repo = root / "repo"
    repo_from_bundle(repo, job.bundle, _START_REF, "refs/kcode/start")
    if job.resume_base:
        fetch_bundle(repo, job.bundle, _RESUME_REF, "refs/kcode/resume-base")
    store = SessionStore(root / "sessions")
    model = _default_model_factory(SubagentSpec(job.description, job.prompt, job.mode), job.config)
    tools = subagent_tools(job.mode)
    saved = ray.get(job.keeper.load.remote(job.key))
    cancel, done = CancelToken(), threading.Event()

    def watch() -> None:  # the parent's cancel reaches the run through its token: tools stop, the log is kept
        while not done.wait(0.3):
            if ray.get(job.keeper.is_cancelled.remote(job.key)):
                cancel.cancel()
                return

    threading.Thread(target=watch, name="kcode-remote-cancel", daemon=True).start()
    try:
        if saved is None:
            relay = _Relay(job, store, repo)
            outcome = run_task(job.task, job.config, repo=repo, model=model, tools=tools, store=store, subscribers=[relay],
                               cancel=cancel, parent_id=job.parent_id, start=job.base)
        else:  # an earlier try logged some steps: go on from them
            meta = SessionMeta(**saved["meta"])
            store.write_meta(meta)
            store.log_path(meta.session_id).write_bytes(saved["log"])
            if saved["bundle"] is not None:
                fetch_bundle(repo, saved["bundle"], _BRANCH_REF, f"refs/heads/{meta.branch}")
            else:
                git(["branch", meta.branch, meta.base_commit], repo)
            relay = _Relay(job, store, repo, offset=len(saved["log"]), session_id=meta.session_id)
            outcome = resume_task(meta.session_id, {"max_steps": job.steps}, model=model, tools=tools, store=store, subscribers=[relay], cancel=cancel)
    finally:
        done.set()
        model.close()
    head = outcome.workspace.head
    if relay.session_id:
        relay.sync(head)  # the final metadata and branch
    bundle = bundle_commits(repo, head, _BRANCH_REF, exclude=job.base) if head != job.base else None
    log = store.log_path(outcome.meta.session_id).read_bytes()
    result = RemoteResult(outcome.meta.session_id, dataclasses.asdict(outcome.meta), log, bundle, head,
                          [c.get("path", "") for c in outcome.changed_files])
    shutil.rmtree(root, ignore_errors=True)
    return result


def ship_start(repo: Path, base: str, resume_base: str = "") -> bytes:
    """The bundle a remote sub-agent starts from: ``base`` and its history (and
    ``resume_base``, a resumed sub-agent's own start, with its history)."""
    return bundle_commits(repo, base, _START_REF, also={_RESUME_REF: resume_base} if resume_base else None)


def take_back(repo: Path, result: RemoteResult) -> str:
    """Fetch a remote sub-agent's branch into ``repo`` (as its branch there); its head."""
    if result.bundle is None:
        return result.head
    return fetch_bundle(repo, result.bundle, _BRANCH_REF, f"refs/heads/{result.meta['branch']}")
