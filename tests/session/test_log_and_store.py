from __future__ import annotations

import pytest

from kcode.errors import SessionError
from kcode.events import MessageAdded, SessionStarted, TurnCompleted
from kcode.session import SessionLog, SessionMeta, SessionStore, read_event_dicts, read_events


def test_log_appends_and_reads_back(tmp_path):
    path = tmp_path / "s" / "events.jsonl"
    log = SessionLog(path)
    events = [
        SessionStarted(session_id="s", task="t", repo="r", workdir="w", branch="b", base_commit="c", model="m", ts=1.0),
        MessageAdded(message={"role": "user", "content": "ünïcode"}, ts=2.0),
        TurnCompleted(step=1, model_state={"position": 1}, ts=3.0),
    ]
    for event in events:
        log(event)
    log.close()
    assert list(read_events(path)) == events


def test_half_written_last_line_is_skipped(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"type":"turn.started","ts":1,"step":1}\n{"type":"turn.sta')
    assert [e["step"] for e in read_event_dicts(path)] == [1]


def test_missing_log_is_a_session_error(tmp_path):
    with pytest.raises(SessionError):
        list(read_events(tmp_path / "nope.jsonl"))


def test_store_lists_and_resolves(tmp_path):
    store = SessionStore(tmp_path)
    for sid, repo, created in (("20260101-000000-aaaaaa", "/r1", 1.0), ("20260102-000000-bbbbbb", "/r1", 2.0), ("20260103-000000-cccccc", "/r2", 3.0)):
        store.write_meta(SessionMeta(sid, "task", repo, "/w", "kcode/x", "c", "m", "worktree", created=created))
    assert [m.session_id for m in store.list()] == ["20260101-000000-aaaaaa", "20260102-000000-bbbbbb", "20260103-000000-cccccc"]
    from pathlib import Path
    assert store.resolve(None, Path("/r1")).session_id == "20260102-000000-bbbbbb"
    assert store.resolve("20260103").session_id == "20260103-000000-cccccc"
    with pytest.raises(SessionError, match="matches 3 sessions"):
        store.resolve("2026")
    with pytest.raises(SessionError, match="no session"):
        store.resolve("nope")


def test_reopening_a_log_cuts_off_a_half_written_line(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"type":"turn.started","ts":1,"step":1}\n{"type":"turn.sta')
    log = SessionLog(path)
    log(TurnCompleted(step=1, ts=2.0))
    log.close()
    assert [e["type"] for e in read_event_dicts(path)] == ["turn.started", "turn.completed"]


def test_a_callers_opening_is_kept_and_a_broken_one_is_an_error(tmp_path):
    store = SessionStore(tmp_path)
    assert store.read_opening("s1") is None  # kcode's own opening
    opening = [{"role": "system", "content": "Ünïcode {braces}"}, {"role": "user", "content": "task"}]
    store.write_opening("s1", opening)
    assert store.read_opening("s1") == opening and not list(store.dir("s1").glob("*.tmp"))
    (store.dir("s1") / "opening.json").write_text("{not json")
    with pytest.raises(SessionError, match="corrupt"):
        store.read_opening("s1")
    (store.dir("s1") / "opening.json").write_text('{"role": "user"}')
    with pytest.raises(SessionError, match="not a list of messages"):
        store.read_opening("s1")
