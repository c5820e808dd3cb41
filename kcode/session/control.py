"""Driving a run from outside it: the control channel and the run handles.

The interface a frontend (the TUI) drives a run through, whether the run is in this process
or another one:

- :class:`RunHandle` (a protocol): ``subscribe(callback)`` (every event, from a worker
  thread: post it, never touch widgets), ``steer(text)``, ``interrupt_step()``, ``stop()``,
  ``answer(request_id, decision, reason="")``, ``compact()``, ``close()``; ``session_id``, ``read_only``,
  ``running``.
- :class:`AttachedRunHandle` (here): a run in another process (``kcode attach``). It tails
  the session's log (:class:`kcode.session.tail.EventTail`: catch-up from seq 1, then follow)
  and writes commands to the control channel.
- ``kcode.agent.live.LocalRunHandle``: a run in a worker thread of this process (``kcode``,
  ``kcode TASK``, ``kcode --resume``). It lives in the agent layer because it starts
  ``run_task`` / ``resume_task``; this layer cannot import that one. Its first ``steer``
  starts the session (the message is the task); one sent when no run is going resumes it.

The CLI (``kcode.cli.tui``) calls ``kcode.tui.app.main(handle, task=None)`` (an exit code or
None): the app subscribes, shows ``handle.history()``, then steers ``task`` when one is given.

The control channel, in the session directory:

- ``control.jsonl``: one command per line, appended: ``{"id", "ts", "cmd", ...}`` with
  ``cmd`` one of ``steer`` (``text``), ``interrupt`` (the current step), ``stop`` (the
  run), ``answer`` (``request_id``, ``decision``: once | always | deny, ``reason``),
  ``compact`` (compact the conversation when the next step starts).
- ``control.lock``: a writer holds an exclusive ``flock`` on it for as long as it is
  attached; a second writer gets :class:`kcode.errors.ControlBusy` (it may attach
  read-only). The kernel drops the lock however the writer ends.

The running agent (headless or not, ``kcode.agent.run_control.RunControl``) reads the channel
from where it was when the run started (commands written while no run was going are not
applied) and answers every command with events in the log: ``steering.queued``,
``interrupted``, ``approval.resolved``. An attacher that closes leaves the run going.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

from kcode.errors import ControlBusy, SessionError, UsageError
from kcode.events import Event
from kcode.session.log import lock_held, log_in_use
from kcode.session.tail import EventTail

__all__ = [
    "CONTROL_FILE",
    "LOCK_FILE",
    "COMMANDS",
    "DECISIONS",
    "RunHandle",
    "ControlWriter",
    "ControlReader",
    "AttachedRunHandle",
    "writer_attached",
]

CONTROL_FILE = "control.jsonl"
LOCK_FILE = "control.lock"
COMMANDS = ("steer", "interrupt", "stop", "answer", "compact")
DECISIONS = ("once", "always", "deny")

EventCallback = Callable[[Event], None]


@runtime_checkable
class RunHandle(Protocol):
    """What a frontend drives a run through (see the module's docstring)."""

    session_id: str | None  # None until a local run has created its session
    read_only: bool  # an attacher that could not get the control channel

    @property
    def running(self) -> bool:
        """Whether the run is going on now."""
        ...

    def history(self) -> Iterator[Event]:
        """The session's events from before this handle (a local handle resuming a session:
        its log; an attacher: nothing, :meth:`subscribe` catches up from the log itself)."""
        ...

    def subscribe(self, callback: EventCallback) -> None:
        """Call ``callback`` with every event of the run, in order, from a worker thread
        (an attacher's: from the log's first event on)."""
        ...

    def steer(self, text: str) -> None:
        """Send a message to the model: queued while a step runs, delivered as a user
        message when the next step starts."""
        ...

    def interrupt_step(self) -> None:
        """End the current step (the model's stream, the running tool call); the run goes
        on (a run with a frontend attached waits for the next message)."""
        ...

    def stop(self) -> None:
        """Stop the run cleanly: it ends as ``interrupted``, resumable."""
        ...

    def answer(self, request_id: str, decision: str, reason: str = "") -> None:
        """Answer an ``approval.requested``: ``once``, ``always`` (this session) or ``deny``
        (``reason`` goes to the model)."""
        ...

    def compact(self) -> None:
        """Compact the conversation when the next step starts (a ``compaction`` event
        follows, with the tokens before and after)."""
        ...

    def close(self) -> None:
        """Let go of the run (an attacher's run goes on)."""
        ...


def check_answer(decision: str) -> None:
    if decision not in DECISIONS:
        raise UsageError(f"unknown decision {decision!r} (use one of: {', '.join(DECISIONS)})")


def writer_attached(session_dir: Path) -> bool:
    """Whether some process holds the session's control channel now."""
    return lock_held(Path(session_dir) / LOCK_FILE, exclusive=True)


class ControlWriter:
    """The one writer of a session's control channel (holds ``control.lock`` until closed)."""

    def __init__(self, session_dir: Path) -> None:
        self.session_dir = Path(session_dir)
        if not self.session_dir.is_dir():
            raise SessionError(f"no session directory {self.session_dir}")
        lock = (self.session_dir / LOCK_FILE).open("a")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise ControlBusy(f"another kcode is already attached to session {self.session_dir.name} (one writer at a time); attach read-only with --read-only") from None
        self._lock: IO[str] | None = lock
        self._mutex = threading.Lock()

    def send(self, cmd: str, **fields: Any) -> str:
        """Append one command; its id returned."""
        if cmd not in COMMANDS:
            raise UsageError(f"unknown control command {cmd!r}")
        if self._lock is None:
            raise SessionError("the control channel is closed")
        command_id = secrets.token_hex(4)
        line = json.dumps({"id": command_id, "ts": time.time(), "cmd": cmd, **fields}, ensure_ascii=False) + "\n"
        with self._mutex, (self.session_dir / CONTROL_FILE).open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        return command_id

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()  # drops the flock
            self._lock = None


class ControlReader:
    """The running agent's side: the commands appended since it was opened (or since
    ``offset``), complete lines only."""

    def __init__(self, session_dir: Path, *, from_start: bool = False) -> None:
        self.path = Path(session_dir) / CONTROL_FILE
        self.session_dir = Path(session_dir)
        try:
            self.offset = 0 if from_start else self.path.stat().st_size
        except FileNotFoundError:
            self.offset = 0

    def poll(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end == -1:
            return []
        self.offset += end + 1
        commands = []
        for line in data[: end + 1].splitlines():
            try:
                command = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(command, dict) and command.get("cmd") in COMMANDS:
                commands.append(command)
        return commands

    def writer_attached(self) -> bool:
        return writer_attached(self.session_dir)


class AttachedRunHandle:
    """A run going on in another process, seen through its session directory: events from
    its log, commands through its control channel. ``read_only``: do not take the channel
    (then the commands raise :class:`SessionError`). Raises :class:`ControlBusy` when
    another writer holds it."""

    def __init__(self, session_dir: Path, *, read_only: bool = False, interval: float = 0.05) -> None:
        self.session_dir = Path(session_dir)
        if not (self.session_dir / "events.jsonl").exists() and not (self.session_dir / "meta.json").exists():
            raise SessionError(f"no session at {self.session_dir}")
        self.session_id: str | None = self.session_dir.name
        self.read_only = read_only
        self._writer = None if read_only else ControlWriter(self.session_dir)
        self._tail = EventTail(self.session_dir / "events.jsonl")
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._callbacks: list[EventCallback] = []
        self._caught_up = threading.Event()

    @property
    def running(self) -> bool:
        return log_in_use(self.session_dir / "events.jsonl")

    @property
    def catching_up(self) -> bool:
        """True until the subscribers have had every event the log held when they came
        (a frontend draws the end of the catch-up once, not each step of it)."""
        return self._thread is not None and not self._caught_up.is_set()

    @property
    def seq(self) -> int:
        """The seq of the last event handed to the subscribers."""
        return self._tail.seq

    def history(self) -> Iterator[Event]:
        return iter(())  # the subscribers get the log from its first line

    def subscribe(self, callback: EventCallback) -> None:
        self._callbacks.append(callback)
        if self._thread is None:
            self._thread = threading.Thread(target=self._pump, name=f"kcode-attach-{self.session_id}", daemon=True)
            self._thread.start()

    def _pump(self) -> None:
        while not self._stop.is_set():
            batch = self._tail.poll(limit=5000)
            for _seq, event in batch:
                for callback in list(self._callbacks):
                    callback(event)
            if not batch:
                self._caught_up.set()
                self._stop.wait(self._interval)

    def _send(self, cmd: str, **fields: Any) -> str:
        if self._writer is None:
            raise SessionError(f"attached to session {self.session_id} read-only: commands are not sent")
        if not self.running:  # nobody would read it, and the next run starts after it
            raise SessionError(f"session {self.session_id} is not running: `kcode resume {self.session_id}` continues it")
        return self._writer.send(cmd, **fields)

    def steer(self, text: str) -> None:
        if not text.strip():
            raise UsageError("the message is empty")
        self._send("steer", text=text)

    def interrupt_step(self) -> None:
        self._send("interrupt")

    def stop(self) -> None:
        self._send("stop")

    def answer(self, request_id: str, decision: str, reason: str = "") -> None:
        check_answer(decision)
        self._send("answer", request_id=request_id, decision=decision, reason=reason)

    def compact(self) -> None:
        self._send("compact")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        self._tail.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
