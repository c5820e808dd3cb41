"""The slash commands. Each does what its name says with kcode's own functions (the session
store, :mod:`kcode.agent.session_ops`, :mod:`kcode.skills`, git); one that cannot work with
the run at hand says why instead of pretending.

A command is a function ``(app, argument) -> None``; it writes what it has to say into the
conversation as a notice (``app.say``) or opens a screen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kcode.tui.app import KcodeApp

__all__ = ["Command", "COMMANDS", "run_command", "help_text"]


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    help: str
    run: Callable[[KcodeApp, str], Any]


def _stopped(app: KcodeApp, what: str) -> bool:
    """Commands that change the session's files need the run stopped (the log's writer)."""
    if app.run_active():
        app.say(f"{what} needs the run stopped first (esc esc stops it)", error=True)
        return False
    if not app.transcript.status.session_id:
        app.say(f"{what}: no session yet", error=True)
        return False
    return True


def _help(app: KcodeApp, arg: str) -> None:
    app.say(help_text(), markup=True)


def help_text() -> str:
    lines = ["[bold]commands[/]"]
    lines += [f"  [bold]{c.usage:<16}[/] {c.help}" for c in COMMANDS.values()]
    lines += ["[bold]keys[/]",
              "  enter sends (while a step runs: queued, delivered at the next step) · ctrl+j new line",
              "  up/down history · tab completes @path · esc interrupts the step · esc esc stops the run",
              "  ctrl+o the latest tool's full output · o / enter on a tool card · ctrl+r reasoning · page up at the top unfolds older turns"]  # fmt: skip
    return "\n".join(lines)


def _model(app: KcodeApp, arg: str) -> None:
    s = app.transcript.status
    if arg:
        app.say(f"/model {arg}: the model is chosen when a session starts (kcode --model {arg}); this one keeps {s.model or 'its model'}", error=True)
        return
    window = f", window {s.context_window:,} tokens" if s.context_window else ""
    app.say(f"model: {s.model or 'not known yet'}{window}")


def _compact(app: KcodeApp, arg: str) -> None:
    if getattr(app.handle, "read_only", False):
        app.say("/compact: attached read-only, commands are not sent", error=True)
        return
    if not app.run_active():
        app.say("/compact: no run is going on (a run compacts its conversation; send a message to continue it)", error=True)
        return
    if app._send(app.handle.compact):
        app.say("compaction requested: it happens when the next step starts")


def _undo(app: KcodeApp, arg: str) -> None:
    steps = [step for step, _ in app.transcript.checkpoints]
    if not steps:
        app.say("/undo: no checkpoint to go back from", error=True)
        return
    _rewind(app, str(max(0, steps[-1] - 1)))


def _rewind(app: KcodeApp, arg: str) -> None:
    if not arg.strip().isdigit():
        app.say("usage: /rewind STEP (the step whose end to go back to)", error=True)
        return
    if not _stopped(app, "/rewind"):
        return
    from kcode.agent.session_ops import rewind_session
    from kcode.errors import KcodeError

    try:
        meta, event = rewind_session(app.transcript.status.session_id, int(arg))
    except KcodeError as error:
        app.say(f"/rewind: {error}", error=True)
        return
    app.transcript.apply(event)
    app.say(f"back at step {event.to_step}; files at {event.commit[:10]}; /resume {meta.session_id} continues from there")


def _sessions(app: KcodeApp, arg: str) -> None:
    from kcode.session import SessionStore
    from kcode.tui.screens import PickerScreen

    repo = None if arg.strip() == "--all" else (Path(app.transcript.status.repo) if app.transcript.status.repo else app.repo)
    metas = list(reversed(SessionStore().list(repo)))
    if not metas:
        app.say("no sessions" + (f" for {repo}" if repo else ""))
        return
    options = []
    for meta in metas[:200]:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(meta.updated))
        task = meta.task.splitlines()[0][:60] if meta.task else ""
        options.append((meta.session_id, f"{meta.session_id}  {meta.status:<16} {meta.steps:>4} steps  {when}  {task}"))

    def picked(session_id: str | None) -> None:
        if session_id:
            _resume(app, session_id)

    app.push_screen(PickerScreen("sessions", options), picked)


def _resume(app: KcodeApp, arg: str) -> None:
    if app.run_active():
        app.say("/resume needs this run stopped first (esc esc stops it)", error=True)
        return
    if app.open_session is None:
        app.say("/resume: this TUI was not given a way to open sessions", error=True)
        return
    from kcode.errors import KcodeError

    try:
        handle = app.open_session(arg.strip() or None)
    except KcodeError as error:
        app.say(f"/resume: {error}", error=True)
        return
    app.switch_handle(handle)


def _diff(app: KcodeApp, arg: str) -> None:
    from kcode.tui.diffs import session_diff, step_diff
    from kcode.tui.screens import DiffScreen

    s = app.transcript.status
    if not s.repo:
        app.say("/diff: no session yet", error=True)
        return
    if arg.strip().isdigit():
        step = int(arg)
        commits = dict(app.transcript.checkpoints)
        if step not in commits:
            app.say(f"/diff {step}: no checkpoint at step {step} (checkpoints: {', '.join(map(str, commits)) or 'none'})", error=True)
            return
        steps = sorted(commits)
        previous = commits[steps[steps.index(step) - 1]] if steps.index(step) else s.base_commit
        app.push_screen(DiffScreen(f"diff of step {step}", step_diff(s.repo, previous, commits[step])))
        return
    head = app.transcript.checkpoints[-1][1] if app.transcript.checkpoints else s.branch
    app.push_screen(DiffScreen(f"diff of session {s.session_id} since {s.base_commit[:10]}", session_diff(s.repo, s.base_commit, head)))


def _apply(app: KcodeApp, arg: str) -> None:
    if not _stopped(app, "/apply"):
        return
    from kcode.agent.session_ops import apply_session
    from kcode.errors import KcodeError

    try:
        meta, report = apply_session(app.transcript.status.session_id)
    except KcodeError as error:
        app.say(f"/apply: {error}", error=True)
        return
    total = len(report.applied) + len(report.merged)
    lines = [f"applied to {meta.repo}: {total} files brought over, {len(report.unchanged)} already identical, {len(report.conflicts)} conflicts"]
    lines += [f"  conflict {note}" for note in report.notes]
    app.say("\n".join(lines), error=not report.ok)


def _todo(app: KcodeApp, arg: str) -> None:
    items = app.transcript.todo
    if not items:
        app.say("no plan yet (the model writes one with its todo tool)")
        return
    marks = {"done": "[x]", "in_progress": "[~]", "pending": "[ ]"}
    app.say("plan:\n" + "\n".join(f"  {marks.get(i.get('status', ''), '[ ]')} {i.get('text', '')}" for i in items))


def _skills(app: KcodeApp, arg: str) -> None:
    from kcode.skills import discover_skills

    root = Path(app.transcript.status.repo) if app.transcript.status.repo else app.repo
    found = discover_skills(root)
    if not found.skills:
        app.say("no skills (put them in .kcode/skills/NAME/SKILL.md or ~/.agents/skills/)")
    else:
        app.say("skills:\n" + "\n".join(f"  {s.name} ({s.source}): {s.description}" for s in found.skills))
    for notice in found.notices():
        app.say(notice, error=True)


def _cost(app: KcodeApp, arg: str) -> None:
    s = app.transcript.status
    total_in = s.tokens_reused + s.tokens_evaluated
    share = f" ({s.tokens_reused / total_in:.0%} from the cache)" if total_in else ""
    speeds = ", ".join(filter(None, [f"prefill {s.prefill_tps:.0f} tok/s" if s.prefill_tps else "", f"generation {s.gen_tps:.0f} tok/s" if s.gen_tps else ""]))
    app.say(f"tokens: {total_in:,} in{share} — {s.tokens_evaluated:,} evaluated, {s.tokens_reused:,} reused; {s.output_tokens:,} out"
            + (f"; {speeds}" if speeds else "") + f"; {s.step} steps")  # fmt: skip


def _clear(app: KcodeApp, arg: str) -> None:
    app.conversation.clear()


def _quit(app: KcodeApp, arg: str) -> None:
    app.action_quit_tui()


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in [
        Command("help", "/help", "these commands and keys", _help),
        Command("model", "/model", "the session's model and its context window", _model),
        Command("compact", "/compact", "summarize the conversation when the next step starts (a running session)", _compact),
        Command("undo", "/undo", "rewind to before the last checkpointed step (run stopped)", _undo),
        Command("rewind", "/rewind STEP", "restore files and conversation to the end of STEP (run stopped)", _rewind),
        Command("sessions", "/sessions", "pick one of this repository's sessions (--all: every one) to resume", _sessions),
        Command("resume", "/resume [ID]", "continue a session (default: the latest)", _resume),
        Command("diff", "/diff [STEP]", "the session's diff (or one step's); s: split view", _diff),
        Command("apply", "/apply", "bring the session's result into your checkout (run stopped)", _apply),
        Command("todo", "/todo", "the current plan", _todo),
        Command("skills", "/skills", "the skills this repository and you have", _skills),
        Command("cost", "/cost", "tokens in (evaluated, reused), out, and speeds", _cost),
        Command("clear", "/clear", "clear the conversation view (the log keeps it)", _clear),
        Command("quit", "/quit", "leave (a local run is stopped; an attached one goes on)", _quit),
    ]
}


def run_command(app: KcodeApp, text: str) -> bool:
    """Run ``/name arg``; False when there is no such command (the app says so)."""
    name, _, arg = text.strip()[1:].partition(" ")
    command = COMMANDS.get(name.lower())
    if command is None:
        app.say(f"no command /{name} — /help lists them", error=True)
        return False
    command.run(app, arg.strip())
    return True
