"""Progress reporting for long model downloads: a plain callback, and a rich bar on stderr.

The catalog reports ``(phase, done, total, unit)``; it never imports rich itself, so tests
and the library path stay UI-free. ``unit`` is ``"bytes"`` or ``"parts"``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["ProgressCallback", "stderr_progress", "format_size"]

ProgressCallback = Callable[[str, int, int, str], None]


def format_size(n_bytes: float) -> str:
    """Decimal units, as model hubs and PyPI show sizes: ``1.1 GB``, ``491.4 MB``."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n_bytes) < 1000 or unit == "TB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    raise AssertionError("unreachable")


def _amount(done: int, total: int, unit: str) -> str:
    if unit == "bytes":
        return f"{format_size(done)} / {format_size(total)}"
    return f"{done}/{total} {unit}"


@contextmanager
def stderr_progress() -> Iterator[ProgressCallback]:
    """A rich progress bar on stderr; one line per phase (download, assemble, verify)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[amount]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        tasks: dict[str, int] = {}

        def report(phase: str, done: int, total: int, unit: str) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total, amount="")
            bar.update(tasks[phase], completed=done, total=total, amount=_amount(done, total, unit))

        yield report
