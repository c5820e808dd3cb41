"""The interactive entries of the ``kcode`` command: ``kcode``, ``kcode TASK``,
``kcode --resume [SESSION]`` and ``kcode attach [SESSION]`` hand a run handle to
``kcode.tui.app.main`` (here a stand-in module planted in ``sys.modules`` of a real
subprocess, so the CLI's side is what is tested), import Textual only then, and say which
extra to install when it is missing; the subcommands and ``--help`` stay as they were."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kcode.cli.tui import route
from kcode.session import SessionStore

COMMANDS = ["run", "resume", "attach", "sessions", "models"]

STAND_IN = """
import sys, types, json
app = types.ModuleType("kcode.tui.app")
def main(handle, task=None):
    report = {"handle": type(handle).__name__, "task": task, "session": handle.session_id, "read_only": handle.read_only,
              "history": len(list(handle.history()))}
    if task:
        handle.steer(task)
        handle.wait()
        report["status"] = handle.outcome.result.status if handle.outcome else repr(handle.error)
        report["session"] = handle.session_id
    print("REPORT " + json.dumps(report), file=sys.stderr)
    print("TEXTUAL", any(m == "textual" or m.startswith("textual.") for m in sys.modules), file=sys.stderr)
    return 0
app.main = main
sys.modules["kcode.tui.app"] = app
{block}
from kcode.cli import main as kcode_main
try:
    kcode_main(sys.argv[1:])
except SystemExit as exit:
    print("EXIT", exit.code, file=sys.stderr)
"""


def kcode_py(args: list[str], cwd: Path, home: Path, *, block_textual: bool = False) -> str:
    code = STAND_IN.replace("{block}", "sys.modules['textual'] = None" if block_textual else "")
    env = {**os.environ, "KCODE_HOME": str(home), "NO_COLOR": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    return proc.stderr


def report(stderr: str) -> dict:
    import json

    line = next((line for line in stderr.splitlines() if line.startswith("REPORT ")), None)
    assert line is not None, stderr[-3000:]
    return json.loads(line[len("REPORT ") :])


def test_what_goes_to_the_tui_and_what_stays_a_subcommand():
    assert route([], COMMANDS) == ["tui"]
    assert route(["fix the bug"], COMMANDS) == ["tui", "fix the bug"]
    assert route(["--resume"], COMMANDS) == ["tui", "--resume"]
    assert route(["--resume", "abc"], COMMANDS) == ["tui", "--resume", "abc"]
    assert route(["--model", "m", "task"], COMMANDS) == ["tui", "--model", "m", "task"]
    assert route(["run", "task"], COMMANDS) == ["run", "task"]
    assert route(["attach"], COMMANDS) == ["attach"]
    assert route(["--help"], COMMANDS) == ["--help"] and route(["--version"], COMMANDS) == ["--version"]


def test_kcode_task_runs_the_task_in_the_tui_through_a_local_handle(calc_repo, fix_script, kcode_home):
    err = kcode_py(["--model", f"scripted:{fix_script}", "fix the add function"], calc_repo, kcode_home)
    seen = report(err)
    assert seen["handle"] == "LocalRunHandle" and seen["task"] == "fix the add function" and seen["status"] == "finished"
    assert "EXIT 0" in err
    (meta,) = SessionStore().list()
    assert meta.session_id == seen["session"] and meta.task == "fix the add function"

    resumed = report(kcode_py(["--resume"], calc_repo, kcode_home))  # the latest session, its log to show
    assert resumed["session"] == meta.session_id and resumed["task"] is None and resumed["history"] > 10


def test_kcode_alone_opens_the_tui_without_starting_a_run(calc_repo, kcode_home):
    seen = report(kcode_py([], calc_repo, kcode_home))
    assert seen == {"handle": "LocalRunHandle", "task": None, "session": None, "read_only": False, "history": 0}
    assert SessionStore().list() == []


def test_without_textual_the_error_names_the_extra(calc_repo, kcode_home):
    err = kcode_py(["fix it"], calc_repo, kcode_home, block_textual=True)
    assert "kcode[tui]" in err and "EXIT 2" in err and "REPORT" not in err


def test_attach_needs_a_running_session_and_help_stays_headless(calc_repo, kcode_home, kcode):
    proc = kcode("attach", cwd=calc_repo)
    assert proc.returncode == 1 and "no running session" in proc.stderr
    helped = kcode_py(["--help"], calc_repo, kcode_home)
    assert "EXIT 0" in helped
    code = "import sys\nfrom kcode.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\nprint('TEXTUAL', any(m.startswith('textual') for m in sys.modules))\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert "attach" in proc.stdout and "TEXTUAL False" in proc.stdout


def test_attach_to_a_stopped_session_hands_the_tui_its_log(calc_repo, fix_script, kcode_home, kcode):
    assert kcode("run", "fix", "--model", f"scripted:{fix_script}", cwd=calc_repo).returncode == 0
    (meta,) = SessionStore().list()
    seen = report(kcode_py(["attach", meta.session_id, "--read-only"], calc_repo, kcode_home))
    assert seen == {"handle": "AttachedRunHandle", "task": None, "session": meta.session_id, "read_only": True, "history": 0}
