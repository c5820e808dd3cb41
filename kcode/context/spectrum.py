"""Spectrum-based fault localization: which lines the failing tests run, and the passing
ones do not.

The repair phase (kcode.agent.repair) runs the test files of the failing tests once more,
under a line tracer, and scores every line of the repository's own code that ran by Ochiai's
formula, ``failed(line) / sqrt(failed_total * (failed(line) + passed(line)))``: 1.0 for a
line only failing tests run and every failing test runs, near 0 for a line every test runs.
A line no failing test runs scores 0 (it cannot be the fault, though a statement left out
before it can). The scores rank the definitions to repair (``rank_suspects(spectrum=...)``)
and the lines within one (``lines_to_fill(scores=...)``).

The tracer is a script (written to the session's scratch directory) run in place of
``python -m pytest`` with the same interpreter and options, the working directory first on
``sys.path`` as with ``-m``, so it needs nothing installed in the project's environment; it
stops taking tests after its time is up and writes what it has (JSON) to a file in the
session's scratch directory."""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TRACER", "Spectrum", "read_spectrum", "traced_command"]

# argv: OUT SECONDS -- PYTEST ARGS...; traces files under the working directory that are not
# tests, dot-directories or installed packages; one test's lines are counted as failed (any
# phase failed) or passed (its call passed), skipped ones not at all
TRACER = r"""
import json, os, sys, threading, time
sys.path[0] = os.getcwd()  # as python -m pytest has it (not this script's directory)
out, seconds = sys.argv[1], float(sys.argv[2])
args = sys.argv[4:] if sys.argv[3:4] == ["--"] else sys.argv[3:]
sys.argv = [sys.argv[0]] + args
root = os.path.realpath(os.getcwd())
keep, hits, counts, totals = {__file__: ""}, set(), {}, [0, 0]
def wanted(name):
    got = keep.get(name)
    if got is None:
        path = os.path.realpath(name) if name[:1] != "<" else ""
        rel = os.path.relpath(path, root) if path.startswith(root + os.sep) else ""
        parts = rel.split(os.sep)
        base = parts[-1]
        test = base.startswith("test_") or base.endswith("_test.py") or base == "conftest.py" or {"tests", "test", "testing"} & set(parts[:-1])
        got = keep[name] = rel if rel.endswith(".py") and not test and "site-packages" not in parts and not any(p.startswith(".") for p in parts) else ""
    return got
def local(frame, event, arg):
    if event == "line":
        hits.add((frame.f_code.co_filename, frame.f_lineno))
    return local
def tracer(frame, event, arg):
    return local if wanted(frame.f_code.co_filename) else None
import pytest
class Spectrum:
    def __init__(self):
        self.start, self.failed, self.passed = time.monotonic(), False, False
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        hits.clear()
        self.failed = self.passed = False
        yield
        outcome = 0 if self.failed else 1 if self.passed else None
        if outcome is not None:
            totals[outcome] += 1
            for name, line in list(hits):
                counts.setdefault((keep[name], line), [0, 0])[outcome] += 1
        hits.clear()
        if time.monotonic() - self.start > seconds:
            item.session.shouldstop = "kcode: the spectrum's time is up"
    def pytest_runtest_logreport(self, report):
        if report.failed:
            self.failed = True
        elif report.when == "call" and report.passed:
            self.passed = True
sys.settrace(tracer)
threading.settrace(tracer)
code = 1
try:
    code = pytest.main(args, plugins=[Spectrum()])
finally:
    sys.settrace(None)
    threading.settrace(None)
    lines = {}
    for (rel, line), (failed, passed) in counts.items():
        lines.setdefault(rel, []).append([line, failed, passed])
    with open(out + ".part", "w") as handle:
        json.dump({"failed": totals[0], "passed": totals[1], "lines": lines}, handle)
    os.replace(out + ".part", out)
sys.exit(int(code))
"""


def traced_command(command: str, script: Path, out: Path, seconds: float, test_files: list[str]) -> str | None:
    """``command`` (``PYTHON -m pytest [options]``) as the tracer (TRACER, written to
    ``script``) over ``test_files``, writing to ``out``; None for a command of another form (``pytest``, ``tox``, ``make test``: the
    interpreter is not known, or not the one that runs the tests)."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    at = next((i for i in range(len(words) - 1) if words[i] == "-m" and words[i + 1] == "pytest"), None)
    if at is None or at == 0 or "python" not in Path(words[at - 1]).name:
        return None
    head, options = words[:at], words[at + 2 :]
    argv = [*head, str(script), str(out), f"{seconds:.1f}", "--", *options, *test_files]
    return " ".join(shlex.quote(word) for word in argv)


@dataclass
class Spectrum:
    """Per line of each source file (repository-relative), how many failing and passing tests
    ran it, out of ``failed`` and ``passed`` tests traced."""

    failed: int
    passed: int
    lines: dict[str, dict[int, tuple[int, int]]] = field(default_factory=dict)

    def score(self, path: str, line: int) -> float:
        """Ochiai's suspiciousness of ``path``:``line`` (0.0 when no failing test ran it)."""
        failed, passed = self.lines.get(path, {}).get(line, (0, 0))
        if not failed or not self.failed:
            return 0.0
        return failed / math.sqrt(self.failed * (failed + passed))

    def scores(self, path: str) -> dict[int, float]:
        """Every line of ``path`` that a failing test ran, by line number (1-based)."""
        return {line: self.score(path, line) for line, (failed, _) in self.lines.get(path, {}).items() if failed}


def read_spectrum(path: Path) -> Spectrum | None:
    """The tracer's output, or None when it wrote none (stopped, crashed, not pytest) or no
    failing test was traced."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        lines = {file: {int(line): (int(failed), int(passed)) for line, failed, passed in rows} for file, rows in data["lines"].items()}
        spectrum = Spectrum(int(data["failed"]), int(data["passed"]), lines)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return spectrum if spectrum.failed else None
