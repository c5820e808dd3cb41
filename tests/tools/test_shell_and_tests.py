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
