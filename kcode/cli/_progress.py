"""What ``kcode.llm`` reports while it works, shown on stderr: a rich progress bar for model
pulls (one line per phase: download, assemble, verify) and notices as ``kcode: ...`` lines."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from kcode.llm.models import Progress, ProgressCallback

__all__ = ["progress_bar", "show_notice", "pull_with_progress", "ensure_catalog_model"]


def show_notice(text: str) -> None:
    sys.stderr.write(f"kcode: {text}\n")
    sys.stderr.flush()


def _amount(event: Progress) -> str:
    from kcode.llm.models import format_size

    if event.unit == "bytes":
        return f"{format_size(event.done)} / {format_size(event.total)}"
    return f"{event.done}/{event.total} {event.unit}"


@contextmanager
def progress_bar(console: Console | None = None) -> Iterator[ProgressCallback]:
    """A callback for :class:`kcode.llm.models.Progress` events that draws them on
    ``console`` (default: stderr)."""
    from rich.console import Console
    from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[amount]}"), TimeRemainingColumn())
    with Bar(*columns, console=console or Console(stderr=True)) as bar:
        tasks: dict[str, int] = {}

        def report(event: Progress) -> None:
            if event.phase not in tasks:
                tasks[event.phase] = bar.add_task(event.phase, total=event.total, amount="")
            bar.update(tasks[event.phase], completed=event.done, total=event.total, amount=_amount(event))

        yield report


def pull_with_progress(name: str) -> Path:
    """Pull a catalog model (a no-op when it is present), saying so and drawing its progress."""
    from kcode.llm.models import ensure_model

    with progress_bar() as report:
        return ensure_model(name, on_progress=report, on_notice=show_notice)


def ensure_catalog_model(spec: str | None) -> None:
    """Before a run: pull the catalog model ``spec`` names (none: the default), if missing."""
    from kcode.llm.models import is_present
    from kcode.llm.registry import catalog_name

    name = catalog_name(spec)
    if name is not None and not is_present(name):
        pull_with_progress(name)
