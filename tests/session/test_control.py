"""The session's log as a stream to follow (seq per line, catch-up, partial lines, a
replaced file) and its control channel (one writer at a time, commands read once, from
where the reader started)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kcode.errors import ControlBusy, SessionError
from kcode.events import TurnStarted
from kcode.session import SessionLog
from kcode.session.control import AttachedRunHandle, ControlReader, ControlWriter, writer_attached
from kcode.session.tail import EventTail


def _log(path: Path, steps: range) -> None:
    log = SessionLog(path)
    for step in steps:
        log(TurnStarted(step=step, ts=1.0, agent_id="s"))
    log.close()


def test_every_line_has_its_seq_and_a_reopened_log_goes_on_counting(tmp_path):
    path = tmp_path / "events.jsonl"
    _log(path, range(1, 4))
    _log(path, range(4, 6))  # a resume appends
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3, 4, 5]
    assert [line["step"] for line in lines] == [1, 2, 3, 4, 5]


def test_a_tail_catches_up_then_follows_and_waits_for_a_partial_line(tmp_path):
    path = tmp_path / "events.jsonl"
    tail = EventTail(path)
    assert tail.poll() == []  # no log yet: nothing, no error
    _log(path, range(1, 4))
    assert [(seq, event.step) for seq, event in tail.poll()] == [(1, 1), (2, 2), (3, 3)]
    line = json.dumps({"v": 2, "seq": 4, "type": "turn.started", "ts": 1.0, "agent_id": "s", "step": 4}) + "\n"
    with path.open("a") as handle:
        handle.write(line[:20])
        handle.flush()
        assert tail.poll() == []  # half a line: held back
        handle.write(line[20:])
    assert [(seq, event.step) for seq, event in tail.poll()] == [(4, 4)]
    assert tail.poll() == [] and tail.seq == 4


def test_a_tail_starting_after_a_seq_and_one_whose_log_was_replaced_yield_each_seq_once(tmp_path):
    path = tmp_path / "events.jsonl"
    _log(path, range(1, 6))
    assert [seq for seq, _ in EventTail(path, after=3).poll()] == [4, 5]
    tail = EventTail(path)
    assert len(tail.poll()) == 5
    replacement = tmp_path / "new.jsonl"
    _log(replacement, range(1, 8))
    os.replace(replacement, path)  # another inode: read again, skip what was yielded
    assert [seq for seq, _ in tail.poll()] == [6, 7]


def test_lines_without_a_seq_are_numbered_by_counting(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps({"type": "turn.started", "ts": 1.0, "step": n}) + "\n" for n in (1, 2)))
    assert [seq for seq, _ in EventTail(path).poll()] == [1, 2]
    _log(path, range(3, 4))  # this kcode goes on with the count
    assert json.loads(path.read_text().splitlines()[-1])["seq"] == 3


def test_one_writer_at_a_time_in_this_process_and_another(tmp_path):
    writer = ControlWriter(tmp_path)
    assert writer_attached(tmp_path)
    with pytest.raises(ControlBusy, match="one writer at a time"):
        ControlWriter(tmp_path)
    code = (
        "import sys\nfrom pathlib import Path\nfrom kcode.errors import ControlBusy\nfrom kcode.session.control import ControlWriter\n"
        "try:\n    ControlWriter(Path(sys.argv[1]))\nexcept ControlBusy as error:\n    print('BUSY', error)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert proc.stdout.startswith("BUSY another kcode is already attached"), proc.stderr
    writer.close()
    assert not writer_attached(tmp_path)
    ControlWriter(tmp_path).close()  # free again


def test_a_reader_gets_the_commands_written_after_it_started_each_once(tmp_path):
    writer = ControlWriter(tmp_path)
    writer.send("steer", text="before the run")
    reader = ControlReader(tmp_path)
    assert reader.poll() == []  # written before the reader: not applied
    writer.send("steer", text="one")
    writer.send("interrupt")
    with (tmp_path / "control.jsonl").open("a") as handle:
        handle.write('{"id": "x", "cmd": "stop"')  # not finished yet
    assert [(c["cmd"], c.get("text")) for c in reader.poll()] == [("steer", "one"), ("interrupt", None)]
    assert reader.poll() == []
    with (tmp_path / "control.jsonl").open("a") as handle:
        handle.write("}\n")
    assert [c["cmd"] for c in reader.poll()] == ["stop"]
    with pytest.raises(Exception, match="unknown control command"):
        writer.send("reboot")
    writer.close()


def test_an_attacher_needs_a_session_and_a_read_only_one_sends_nothing(tmp_path):
    with pytest.raises(SessionError, match="no session"):
        AttachedRunHandle(tmp_path / "nope")
    _log(tmp_path / "events.jsonl", range(1, 3))
    watcher = AttachedRunHandle(tmp_path, read_only=True)
    with pytest.raises(SessionError, match="read-only"):
        watcher.steer("hello")
    assert not watcher.running and not writer_attached(tmp_path)
    steerer = AttachedRunHandle(tmp_path)
    with pytest.raises(Exception, match="unknown decision"):
        steerer.answer("r1", "maybe")
    with pytest.raises(SessionError, match="is not running: `kcode resume"):
        steerer.steer("nobody reads this")  # no process holds the log
    assert not (tmp_path / "control.jsonl").exists()
    steerer.close()
    watcher.close()
