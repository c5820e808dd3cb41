from __future__ import annotations

import time

import pytest

from kcode.errors import Submitted
from kcode.tools.testing import detect_test_command, parse_junit, parse_summary


def test_bash_returns_output_and_exit_code(call):
    result = call("bash", command="echo out; echo err >&2; exit 3")
    assert result.is_error and result.data["exit_code"] == 3
    assert "out" in result.output and "err" in result.output and "[exit code 3]" in result.output


def test_bash_stdin_is_closed(call):
    result = call("bash", command="cat; echo done", timeout=10)
    assert "done" in result.output and result.data["exit_code"] == 0


def test_bash_timeout_kills_the_process_group(call, calc_repo):
    started = time.monotonic()
    result = call("bash", command="(sleep 30; touch late.txt) & sleep 30", timeout=1)
    assert time.monotonic() - started < 10
    assert result.data["timed_out"] and "timed out" in result.output
    time.sleep(0.5)
    assert not (calc_repo / "late.txt").exists()


def test_bash_caps_huge_output_keeping_head_and_tail(call):
    result = call("bash", command="python3 -c \"print('A'*6000 + 'MIDDLE' + 'Z'*6000)\"")
    assert result.output.startswith("A" * 100)
    assert "Z" * 100 in result.output and "MIDDLE" not in result.output
    assert "bytes of output dropped" in result.output
    assert result.data["dropped_bytes"] == 12007 - 10000


def test_run_tests_reports_counts_and_failures(call):
    result = call("run_tests")
    assert result.is_error
    tests = result.data["tests"]
    assert (tests["passed"], tests["failed"]) == (1, 1)
    assert tests["failing"] == ["tests/test_calc.py::test_add"]
    assert "assert -1 == 5" in result.output


def test_run_tests_with_explicit_command(call):
    result = call("run_tests", command="python3 -m pytest tests/test_calc.py -k mul")
    assert not result.is_error and result.data["tests"]["passed"] == 1


def test_run_tests_without_a_detectable_runner(call, calc_repo):
    for name in ("pyproject.toml", ".gitignore"):
        (calc_repo / name).unlink()
    (calc_repo / "tests" / "test_calc.py").unlink()
    (calc_repo / "tests").rmdir()
    result = call("run_tests")
    assert result.is_error and "no test command" in result.output


def test_detect_test_command(tmp_path):
    assert detect_test_command(tmp_path) is None
    (tmp_path / "go.mod").write_text("module x\n")
    assert detect_test_command(tmp_path) == "go test ./..."
    (tmp_path / "package.json").write_text('{"scripts": {"test": "jest"}}')
    assert detect_test_command(tmp_path) == "npm test"
    (tmp_path / "pyproject.toml").write_text("")
    assert detect_test_command(tmp_path).endswith("-m pytest")


def test_parse_junit_and_summaries():
    xml = (
        '<testsuites><testsuite><testcase classname="tests.test_a" name="test_ok"/>'
        '<testcase classname="tests.test_a" name="test_bad"><failure message="boom">trace</failure></testcase>'
        '<testcase classname="tests.test_a" name="test_skip"><skipped/></testcase></testsuite></testsuites>'
    )
    report = parse_junit(xml)
    assert (report.passed, report.failed, report.skipped) == (1, 1, 1)
    assert report.failures == [("tests/test_a.py::test_bad", "trace")]
    cargo = parse_summary("test foo ... FAILED\ntest result: FAILED. 3 passed; 1 failed; 0 ignored")
    assert (cargo.passed, cargo.failed) == (3, 1) and cargo.failures[0][0] == "foo"
    go = parse_summary("--- PASS: TestA (0.00s)\n--- FAIL: TestB (0.00s)\nFAIL\n")
    assert (go.passed, go.failed) == (1, 1) and go.failures[0][0] == "TestB"


def test_a_junit_case_in_a_test_class_gets_pytests_own_id(tmp_path):
    """A unittest-style class's case: its module is the dotted prefix that is a file (the id
    must run with pytest, and name the file the test is in)."""
    (tmp_path / "pkg" / "tests").mkdir(parents=True)
    (tmp_path / "pkg" / "tests" / "test_d.py").write_text("")
    xml = ('<testsuites><testsuite><testcase classname="pkg.tests.test_d.TestDict" name="test_dissoc">'
           '<failure>trace</failure></testcase></testsuite></testsuites>')
    assert parse_junit(xml, tmp_path).failures == [("pkg/tests/test_d.py::TestDict::test_dissoc", "trace")]
    assert parse_junit(xml).failures == [("pkg/tests/test_d.py::TestDict::test_dissoc", "trace")]  # by the capital


def test_finish_raises_submitted_through_the_registry(call):
    """``finish`` is control flow: the registry lets Submitted through (the loop reviews it);
    a finish without its summary is an ordinary error result."""
    with pytest.raises(Submitted) as raised:
        call("finish", summary="Fixed add(); tests pass.")
    assert raised.value.summary == "Fixed add(); tests pass."
    bad = call("finish")
    assert bad.is_error and "summary" in bad.output


def test_todo_replaces_the_plan(call, ctx):
    call("todo", items=[{"text": "a"}, {"text": "b", "status": "done"}])
    result = call("todo", items=[{"text": "c", "status": "in_progress"}])
    assert ctx.state.todo == [{"text": "c", "status": "in_progress"}]
    assert "[~] c" in result.output
    bad = call("todo", items=[{"text": "x", "status": "maybe"}])
    assert bad.is_error and ctx.state.todo == [{"text": "c", "status": "in_progress"}]


def test_unittest_summaries_are_parsed_with_the_failing_tests():
    output = (
        "F.E.s.\n======\nFAIL: test_teens (tests.test_ordinal.OrdinalTest.test_teens)\n------\n"
        "ERROR: test_neg (tests.test_ordinal.OrdinalTest)\n------\nRan 6 tests in 0.004s\n\nFAILED (failures=1, errors=1, skipped=1)\n"
    )
    report = parse_summary(output)
    assert (report.passed, report.failed, report.errors, report.skipped) == (3, 1, 1, 1)
    assert [test_id for test_id, _ in report.failures] == ["tests.test_ordinal.OrdinalTest.test_teens", "tests.test_ordinal.OrdinalTest.test_neg"]
    assert (parse_summary("Ran 4 tests in 0.1s\n\nOK (skipped=1)").passed, parse_summary("Ran 4 tests in 0.1s\n\nOK").passed) == (3, 4)


def test_a_unittest_command_that_finds_no_tests_is_not_a_pass(call, calc_repo):
    """unittest exits 0 after "Ran 0 tests" on Python 3.11: that must not read as a pass."""
    result = call("run_tests", command="python3 -m unittest discover -s calc")
    assert result.is_error and "No tests ran" in result.output and result.data["tests"]["ok"] is False
    assert "the project's test command is `python3 -m pytest`" in result.output
    assert call("run_tests").data["tests"]["failed"] == 1  # the project's own command still runs them


def test_a_test_command_that_cannot_run_says_how_to_run_the_tests(call):
    result = call("run_tests", command="run_tests")  # the tool's own name, as a command (exit 127)
    assert result.is_error and "No tests ran" in result.output and "call run_tests without `command`" in result.output
