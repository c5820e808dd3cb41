"""The log's format version, agent ids in the log, and the writer's lock.

``data/v1-session/`` was written by kcode before logs had a version or agent ids (see its
README): it must keep replaying."""

from __future__ import annotations

import io
import json
import logging
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from kcode.agent.recovery import recover
from kcode.agent.runner import run_task
from kcode.config import Config
from kcode.errors import SessionError
from kcode.events import TurnCompleted, TurnStarted
from kcode.headless import StreamJsonRenderer
from kcode.session import SessionLog, SessionStore, log_in_use, read_event_dicts, read_events
from kcode.session.versions import LOG_VERSION

V1 = Path(__file__).parent / "data" / "v1-session"
SCHEMA = json.loads(resources.files("kcode.headless").joinpath("stream_json.schema.json").read_text())


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _v1_session_id() -> str:
    return json.loads((V1 / "meta.json").read_text())["session_id"]


def test_the_fixture_is_in_the_old_format():
    lines = _lines(V1 / "events.jsonl")
    assert lines and all("v" not in line and "agent_id" not in line and "parent_id" not in line for line in lines)
    assert [line["type"] for line in lines].count("turn.completed") == 3


def test_an_old_log_replays_as_the_top_level_agents_events():
    raw = _lines(V1 / "events.jsonl")
    events = list(read_events(V1 / "events.jsonl"))
    assert [e.type for e in events] == [line["type"] for line in raw]  # none skipped
    assert {e.agent_id for e in events} == {_v1_session_id()}
    assert all(e.parent_id is None for e in events)
    out = io.StringIO()
    renderer = StreamJsonRenderer(out)
    for event in events:
        renderer(event)
    rendered = [json.loads(line) for line in out.getvalue().splitlines()]
    assert rendered[0]["type"] == "thread.started" and rendered[-1]["type"] == "result"
    for line in rendered:
        jsonschema.validate(line, SCHEMA)
        assert line["agent_id"] == _v1_session_id() and "parent_id" not in line


def test_an_old_log_recovers_to_its_last_step():
    recovered = recover(V1 / "events.jsonl")
    assert recovered.step == 3
    assert [m["role"] for m in recovered.last.conversation()][:3] == ["system", "system", "user"]
    checkpoints = [line["commit"] for line in _lines(V1 / "events.jsonl") if line["type"] == "checkpoint"]
    assert recovered.last.head == checkpoints[-1]


def test_lines_carry_the_version_and_read_back_without_it(tmp_path):
    path = tmp_path / "events.jsonl"
    log = SessionLog(path)
    log(TurnStarted(step=1, ts=1.0, agent_id="a", parent_id="p"))
    log(TurnCompleted(step=1, ts=2.0, agent_id="a"))
    log.close()
    raw = _lines(path)
    assert [line["v"] for line in raw] == [LOG_VERSION, LOG_VERSION]
    assert raw[0]["parent_id"] == "p" and "parent_id" not in raw[1]
    assert list(read_event_dicts(path)) == [e.to_dict() for e in read_events(path)]
    assert [(e.agent_id, e.parent_id) for e in read_events(path)] == [("a", "p"), ("a", None)]


def test_a_resumed_old_log_holds_both_versions_and_reads_as_one(tmp_path):
    path = tmp_path / "events.jsonl"
    shutil.copy(V1 / "events.jsonl", path)
    log = SessionLog(path)
    log(TurnStarted(step=4, ts=9e9, agent_id=_v1_session_id()))
    log.close()
    raw = _lines(path)
    assert "v" not in raw[0] and raw[-1]["v"] == LOG_VERSION
    assert {e.agent_id for e in read_events(path)} == {_v1_session_id()}


def test_a_newer_log_is_read_as_far_as_this_kcode_knows_it(tmp_path, caplog):
    path = tmp_path / "events.jsonl"
    line = {"v": LOG_VERSION + 1, "type": "turn.started", "ts": 1.0, "agent_id": "a", "step": 1, "colour": "new field"}
    path.write_text(json.dumps(line) + "\n" + json.dumps(line) + "\n")
    with caplog.at_level(logging.WARNING):
        events = list(read_events(path))
    assert [(e.type, e.step, e.agent_id) for e in events] == [("turn.started", 1, "a")] * 2
    assert sum("written by a newer kcode" in r.getMessage() for r in caplog.records) == 1


def test_a_second_writer_is_refused_and_a_killed_writer_frees_the_log(tmp_path):
    path = tmp_path / "s" / "events.jsonl"
    log = SessionLog(path)
    assert log_in_use(path)
    with pytest.raises(SessionError, match="running in another kcode process"):
        SessionLog(path)
    log.close()
    assert not log_in_use(path)
    holder = "import sys, time; from pathlib import Path; from kcode.session import SessionLog\nheld = SessionLog(Path(sys.argv[1])); print('open', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", holder, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "open\n"
        assert log_in_use(path)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert not log_in_use(path)  # SIGKILL frees it: the kernel drops the lock
    assert not log_in_use(tmp_path / "never-written.jsonl")


def test_every_event_of_a_run_names_its_agent_and_a_sub_agent_its_parent(calc_repo, fix_script):
    events = []
    top = run_task("fix", Config(model=f"scripted:{fix_script}"), repo=calc_repo, subscribers=[events.append])
    assert {e.agent_id for e in events} == {top.meta.session_id} and {e.parent_id for e in events} == {None}
    assert top.meta.parent_id is None
    sub_events = []
    sub = run_task("fix", Config(model=f"scripted:{fix_script}"), repo=calc_repo, subscribers=[sub_events.append], parent_id=top.meta.session_id)
    assert SessionStore().read_meta(sub.meta.session_id).parent_id == top.meta.session_id
    logged = list(read_events(SessionStore().log_path(sub.meta.session_id)))
    assert len(logged) == len(sub_events)
    assert {(e.agent_id, e.parent_id) for e in logged} == {(sub.meta.session_id, top.meta.session_id)}
