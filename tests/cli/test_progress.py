"""The command line's rendering of model-pull progress (rich, on an in-memory console)."""

from __future__ import annotations

import io

from rich.console import Console

from kcode.cli._progress import progress_bar
from kcode.llm.models import Progress


def test_progress_events_draw_one_line_per_phase_with_their_amounts():
    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=False, color_system=None)
    with progress_bar(console) as report:
        report(Progress("download qwen", 1, 6, "parts"))
        report(Progress("download qwen", 6, 6, "parts"))
        report(Progress("assemble qwen", 491_400_064, 491_400_064, "bytes"))
    text = out.getvalue()
    lines = [line for line in text.splitlines() if line.strip()]
    assert any("download qwen" in line and "6/6 parts" in line for line in lines), text
    assert any("assemble qwen" in line and "491.4 MB / 491.4 MB" in line for line in lines), text
    assert not any("1/6 parts" in line for line in lines[-2:])  # the bar shows the latest amount
