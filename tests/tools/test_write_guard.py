"""write_file refuses to replace most of an existing file unless the model read it and asked."""

from __future__ import annotations

import json

import pytest

from kcode.agent.runner import resume_task, run_task
from kcode.config import Config
from kcode.events import ToolCallFinished
from kcode.tools.files import replaces_most
from tests.conftest import git, write_script

MODULE = "".join(f"def f{n}(x):\n    return x + {n}\n\n" for n in range(30))  # 90 lines


@pytest.fixture
def big(calc_repo):
    (calc_repo / "calc" / "big.py").write_text(MODULE)
    git(calc_repo, "add", "-A")
    git(calc_repo, "commit", "-qm", "big module")
    return calc_repo / "calc" / "big.py"


def test_the_rule():
    assert replaces_most(MODULE, "class Tiny:\n    pass\n") == (True, 60, 0)
    kept_half = "".join(MODULE.splitlines(keepends=True)[:45])  # 30 of the 60 non-blank lines
    assert replaces_most(MODULE, kept_half) == (False, 60, 30)
    assert replaces_most(MODULE, MODULE.replace("+ 3\n", "- 3\n") + "def g():\n    pass\n")[0] is False
    assert replaces_most("a = 1\n" * 19, "b = 2\n")[0] is False  # small files are rewritten freely
    assert replaces_most(MODULE, "    " + MODULE.replace("\n", "\n    "))[0] is False  # re-indented is kept


def test_replacing_most_of_a_file_unread_is_refused_and_points_to_edit_file(call, big):
    result = call("write_file", path="calc/big.py", content="class Tiny:\n    pass\n")
    assert result.is_error and big.read_text() == MODULE
    assert "replace most of the file" in result.output and "edit_file" in result.output
    assert "read it first with read_file" in result.output and "overwrite: true" in result.output


def test_the_flag_alone_is_not_enough_nor_reading_alone(call, big):
    flagged = call("write_file", path="calc/big.py", content="x = 1\n", overwrite=True)
    assert flagged.is_error and "read it first" in flagged.output and "pass overwrite" not in flagged.output
    assert not call("read_file", path="calc/big.py", offset=80).is_error  # a part is not enough
    assert "read it first" in call("write_file", path="calc/big.py", content="x = 1\n", overwrite=True).output
    assert not call("read_file", path="calc/big.py").is_error  # all 90 lines
    unflagged = call("write_file", path="calc/big.py", content="x = 1\n")
    assert unflagged.is_error and "pass overwrite: true" in unflagged.output and "read it first" not in unflagged.output
    assert big.read_text() == MODULE
    done = call("write_file", path="calc/big.py", content="x = 1\n", overwrite=True)
    assert not done.is_error and big.read_text() == "x = 1\n"


def test_new_files_small_files_and_gentle_rewrites_need_nothing(call, big, calc_repo):
    assert not call("write_file", path="calc/new.py", content="x = 1\n").is_error
    assert not call("write_file", path="calc/new.py", content="y = 2\n").is_error  # small
    assert not call("write_file", path="calc/big.py", content=MODULE + "def extra():\n    return 0\n").is_error
    assert big.read_text().endswith("def extra():\n    return 0\n")


def test_a_file_the_model_wrote_itself_may_be_overwritten(call, calc_repo):
    first = "".join(f"line_{n} = {n}\n" for n in range(40))
    assert not call("write_file", path="gen.py", content=first).is_error
    assert call("write_file", path="gen.py", content="z = 0\n").is_error  # still needs the flag
    assert not call("write_file", path="gen.py", content="z = 0\n", overwrite=True).is_error


def test_the_schema_the_model_sees_has_the_flag_and_the_rule():
    from kcode.tools import default_tools

    spec = next(s for s in default_tools().specs() if s.name == "write_file")
    assert spec.parameters["properties"]["overwrite"]["type"] == "boolean"
    assert "overwrite" not in spec.parameters["required"]
    assert "edit_file" in spec.description and "overwrite: true" in spec.description


def test_through_a_run_and_a_resume_the_read_is_remembered(big, calc_repo, tmp_path):
    """A run reads the file and stops (budget); the resumed run may overwrite it with the flag."""
    rewrite = {"tool_calls": [{"name": "write_file", "arguments": {"path": "calc/big.py", "content": "def f(x):\n    return x\n", "overwrite": True}}]}
    finish = {"tool_calls": [{"name": "finish", "arguments": {"summary": "rewrote big.py"}}]}
    script = write_script(tmp_path / "s.json", [
        {"tool_calls": [{"name": "write_file", "arguments": {"path": "calc/big.py", "content": "class Tiny:\n    pass\n"}}]},
        {"tool_calls": [{"name": "read_file", "arguments": {"path": "./calc/big.py"}}]},
        rewrite, finish,
    ])  # fmt: skip
    events = []
    first = run_task("Simplify calc/big.py", Config(model=f"scripted:{script}", max_steps=2, auto_test=False), repo=calc_repo, subscribers=[events.append])
    assert first.result.status == "budget_exhausted"
    refused = next(e for e in events if isinstance(e, ToolCallFinished) and e.name == "write_file")
    assert refused.is_error and "edit_file" in refused.output
    events.clear()
    second = resume_task(first.meta.session_id, {"max_steps": 10}, subscribers=[events.append])
    written = next(e for e in events if isinstance(e, ToolCallFinished) and e.name == "write_file")
    assert not written.is_error, written.output
    assert second.result.status == "finished"
    assert json.loads(json.dumps(second.changed_files)) == [{"path": "calc/big.py", "kind": "update"}]


def test_a_resumed_run_remembers_which_files_were_read_whole(calc_repo):
    from kcode.tools.files import whole_files

    messages = [
        {"role": "system", "content": '<file path="calc/__init__.py">\nx\n</file>\n<file path="calc/big.py" excerpt="lines 1-3 of 90">\n'},
        {"role": "tool", "content": "calc/other.py (lines 1-12 of 12)\n1\tx = 1\n"},
        {"role": "tool", "content": "calc/part.py (lines 1-400 of 900); continue with offset=401\n1\tx = 1\n"},
        {"role": "assistant", "tool_calls": [{"name": "write_file", "arguments": {"path": "./calc/made.py", "content": "y"}}]},
    ]
    assert whole_files(messages, calc_repo) == {"calc/__init__.py", "calc/other.py", "calc/made.py"}
