"""Run one process to completion: closed stdin, merged and capped output, a wall-clock
timeout and cancellation that kill the whole process group.

Every sandbox implementation builds an argv and hands it to :func:`run_process`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from kcode.cancel import CancelToken
from kcode.sandbox.base import ExecResult

__all__ = ["run_process", "OutputCapture"]

_READ_SIZE = 65536


class OutputCapture:
    """Keeps the first ``head`` and the last ``tail`` bytes of a stream, counting the rest."""

    def __init__(self, head: int, tail: int) -> None:
        self._head_limit = head
        self._tail_limit = tail
        self._head = bytearray()
        self._tail: deque[bytes] = deque()
        self._tail_size = 0
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if not data:
            return
        self._tail.append(data)
        self._tail_size += len(data)
        while self._tail and self._tail_size - len(self._tail[0]) >= self._tail_limit:
            self._tail_size -= len(self._tail.popleft())

    def result(self) -> tuple[str, int]:
        """Return the kept text and how many bytes were dropped from the middle."""
        tail = b"".join(self._tail)
        if len(tail) > self._tail_limit:
            tail = tail[len(tail) - self._tail_limit :]
        dropped = self.total - len(self._head) - len(tail)
        head_text = _decode(bytes(self._head))
        if dropped <= 0:
            return head_text + _decode(tail), 0
        marker = f"\n[... {dropped} bytes of output dropped ...]\n"
        return head_text + marker + _decode(tail), dropped


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace").replace("\x00", "\\0")


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    cancel: CancelToken | None = None,
    head_bytes: int = 5000,
    tail_bytes: int = 5000,
    on_output: Callable[[bytes], None] | None = None,
) -> ExecResult:
    """Run ``argv`` in its own session; return exit code and capped combined output.

    ``on_output``, when given, also receives every chunk of output as it arrives (for
    streaming to a terminal); the capped copy is returned either way.

    On timeout or cancellation the whole process group is killed. When the main process
    exits, whatever it left running in its group is killed too, so no background child
    keeps the output pipe (or the machine) busy.
    """
    started = time.monotonic()
    proc = subprocess.Popen(
        list(argv),
        cwd=str(cwd),
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        close_fds=True,
    )
    capture = OutputCapture(head_bytes, tail_bytes)
    assert proc.stdout is not None
    stdout_fd = proc.stdout.fileno()

    def read_output() -> None:
        while True:
            try:
                chunk = os.read(stdout_fd, _READ_SIZE)
            except OSError:
                return
            if not chunk:
                return
            capture.feed(chunk)
            if on_output is not None:
                on_output(chunk)

    reader = threading.Thread(target=read_output, name="kcode-output", daemon=True)
    reader.start()
    exited = threading.Event()
    waiter = threading.Thread(target=lambda: (proc.wait(), exited.set()), daemon=True)
    waiter.start()

    deadline = None if timeout is None else started + timeout
    timed_out = cancelled = False
    while not exited.is_set():
        remaining = 0.25 if deadline is None else min(0.25, deadline - time.monotonic())
        if remaining <= 0:
            timed_out = True
            break
        if cancel is not None and cancel.cancelled:
            cancelled = True
            break
        exited.wait(remaining)
    _kill_group(proc.pid)
    exited.wait()
    reader.join(timeout=2.0)
    proc.stdout.close()
    output, dropped = capture.result()
    return ExecResult(
        exit_code=proc.returncode if proc.returncode is not None else -9,
        output=output,
        timed_out=timed_out,
        cancelled=cancelled,
        dropped_bytes=dropped,
        duration=time.monotonic() - started,
    )
