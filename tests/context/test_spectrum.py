"""Spectrum-based localization (kcode.context.spectrum): the real tracer run by the real
interpreter under real pytest on a small package, Ochiai's scores, and how they rank the
definitions (rank_suspects) and the lines within one (lines_to_fill)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kcode.context.index import RepoIndex
from kcode.context.localize import lines_to_fill, rank_suspects
from kcode.context.spectrum import TRACER, Spectrum, read_spectrum, traced_command

SHAPES = """\
def area(w, h):
    return w * h


def clamp(x, low, high):
    if x < low:
        return low
    if x > high:
        return low
    return x
"""

TESTS = """\
from shapes import area, clamp


def test_area():
    assert area(2, 3) == 6


def test_clamp_low():
    assert clamp(-1, 0, 10) == 0


def test_clamp_mid():
    assert clamp(5, 0, 10) == 5


def test_clamped_area():
    assert area(clamp(12, 0, 10), 2) == 20
"""


@pytest.fixture
def shapes(tmp_path: Path) -> Path:
    root = tmp_path / "lib"
    (root / "tests").mkdir(parents=True)
    (root / "shapes.py").write_text(SHAPES)
    (root / "tests" / "test_shapes.py").write_text(TESTS)
    (root / "tests" / "conftest.py").write_text("import sys, os\nsys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))\n")
    return root


def trace(root: Path, tmp_path: Path, seconds: float = 60.0, command: str | None = None) -> Spectrum | None:
    script, out = tmp_path / "scratch" / "kcode_spectrum.py", tmp_path / "scratch" / "spectrum.json"
    script.parent.mkdir(exist_ok=True)
    script.write_text(TRACER)
    traced = traced_command(command or f"{sys.executable} -m pytest -q -p no:cacheprovider", script, out, seconds, ["tests/test_shapes.py"])
    assert traced is not None
    run = subprocess.run(traced, shell=True, cwd=root, capture_output=True, text=True, timeout=120)
    assert run.returncode == (2 if seconds == 0 else 1), run.stdout[-2000:] + run.stderr[-2000:]  # one fails; 2: stopped
    assert "1 failed, 3 passed" in run.stdout or seconds == 0
    return read_spectrum(out)


def test_the_tracer_scores_the_line_only_the_failing_test_runs_highest(shapes, tmp_path):
    spectrum = trace(shapes, tmp_path)
    assert spectrum is not None and (spectrum.failed, spectrum.passed) == (1, 3)
    assert set(spectrum.lines) == {"shapes.py"}  # the tests and conftest are not traced, nor pytest
    scores = spectrum.scores("shapes.py")
    assert scores[9] == pytest.approx(1.0)  # `return low` after `x > high`: the failing test alone
    assert scores[2] == pytest.approx(2 ** -0.5)  # area: the failing test and test_area
    assert scores[6] == pytest.approx(3 ** -0.5)  # `if x < low`: three tests, one failing
    assert scores[8] == pytest.approx(2 ** -0.5)  # `if x > high`: not test_clamp_low (it returned)
    assert 7 not in scores and 10 not in scores  # lines the failing test did not run
    assert spectrum.score("shapes.py", 10) == 0.0 and spectrum.score("elsewhere.py", 1) == 0.0


def test_the_tracer_stops_taking_tests_when_its_time_is_up(shapes, tmp_path):
    spectrum = trace(shapes, tmp_path, seconds=0.0)
    # the first test (test_area, passing) was traced, then pytest was told to stop: no failing
    # test was traced, which is no spectrum
    assert spectrum is None
    data = (tmp_path / "scratch" / "spectrum.json").read_text()
    assert '"failed": 0, "passed": 1' in data


def test_only_python_dash_m_pytest_is_traced():
    script, out = Path("/s/k.py"), Path("/s/o.json")
    assert traced_command("pytest -q", script, out, 5, ["t.py"]) is None  # which interpreter?
    assert traced_command("tox -e py311", script, out, 5, ["t.py"]) is None
    assert traced_command("make -m pytest", script, out, 5, ["t.py"]) is None
    assert traced_command("python -m 'unbalanced", script, out, 5, ["t.py"]) is None
    traced = traced_command("env/bin/python3 -m pytest -x -q", script, out, 5, ["tests/test_a.py"])
    assert traced == "env/bin/python3 /s/k.py /s/o.json 5.0 -- -x -q tests/test_a.py"


def test_a_missing_or_broken_spectrum_is_none(tmp_path):
    assert read_spectrum(tmp_path / "none.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert read_spectrum(tmp_path / "bad.json") is None
    (tmp_path / "odd.json").write_text('{"failed": 1, "passed": 0, "lines": {"a.py": [[1, "x"]]}}')
    assert read_spectrum(tmp_path / "odd.json") is None


def test_the_spectrum_ranks_the_definition_the_failing_test_alone_runs_first(shapes, tmp_path):
    spectrum = trace(shapes, tmp_path)
    index = RepoIndex.open(shapes, persist=False)
    index.refresh()
    failures = [("tests/test_shapes.py::test_clamped_area", "assert 0 == 20")]
    task = "area() of a clamped width is wrong: area(clamp(12, 0, 10), 2) gives 0, not 20"
    plain = [found.name for found in rank_suspects(index.files, failures, task)]
    ranked = rank_suspects(index.files, failures, task, spectrum=spectrum)
    assert plain[0] == "area"  # named first in the task, the shorter of the two the test calls
    assert [found.name for found in ranked][:2] == ["clamp", "area"]
    assert any("run by the failing tests (1.00)" in why for why in ranked[0].why)


def test_the_lines_of_a_definition_follow_the_spectrum():
    lines = SHAPES.splitlines(keepends=True)
    plain = lines_to_fill(lines, 5, 10, set(), 16)
    assert plain == [5, 6, 7, 8, 9]  # clamp's statements, in file order
    scores = {6: 3 ** -0.5, 8: 3 ** -0.5, 9: 1.0}  # lines 6, 8, 9 (1-based) ran in the failing test
    ranked = lines_to_fill(lines, 5, 10, set(), 16, scores)
    assert ranked == [8, 5, 7]  # `return low` (line 9) first, then the two tests; lines 7 and 10 did not run
    assert lines_to_fill(lines, 5, 10, set(), 1, scores) == [8]
    assert lines_to_fill(lines, 5, 10, set(), 16, {2: 1.0}) == plain  # no score reaches clamp: as without


def test_a_continuation_line_counts_as_its_statement():
    lines = "def f(a,\n      b):\n    total = (a +\n             b)\n    return total\n".splitlines(keepends=True)
    assert lines_to_fill(lines, 1, 5, set(), 16, {3: 0.5, 5: 0.7}) == [4, 2, 3]
