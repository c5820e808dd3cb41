"""One task, end to end: config → session → work tree → prompt → agent loop → result.

Frontends call :func:`run_task` (a new session) or :func:`resume_task` (continue one from
its log) with their event subscribers and a cancel token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kcode.agent.loop import Agent, Budget, RunResult
from kcode.agent.prompt import build_system_prompt, initial_messages, read_agents_md
from kcode.config import Config, data_dir
from kcode.errors import SessionError, UsageError
from kcode.events import (
    Checkpoint,
    ContextPacked,
    EventBus,
    MessageAdded,
    SessionFinished,
    SessionStarted,
    Subscriber,
    TodoUpdated,
    TurnCompleted,
    Usage,
)
from kcode.llm.base import CancelToken, ChatModel, TokenUsage
from kcode.llm.registry import ModelOptions, create_model
from kcode.sandbox import create_sandbox
from kcode.session import SessionLog, SessionMeta, SessionStore, new_session_id, read_events
from kcode.tools import SessionState, ToolContext, default_tools
from kcode.vcs import ApplyReport, Workspace, apply_result, git, repo_root

__all__ = ["RunOutcome", "run_task", "resume_task", "apply_session"]


@dataclass
class RunOutcome:
    result: RunResult
    meta: SessionMeta
    workspace: Workspace
    diff_stat: str = ""
    changed_files: list[dict[str, str]] = field(default_factory=list)
    tests: dict | None = None  # the last test run's counts
    applied: ApplyReport | None = None


def _bus(log: SessionLog, subscribers: list[Subscriber], tests: list[dict]) -> EventBus:
    bus = EventBus()
    bus.subscribe(log)
    bus.subscribe(lambda event: tests.append(event.to_dict()) if event.type == "tests.run" else None)
    for subscriber in subscribers:
        bus.subscribe(subscriber)
    return bus


def _context(config: Config, store: SessionStore, meta: SessionMeta, workspace: Workspace, cancel: CancelToken) -> ToolContext:
    scratch = store.scratch_dir(meta.session_id)
    scratch.mkdir(parents=True, exist_ok=True)
    return ToolContext(
        root=workspace.path,
        sandbox=create_sandbox(config.sandbox, workspace.path, extra_writable=[scratch]),
        state=SessionState(),
        cancel=cancel,
        test_command=config.test_command,
        scratch_dir=scratch,
    )


def _finish(agent: Agent, meta: SessionMeta, store: SessionStore, workspace: Workspace, tests: list[dict], apply: bool) -> RunOutcome:
    result = agent.run()
    meta.status, meta.steps, meta.summary = result.status, result.steps, result.summary
    store.write_meta(meta)
    outcome = RunOutcome(result, meta, workspace, tests=tests[-1] if tests else None)
    outcome.diff_stat = workspace.diff_stat()
    outcome.changed_files = workspace.changed_files()
    if apply and result.status == "finished" and workspace.mode == "worktree":
        outcome.applied = apply_result(workspace.repo, workspace.base_commit, workspace.head)
    return outcome


def _repo_pack(config: Config, model: ChatModel, root: Path, task: str, bus: EventBus) -> str:
    """The repository block of the stable prompt prefix (empty with ``pack = "none"``)."""
    if config.pack == "none":
        return ""
    from kcode.context import MODES, build_pack, default_budget

    if config.pack not in MODES:
        raise UsageError(f"unknown pack mode {config.pack!r} (use one of: {', '.join(MODES)}, none)")
    budget = config.pack_budget or default_budget(model.context_window, config.pack_share)
    if budget <= 0:
        return ""
    pack = build_pack(root, task=task, count_tokens=model.count_tokens, budget=budget, mode=config.pack, tokenizer=model.name)
    stats = pack.stats
    bus.emit(
        ContextPacked(
            mode=stats.get("mode_used", config.pack),
            tokens=stats.get("tokens", 0),
            budget=budget,
            files_whole=len(stats.get("files_whole", [])),
            files_map=len(stats.get("files_in_map", [])),
            files_skipped=len(stats.get("files_skipped", {})),
            tokenizer=str(stats.get("tokenizer", "")),
            seconds=round(sum(stats.get("seconds", {}).values()), 3),
        )
    )
    return pack.text


def _model(config: Config, session_id: str) -> ChatModel:
    return create_model(config.model, ModelOptions(base_url=config.base_url, session_id=session_id))


def run_task(
    task: str,
    config: Config,
    *,
    repo: Path,
    cwd: Path | None = None,
    in_place: bool = False,
    apply: bool = False,
    subscribers: list[Subscriber] = (),
    cancel: CancelToken | None = None,
) -> RunOutcome:
    if not task.strip():
        raise UsageError("the task is empty")
    root = repo_root(repo)
    cancel = cancel or CancelToken()
    store = SessionStore()
    session_id = new_session_id()
    model = _model(config, session_id)  # fail on a bad model before creating anything
    try:
        workspace = Workspace.create(root, session_id, data_dir() / "worktrees", in_place=in_place)
        meta = SessionMeta(
            session_id=session_id,
            task=task,
            repo=str(root),
            workdir=str(workspace.path),
            branch=workspace.branch,
            base_commit=workspace.base_commit,
            model=model.name,
            mode=workspace.mode,
        )
        store.write_meta(meta)
        log = SessionLog(store.log_path(session_id))
        tests: list[dict] = []
        bus = _bus(log, list(subscribers), tests)
        try:
            bus.emit(SessionStarted(session_id=session_id, task=task, repo=str(root), workdir=str(workspace.path), branch=workspace.branch, base_commit=workspace.base_commit, model=model.name, mode=workspace.mode))
            ctx = _context(config, store, meta, workspace, cancel)
            relative_cwd = (cwd or root).resolve()
            try:
                agents_cwd = workspace.path / relative_cwd.relative_to(root)
            except ValueError:
                agents_cwd = workspace.path
            repo_pack = _repo_pack(config, model, workspace.path, task, bus)
            system = build_system_prompt(repo_name=root.name, agents_md=read_agents_md(workspace.path, agents_cwd), repo_pack=repo_pack)
            messages = initial_messages(system, task)
            for message in messages:
                bus.emit(MessageAdded(message=message))
            budget = Budget(config.max_steps, config.max_time)
            agent = Agent(model, default_tools(), ctx, bus, workspace, messages, budget)
            return _finish(agent, meta, store, workspace, tests, apply)
        finally:
            log.close()
    finally:
        model.close()


@dataclass
class _Recovered:
    messages: list[dict]
    todo: list[dict]
    step: int
    model_state: dict
    usage: TokenUsage
    elapsed: float
    head: str | None


def _recover(log_path: Path) -> _Recovered:
    """Rebuild the state at the end of the last completed step. Anything after it (a step
    cut short by a crash) is dropped: its messages, and below, its file changes."""
    messages: list[dict] = []
    pending: list[dict] = []
    todo: list[dict] = []
    pending_todo: list[dict] | None = None
    step, model_state, usage, step_usage = 0, {}, TokenUsage(), TokenUsage()
    elapsed, segment_start, last_ts, head = 0.0, None, 0.0, None
    for event in read_events(log_path):
        last_ts = event.ts or last_ts
        if isinstance(event, SessionStarted):
            segment_start = event.ts
            head = head or event.base_commit
        elif isinstance(event, MessageAdded):
            pending.append(event.message)
        elif isinstance(event, TodoUpdated):
            pending_todo = event.items
        elif isinstance(event, Usage):
            step_usage.add(TokenUsage(event.input_tokens, event.cached_input_tokens, event.output_tokens))
        elif isinstance(event, Checkpoint):
            head = event.commit
        elif isinstance(event, TurnCompleted):
            messages.extend(pending)
            pending = []
            if pending_todo is not None:
                todo, pending_todo = pending_todo, None
            step, model_state = event.step, event.model_state
            usage.add(step_usage)
            step_usage = TokenUsage()
        elif isinstance(event, SessionFinished) and segment_start is not None:
            elapsed += event.ts - segment_start
            segment_start = None
    if step == 0:  # nothing completed: keep the opening messages (system + task)
        messages = [m for m in pending if m.get("role") in ("system", "user")][:2]
    if segment_start is not None:  # the last run died without a SessionFinished
        elapsed += max(0.0, last_ts - segment_start)
    return _Recovered(messages, todo, step, model_state, usage, elapsed, head)


def resume_task(
    session_id: str | None,
    config: Config,
    *,
    repo: Path | None = None,
    subscribers: list[Subscriber] = (),
    cancel: CancelToken | None = None,
) -> RunOutcome:
    store = SessionStore()
    meta = store.resolve(session_id, repo_root(repo) if repo else None)
    if not meta.workdir or not Path(meta.workdir).exists():
        raise SessionError(f"the work tree of session {meta.session_id} is gone ({meta.workdir})")
    state = _recover(store.log_path(meta.session_id))
    if not state.messages:
        raise SessionError(f"session {meta.session_id} has no conversation to resume")
    cancel = cancel or CancelToken()
    config = config.replace(model=config.model or meta.model)
    model = _model(config, meta.session_id)
    model.restore(state.model_state)
    workspace = Workspace(Path(meta.repo), Path(meta.workdir), meta.branch, meta.base_commit, meta.mode, state.head or meta.base_commit)
    if meta.mode == "worktree":  # roll back half-done effects of an interrupted step
        git(["reset", "--quiet", "--hard", workspace.head], workspace.path)
        git(["clean", "-fdq"], workspace.path)
    try:
        log = SessionLog(store.log_path(meta.session_id))
        tests: list[dict] = []
        bus = _bus(log, list(subscribers), tests)
        try:
            meta.status = "running"
            store.write_meta(meta)
            bus.emit(SessionStarted(session_id=meta.session_id, task=meta.task, repo=meta.repo, workdir=meta.workdir, branch=meta.branch, base_commit=meta.base_commit, model=model.name, mode=meta.mode, resumed=True))
            ctx = _context(config, store, meta, workspace, cancel)
            ctx.state.todo = state.todo
            budget = Budget(config.max_steps, config.max_time)
            agent = Agent(model, default_tools(), ctx, bus, workspace, state.messages, budget, step=state.step, elapsed_before=state.elapsed, usage=state.usage)
            return _finish(agent, meta, store, workspace, tests, apply=False)
        finally:
            log.close()
    finally:
        model.close()


def apply_session(session_id: str | None, repo: Path | None = None) -> tuple[SessionMeta, ApplyReport]:
    store = SessionStore()
    meta = store.resolve(session_id, repo_root(repo) if repo else None)
    if meta.mode != "worktree":
        raise UsageError(f"session {meta.session_id} ran in place; its changes are already in your checkout")
    repo_path = Path(meta.repo)
    head = str(git(["rev-parse", meta.branch], repo_path)).strip()
    return meta, apply_result(repo_path, meta.base_commit, head)



