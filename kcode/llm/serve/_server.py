"""The kept-alive model server: one :class:`~kcode.llm.llamacpp.LlamaCppModel` in a process
of its own, served on 127.0.0.1 (a free port, a bearer token) to kcode's runs.

It keeps kcode's chat rendering, tool grammar, output cap and prefix cache, because it is the
same backend; its context holds the last conversation's KV state, so the next request that
extends it (the next step, or the next run's prompt head) evaluates only its new tokens. It
serves one conversation step at a time: requests that come together wait their turn (two
runs at once share it safely; a swarm's sub-agents take turns).

It stops when no request came for ``keep_alive`` seconds (each request sets it again, as
ollama does), when its model file changes or goes, on SIGTERM or on ``POST /shutdown``, and
removes its record (:mod:`kcode.llm.serve._records`) as it goes.

Started as ``python -m kcode.llm.serve REQUEST.json`` by :func:`kcode.llm.serve.connect`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import select
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kcode.cancel import CancelToken
from kcode.config import LlamaCppOptions
from kcode.errors import KcodeError
from kcode.llm.serve._records import ServerRecord, file_identity, remove_record, server_log, write_record
from kcode.llm.serve._wire import chunk_to_wire, tools_from_wire

__all__ = ["ModelServer", "main"]

_CHECK_SECONDS = 0.5  # how often the idle time and the model file are looked at


class ModelServer:
    def __init__(self, request: dict[str, Any]) -> None:
        from kcode.llm.llamacpp import LlamaCppModel, Sampling
        from kcode.llm.prefill import PrefillSpeed

        self._speed_type = PrefillSpeed
        self.path = Path(request["path"])
        self.key = request["key"]
        self.keep_alive = float(request["keep_alive"])
        self.identity = file_identity(self.path)
        self.notices: list[str] = []
        options = LlamaCppOptions(**request["options"])
        self.model = LlamaCppModel(self.path, options, sampling=Sampling(seed=request.get("seed")),
                                   speed_store=request.get("speed_store"), on_notice=self.notices.append)
        self.model._step = int(time.time() * 1000) % 10**9  # tool-call ids unique across this server's lifetimes
        self.lock = threading.Lock()  # one step (or call) on the model at a time
        self.lock_state = threading.Lock()  # busy, last_used, keep_alive
        self.busy = 0
        self.last_used = time.monotonic()
        self.stopping = threading.Event()
        self.why = ""
        self.token = secrets.token_urlsafe(32)
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.http.daemon_threads = True
        self.record = ServerRecord(
            key=self.key, pid=os.getpid(), port=self.http.server_address[1], token=self.token, model=str(self.path),
            started=time.time(), keep_alive=self.keep_alive, ctx=self.model.context_window,
            settings=dict(self.model.settings), log=request.get("log", ""),
        )  # fmt: skip

    # --- the model's calls ------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        model = self.model
        return {"name": model.name, "context_window": model.context_window, "settings": model.settings,
                "load_seconds": model.load_seconds, "notices": list(self.notices), "pid": os.getpid()}

    def call(self, method: str, args: dict[str, Any]) -> Any:
        model = self.model
        if method == "info":
            return self.info()
        if method == "count_tokens":
            return [model.count_tokens(text) for text in args["texts"]]
        if method == "count_prompt_tokens":
            return model.count_prompt_tokens(args["messages"], tools_from_wire(args["tools"]))
        if method == "prepare_prefix":
            status = model.prepare_prefix(args["messages"], tools_from_wire(args["tools"]), label=args.get("label", ""))
            return dataclasses.asdict(status)
        if method == "prefill_speed":
            speed = model.prefill_speed(measure=bool(args.get("measure")))
            return dataclasses.asdict(speed) if speed is not None else None
        if method == "remember_prefill_speed":
            model.remember_prefill_speed(self._speed_type(**args["speed"]))
            return None
        if method == "calibrate":
            return dataclasses.asdict(model.calibrate(int(args.get("n_tokens", 256))))
        if method == "note_prefix":
            model.note_prefix(**args["note"])
            return None
        if method == "cached_prefix":
            return model.cached_prefix(args["label"])
        raise KcodeError(f"unknown call {method!r}")

    def stream(self, body: dict[str, Any], cancel: CancelToken):
        model = self.model
        model.require_tool_call = bool(body.get("require_tool_call"))
        model.withheld_tools = frozenset(body.get("withheld_tools") or ())
        model._max_output_tokens = int(body.get("max_output_tokens") or model._max_output_tokens)
        if body.get("sampling"):
            model._sampling.kwargs = dict(body["sampling"])
        for chunk in model.stream(body["messages"], tools_from_wire(body["tools"]), cancel=cancel):
            wire = chunk_to_wire(chunk)
            if wire["t"] == "end":
                wire["timings"] = dataclasses.asdict(model.last_step)
                wire["prefix_restored"] = model.last_prefix_restored
            yield wire

    # --- lifetime -----------------------------------------------------------------------------

    def begin(self, keep_alive: float | None) -> None:
        with self.lock_state:
            self.busy += 1
            if keep_alive is not None:
                self.keep_alive = keep_alive

    def end(self) -> None:
        with self.lock_state:
            self.busy -= 1
            self.last_used = time.monotonic()
        self.record.keep_alive, self.record.last_used = self.keep_alive, time.time()
        if not self.stopping.is_set():
            write_record(self.record)

    def stop(self, why: str) -> None:
        if not self.stopping.is_set():
            self.why = why
            self.stopping.set()

    def watch(self) -> None:
        """Until a reason to stop: idle past keep_alive, the model file changed or gone."""
        while not self.stopping.wait(_CHECK_SECONDS):
            with self.lock_state:
                idle = time.monotonic() - self.last_used if self.busy == 0 else 0.0
            if idle > self.keep_alive:
                self.stop(f"idle for {idle:.0f} s (keep_alive {self.keep_alive:g} s)")
            try:
                changed = file_identity(self.path) != self.identity
            except OSError:
                changed = True
            if changed:
                self.stop("its model file changed")

    def serve(self) -> None:
        write_record(self.record)
        threading.Thread(target=self.http.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
        server_log(f"kcode model server pid {os.getpid()} on 127.0.0.1:{self.record.port}: {self.path}")
        try:
            self.watch()
        finally:
            remove_record(self.key, os.getpid())
            self.http.shutdown()
            server_log(f"kcode model server pid {os.getpid()} stopped: {self.why}")
            # a step still running is cut off with the process; its client sees the connection end
            with self.lock_state:
                busy = self.busy
            if busy == 0:
                self.model.close()


def _watch_disconnect(connection: socket.socket, cancel: CancelToken, done: threading.Event) -> None:
    """Cancel the step when its client goes away (it was interrupted or died)."""
    while not done.is_set():
        try:
            readable, _, _ = select.select([connection], [], [], 0.2)
            if readable and connection.recv(1, socket.MSG_PEEK) == b"":
                cancel.cancel()
                return
        except (OSError, ValueError):
            cancel.cancel()
            return


def _handler(server: ModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

        def _json(self, status: int, data: Any) -> None:
            body = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _authorized(self) -> bool:
            if secrets.compare_digest(self.headers.get("Authorization", ""), f"Bearer {server.token}"):
                return True
            self._json(401, {"error": "a bearer token is required"})
            return False

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if not self._authorized():
                return
            if self.path == "/health":
                self._json(200, {**server.info(), "busy": server.busy, "key": server.key,
                                 "stopping": server.stopping.is_set()})
            else:
                self._json(404, {"error": f"no such path {self.path}"})

        def do_POST(self) -> None:  # noqa: N802
            if not self._authorized():
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            except ValueError:
                self._json(400, {"error": "the body is not JSON"})
                return
            if self.path == "/shutdown":
                self._json(200, {"stopping": True})
                server.stop("asked to stop")
                return
            if server.stopping.is_set():
                self._json(503, {"error": f"the server is stopping: {server.why}"})
                return
            keep_alive = body.get("keep_alive")
            server.begin(float("inf") if keep_alive is not None and keep_alive < 0 else keep_alive)
            try:
                with server.lock:  # the queue: one at a time
                    if self.path == "/call":
                        self._call(body)
                    elif self.path == "/stream":
                        self._stream(body)
                    else:
                        self._json(404, {"error": f"no such path {self.path}"})
            finally:
                server.end()

        def _call(self, body: dict[str, Any]) -> None:
            try:
                self._json(200, {"result": server.call(body.get("method", ""), body.get("args") or {})})
            except KcodeError as error:
                self._json(200, {"error": str(error), "kind": type(error).__name__})

        def _stream(self, body: dict[str, Any]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.end_headers()
            cancel, done = CancelToken(), threading.Event()
            threading.Thread(target=_watch_disconnect, args=(self.connection, cancel, done), daemon=True).start()
            try:
                for wire in server.stream(body, cancel):
                    self.wfile.write(json.dumps(wire).encode() + b"\n")
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                cancel.cancel()
            except KcodeError as error:
                self._line({"t": "error", "kind": type(error).__name__, "message": str(error)})
            except Exception as error:  # reported to the client, which says what failed
                self._line({"t": "error", "kind": "ModelRequestError", "message": f"model server: {type(error).__name__}: {error}"})
            finally:
                done.set()

        def _line(self, data: dict[str, Any]) -> None:
            try:
                self.wfile.write(json.dumps(data).encode() + b"\n")
            except OSError:
                pass

    return Handler


def main(argv: list[str]) -> int:
    request_path = Path(argv[0])
    request = json.loads(request_path.read_text(encoding="utf-8"))
    request_path.unlink(missing_ok=True)
    if request.get("llama_server"):
        from kcode.llm.serve._slots import supervise

        return supervise(request)
    server = ModelServer(request)
    signal.signal(signal.SIGTERM, lambda *_: server.stop("SIGTERM"))
    signal.signal(signal.SIGINT, lambda *_: server.stop("SIGINT"))
    server.serve()
    os._exit(0)  # (its log lines are written unbuffered, by server_log)  # a step cut off in a handler thread must not hold the process
