"""The interactive entries: ``kcode``, ``kcode TASK``, ``kcode --resume [SESSION]`` and
``kcode attach [SESSION]``.

:func:`route` turns the first three into the hidden ``tui`` command (a first argument that is
no subcommand is a task). Each builds a run handle (``kcode.agent.live.LocalRunHandle``, or
``kcode.session.control.AttachedRunHandle`` for ``attach``) and hands it to
``kcode.tui.app.main(handle, task=...)``, imported only here, inside the function: the
headless path never imports Textual. Without Textual installed the error names the ``tui``
extra.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from kcode.cli.run import ModelOption, RepoOption, _config, _errors

__all__ = ["register", "route", "load_tui"]

ROOT_OPTIONS = ("--help", "-h", "--version")
TUI_HINT = "the interactive TUI needs Textual: pip install 'kcode[tui]' (headless runs need nothing more: kcode run TASK)"


def route(args: Sequence[str], commands: Sequence[str]) -> list[str]:
    """The argv typer should see: ``kcode`` alone, ``kcode TASK``, ``kcode --resume ...`` and
    ``kcode --model M TASK`` go to the ``tui`` command; subcommands and --help/--version stay."""
    args = list(args)
    if not args:
        return ["tui"]
    first = args[0]
    if first in ROOT_OPTIONS or first in commands:
        return args
    return ["tui", *args]


def load_tui() -> Callable[..., int | None]:
    """``kcode.tui.app.main``, imported now; a clear error when Textual or the TUI is missing."""
    from kcode.errors import UsageError

    if importlib.util.find_spec("textual") is None:
        raise UsageError(TUI_HINT)
    try:
        from kcode.tui.app import main
    except ModuleNotFoundError as error:
        if error.name and (error.name == "textual" or error.name.startswith("textual.")):
            raise UsageError(TUI_HINT) from error
        if error.name in ("kcode.tui", "kcode.tui.app"):
            raise UsageError("this kcode was installed without its TUI (kcode.tui.app is missing); use kcode run TASK") from error
        raise
    return main


def _exit(code: Any) -> None:
    raise typer.Exit(code if isinstance(code, int) else 0)


def _newest_running(store: Any, root: Path) -> Any:
    from kcode.errors import SessionError
    from kcode.session import log_in_use

    running = [meta for meta in store.list(root) if log_in_use(store.log_path(meta.session_id))]
    if not running:
        raise SessionError(f"no running session in {root} (kcode sessions lists them; kcode attach SESSION opens any one)")
    return running[-1]


def register(app: typer.Typer) -> None:
    @app.command(hidden=True)
    def tui(
        task: Annotated[str | None, typer.Argument(help="What to do (with --resume: the session to resume).")] = None,
        resume: Annotated[bool, typer.Option("--resume", help="Resume a session (default: the latest of this repository).")] = False,
        repo: RepoOption = None,
        model: ModelOption = None,
        approvals: Annotated[str | None, typer.Option(help="never, or on-request: ask before commands that need more than the sandbox allows.")] = None,
    ) -> None:
        """The interactive TUI (what `kcode [TASK]` and `kcode --resume [SESSION]` open)."""
        from kcode.agent.live import LocalRunHandle
        from kcode.session import SessionStore

        with _errors():
            main = load_tui()
            root, config = _config(repo, model=model, approvals=approvals)
            if resume:
                meta = SessionStore().resolve(task, None if task else root)
                handle = LocalRunHandle(config, repo=root, cwd=Path.cwd(), session_id=meta.session_id, overrides={"model": model}, approvals=approvals)
                task = None
            else:
                handle = LocalRunHandle(config, repo=root, cwd=Path.cwd(), approvals=approvals)
            try:
                code = main(handle, task=task)
            finally:
                handle.close()
        _exit(code)

    @app.command()
    def attach(
        session: Annotated[str | None, typer.Argument(help="Session id (default: the newest running session of this repository).")] = None,
        repo: RepoOption = None,
        read_only: Annotated[bool, typer.Option("--read-only", help="Only watch: send no steering, interrupts or answers.")] = False,
    ) -> None:
        """Open the TUI on a run going on elsewhere (headless, in tmux or CI); the run goes on when it closes."""
        from kcode.session import SessionStore
        from kcode.session.control import AttachedRunHandle
        from kcode.vcs import repo_root

        with _errors():
            store = SessionStore()
            meta = store.resolve(session) if session else _newest_running(store, repo_root(repo or Path.cwd()))
            handle = AttachedRunHandle(store.dir(meta.session_id), read_only=read_only)
            try:
                code = load_tui()(handle)
            finally:
                handle.close()
        _exit(code)
