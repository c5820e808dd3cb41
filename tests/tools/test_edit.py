from __future__ import annotations

import pytest

from kcode.errors import ToolError
from kcode.tools.edit import apply_edit


def test_exact_edit_shows_snippet(call, calc_repo):
    result = call("edit_file", path="calc/__init__.py", old="return a - b", new="return a + b")
    assert not result.is_error
    assert "replaced 1 occurrence" in result.output
    assert "2\t    return a + b" in result.output
    assert "return a + b" in (calc_repo / "calc/__init__.py").read_text()


def test_ambiguous_old_is_refused_with_line_numbers(call, calc_repo):
    (calc_repo / "dup.py").write_text("x = 1\ny = 2\nx = 1\n")
    result = call("edit_file", path="dup.py", old="x = 1", new="x = 3")
    assert result.is_error and "matches 2 times (at lines 1, 3)" in result.output
    assert (calc_repo / "dup.py").read_text() == "x = 1\ny = 2\nx = 1\n"
    all_result = call("edit_file", path="dup.py", old="x = 1", new="x = 3", replace_all=True)
    assert not all_result.is_error and (calc_repo / "dup.py").read_text() == "x = 3\ny = 2\nx = 3\n"


def test_whitespace_tolerant_match_reindents():
    text = "class A:\n    def f(self):\n        return 1\n"
    outcome = apply_edit(text, "def f(self):\n    return 1", "def f(self):\n    return 2")
    assert outcome.fuzzy
    assert outcome.text == "class A:\n    def f(self):\n        return 2\n"


def test_not_found_quotes_the_closest_region():
    text = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n"
    with pytest.raises(ToolError) as error:
        apply_edit(text, "def add(a, b):\n    return a -- b", "x")
    message = str(error.value)
    assert "not found" in message and "Did you mean lines 1-2" in message and "return a - b" in message


def test_edit_that_breaks_python_syntax_is_reverted(call, calc_repo):
    before = (calc_repo / "calc/__init__.py").read_text()
    result = call("edit_file", path="calc/__init__.py", old="return a - b", new="return (a + b")
    assert result.is_error and "reverted" in result.output and "line" in result.output
    assert (calc_repo / "calc/__init__.py").read_text() == before


def test_edit_of_missing_file_and_outside_path(call):
    assert "no such file" in call("edit_file", path="nope.py", old="a", new="b").output
    assert "outside the repository" in call("edit_file", path="/etc/hosts", old="a", new="b").output


def test_identical_old_and_new_is_refused():
    with pytest.raises(ToolError, match="identical"):
        apply_edit("abc", "a", "a")


def test_new_fatal_pyflakes_problems_are_reported_not_reverted(call, calc_repo):
    result = call("edit_file", path="calc/__init__.py", old="return a - b", new="return a + c")
    assert not result.is_error
    assert "line 2: undefined name 'c'" in result.output
    assert "return a + c" in (calc_repo / "calc/__init__.py").read_text()
    again = call("edit_file", path="calc/__init__.py", old="return a * b", new="return a * b * 1")
    assert "undefined name" not in again.output  # only problems the edit introduced


def test_write_file_with_broken_python_is_refused(call, calc_repo):
    before = (calc_repo / "calc/__init__.py").read_text()
    result = call("write_file", path="calc/__init__.py", content="def broken(:\n")
    assert result.is_error and "syntax error" in result.output
    assert (calc_repo / "calc/__init__.py").read_text() == before
    created = call("write_file", path="new_mod.py", content="def f():\n    return missing_name\n")
    assert not created.is_error and "undefined name 'missing_name'" in created.output
