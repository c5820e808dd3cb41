from __future__ import annotations

import shutil

import pytest

from kcode.tools.search import MAX_MATCHES, SearchTool
from kcode.tools.search import SearchParams


def test_search_finds_matches_with_line_numbers(call):
    result = call("search", pattern=r"def \w+\(a, b\)")
    assert "2 matches" in result.output
    assert "calc/__init__.py:1:def add(a, b):" in result.output


def test_search_with_glob_and_path(call):
    assert "tests/test_calc.py" in call("search", pattern="assert", glob="*.py").output
    assert "no matches" in call("search", pattern="assert", path="calc").output
    # an empty path and glob (small models send them) mean the whole repository
    assert "calc/__init__.py:1:def add(a, b):" in call("search", pattern="def add", path="", glob="").output
    assert "tests/test_calc.py" in call("list_files", path="").output


def test_search_over_limit_asks_to_narrow(call, calc_repo):
    (calc_repo / "many.txt").write_text("needle\n" * (MAX_MATCHES + 50))
    result = call("search", pattern="needle")
    assert f"{MAX_MATCHES + 50} matches; showing the first {MAX_MATCHES}" in result.output
    assert "Narrow the search" in result.output
    assert result.output.count("many.txt:") == MAX_MATCHES


def test_invalid_regex_is_a_clear_error(call):
    result = call("search", pattern="(unclosed")
    assert result.is_error


def test_python_fallback_matches_ripgrep(ctx, monkeypatch):
    if not shutil.which("rg"):
        pytest.skip("ripgrep not installed")
    tool = SearchTool()
    with_rg = tool.run(SearchParams(pattern="return a"), ctx)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    without = tool.run(SearchParams(pattern="return a"), ctx)
    assert without.data["engine"] == "python"
    assert sorted(with_rg.output.splitlines()) == sorted(without.output.splitlines())
