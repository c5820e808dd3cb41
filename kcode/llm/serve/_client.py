"""A run's side of a kept-alive model server: :func:`connect` finds the server for a model
and its settings (or starts one, detached), and :class:`ServedModel` is the ``ChatModel``
that talks to it, with everything the runner asks of an in-process model (the fixed prompt,
the prefill speed, the prefix cache's notes, llama.cpp's own step timings).

A server found dead (killed, crashed) is started again with a notice; one that cannot be
started at all leaves the model to run in process, with a notice saying why.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kcode.cancel import CancelToken
from kcode.config import LlamaCppOptions
from kcode.errors import Interrupted, ModelError, ModelRequestError, ModelUnavailable, ModelUnreachable
from kcode.llm.base import Message, StepEnd, StreamChunk, TextChunk, ReasoningChunk, ToolSpec
from kcode.llm.serve._records import (
    ServerRecord,
    process_alive,
    read_record,
    read_records,
    remove_record,
    server_key,
    servers_dir,
    start_lock,
)
from kcode.llm.serve._wire import chunk_from_wire, tools_to_wire

__all__ = ["ServedModel", "connect", "running_servers", "stop_servers", "START_TIMEOUT"]

START_TIMEOUT = 600.0  # seconds a server may take to load its model and listen
_ERRORS = {"Interrupted": Interrupted, "ModelRequestError": ModelRequestError, "ModelUnavailable": ModelUnavailable}


def _request(record: ServerRecord, method: str, path: str, body: Any = None, timeout: float = 600.0) -> Any:
    connection = http.client.HTTPConnection("127.0.0.1", record.port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {record.token}", "Content-Type": "application/json"}
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        payload = json.loads(response.read() or b"null")
        if response.status != 200:
            raise ModelUnreachable(f"model server pid {record.pid}: HTTP {response.status}: {payload.get('error', '')}")
        return payload
    except (OSError, http.client.HTTPException, ValueError) as error:
        raise ModelUnreachable(f"model server pid {record.pid} on port {record.port}: {error}") from error
    finally:
        connection.close()


def _healthy(record: ServerRecord) -> bool:
    if record.kind == "llama-server":  # its /health says only ok
        from kcode.llm.serve._slots import _get

        return _get(f"{record.url}/health", record.token)[0] == 200
    try:
        health = _request(record, "GET", "/health", timeout=5.0)
    except ModelUnreachable:
        return False
    return health.get("key") == record.key and not health.get("stopping")


def _reap(process: subprocess.Popen) -> None:
    threading.Thread(target=process.wait, daemon=True, name=f"kcode-reap-{process.pid}").start()


def _start(key: str, path: Path, options: LlamaCppOptions, seed: int | None, keep_alive: float,
           speed_store: Path | None, llama_server: str | None) -> ServerRecord:
    import dataclasses

    folder = servers_dir()
    log = folder / f"{key}.log"
    request = folder / f"{key}.request.json"
    spec = {"path": str(path.resolve()), "key": key, "options": dataclasses.asdict(options), "seed": seed,
            "keep_alive": -1 if keep_alive == float("inf") else keep_alive, "log": str(log),
            "speed_store": str(speed_store) if speed_store else None, "llama_server": llama_server}
    fd = os.open(request, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(spec, handle)
    with open(log, "ab") as out:  # the server's own lines; a crash's traceback
        process = subprocess.Popen(
            [sys.executable, "-m", "kcode.llm.serve", str(request)], stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True, close_fds=True, cwd="/",
        )  # fmt: skip
    _reap(process)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        record = read_record(key)
        if record is not None and record.pid == process.pid and _healthy(record):
            return record
        if process.poll() is not None:
            tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-6:]
            raise ModelUnavailable(f"the model server exited with status {process.returncode}: " + " | ".join(tail))
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    raise ModelUnavailable(f"the model server did not listen within {START_TIMEOUT:.0f} s (log: {log})")


def connect(path: Path, options: LlamaCppOptions, seed: int | None, keep_alive: float, *,
            speed_store: Path | None = None, on_notice: Callable[[str], None] | None = None,
            llama_server: str | None = None) -> tuple[ServerRecord, bool]:
    """The server for ``path`` with these settings: (its record, whether it was started now).
    A record whose server is gone is replaced, with a notice. ``llama_server``: the binary of
    llama.cpp's server, run with ``options.parallel_slots`` slots instead of kcode's own."""
    key = server_key(path, options, seed) + ("-slots" if llama_server else "")
    with start_lock(key):
        record = read_record(key)
        if record is not None:
            if process_alive(record.pid) and _healthy(record):
                return record, False
            if on_notice is not None:
                on_notice(f"the kept-alive model server pid {record.pid} ({Path(record.model).name}) is gone or not answering; "
                          "starting a new one")
            remove_record(key, record.pid)
        return _start(key, path, options, seed, keep_alive, speed_store, llama_server), True


def running_servers() -> list[ServerRecord]:
    """The servers that run now (stale records removed)."""
    alive = []
    for record in read_records():
        if process_alive(record.pid):
            alive.append(record)
        else:
            remove_record(record.key, record.pid)
    return alive


def _is_ours(pid: int) -> bool:
    try:
        return b"kcode.llm.serve" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def stop_servers(model: str | None = None, timeout: float = 10.0) -> list[ServerRecord]:
    """Stop the servers of ``model`` (a file path, a file name or part of it; None: all); the ones stopped."""
    stopped = []
    for record in running_servers():
        if model and model not in record.model and Path(model).expanduser().resolve() != Path(record.model):
            continue
        try:
            _request(record, "POST", "/shutdown", {}, timeout=5.0)
        except ModelUnreachable:
            if _is_ours(record.pid):
                os.kill(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while process_alive(record.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if process_alive(record.pid) and _is_ours(record.pid):
            os.kill(record.pid, signal.SIGKILL)
        remove_record(record.key, record.pid)
        stopped.append(record)
    return stopped


class ServedModel:
    """A GGUF model served by a kept-alive kcode model server (see :mod:`kcode.llm.serve`)."""

    serves_one_at_a_time = True  # the server takes one step at a time: sub-agents take turns on it

    def __init__(self, path: Path, options: LlamaCppOptions, *, seed: int | None, sampling: dict[str, Any],
                 keep_alive: float, max_output_tokens: int, speed_store: Path | None = None,
                 on_notice: Callable[[str], None] | None = None) -> None:
        from kcode.llm.llamacpp import StepTimings

        self.path, self._options, self._seed, self._sampling = path, options, seed, sampling
        self._keep_alive, self._max_output_tokens, self._speed_store = keep_alive, max_output_tokens, speed_store
        self._on_notice = on_notice
        self._timings = StepTimings
        self.last_step = StepTimings()
        self.require_tool_call = False
        self.withheld_tools: frozenset[str] = frozenset()  # left out of the step's grammar (kcode.agent.loop)
        self.last_prefix_restored = False
        self._token_counts: dict[str, int] = {}
        started = time.perf_counter()
        self._record, self.started_server = connect(path, options, seed, keep_alive, speed_store=speed_store, on_notice=on_notice)
        self.load_seconds = time.perf_counter() - started  # the wait for the server (its load when started now)
        info = self._call("info")
        self.name = info["name"]
        self._n_ctx = int(info["context_window"])
        self.settings = info["settings"]
        if self.started_server:
            for notice in info.get("notices", []):
                self._notice(notice)

    # --- what the run header says -------------------------------------------------------

    @property
    def serving(self) -> str:
        record = self._record
        keep = "forever" if record.keep_alive == float("inf") else f"{record.keep_alive:g} s"
        how = "started now" if self.started_server else "already loaded"
        return f"kept-alive model server pid {record.pid} on 127.0.0.1:{record.port} ({how}; keep_alive {keep})"

    # --- ChatModel ----------------------------------------------------------------------

    @property
    def context_window(self) -> int:
        return self._n_ctx

    def count_tokens(self, text: str) -> int:
        known = self._token_counts.get(text)
        if known is None:
            known = self._token_counts[text] = int(self._call("count_tokens", texts=[text])[0])
        return known

    def count_prompt_tokens(self, messages: list[Message], tools: list[ToolSpec]) -> int:
        return int(self._call("count_prompt_tokens", messages=messages, tools=tools_to_wire(tools)))

    def state(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass  # the server stays: it stops after keep_alive without requests

    def stream(self, messages: list[Message], tools: list[ToolSpec], *,
               cancel: CancelToken | None = None) -> Iterator[StreamChunk]:
        timings = self.last_step = self._timings(started_at=time.perf_counter())
        body = {"messages": messages, "tools": tools_to_wire(tools), "require_tool_call": self.require_tool_call,
                "withheld_tools": sorted(self.withheld_tools),
                "max_output_tokens": self._max_output_tokens, "sampling": self._sampling, "keep_alive": self._wire_keep_alive()}
        for attempt in (1, 2):
            received = False
            try:
                for wire in self._lines("/stream", body, cancel):
                    received = True
                    if cancel is not None and cancel.cancelled:
                        raise Interrupted("interrupted by the user")
                    if wire["t"] == "error":
                        raise _ERRORS.get(wire.get("kind", ""), ModelRequestError)(wire.get("message", "model server error"))
                    chunk = chunk_from_wire(wire)
                    if isinstance(chunk, TextChunk | ReasoningChunk) and timings.first_token_at is None:
                        timings.first_token_at = time.perf_counter()
                    if isinstance(chunk, StepEnd):
                        self._step_timings(wire, timings)
                    yield chunk
                    if isinstance(chunk, StepEnd):
                        return
                raise ModelUnreachable(f"model server pid {self._record.pid}: the step ended without its end")
            except ModelUnreachable as error:
                if cancel is not None and cancel.cancelled:
                    raise Interrupted("interrupted by the user") from error
                if received or attempt == 2:
                    self._reconnect(str(error))
                    raise  # the loop retries the step (a transient error)
                self._reconnect(str(error))

    # --- the runner's questions, answered by the server's model --------------------------

    def prefill_speed(self, *, measure: bool = False):
        from kcode.llm.prefill import PrefillSpeed

        found = self._call("prefill_speed", measure=measure)
        return PrefillSpeed(**found) if found else None

    def remember_prefill_speed(self, speed) -> None:
        import dataclasses

        self._call("remember_prefill_speed", speed=dataclasses.asdict(speed))

    def calibrate(self, n_tokens: int = 256):
        from kcode.llm.prefill import PrefillSpeed

        return PrefillSpeed(**self._call("calibrate", n_tokens=n_tokens))

    def prepare_prefix(self, messages: list[Message], tools: list[ToolSpec], *, label: str = ""):
        from kcode.llm.llamacpp import PrefixStatus

        return PrefixStatus(**self._call("prepare_prefix", messages=messages, tools=tools_to_wire(tools), label=label))

    def note_prefix(self, **note: Any) -> None:
        self._call("note_prefix", note=note)

    def cached_prefix(self, label: str) -> dict[str, Any] | None:
        return self._call("cached_prefix", label=label)

    # --- the wire ------------------------------------------------------------------------

    def _wire_keep_alive(self) -> float:
        return -1 if self._keep_alive == float("inf") else self._keep_alive

    def _notice(self, text: str) -> None:
        if self._on_notice is not None:
            self._on_notice(text)

    def _step_timings(self, wire: dict[str, Any], timings: Any) -> None:
        served = wire.get("timings") or {}
        for name in ("prompt_tokens", "reused_tokens", "restored_tokens", "evaluated_tokens", "prefill_seconds",
                     "resampled_tokens", "head_tokens"):
            if name in served:
                setattr(timings, name, served[name])
        # When the server sampled the first token (a tool call's text reaches the client only at
        # the end): perf_counter is CLOCK_MONOTONIC on Linux, one clock for the processes of a machine.
        now = time.perf_counter()
        first = served.get("first_token_at")
        if isinstance(first, float) and sys.platform.startswith("linux") and timings.started_at <= first <= now:
            timings.first_token_at = min(first, timings.first_token_at or now)
        if timings.first_token_at is None:  # a step that wrote nothing but its end
            timings.first_token_at = now
        self.last_prefix_restored = bool(wire.get("prefix_restored"))

    def _call(self, method: str, **args: Any) -> Any:
        for attempt in (1, 2):
            try:
                reply = _request(self._record, "POST", "/call", {"method": method, "args": args, "keep_alive": self._wire_keep_alive()})
                break
            except ModelUnreachable as error:
                if attempt == 2:
                    raise
                self._reconnect(str(error))
        if "error" in reply:
            raise _ERRORS.get(reply.get("kind", ""), ModelRequestError)(reply["error"])
        return reply["result"]

    def _reconnect(self, why: str) -> None:
        """The server did not answer: find it again, or start a new one (a notice says so)."""
        dead = self._record
        self._notice(f"lost the kept-alive model server pid {dead.pid} ({why}); starting a new one")
        try:
            self._record, self.started_server = connect(self.path, self._options, self._seed, self._keep_alive,
                                                        speed_store=self._speed_store, on_notice=None)
        except ModelError as error:
            raise ModelUnreachable(f"the kept-alive model server could not be started again: {error}") from error

    def _lines(self, path: str, body: dict[str, Any], cancel: CancelToken | None) -> Iterator[dict[str, Any]]:
        record = self._record
        connection = http.client.HTTPConnection("127.0.0.1", record.port, timeout=3600)
        stop = threading.Event()
        if cancel is not None:  # an interrupt closes the connection: the server stops the step
            threading.Thread(target=_close_on_cancel, args=(connection, cancel, stop), daemon=True).start()
        try:
            connection.request("POST", path, body=json.dumps(body).encode(),
                               headers={"Authorization": f"Bearer {record.token}", "Content-Type": "application/json"})
            response = connection.getresponse()
            if response.status != 200:
                raise ModelUnreachable(f"model server pid {record.pid}: HTTP {response.status}")
            while True:
                line = response.readline()
                if not line:
                    return
                yield json.loads(line)
        except (OSError, http.client.HTTPException, ValueError) as error:
            if cancel is not None and cancel.cancelled:
                raise Interrupted("interrupted by the user") from error
            raise ModelUnreachable(f"model server pid {record.pid} on port {record.port}: {error or type(error).__name__}") from error
        finally:
            stop.set()
            connection.close()


def _close_on_cancel(connection: http.client.HTTPConnection, cancel: CancelToken, stop: threading.Event) -> None:
    while not stop.is_set():
        if cancel.wait(0.1):
            sock = connection.sock
            if sock is not None:
                import socket

                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            return
