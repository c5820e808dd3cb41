"""Progress of long model pulls, reported as :class:`Progress` events to a callback.

Nothing under ``kcode.llm`` prints: the command line renders these (``kcode.cli``, a rich
bar on stderr), a library caller may log them or ignore them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Progress", "ProgressCallback", "NoticeCallback", "format_size"]


@dataclass(frozen=True)
class Progress:
    """How far one phase of a pull is: ``done`` of ``total`` ``unit`` ("bytes" or "parts")."""

    phase: str  # "download NAME", "assemble NAME", "download FILE (2/8)"
    done: int
    total: int
    unit: str


ProgressCallback = Callable[[Progress], None]
# Something a user should know that is not an error (a model being downloaded, a context
# lowered to fit the memory, an unusable cache entry), as one line of text.
NoticeCallback = Callable[[str], None]


def format_size(n_bytes: float) -> str:
    """Decimal units, as model hubs and PyPI show sizes: ``1.1 GB``, ``491.4 MB``."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n_bytes) < 1000 or unit == "TB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    raise AssertionError("unreachable")
