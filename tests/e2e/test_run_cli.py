"""``kcode run`` end to end: the real executable, a real git repository, real pytest."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources

import jsonschema
import pytest

from tests.conftest import git, snapshot, write_script

SCHEMA = json.loads(resources.files("kcode.headless").joinpath("stream_json.schema.json").read_text())


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_run_fixes_the_bug_on_a_work_branch_and_apply_brings_it_over(kcode, calc_repo, fix_script):
    # the user has uncommitted work of their own
    (calc_repo / "calc" / "__init__.py").write_text("# my local note\n" + (calc_repo / "calc" / "__init__.py").read_text())
    (calc_repo / "TODO.txt").write_text("untracked notes\n")
    before = snapshot(calc_repo)
    proc = kcode("run", "Fix the failing test", "--model", f"scripted:{fix_script}", cwd=calc_repo)
    assert proc.returncode == 0, proc.stderr
    assert snapshot(calc_repo) == before  # branch, index and working tree untouched
    assert "Status: finished after 5 steps" in proc.stdout
    assert "Tests: passing (2 passed, 0 failed" in proc.stdout
    assert "calc/__init__.py | 2 +-" in proc.stdout
    assert "── step 1" in proc.stderr and "── step" not in proc.stdout  # progress on stderr only
    sessions = kcode("sessions", cwd=calc_repo)
    assert "finished" in sessions.stdout and "kcode/" in sessions.stdout
    session_id = sessions.stdout.splitlines()[1].split()[0]
    log = kcode("replay", session_id, "--output-format", "text", cwd=calc_repo)
    assert log.returncode == 0
    applied = kcode("apply", session_id, cwd=calc_repo)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "1 files brought over" in applied.stdout and "0 conflicts" in applied.stdout
    text = (calc_repo / "calc" / "__init__.py").read_text()
    assert text.startswith("# my local note\n") and "return a + b" in text  # both kept
    assert (calc_repo / "TODO.txt").read_text() == "untracked notes\n"
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=calc_repo, capture_output=True, text=True)
    assert tests.returncode == 0, tests.stdout
    assert git(calc_repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"


def test_work_branch_passes_its_tests(kcode, calc_repo, fix_script, kcode_home, tmp_path):
    proc = kcode("run", "fix", "--model", f"scripted:{fix_script}", cwd=calc_repo)
    assert proc.returncode == 0
    assert list((kcode_home / "data" / "worktrees").iterdir()) == []  # removed when the run ended
    (branch,) = git(calc_repo, "branch", "--list", "--format=%(refname:short)", "kcode/*").split()
    checkout = tmp_path / "result"
    git(calc_repo, "worktree", "add", "-q", str(checkout), branch)  # free: no work tree of kcode's has it
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=checkout, capture_output=True, text=True)
    assert tests.returncode == 0 and "2 passed" in tests.stdout
    log = git(calc_repo, "log", "--format=%s", branch)
    assert log.splitlines()[0] == "kcode: step 3"


def test_stream_json_prints_each_event_as_it_happens(kcode_home, calc_repo, tmp_path):
    # a pipe, not a terminal: the lines must not wait in a buffer for the run's end
    import os
    import shutil
    import time

    turns = [{"tool_calls": [{"name": "bash", "arguments": {"command": "echo first"}}]}, {"tool_calls": [{"name": "bash", "arguments": {"command": "sleep 5"}}]},
             {"tool_calls": [{"name": "finish", "arguments": {"summary": "done"}}]}]  # fmt: skip
    script = write_script(tmp_path / "slow.json", turns)
    env = {**os.environ, "KCODE_HOME": str(kcode_home), "NO_COLOR": "1"}
    proc = subprocess.Popen([shutil.which("kcode"), "run", "How long does sleep take?", "--model", f"scripted:{script}", "--output-format", "stream-json"],
                            cwd=calc_repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)  # fmt: skip
    arrived = []
    for line in proc.stdout:
        arrived.append((time.monotonic(), json.loads(line)))
    assert proc.wait(60) == 0
    first = next(t for t, obj in arrived if obj["type"] == "item.completed" and obj["item"].get("aggregated_output", "").startswith("first"))
    sleep = next(t for t, obj in arrived if obj["type"] == "item.started" and "sleep 5" in json.dumps(obj))
    assert arrived[-1][1]["type"] == "result" and arrived[-1][0] - sleep > 4 and arrived[-1][0] - first > 4


def test_stream_json_validates_and_replay_reproduces_it(kcode, calc_repo, fix_script, tmp_path):
    out_file = tmp_path / "last.txt"
    proc = kcode("run", "fix", "--model", f"scripted:{fix_script}", "--output-format", "stream-json", "-o", str(out_file), cwd=calc_repo)
    assert proc.returncode == 0, proc.stderr
    lines = _jsonl(proc.stdout)
    for line in lines:
        jsonschema.validate(line, SCHEMA)
    assert lines[-1]["type"] == "result" and lines[-1]["subtype"] == "success"
    assert out_file.read_text() == "Fixed add(); tests pass.\n"
    replay = kcode("replay", lines[0]["thread_id"], cwd=calc_repo)
    assert replay.returncode == 0
    assert _jsonl(replay.stdout) == lines


def test_chaos_run_at_30_percent_finishes(kcode, calc_repo, fix_script):
    proc = kcode("run", "fix", "--model", f"chaos:0.3:scripted:{fix_script}", "--output-format", "stream-json", cwd=calc_repo, env={"KCODE_CHAOS_SEED": "4"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    lines = _jsonl(proc.stdout)
    errors = [line["item"] for line in lines if line["type"] == "item.completed" and line["item"]["type"] == "error"]
    assert errors, "chaos at 30% injected nothing"
    assert lines[-1]["subtype"] == "success"


def test_bad_tool_arguments_become_clear_observations(kcode, calc_repo, tmp_path):
    (calc_repo / "dup.py").write_text("x = 1\nx = 1\n")
    git(calc_repo, "add", "dup.py")
    git(calc_repo, "commit", "-qm", "dup")
    script = write_script(tmp_path / "bad.json", [
        {"tool_calls": [{"name": "read_file", "arguments": {"path": "missing.py"}}]},
        {"tool_calls": [{"name": "read_file", "arguments": {"path": "../../../etc/passwd"}}]},
        {"tool_calls": [{"name": "edit_file", "arguments": {"path": "dup.py", "old": "x = 1", "new": "x = 2"}}]},
        {"tool_calls": [{"name": "edit_file", "arguments": {"path": "dup.py"}}]},
        {"tool_calls": [{"name": "finish", "arguments": {"summary": "done"}}]},
    ])
    proc = kcode("run", "Explain how the tools answer bad input", "--model", f"scripted:{script}", "--output-format", "stream-json", cwd=calc_repo)
    assert proc.returncode == 0
    outputs = [line["item"]["output"] for line in _jsonl(proc.stdout) if line["type"] == "item.completed" and line["item"]["type"] == "tool_call" and line["item"]["status"] == "failed"]
    assert len(outputs) == 4
    assert "missing.py: no such file" in outputs[0]
    assert "outside the repository" in outputs[1]
    assert "matches 2 times" in outputs[2]
    assert "old: Field required" in outputs[3] and "new: Field required" in outputs[3]


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["run", "x", "--max-steps", "0", "--model", "scripted:/x"], 2, ""),
        (["run", "x", "--model", "scripted:/nonexistent.json"], 2, "no such file"),
        (["run", "x", "--model", "bogus:thing"], 2, "unknown model"),
        (["run", "x", "--output-format", "xml", "--model", "scripted:/x"], 2, ""),
        (["resume", "no-such-session"], 1, "no session"),
    ],
)
def test_usage_errors(kcode, calc_repo, args, code, message):
    proc = kcode(*args, cwd=calc_repo)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert list(calc_repo.parent.glob("worktrees")) == []


def test_outside_a_git_repository_is_a_usage_error(kcode, tmp_path, fix_script):
    proc = kcode("run", "x", "--model", f"scripted:{fix_script}", cwd=tmp_path)
    assert proc.returncode == 2 and "not inside a git repository" in proc.stderr


def test_budget_exhausted_exits_3_and_resume_extends_it(kcode, calc_repo, fix_script):
    proc = kcode("run", "fix", "--model", f"scripted:{fix_script}", "--max-steps", "3", cwd=calc_repo)
    assert proc.returncode == 3 and "Status: budget_exhausted after 3 steps" in proc.stdout
    assert "Continue with:  kcode resume" in proc.stdout
    resumed = kcode("resume", "--max-steps", "10", cwd=calc_repo)
    assert resumed.returncode == 0, resumed.stderr
    assert "Status: finished after 5 steps" in resumed.stdout


def test_sigint_stops_cleanly_with_130(kcode_home, calc_repo, tmp_path):
    import os
    import shutil
    import signal
    import time

    script = write_script(tmp_path / "s.json", [{"tool_calls": [{"name": "bash", "arguments": {"command": "sleep 60"}}]}])
    proc = subprocess.Popen([shutil.which("kcode"), "run", "wait", "--model", f"scripted:{script}"], cwd=calc_repo, env={**os.environ, "KCODE_HOME": str(kcode_home)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Status: interrupted" in out


def test_apply_flag_brings_the_result_over(kcode, calc_repo, fix_script):
    proc = kcode("run", "fix", "--model", f"scripted:{fix_script}", "--apply", cwd=calc_repo)
    assert proc.returncode == 0
    assert "Applied to" in proc.stdout
    assert "return a + b" in (calc_repo / "calc" / "__init__.py").read_text()


def test_in_place_edits_the_checkout_and_keeps_the_branch(kcode, calc_repo, fix_script):
    proc = kcode("run", "fix", "--model", f"scripted:{fix_script}", "--in-place", cwd=calc_repo)
    assert proc.returncode == 0, proc.stderr
    assert "return a + b" in (calc_repo / "calc" / "__init__.py").read_text()
    assert git(calc_repo, "log", "--oneline", "main").count("\n") == 1
    refs = git(calc_repo, "for-each-ref", "--format=%(refname)", "refs/kcode/")
    assert refs.startswith("refs/kcode/")


def test_headless_path_never_imports_textual(calc_repo, fix_script, kcode_home):
    import importlib.util

    assert importlib.util.find_spec("textual") is not None, "textual must be installed for this check to mean anything"
    code = (
        "import sys\n"
        "from kcode.cli import main\n"
        f"sys.argv = ['kcode', 'run', 'fix', '--model', 'scripted:{fix_script}', '--output-format', 'stream-json']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
        "print('EXIT', code, 'TEXTUAL', any(m == 'textual' or m.startswith('textual.') for m in sys.modules), file=sys.stderr)\n"
    )
    import os

    proc = subprocess.run([sys.executable, "-c", code], cwd=calc_repo, capture_output=True, text=True, env={**os.environ, "KCODE_HOME": str(kcode_home)})
    assert "EXIT 0 TEXTUAL False" in proc.stderr, proc.stderr[-2000:]


def test_an_empty_finish_is_sent_back_once_then_reported_as_no_changes(kcode, calc_repo, tmp_path):
    finish = {"tool_calls": [{"name": "finish", "arguments": {"summary": "Looks fine to me."}}]}
    script = write_script(tmp_path / "empty.json", [finish, finish])
    proc = kcode("run", "Fix the failing test", "--model", f"scripted:{script}", cwd=calc_repo)
    assert proc.returncode == 0, proc.stderr
    assert "Status: finished after 2 steps" in proc.stdout
    assert "Summary: Looks fine to me. (no changes)" in proc.stdout and "Changes: none" in proc.stdout


def test_a_server_that_keeps_failing_ends_the_run_after_six_requests(kcode, calc_repo):
    from tests.llm.test_openai_faults import Reply, Server

    server = Server()
    server.default = Reply(503, body='{"error": {"message": "overloaded"}}', headers={"Retry-After": "0"})
    try:
        proc = kcode("run", "Explain the calc package", "--model", "vllm:test-model", "--base-url", server.url, cwd=calc_repo)
    finally:
        server.close()
    chat = [request for request in server.requests if request["path"] == "/v1/chat/completions"]
    assert len(chat) == 6, [request["path"] for request in server.requests]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Status: error" in proc.stdout
    assert proc.stderr.count("model_retry: ") == 5
    assert "giving up after 6 attempts: vllm:test-model at " in proc.stderr
    assert "server error (HTTP 503): overloaded" in proc.stderr


def test_version_prints_the_installed_version(kcode, tmp_path):
    from importlib.metadata import version

    for args in (["--version"], ["version"]):
        proc = kcode(*args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == f"{version('kcode')}\n"
