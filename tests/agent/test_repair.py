"""Test-driven repair (kcode.agent.repair) through the runner the CLI uses, with a scripted
model's rewrites, real pytest in the sandbox, real git; and its parts on their own."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from kcode.agent.repair import asks_for_fix, extract_definition, failures_of, task_relates
from kcode.agent.runner import run_task
from kcode.config import Config
from kcode.context.index import RepoIndex
from kcode.context.localize import failure_frames, line_words, lines_to_fill, rank_suspects, words_of
from kcode.events import MessageAdded, RepairTried
from kcode.tools.base import ToolResult

from tests.conftest import CALC_BUGGY, FIX_TURNS, write_script

TASK = "add() subtracts: add(2, 3) gives -1 instead of 5."


def run(repo: Path, script: Path, task: str = TASK, **config):
    events = []
    outcome = run_task(task, Config(model=f"scripted:{script}", **config), repo=repo, subscribers=[events.append])
    return outcome, events


def tried(events) -> list[str]:
    return [event.outcome for event in events if isinstance(event, RepairTried)]


def notes(events) -> list[str]:
    return [e.message["content"] for e in events if isinstance(e, MessageAdded) and e.message.get("role") == "user"]


def work_tree_file(outcome, path: str) -> str:
    """The file as the run left it on its branch (the work tree itself is gone after the run)."""
    repo = outcome.meta.repo
    return subprocess.run(["git", "show", f"{outcome.meta.branch}:{path}"], cwd=repo, capture_output=True, text=True, check=True).stdout


def test_a_rewrite_that_makes_the_tests_pass_is_kept_and_the_run_finishes(calc_repo, tmp_path):
    rewrite = "The bug is the minus.\n\n```python\ndef add(a, b):\n    return a + b\n```\n"
    outcome, events = run(calc_repo, write_script(tmp_path / "s.json", [{"content": rewrite}]), repair="on")
    assert outcome.result.status == "finished" and outcome.result.steps == 0
    assert "Fixed `add` in calc/__init__.py" in outcome.result.summary
    assert outcome.tests["ok"] and outcome.tests["passed"] == 2
    assert outcome.changed_files == [{"path": "calc/__init__.py", "kind": "update"}]
    assert work_tree_file(outcome, "calc/__init__.py") == CALC_BUGGY.replace("a - b", "a + b")
    assert tried(events) == ["fixed"]
    fixed = next(e for e in events if isinstance(e, RepairTried))
    assert "-    return a - b" in fixed.diff and "+    return a + b" in fixed.diff
    assert any("now the tests pass" in note for note in notes(events))
    assert [e.type for e in events].count("checkpoint") == 1


def test_rewrites_that_do_not_fix_are_put_back_and_the_loop_starts_with_the_findings(calc_repo, tmp_path):
    wrong = "```python\ndef add(a, b):\n    return a * b\n```"
    turns = [{"content": wrong}, {"content": wrong}, {"content": "I am not sure."}, *FIX_TURNS]
    outcome, events = run(calc_repo, write_script(tmp_path / "s.json", turns), repair="on")
    assert tried(events) == ["failing", "duplicate", "no_code"]  # add is the one suspect, three samples
    head_start = [note for note in notes(events) if "none made the failing tests pass" in note]
    assert len(head_start) == 1 and "`add` (calc/__init__.py:1)" in head_start[0] and "tests/test_calc.py::test_add" in head_start[0]
    # the loop then fixed it: its edit_file found the original text, so the rewrite was put back
    assert outcome.result.status == "finished" and outcome.result.steps == 5
    assert outcome.tests["ok"] and work_tree_file(outcome, "calc/__init__.py") == CALC_BUGGY.replace("a - b", "a + b")


def test_a_line_filled_in_again_that_fixes_the_tests_is_kept(calc_repo, tmp_path):
    # the model's four fills of add's one line: itself (not tried), a*b twice (tried first), a+b
    fills = [{"infill": "return a - b"}, {"infill": "return a * b"}, {"infill": "return a * b"}, {"infill": "return a + b"}]
    outcome, events = run(calc_repo, write_script(tmp_path / "s.json", fills), repair="on")
    attempts = [e for e in events if isinstance(e, RepairTried)]
    assert [(e.outcome, e.line, e.name) for e in attempts] == [("failing", 2, "add"), ("fixed", 2, "add")]
    assert "+    return a * b" in attempts[0].diff and "+    return a + b" in attempts[1].diff
    assert outcome.result.status == "finished" and outcome.result.steps == 0
    assert work_tree_file(outcome, "calc/__init__.py") == CALC_BUGGY.replace("a - b", "a + b")


def test_filled_lines_that_fail_are_put_back_and_the_rewrites_follow(calc_repo, tmp_path):
    fills = [{"infill": "return (a"}, {"infill": "return a * b"}, {"infill": "return a * b"}, {"infill": "return a * b"}]
    rewrite = {"content": "```python\ndef add(a, b):\n    return a + b\n```"}
    outcome, events = run(calc_repo, write_script(tmp_path / "s.json", [*fills, rewrite]), repair="on")
    attempts = [(e.outcome, e.line) for e in events if isinstance(e, RepairTried)]
    assert attempts == [("failing", 2), ("syntax_error", 2), ("fixed", 0)]  # the likelier fill first; then the rewrite
    assert outcome.result.status == "finished" and outcome.result.steps == 0
    assert work_tree_file(outcome, "calc/__init__.py") == CALC_BUGGY.replace("a - b", "a + b")


def test_a_new_line_written_before_a_statement_is_tried_after_the_lines_themselves(calc_repo, tmp_path):
    fills = [{"infill": "return a * b"}] * 4 + [{"infill": "return a + b"}, {"infill": "return a - b"}]  # then: before it
    outcome, events = run(calc_repo, write_script(tmp_path / "s.json", fills), repair="on")
    assert [(e.outcome, e.line) for e in events if isinstance(e, RepairTried)] == [("failing", 2), ("fixed", 2)]
    assert work_tree_file(outcome, "calc/__init__.py") == CALC_BUGGY.replace("    return a - b", "    return a + b\n    return a - b")
    assert outcome.result.status == "finished" and outcome.result.steps == 0


def test_a_change_that_stops_the_tests_from_running_is_not_a_fix(calc_repo, tmp_path):
    # a conftest imports the package: a rewrite that breaks the import leaves pytest with no
    # test run at all (0 passed, 0 failed), which must not count as "no failures"
    (calc_repo / "tests" / "conftest.py").write_text("import calc  # noqa: F401\n")
    subprocess.run(["git", "add", "-A"], cwd=calc_repo, check=True)
    subprocess.run(["git", "commit", "-qm", "conftest"], cwd=calc_repo, check=True)
    broken = {"content": "```python\ndef add(a, b=no_such_name):\n    return a + b\n```"}
    good = {"content": "```python\ndef add(a, b):\n    return a + b\n```"}
    outcome, events = run(calc_repo, write_script(tmp_path / "s.json", [broken, good]), repair="on")
    attempts = [e for e in events if isinstance(e, RepairTried)]
    assert [e.outcome for e in attempts] == ["regressed", "fixed"]
    assert attempts[0].detail.startswith("0 passed (was 1)") and "Error" in attempts[0].detail
    assert outcome.result.status == "finished" and work_tree_file(outcome, "calc/__init__.py") == CALC_BUGGY.replace("a - b", "a + b")


def test_the_lines_worth_filling_skip_the_docstring_comments_and_bare_keywords():
    source = (
        "x = 1\n"
        "def ordinal(number):\n"
        '    """The suffix.\n'
        "\n"
        '    ordinal(11) is th."""\n'
        "    number = abs(int(number))\n"
        "    # teens\n"
        "    if number % 10 in (11, 12, 13):\n"
        "        return 'th'\n"
        "    else:\n"
        "        return {1: 'st'}.get(number % 10, 'th')\n"
    )
    lines = source.splitlines(keepends=True)
    words = line_words("ordinalize(11) gives 11st; the teens are wrong")
    assert lines_to_fill(lines, 2, 11, words, limit=10) == [5, 7, 8, 10]  # file order
    assert lines_to_fill(lines, 2, 11, words, limit=1) == [7]  # the line with the report's 11 and a computation


def test_an_answer_is_cut_once_it_holds_the_definition(calc_repo, tmp_path):
    # 24 characters a chunk, 0.2 s each: the talk after the code block would take 80 s
    talky = "```python\ndef add(a, b):\n    return a + b\n```\n" + "Let me explain why. " * 480
    script = write_script(tmp_path / "s.json", [{"content": talky, "chunk_seconds": 0.2}])
    started = time.monotonic()
    outcome, events = run(calc_repo, script, repair="on")
    assert tried(events) == ["fixed"] and outcome.result.status == "finished"
    assert time.monotonic() - started < 60


def test_failing_tests_the_task_does_not_speak_of_are_left_alone(calc_repo, tmp_path):
    finish = {"tool_calls": [{"name": "finish", "arguments": {"summary": "documented"}}]}
    outcome, events = run(calc_repo, write_script(tmp_path / "s.json", [finish, finish]), task="Fix the docstring of mul: it should say that it multiplies.", repair="on")
    # the tests ran (test_add fails), no rewrite was asked for: both turns went to the loop
    # (its empty finish is sent back once), and no note speaks of the failing test
    assert [e.type for e in events].count("tests.run") == 1
    assert tried(events) == [] and outcome.result.status == "finished" and outcome.result.steps == 2
    assert not any("test_add" in note for note in notes(events))


def test_auto_leaves_a_scripted_model_to_its_script_and_off_runs_no_tests(calc_repo, fix_script):
    for setting in ("auto", "off"):
        outcome, events = run(calc_repo, fix_script, repair=setting)
        assert tried(events) == [] and outcome.result.status == "finished" and outcome.result.steps == 5
    outcome, events = run(calc_repo, fix_script, repair="off")
    first_tool = next(e for e in events if e.type == "tool.started")
    assert first_tool.name == "read_file"  # the script's first call: no test run before it


def test_a_repair_cut_short_puts_the_file_back(calc_repo, tmp_path):
    hang = "```python\ndef add(a, b):\n    import time\n    time.sleep(120)\n    return a + b\n```"
    outcome, events = run(calc_repo, write_script(tmp_path / "s.json", [{"content": hang}]), repair="on", max_time=10, repair_share=1.0)
    assert outcome.result.status == "budget_exhausted"
    assert work_tree_file(outcome, "calc/__init__.py") == CALC_BUGGY
    assert outcome.changed_files == []


def test_kcode_run_repairs_through_the_real_command(calc_repo, tmp_path, kcode):
    script = write_script(tmp_path / "s.json", [{"content": "```python\ndef add(a, b):\n    return a + b\n```"}])
    result = kcode("run", "--model", f"scripted:{script}", TASK, cwd=calc_repo, env={"KCODE_REPAIR": "on"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "repair: add (calc/__init__.py) #1: fixed" in result.stderr  # the progress lines
    assert "Fixed `add` in calc/__init__.py" in result.stdout


def test_an_unknown_repair_setting_is_a_clear_error(calc_repo, fix_script):
    import pytest

    from kcode.errors import UsageError

    with pytest.raises(UsageError, match="unknown repair setting 'sometimes'"):
        run(calc_repo, fix_script, repair="sometimes")


# -- the parts -------------------------------------------------------------------------------


def test_the_definition_is_taken_from_the_answer_whatever_surrounds_it():
    answer = (
        "Here is a usage example:\n```python\nprint(get(1))\n```\nAnd the fix:\n"
        "```python\nclass Cache:\n    @cached\n    def get(self, key):\n        return self.data[key]\n```\nDone."
    )
    assert extract_definition(answer, "get") == "@cached\ndef get(self, key):\n    return self.data[key]"
    assert extract_definition(answer, "put") is None
    assert extract_definition("```python\ndef get(:\n```", "get") is None  # not Python
    assert extract_definition("def get():\n    return 2\n", "get") == "def get():\n    return 2"  # no fence


def test_failures_are_read_from_the_run_tests_result():
    output = "$ pytest\nFAILED: 3 passed, 2 failed\n\n--- t.py::test_a\nassert 1 == 2\n\n--- t.py::test_b[x]\nboom\n"
    result = ToolResult(output, data={"tests": {"failing": ["t.py::test_a", "t.py::test_b[x]", "t.py::test_c"]}})
    assert failures_of(result) == [("t.py::test_a", "assert 1 == 2"), ("t.py::test_b[x]", "boom"), ("t.py::test_c", "")]


def test_a_question_or_a_feature_request_is_not_a_fix():
    for task in ("What does calc.add do?", "Add a --json flag to the CLI", "Rename foo to bar", "Document the mul function."):
        assert not asks_for_fix(task), task
    for task in (TASK, "windowed() skips windows", "findall ignores case_sensitive=True", "LRUCache evicts the wrong entry", "Make the tests pass"):
        assert asks_for_fix(task), task


def test_a_question_runs_no_tests_first(calc_repo, tmp_path):
    answer = {"tool_calls": [{"name": "finish", "arguments": {"summary": "add subtracts"}}]}
    outcome, events = run(calc_repo, write_script(tmp_path / "s.json", [answer, answer]), task="What does calc.add do?", repair="on")
    # both turns went to the loop (an empty finish is sent back once); no test ran before them
    assert [e.type for e in events].count("tests.run") == 0 and outcome.result.status == "finished" and outcome.result.steps == 2


def test_words_of_identifiers():
    assert words_of("do_truncate") == {"truncate"}
    assert words_of("IntRange") == {"int", "range"}
    assert words_of("parse_int_list") == {"parse", "int", "list"}


def _repo(tmp_path: Path) -> Path:
    root = tmp_path / "lib"
    (root / "pkg").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "pkg" / "core.py").write_text(
        "def ordinal(number):\n    return 'th' if number % 10 in (11, 12, 13) else 'st'\n\n\n"
        "def ordinalize(number):\n    return str(number) + ordinal(number)\n\n\n"
        "def _check(value):\n    if value < 0:\n        raise ValueError(value)\n    return value\n\n\n"
        "def clamp(value):\n    return _check(value)\n\n\n"
        "class Signer:\n    def unsign(self, value):\n        return value\n\n\n"
        "class Other:\n    def unsign(self, value):\n        return None\n"
    )
    (root / "pkg" / "core.pyi").write_text("def ordinal(number: int) -> str: ...\n")
    (root / "tests" / "test_core.py").write_text(
        "from pkg.core import ordinal, clamp\n\n\ndef test_ordinal():\n    assert ordinal(11) == 'th'\n\n\n"
        "def test_clamp():\n    assert clamp(-1) == 0\n"
    )
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    return root


def _ranked(root: Path, failures, task: str) -> list[tuple[str, str]]:
    index = RepoIndex.open(root, persist=False)
    index.refresh()
    return [(found.path, found.name) for found in rank_suspects(index.files, failures, task)]


def test_the_failing_tests_body_and_the_task_point_at_the_function(tmp_path):
    root = _repo(tmp_path)
    ranked = _ranked(root, [("tests/test_core.py::test_ordinal", "assert 'st' == 'th'")], "`ordinalize(11)` gives '11st'")
    # the test calls ordinal; the task names ordinalize, which calls ordinal; no stub file
    assert ranked[:2] == [("pkg/core.py", "ordinal"), ("pkg/core.py", "ordinalize")]
    assert all(path != "pkg/core.pyi" and not path.startswith("tests/") for path, _ in ranked)


def test_a_traceback_frame_in_the_source_ranks_first(tmp_path):
    root = _repo(tmp_path)
    trace = (
        "tests/test_core.py:9: in test_clamp\n    assert clamp(-1) == 0\n"
        f"{root}/pkg/core.py:16: in clamp\n    return _check(value)\n"
        "pkg/core.py:11: in _check\n    raise ValueError(value)\nE   ValueError: -1\n"
    )
    index = RepoIndex.open(root, persist=False)
    index.refresh()
    assert failure_frames(trace, index.files) == [("tests/test_core.py", 9), ("pkg/core.py", 16), ("pkg/core.py", 11)]
    ranked = _ranked(root, [("tests/test_core.py::test_clamp", trace)], "clamp raises on negative numbers")
    assert ranked[:2] == [("pkg/core.py", "_check"), ("pkg/core.py", "clamp")]  # the innermost frame first


def test_a_dotted_name_in_the_task_picks_its_owner(tmp_path):
    index = RepoIndex.open(_repo(tmp_path), persist=False)
    index.refresh()
    headers = index.files["pkg/core.py"].tags.headers
    for owner in ("Signer", "Other"):
        ranked = rank_suspects(index.files, [], f"`{owner}.unsign()` accepts anything")
        best = next(found for found in ranked if found.name == "unsign")
        assert [headers[i][1] for i in best.definition.scopes] == [f"class {owner}:"]
        others = [found for found in ranked if found.name == "unsign" and found is not best]
        assert all(found.score < best.score for found in others)


def test_the_task_must_speak_of_what_fails(tmp_path):
    index = RepoIndex.open(_repo(tmp_path), persist=False)
    index.refresh()
    failures = [("tests/test_core.py::test_ordinal", "")]
    assert task_relates("ordinal suffixes are wrong", ["tests/test_core.py::test_ordinal"], rank_suspects(index.files, failures, "ordinal suffixes are wrong"))
    unrelated = "Make Signer.unsign verify the signature"
    assert not task_relates(unrelated, ["tests/test_core.py::test_ordinal"], rank_suspects(index.files, failures, unrelated))


def test_a_package_named_in_the_task_relates_the_failures_in_its_init(tmp_path):
    """inflection's report speaks of `inflection.tableize`; the failing test is
    test_underscore, which calls underscore in inflection/__init__.py: the package's name
    relates them (a module's own name does, and `__init__` says nothing)."""
    root = tmp_path / "lib"
    (root / "inflection").mkdir(parents=True)
    (root / "inflection" / "__init__.py").write_text("def underscore(word):\n    return word.lower()\n\n\ndef tableize(word):\n    return underscore(word) + 's'\n")
    (root / "test_inflection.py").write_text("from inflection import underscore\n\n\ndef test_underscore():\n    assert underscore('Area51Sighting') == 'area51_sighting'\n")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    index = RepoIndex.open(root, persist=False)
    index.refresh()
    failing = ["test_inflection.py::test_underscore"]
    task = "Table names are glued together: `inflection.tableize('Area51Sighting')` gives 'area51sightings'."
    suspects = rank_suspects(index.files, [(failing[0], "")], task)
    assert suspects[0].name == "underscore" and task_relates(task, failing, suspects)
    other = "Table names are glued together: `tableize('Area51Sighting')` gives 'area51sightings'."
    assert not task_relates(other, failing, rank_suspects(index.files, [(failing[0], "")], other))


def test_the_module_imports_no_model_backend():
    # the phase talks to whatever ChatModel the run has; importing it loads no backend
    code = "import sys, kcode.agent.repair; print(any(m.startswith('llama_cpp') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_the_failing_tests_spectrum_sends_the_line_fills_to_the_faulty_line_first(tmp_path):
    """The task names area() first, but only the failing test runs clamp's second `return
    low`: the tracer run (real pytest, in the sandbox) ranks clamp first and that line first,
    so the model's first fill is asked there, and fixes it."""
    from tests.context.test_spectrum import SHAPES, TESTS

    repo = tmp_path / "repo"
    (repo / "tests").mkdir(parents=True)
    (repo / "shapes.py").write_text(SHAPES)
    (repo / "tests" / "test_shapes.py").write_text(TESTS)
    (repo / "pyproject.toml").write_text("[tool.pytest.ini_options]\npythonpath = ['.']\n")
    (repo / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "initial"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    fills = [{"infill": "return high"}] * 4
    task = "area() of a clamped width is wrong: area(clamp(12, 0, 10), 2) gives 0, not 20."
    outcome, events = run(repo, write_script(tmp_path / "s.json", fills), task=task, repair="on")
    assert [(e.outcome, e.name, e.line) for e in events if isinstance(e, RepairTried)] == [("fixed", "clamp", 9)]
    assert outcome.result.status == "finished" and outcome.result.steps == 0
    assert work_tree_file(outcome, "shapes.py") == SHAPES.replace("        return low\n    return x", "        return high\n    return x")
    assert outcome.changed_files == [{"path": "shapes.py", "kind": "update"}]  # the tracer left nothing behind


def test_a_block_of_lines_written_before_a_statement_is_tried_last(tmp_path):
    """A guard left out (an `if` with its body): neither a line written again nor one new line
    fixes it; the model's block of lines before the statement does, up to where it goes on
    with the code that follows."""
    repo = tmp_path / "repo"
    (repo / "tests").mkdir(parents=True)
    (repo / "maths.py").write_text("def safe_div(a, b):\n    return a / b\n")
    (repo / "tests" / "test_maths.py").write_text("from maths import safe_div\n\n\ndef test_by_zero():\n    assert safe_div(1, 0) == 0\n")
    (repo / "pyproject.toml").write_text("[tool.pytest.ini_options]\npythonpath = ['.']\n")
    (repo / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "initial"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    same = {"infill": "return a / b"}
    block = {"infill": "if b == 0:\n        return 0\n    return a / b\n"}  # the model goes on past the block
    fills = [same] * 4 + [same] * 2 + [{"infill": "if b == 0:"}, block]  # a lone `if` is not a block
    outcome, events = run(repo, write_script(tmp_path / "s.json", fills), task="safe_div(1, 0) raises ZeroDivisionError instead of giving 0.", repair="on")
    assert [(e.outcome, e.line) for e in events if isinstance(e, RepairTried)] == [("fixed", 2)]
    assert work_tree_file(outcome, "maths.py") == "def safe_div(a, b):\n    if b == 0:\n        return 0\n    return a / b\n"
    assert outcome.result.status == "finished" and outcome.result.steps == 0


def test_the_likeliest_suspects_lines_are_all_filled_in_before_any_rewrite(tmp_path):
    """The task names total(), which only calls the broken _sum(): the first round fills in
    total's line, then _sum's lines (where the fix is), before it asks for a whole rewrite
    of either (a fill is a few tokens, a rewrite a whole definition's)."""
    repo = tmp_path / "repo"
    (repo / "tests").mkdir(parents=True)
    source = "def total(xs):\n    return _sum(xs) + 0\n\n\ndef _sum(xs):\n    s = 0\n    for x in xs:\n        s -= x\n    return s\n"
    (repo / "sums.py").write_text(source)
    (repo / "tests" / "test_sums.py").write_text("from sums import total\n\n\ndef test_total():\n    assert total([1, 2]) == 3\n")
    (repo / "pyproject.toml").write_text("[tool.pytest.ini_options]\npythonpath = ['.']\n")
    (repo / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "initial"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    fills = [{"infill": "return 0"}] * 8 + [{"infill": "s += x"}] * 40
    outcome, events = run(repo, write_script(tmp_path / "s.json", fills), task="total([1, 2]) gives -3 instead of 3.", repair="on")
    attempts = [(e.name, e.outcome, e.line) for e in events if isinstance(e, RepairTried)]
    assert attempts[0][0] == "total" and attempts[-1] == ("_sum", "fixed", 8)
    assert all(line > 0 for _, _, line in attempts)  # no rewrite was asked for on the way
    assert work_tree_file(outcome, "sums.py") == source.replace("s -= x", "s += x")
    assert outcome.result.status == "finished" and outcome.result.steps == 0
