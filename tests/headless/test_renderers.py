from __future__ import annotations

import io
import json
from importlib import resources

import jsonschema

from kcode.agent.runner import run_task
from kcode.config import Config
from kcode.headless import StreamJsonRenderer, TextRenderer
from kcode.headless.text import summarize_arguments

from tests.conftest import write_script

SCHEMA = json.loads(resources.files("kcode.headless").joinpath("stream_json.schema.json").read_text())


def _run(repo, script):
    out, err = io.StringIO(), io.StringIO()
    outcome = run_task("fix", Config(model=f"scripted:{script}"), repo=repo, subscribers=[StreamJsonRenderer(out), TextRenderer(err, color=False)])
    return outcome, [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


def test_stream_json_lifecycle_and_schema(calc_repo, fix_script):
    outcome, lines, _ = _run(calc_repo, fix_script)
    for line in lines:
        jsonschema.validate(line, SCHEMA)
    types = [line["type"] for line in lines]
    assert types[0] == "thread.started" and types[-1] == "result"
    assert types.count("turn.started") == types.count("turn.completed") == 5
    items = [line["item"] for line in lines if line["type"] == "item.completed"]
    kinds = {item["type"] for item in items}
    assert {"agent_message", "reasoning", "tool_call", "command_execution", "file_change"} <= kinds
    tests = [i for i in items if i["type"] == "command_execution"]
    assert tests[0]["status"] == "failed" and tests[-1]["status"] == "completed" and tests[-1]["tests"]["passed"] == 2
    result = lines[-1]
    assert result["subtype"] == "success" and not result["is_error"] and result["num_turns"] == 5
    assert result["session_id"] == outcome.meta.session_id and result["usage"]["input_tokens"] > 0


def test_items_are_snapshots_with_stable_ids(calc_repo, tmp_path):
    script = write_script(tmp_path / "s.json", [
        {"content": "x" * 100, "tool_calls": [{"name": "todo", "arguments": {"items": [{"text": "a"}]}}]},
        {"tool_calls": [{"name": "todo", "arguments": {"items": [{"text": "a", "status": "done"}]}}]},
        {"tool_calls": [{"name": "finish", "arguments": {"summary": "s"}}]},
    ])
    _, lines, _ = _run(calc_repo, script)
    message_events = [line for line in lines if line.get("item", {}).get("type") == "agent_message"]
    assert [m["type"] for m in message_events][0] == "item.started"
    assert message_events[-1]["type"] == "item.completed" and message_events[-1]["item"]["text"] == "x" * 100
    assert len({m["item"]["id"] for m in message_events}) == 1
    todo = [line for line in lines if line.get("item", {}).get("type") == "todo_list"]
    assert [t["type"] for t in todo] == ["item.started", "item.updated", "item.completed"]
    assert todo[-1]["item"]["items"] == [{"text": "a", "completed": True}]


def test_text_renderer_shows_progress(calc_repo, fix_script):
    _, _, err = _run(calc_repo, fix_script)
    assert "── step 1" in err and "→ read_file path=calc/__init__.py" in err
    assert "✗ $ python3 -m pytest" in err and "checkpoint" in err and "── finished after 5 steps" in err
    assert "\x1b[" not in err


def test_summarize_arguments_truncates():
    assert summarize_arguments("bash", {"command": "ls -la\necho"}) == "ls -la"
    long = summarize_arguments("write_file", {"path": "a", "content": "y" * 500})
    assert len(long) < 120 and long.endswith("…")


def test_the_header_says_where_the_model_runs_and_how_sub_agents_are_served():
    from kcode.events import SessionStarted

    def header(**fields) -> str:
        err = io.StringIO()
        TextRenderer(err, color=False)(SessionStarted(session_id="s1", task="t", repo="/r", workdir="/w", branch="kcode/s1", base_commit="c", model="m", **fields))
        return err.getvalue().splitlines()[-1]

    assert header(serving="in process", subagents="queued on the in-process model") == "  model in process · sub-agents: queued on the in-process model"
    assert header(serving="kept-alive model server pid 7 on 127.0.0.1:9 (already loaded; keep_alive 300 s)", subagents="off (x)") == (
        "  model kept-alive model server pid 7 on 127.0.0.1:9 (already loaded; keep_alive 300 s) · sub-agents: off (x)")
    assert header(subagents="4 parallel slots on llama-server:m.gguf") == "  sub-agents: 4 parallel slots on llama-server:m.gguf"
    assert header(subagents="off (the model serves one conversation at a time)") == "  branch kcode/s1 · work tree /w"  # a scripted model: nothing to say
