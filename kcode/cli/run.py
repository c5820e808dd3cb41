"""``kcode run``, ``kcode apply`` and the session commands (filled in below)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def version() -> None:
        """Print kcode's version."""
        from kcode import __version__

        typer.echo(__version__)
