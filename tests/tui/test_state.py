"""The TUI's data side: events folded into turns of blocks and the status line's figures,
the diff rendering and the @path completion (no Textual app needed)."""

from __future__ import annotations

from kcode.agent.runner import run_task
from kcode.config import load_config
from kcode.events import (
    AssistantMessage,
    Checkpoint,
    ContextPacked,
    FileChanged,
    RepairTried,
    SessionFinished,
    SessionStarted,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
    TurnStarted,
    Usage,
)
from kcode.tui.diffs import render_split, split_rows, step_diff
from kcode.tui.prompt import History, complete_path
from kcode.tui.state import Transcript
from kcode.tui.status import status_text
from tests.conftest import git


def _started(**kw):
    return SessionStarted(session_id="s1", task="fix it", repo="/r", workdir="/w", branch="kcode/s1", base_commit="b" * 40, model="m", agent_id="s1", ts=100.0, **kw)


def test_a_real_runs_events_fold_into_turns_with_tools_tests_and_checkpoints(calc_repo, fix_script):
    events = []
    run_task("Fix the failing test", load_config(calc_repo, {"model": f"scripted:{fix_script}"}), repo=calc_repo, subscribers=[events.append])
    t = Transcript()
    for event in events:
        t.apply(event)
    kinds = [[b.kind for b in turn.blocks] for turn in t.turns]
    assert kinds[0][0] == "user" and t.turns[0].blocks[0].text == "Fix the failing test"
    assert len(t.turns) == 6  # the preamble, then one per step
    assert kinds[1] == ["assistant", "tool"] and t.turns[1].blocks[0].text == "Reading the code first."
    assert t.turns[1].blocks[0].reasoning == "Look at calc."
    tools = [b for turn in t.turns for b in turn.blocks if b.kind == "tool"]
    assert [b.status for b in tools] == ["ok", "error", "ok", "ok", "ok"]  # the first test run fails
    assert tools[0].title == "read_file: calc/__init__.py" and "return a - b" in tools[0].output
    tests = [b for turn in t.turns for b in turn.blocks if b.kind == "tests"]
    assert [b.status for b in tests] == ["error", "ok"] and tests[0].lines == ["tests/test_calc.py::test_add"]
    (checkpoint,) = [b for turn in t.turns for b in turn.blocks if b.kind == "checkpoint"]
    assert checkpoint.lines == ["U calc/__init__.py"]
    diff = step_diff(checkpoint.meta["repo"], checkpoint.meta["previous"], checkpoint.meta["commit"])
    assert "-    return a - b" in diff and "+    return a + b" in diff
    assert t.turns[-1].blocks[-1].kind == "finished" and t.status.state == "finished"
    s = t.status
    assert s.model.startswith("scripted:") and s.branch.startswith("kcode/") and s.step == 5
    assert s.tokens_evaluated > 0 and s.output_tokens > 0
    line = status_text(s, now=s.started + 5)
    assert "step 5" in line and "⎇ kcode/" in line and "eval " in line


def test_text_deltas_merge_into_one_block_and_the_message_settles_it():
    t = Transcript()
    for event in [_started(), TurnStarted(step=1, agent_id="s1", ts=101.0)] + [TextDelta(step=1, text=w, agent_id="s1", ts=101.5) for w in ("Hel", "lo ", "**world**")]:
        t.apply(event)
    changed, new_turns = t.take_changes()
    (assistant,) = [b for b in changed if b.kind == "assistant"]
    assert assistant.text == "Hello **world**" and assistant.version == 4 and new_turns == 1  # made, then 3 deltas
    t.apply(AssistantMessage(step=1, content="Hello **world**!", agent_id="s1"))
    assert assistant.text == "Hello **world**!" and t.take_changes()[0] == [assistant]
    t.apply(Usage(step=1, input_tokens=1000, cached_input_tokens=600, output_tokens=50, agent_id="s1", ts=102.5))
    assert (t.status.tokens_reused, t.status.tokens_evaluated) == (600, 400)
    assert t.status.prefill_tps == 400 / 0.5 and t.status.gen_tps == 50 / 1.0


def test_sub_agents_group_under_their_own_blocks_nested_by_parent():
    t = Transcript()
    t.apply(_started())
    t.apply(TurnStarted(step=1, agent_id="s1"))
    child = dict(agent_id="c1", parent_id="s1")
    grandchild = dict(agent_id="g1", parent_id="c1")
    t.apply(SessionStarted(session_id="c1", task="look at the parser", repo="/r", workdir="/w", branch="b", base_commit="b", model="m", **child))
    t.apply(ToolCallFinished(step=1, call_id="x", name="read_file", arguments={"path": "p.py"}, output="...", **child))
    t.apply(SessionStarted(session_id="g1", task="deeper", repo="/r", workdir="/w", branch="b", base_commit="b", model="m", **grandchild))
    t.apply(SessionFinished(status="finished", summary="parser ok", exit_code=0, steps=2, duration_ms=5, **child))
    agents = [b for b in t.turns[-1].blocks if b.kind == "agent"]
    assert [(b.key, b.meta["depth"], b.status) for b in agents] == [("c1", 1, "finished"), ("g1", 2, "running")]
    assert agents[0].title == "c1: look at the parser" and agents[0].lines == ["✓ read_file: p.py", "■ finished: parser ok"]
    assert t.status.step == 1 and t.status.state == "running"  # a sub-agent's events leave the top agent's figures alone


def test_a_tool_finishing_without_its_start_and_files_collected_for_the_checkpoint():
    t = Transcript()
    t.apply(_started())
    t.apply(ContextPacked(mode="full", tokens=10, budget=100, prefill_tokens_per_second=40.0, agent_id="s1"))
    t.apply(ToolCallStarted(step=1, call_id="a", name="bash", arguments={"command": "make"}, agent_id="s1", ts=1.0))
    t.apply(ToolCallFinished(step=1, call_id="b", name="bash", arguments={"command": "ls"}, output="x", agent_id="s1"))
    t.apply(FileChanged(step=1, changes=[{"path": "a.py", "kind": "add"}, {"path": "b.py", "kind": "delete"}], agent_id="s1"))
    t.apply(Checkpoint(step=1, commit="c" * 40, ref="r", agent_id="s1"))
    blocks = t.turns[0].blocks
    assert [b.kind for b in blocks] == ["user", "notice", "tool", "tool", "checkpoint"]
    assert blocks[2].status == "running" and blocks[3].status == "ok" and blocks[4].lines == ["A a.py", "D b.py"]
    assert blocks[4].meta["previous"] == "b" * 40 and t.status.prefill_tps == 40.0


def test_split_rows_pair_removed_and_added_lines(tmp_path):
    text = "diff --git a/x b/x\n@@ -1,3 +1,3 @@\n a\n-b\n-c\n+B\n d\n"
    rows = split_rows(text)
    assert rows[2:] == [(" a", " a"), ("-b", "+B"), ("-c", ""), (" d", " d")]
    assert "│" in render_split(text, 60)


def test_step_diff_of_a_real_repository(tmp_path):
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "f.txt").write_text("one\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "1")
    first = git(tmp_path, "rev-parse", "HEAD").strip()
    (tmp_path / "f.txt").write_text("two\n")
    git(tmp_path, "commit", "-qam", "2")
    second = git(tmp_path, "rev-parse", "HEAD").strip()
    assert "-one\n+two" in step_diff(tmp_path, first, second)
    assert step_diff(tmp_path, second, second) == "(this step changed no files)"


def test_path_completion_and_history(tmp_path):
    files = ["calc/__init__.py", "calc/ops.py", "tests/test_calc.py", "README.md"]
    assert complete_path("ca", files) == ("calc/", ["calc/"])
    assert complete_path("calc/", files) == ("calc/", ["calc/__init__.py", "calc/ops.py"])
    assert complete_path("calc/o", files) == ("calc/ops.py", ["calc/ops.py"])
    assert complete_path("zz", files) == ("zz", [])
    history = History(tmp_path / "h.jsonl")
    for text in ("first", "second\nline", "second\nline"):
        history.add(text)
    assert History(tmp_path / "h.jsonl").items == ["first", "second\nline"]  # kept, duplicates once
    assert history.previous() == "second\nline" and history.previous() == "first" and history.previous() is None
    assert history.next() == "second\nline" and history.next() == "" and history.next() is None


def test_a_repair_rewrite_shows_as_a_notice_with_its_outcome():
    t = Transcript()
    t.apply(_started())
    t.apply(RepairTried(step=0, path="calc.py", name="add", sample=2, outcome="fixed", detail="2 passed, 0 failing (was 1)", agent_id="s1"))
    block = t.turns[0].blocks[-1]
    assert block.kind == "notice" and block.text == "repair: add (calc.py) #2: fixed — 2 passed, 0 failing (was 1)"

