"""The ``kcode`` command (typer).

Each command group lives in its own module below ``kcode.cli`` and keeps heavy imports
inside its functions, so ``kcode --help`` and the headless path stay fast.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from kcode.cli import run as _run
from kcode.cli import tui as _tui

__all__ = ["app", "main"]

app = typer.Typer(
    name="kcode",
    help="A local-first, long-horizon autonomous coding agent. `kcode [TASK]` opens the TUI, `kcode --resume [SESSION]` resumes a session in it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from kcode import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print kcode's version and exit.")
    ] = False,
) -> None:
    """kcode: `kcode [TASK]` opens the TUI in a git repository; `kcode run "TASK"` runs headless;
    `kcode --resume [SESSION]` resumes in the TUI; `kcode attach [SESSION]` watches and steers a
    running session."""


_run.register(app)
_tui.register(app)

# Command groups (one line each).
app.add_typer(__import__("kcode.cli.models", fromlist=["app"]).app, name="models")
app.add_typer(__import__("kcode.cli.cache", fromlist=["app"]).app, name="cache")
app.add_typer(__import__("kcode.cli.eval", fromlist=["app"]).app, name="eval")
app.add_typer(__import__("kcode.cli.skills", fromlist=["app"]).app, name="skills")
__import__("kcode.cli.pack", fromlist=["register"]).register(app)
__import__("kcode.cli.sandbox", fromlist=["register"]).register(app)
__import__("kcode.cli.trust", fromlist=["register"]).register(app)


def main(argv: list[str] | None = None) -> None:
    """The ``kcode`` executable: ``kcode``, ``kcode TASK`` and ``kcode --resume`` open the TUI
    (kcode.cli.tui.route), everything else is a subcommand."""
    args = sys.argv[1:] if argv is None else argv
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    try:
        app(args=_tui.route(args, [name for name, command in commands.items() if name != "tui"]), prog_name="kcode")
    except KeyboardInterrupt:
        sys.exit(130)
