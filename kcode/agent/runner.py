"""One task, end to end: config → session → work tree → prompt → agent loop → result.

Frontends call :func:`run_task` (a new session) or :func:`resume_task` (continue one from
its log) with their event subscribers and a cancel token. The parts of a run can be passed
in (the model, the tools, the prompt, the session store, the subscribers); the CLI passes
none of them and gets the defaults: the configured model, ``default_tools()`` with the skills
discovery finds (kcode.skills), the prompt of :mod:`kcode.agent.prompt` with the repository
pack and the skills catalog, and ``SessionStore()``. A run's work tree
exists while it runs: when the run ends its branch keeps the result and the work tree is
removed; a resume checks the branch out there again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kcode.agent.compaction import CompactionPolicy
from kcode.agent.guards import LoopGuard
from kcode.agent.repair import repair_policy
from kcode.agent.loop import Agent, Budget, RunResult
from kcode.agent.recovery import recover
from kcode.agent.run_control import RunControl
from kcode.agent.prompt import initial_messages, read_agents_md, repository_prompt
from kcode.cancel import CancelToken
from kcode.config import Config, changed_settings, load_config
from kcode.errors import SessionError, UsageError
from kcode.events import (
    ContextPacked,
    EnvironmentResolved,
    ErrorEvent,
    Event,
    EventBus,
    MessageAdded,
    SessionStarted,
    Subscriber,
)
from kcode.llm.base import ChatModel, Message, TokenUsage
from kcode.llm.registry import ModelOptions, create_model
from kcode.sandbox import LocalSandbox, create_sandbox, discover_project, load_policy
from kcode.paths import data_dir
from kcode.session import SessionLog, SessionMeta, SessionStore, log_in_use, new_session_id
from kcode.skills import SkillSet, discover_skills, render_catalog
from kcode.tools import SessionState, SkillTool, ToolContext, ToolRegistry, default_tools
from kcode.tools.files import seen_files, whole_files
from kcode.trust import check_project_settings, is_trusted
from kcode.vcs import ApplyReport, Workspace, apply_result, repo_root

from kcode.agent.subagent_tools import close_subagents, serving_info, with_subagents
from kcode.agent.session_ops import apply_session, rewind_session  # kept importable from here

__all__ = ["RunOutcome", "process_start", "run_task", "resume_task", "rewind_session", "apply_session"]


@dataclass
class RunOutcome:
    result: RunResult
    meta: SessionMeta
    workspace: Workspace
    diff_stat: str = ""
    changed_files: list[dict[str, str]] = field(default_factory=list)
    tests: dict | None = None  # the last test run's counts
    applied: ApplyReport | None = None


def _bus(log: SessionLog, subscribers: list[Subscriber], tests: list[dict], meta: SessionMeta) -> EventBus:
    bus = EventBus(agent_id=meta.session_id, parent_id=meta.parent_id)  # the agent is its session
    bus.subscribe(log)
    def keep_last_tests(event: Event) -> None:
        if event.type == "tests.run" and event.agent_id == meta.session_id:  # not a sub-agent's
            tests[:] = [event.to_dict()]

    bus.subscribe(keep_last_tests)
    for subscriber in subscribers:
        bus.subscribe(subscriber)
    return bus


def _limits(config: Config, model: ChatModel) -> dict:
    """The run's window, sandbox profile and budgets, for SessionStarted (a status line's)."""
    return {"context_window": model.context_window, "sandbox": config.sandbox, "max_steps": config.max_steps, "max_time": config.max_time}


def _context(config: Config, store: SessionStore, meta: SessionMeta, workspace: Workspace, cancel: CancelToken, bus: EventBus) -> ToolContext:
    scratch = store.scratch_dir(meta.session_id)
    scratch.mkdir(parents=True, exist_ok=True)
    # How commands see the project: the work tree at the checkout's path, its environment first.
    view = discover_project(workspace.repo, workspace.path)
    # The work tree's .kcode/ is the repository's: trusted as the user's repository is.
    sandbox = create_sandbox(config.sandbox, workspace.path, extra_writable=[scratch], extra_readable=config.sandbox_readable, trusted=is_trusted(meta.repo), view=view)
    note = ""
    if view.remapped and isinstance(sandbox, LocalSandbox):
        note = ("with --sandbox off, commands see the work tree at its own path, so an editable install "
                "still imports your checkout's code; use a sandbox profile or --in-place")
    bus.emit(EnvironmentResolved(
        path=str(view.checkout), python=view.python or "", python_version=view.python_version,
        environment=str(view.environment or ""), environment_source=view.environment_source,
        shown=list(view.shown), left_out=view.left_out, note=note,
    ))  # fmt: skip
    return ToolContext(
        root=workspace.path,
        sandbox=sandbox,
        state=SessionState(),
        cancel=cancel,
        test_command=config.test_command,
        scratch_dir=scratch,
        task=meta.task,
    )


def _finish(agent: Agent, meta: SessionMeta, store: SessionStore, workspace: Workspace, tests: list[dict], apply: bool) -> RunOutcome:
    control = agent.control if agent.control is not None else RunControl()  # polls the control channel, headless too
    agent.control = control
    with control.attached(agent, store.dir(meta.session_id)):
        result = agent.run()
    meta.status, meta.steps, meta.summary = result.status, result.steps, result.summary
    store.write_meta(meta)
    outcome = RunOutcome(result, meta, workspace, tests=tests[-1] if tests else None)
    outcome.diff_stat = workspace.diff_stat()
    outcome.changed_files = workspace.changed_files()
    if apply and result.status == "finished" and workspace.mode == "worktree":
        outcome.applied = apply_result(workspace.repo, workspace.base_commit, workspace.head)
    # Every way a run ends leaves its result on the branch; a resume re-adds the work tree
    # and goes back to the last checkpoint, so nothing it would use is lost here.
    workspace.remove_worktree()
    return outcome


def _repo_pack(config: Config, model: ChatModel, tools: ToolRegistry, root: Path, task: str, bus: EventBus, focus: list[str] = (), failing: list[str] = (), *, label: str = "", overhead: int = 0, started_at: float | None = None) -> tuple[str, str]:
    """The pack for the repository part of the prompt head, as (task-independent part, part
    for this task); ("", "") with ``pack = "none"``. Sized by the first step's budget
    (kcode.agent.pack_budget); the task-independent part is the same for every task, so the
    next run in the repository restores its KV state. ``label`` names the repository in the
    prefix cache; ``overhead``: tokens of the repository part besides the pack;
    ``started_at``: when the user's wait began (see plan_first_step)."""
    if config.pack == "none":
        return "", ""
    from kcode.agent.pack_budget import plan_first_step
    from kcode.context import MODES, build_pack, default_budget

    if config.pack not in MODES:
        raise UsageError(f"unknown pack mode {config.pack!r} (use one of: {', '.join(MODES)}, none)")
    window = default_budget(model.context_window, config.pack_share)
    other = model.count_tokens(task) + overhead + 16  # + the chat template's markers around them
    plan = plan_first_step(config, model, tools.specs(), window_tokens=window, other_tokens=other, label=label, repository_overhead=overhead, started_at=started_at)
    budget = plan.budget
    if budget.tokens <= 0:
        return "", ""
    common = dict(count_tokens=model.count_tokens, mode=config.pack, tokenizer=model.name)
    single = budget.reason == "flag" or budget.tokens_per_second is None
    if single:  # one task-aware pack, as asked or as before
        packs = [build_pack(root, task=task, budget=budget.tokens, focus_files=focus, failing_files=failing, **common)]
    else:  # task-independent (cached, shared by every task), then this task's part if the time allows one
        packs = [build_pack(root, task="", budget=budget.stable_tokens, **common)]
        if budget.task_tokens:
            packs.append(build_pack(root, task=task, budget=budget.task_tokens, focus_files=focus, failing_files=failing, **common))
    stats = [pack.stats for pack in packs]
    tokens = sum(part.get("tokens", 0) for part in stats)
    bus.emit(
        ContextPacked(
            mode="+".join(dict.fromkeys(str(part.get("mode_used", config.pack)) for part in stats)),
            tokens=tokens,
            budget=budget.tokens,
            files_whole=len({path for part in stats for path in part.get("files_whole", [])}),
            files_map=len({path for part in stats for path in part.get("files_in_map", [])}),
            files_skipped=len({path for part in stats for path in part.get("files_skipped", {})}),
            tokenizer=str(stats[0].get("tokenizer", "")),
            seconds=round(sum(sum(part.get("seconds", {}).values()) for part in stats), 3),
            budget_reason=budget.reason,
            budget_why=budget.why,
            prefill_tokens_per_second=budget.tokens_per_second,
            expected_prefill_seconds=budget.prefill_seconds(tokens),
            fixed_prompt_tokens=plan.fixed_tokens,
            fixed_prompt_cached=plan.fixed_cached,
            restored_tokens=min(tokens, budget.restored_tokens),
            prefill_settings=plan.settings,
        )
    )
    if single:
        return "", packs[0].text
    return packs[0].text, packs[1].text if len(packs) == 2 else ""


def _system_prompt(config: Config, model: ChatModel, tools: ToolRegistry, workspace: Workspace, repo_name: str, task: str, agents_cwd: Path, bus: EventBus, focus: list[str] = (), failing: list[str] = (), started_at: float | None = None) -> str:
    """The repository part of the prompt head (the second system message; the first, the
    fixed system prompt, is the same for every repository: kcode.agent.prompt)."""
    agents_md = read_agents_md(workspace.path, agents_cwd)
    skill_tool = tools.get("skill")  # the catalog of the skills the tool can load, if it is there
    skills = render_catalog(skill_tool.skills, model.count_tokens, model.context_window, root=Path(workspace.repo)) if isinstance(skill_tool, SkillTool) else ""
    overhead = model.count_tokens(repository_prompt(repo_name=repo_name, agents_md=agents_md, skills=skills))
    stable, for_task = _repo_pack(config, model, tools, workspace.path, task, bus, focus, failing, label=str(workspace.repo), overhead=overhead, started_at=started_at)
    return repository_prompt(repo_name=repo_name, agents_md=agents_md, skills=skills, repo_pack=stable, task_pack=for_task)


def _opening(config: Config, model: ChatModel, tools: ToolRegistry, workspace: Workspace, task: str, agents_cwd: Path, bus: EventBus, logged: list = (), started_at: float | None = None) -> list:
    """The conversation's opening (system prompt, repository part, task), logged as it is
    added; ``logged``: the part of it an earlier process had logged before it was killed."""
    messages = initial_messages(_system_prompt(config, model, tools, workspace, Path(workspace.repo).name, task, agents_cwd, bus, started_at=started_at), task)
    return _log_opening(bus, messages, logged)


def _log_opening(bus: EventBus, opening: list, logged: list = ()) -> list:
    """``opening``'s messages past the ``logged`` part, logged; the whole opening returned."""
    for message in opening[len(logged) :]:
        bus.emit(MessageAdded(message=message))
    return [*logged, *opening[len(logged) :]]


def _agent(config: Config, model: ChatModel, tools: ToolRegistry, ctx: ToolContext, bus: EventBus, workspace: Workspace, messages: list, task: str, agents_cwd: Path, *, repack: bool = True, **state) -> Agent:
    """``repack``: whether compaction rebuilds the repository part of the prompt head (not
    for a prompt the caller wrote: it has no repository part)."""
    window = model.context_window
    policy = CompactionPolicy(
        context_window=window,
        reserve_output=config.reserve_output or min(8192, window // 8),
        keep_tool_outputs=config.keep_tool_outputs,
    )
    return Agent(
        model,
        tools,
        ctx,
        bus,
        workspace,
        messages,
        Budget(config.max_steps, config.max_time, config.max_tokens),
        compaction=policy,
        guard=LoopGuard(stuck_steps=config.stuck_steps),
        auto_test=config.auto_test,
        task=task,
        repack=(lambda focus, failing: _system_prompt(config, model, tools, workspace, Path(workspace.repo).name, task, agents_cwd, bus, focus, failing)) if repack else None,
        **state,
    )


def _default_tools(root: Path) -> tuple[ToolRegistry, SkillSet]:
    """``default_tools()`` with the skills found for the repository at ``root``."""
    found = discover_skills(root)
    return default_tools(found.skills), found


def _skill_notices(found: SkillSet | None, bus: EventBus) -> None:
    for line in found.notices() if found is not None else ():
        bus.emit(ErrorEvent(message=line, kind="notice"))


def _check_settings(config: Config, root: Path) -> None:
    """Fail on a bad sandbox profile, or on a setting the repository's own files may not
    choose unless it is trusted (kcode.trust), before anything is created."""
    load_policy(config.sandbox, root)
    check_project_settings(config, root, load_policy)


def _model(config: Config, session_id: str, on_notice: Callable[[str], None] | None = None) -> ChatModel:
    """The configured model; what it has to say goes to ``on_notice``."""
    options = ModelOptions(
        base_url=config.base_url, session_id=session_id, context_window=config.context_window,
        temperature=config.temperature, seed=config.seed, max_output_tokens=config.max_output_tokens,
        llamacpp=config.llamacpp, on_notice=on_notice, serve=True,
    )  # fmt: skip
    return create_model(config.model, options)


class _ModelNotices:
    """The model's notices (a context lowered to fit the memory, an unusable prefix-cache
    entry) as ``error`` events of kind ``notice``; those of loading are held until the
    session's bus exists."""

    def __init__(self) -> None:
        self._held: list[str] = []
        self._bus: EventBus | None = None

    def __call__(self, text: str) -> None:
        if self._bus is None:
            self._held.append(text)
        else:
            self._bus.emit(ErrorEvent(message=text, kind="notice"))

    def attach(self, bus: EventBus) -> None:
        self._bus = bus
        for text in self._held:
            bus.emit(ErrorEvent(message=text, kind="notice"))
        self._held.clear()


def process_start() -> float | None:
    """This process's start as a ``time.perf_counter()`` value (what ``kcode run`` passes as
    ``started_at``: the user's wait began there, interpreter start-up and imports included)."""
    import psutil

    try:
        age = time.time() - psutil.Process().create_time()
    except (psutil.Error, OSError):
        return None
    return time.perf_counter() - max(0.0, age)


def run_task(
    task: str,
    config: Config,
    *,
    repo: Path,
    cwd: Path | None = None,
    in_place: bool = False,
    apply: bool = False,
    model: ChatModel | None = None,
    tools: ToolRegistry | None = None,
    prompt: Sequence[Message] | None = None,
    store: SessionStore | None = None,
    subscribers: Sequence[Subscriber] = (),
    cancel: CancelToken | None = None,
    started_at: float | None = None,
    parent_id: str | None = None,
    start: str | None = None,
    control: RunControl | None = None,
) -> RunOutcome:
    """Run ``task`` in a new session on the repository around ``repo``.

    The parts of the run, each defaulting to what ``kcode run`` uses:

    - ``model``: default, the one ``config`` names, closed when the run ends; a model passed
      in stays the caller's (open: an eval harness can keep one loaded for many runs);
    - ``tools``: default ``default_tools()`` with the skills of the repository (when it is
      trusted) and the user's (kcode.skills); their catalog is in the prompt when the tools
      hold the ``skill`` tool;
    - ``prompt``: the messages the conversation starts with; default, the fixed system
      prompt, the repository part (AGENTS.md, the repository pack) and the task
      (:mod:`kcode.agent.prompt`). A prompt passed in is used as it is: no pack is built and
      compaction never rebuilds its head;
    - ``store``: where the session's log and metadata go; default ``SessionStore()``;
    - ``subscribers``: called with every event, after the session log.

    ``started_at``: the ``time.perf_counter()`` at which the user's wait began (``kcode
    run`` passes its process start); default: this call. The first step's pack is sized so
    that its first token comes within ``first_step_seconds`` of it. ``parent_id``: the
    session of the agent that started this one (a sub-agent's); its meta and events name it.
    ``start``: the commit a work tree starts from (a sub-agent's: its parent's checkpoint;
    ``repo`` is then the top of a checkout); default, the checkout's state, uncommitted
    changes included. ``control``: steering, interrupts, approvals (kcode.agent.run_control);
    default: never asks."""
    started_at = time.perf_counter() if started_at is None else started_at
    if not task.strip():
        raise UsageError("the task is empty")
    root = Path(repo).resolve() if start is not None else repo_root(repo)
    cancel = cancel or CancelToken()
    store = SessionStore() if store is None else store
    owns_tools = tools is None  # kcode's own tool set gets the sub-agent tools; a caller's is used as it is
    tools, skills = _default_tools(root) if tools is None else (tools, None)
    session_id = new_session_id()
    _check_settings(config, root)
    owns_model = model is None
    notices = _ModelNotices()  # a model passed in reports to whatever its caller chose
    model = _model(config, session_id, notices) if model is None else model  # likewise fails on a bad model before anything is created
    try:
        workspace = Workspace.planned(root, session_id, data_dir() / "worktrees", in_place=in_place, start=start)
        meta = SessionMeta(
            session_id=session_id,
            task=task,
            repo=str(root),
            workdir=str(workspace.path),
            branch=workspace.branch,
            base_commit=workspace.base_commit,
            model=model.name,
            mode=workspace.mode,
            options=_non_default_options(config),
            parent_id=parent_id,
        )
        opening = None if prompt is None else [dict(message) for message in prompt]  # the loop appends to its own list
        if opening is not None:  # before the meta: a resume opens with it, however soon this process dies
            store.write_opening(session_id, opening)
        store.write_meta(meta)
        try:
            workspace.open()  # after the meta: a work tree made here is one a session names
        except Exception:
            meta.status = "error"
            store.write_meta(meta)
            raise
        log = SessionLog(store.log_path(session_id), agent_id=session_id)
        tests: list[dict] = []
        bus = _bus(log, list(subscribers), tests, meta)
        try:
            bus.emit(SessionStarted(session_id=session_id, task=task, repo=str(root), workdir=str(workspace.path), branch=workspace.branch, base_commit=workspace.base_commit, model=model.name, mode=workspace.mode, **serving_info(config, model, parent_id if owns_tools else ""), **_limits(config, model)))
            notices.attach(bus)
            _skill_notices(skills, bus)
            ctx = _context(config, store, meta, workspace, cancel, bus)
            if owns_tools:
                tools = with_subagents(config, tools, model, store, meta, workspace, bus, cancel)
            relative_cwd = (cwd or root).resolve()
            try:
                agents_cwd = workspace.path / relative_cwd.relative_to(root)
            except ValueError:
                agents_cwd = workspace.path
            if opening is None:
                messages = _opening(config, model, tools, workspace, task, agents_cwd, bus, started_at=started_at)
            else:
                messages = _log_opening(bus, opening)
            ctx.state.seen_files = seen_files(messages, ctx.root)  # what the edit tools may change
            ctx.state.whole_files = whole_files(messages, ctx.root)  # what write_file may replace
            agent = _agent(config, model, tools, ctx, bus, workspace, messages, task, agents_cwd, repack=opening is None, control=control,
                           repair=repair_policy(config, model))
            return _finish(agent, meta, store, workspace, tests, apply)
        finally:
            close_subagents(tools)
            log.close()
    finally:
        if owns_model:
            model.close()


def _non_default_options(config: Config) -> dict:
    # how long a model stays loaded after the run is the user's machine's business, not the session's
    return {name: value for name, value in changed_settings(config).items() if name != "keep_alive"}


def resume_task(
    session_id: str | None,
    overrides: dict | None = None,
    *,
    repo: Path | None = None,
    model: ChatModel | None = None,
    tools: ToolRegistry | None = None,
    store: SessionStore | None = None,
    subscribers: Sequence[Subscriber] = (),
    cancel: CancelToken | None = None,
    control: RunControl | None = None,
) -> RunOutcome:
    """Continue a session from its log, whatever moment it stopped at: after a finish, a
    budget, an interrupt, or a kill at any point (before its first message was logged too:
    then the conversation opens as the run's did: with the prompt its caller passed to
    :func:`run_task`, or kcode's own for the task in its meta). ``model``, ``tools``,
    ``store``, ``subscribers`` and ``control`` as for :func:`run_task` (the prompt is the
    logged conversation)."""
    store = SessionStore() if store is None else store
    owns_tools = tools is None
    meta = store.resolve(session_id, repo_root(repo) if repo else None)
    tools, skills = _default_tools(Path(meta.repo)) if tools is None else (tools, None)
    _refuse_running(store, meta)
    recovered = recover(store.log_path(meta.session_id))
    state = recovered.last
    opening = store.read_opening(meta.session_id)  # run_task's prompt; None: kcode's own
    cancel = cancel or CancelToken()
    # the run's own settings, then what the caller changes (e.g. a bigger --max-steps)
    config = load_config(Path(meta.repo), {**meta.options, **{k: v for k, v in (overrides or {}).items() if v is not None}})
    _check_settings(config, Path(meta.repo))
    owns_model = model is None
    notices = _ModelNotices()
    model = _model(config, meta.session_id, notices) if model is None else model
    model.restore(state.model_state)
    workspace = Workspace(Path(meta.repo), Path(meta.workdir), meta.branch, meta.base_commit, meta.mode, state.head or meta.base_commit)
    # a run that ended left only its branch; one killed before its first step maybe not that
    if recovered.snapshots:
        workspace.reopen()
    else:
        workspace.open()
    workspace.move_to(workspace.head)  # undo what a step cut short had done
    try:
        log = SessionLog(store.log_path(meta.session_id), agent_id=meta.session_id)
        tests: list[dict] = []
        bus = _bus(log, list(subscribers), tests, meta)
        try:
            meta.status = "running"
            store.write_meta(meta)
            bus.emit(SessionStarted(session_id=meta.session_id, task=meta.task, repo=meta.repo, workdir=meta.workdir, branch=meta.branch, base_commit=meta.base_commit, model=model.name, mode=meta.mode, resumed=True, **serving_info(config, model, meta.parent_id if owns_tools else ""), **_limits(config, model)))
            notices.attach(bus)
            _skill_notices(skills, bus)
            for call in recovered.interrupted_calls:
                bus.emit(ErrorEvent(message=f"tool call {call} was in flight when the session stopped; its effects were rolled back to the last checkpoint and the step will run again", kind="interrupted_tool", step=state.step + 1))
            ctx = _context(config, store, meta, workspace, cancel, bus)
            if owns_tools:
                tools = with_subagents(config, tools, model, store, meta, workspace, bus, cancel)
            ctx.state.todo = list(state.todo)
            messages = state.conversation()
            if not recovered.snapshots:  # no step had started: log (the rest of) the opening
                if opening is None:
                    messages = _opening(config, model, tools, workspace, meta.task, workspace.path, bus, logged=messages)
                else:
                    messages = _log_opening(bus, opening, logged=messages)
            ctx.state.seen_files = seen_files(messages, ctx.root)  # what the edit tools may change
            ctx.state.whole_files = whole_files(messages, ctx.root)  # what write_file may replace
            agent = _agent(config, model, tools, ctx, bus, workspace, messages, meta.task, workspace.path, repack=opening is None, step=state.step, elapsed_before=recovered.elapsed, usage=TokenUsage(*state.usage), state=state.agent_state, control=control)
            return _finish(agent, meta, store, workspace, tests, apply=False)
        finally:
            close_subagents(tools)
            log.close()
    finally:
        if owns_model:
            model.close()


def _refuse_running(store: SessionStore, meta: SessionMeta) -> None:
    if log_in_use(store.log_path(meta.session_id)):
        raise SessionError(f"session {meta.session_id} is running in another kcode process")
