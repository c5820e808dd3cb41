"""llama.cpp's own ``llama-server`` with parallel slots, kept alive like kcode's model server.

When ``parallel_slots`` is above 0 and a ``llama-server`` binary is there (``llama_server``:
its path, else the one ``kcode models build-server`` built into the cache, else the one on PATH), the kept-alive server of a local model is a supervisor
process (``python -m kcode.llm.serve``, as for kcode's own server) that runs ``llama-server
-m MODEL --parallel N`` on 127.0.0.1 with a fresh API key, watches its ``/metrics`` for
activity, and stops it after ``keep_alive`` idle, when the model file changes, on SIGTERM,
or when it exits. Runs talk to llama-server itself, through the OpenAI-compatible backend:
its chat template (``--jinja``) and tool-call parsing, not kcode's, and each slot holds a
context of ``ctx`` tokens (``--ctx-size`` is ctx × N).

llama-cpp-python's own server (``llama_cpp.server``, 0.3.36) has no parallel slots: one
``Llama`` behind a lock, so it is not used for this.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from kcode.config import LlamaCppOptions
from kcode.llm.serve._records import ServerRecord, file_identity, remove_record, server_log, write_record

__all__ = ["find_llama_server", "llama_server_command", "supervise", "DEFAULT_SLOT_CTX"]

DEFAULT_SLOT_CTX = 8192  # a slot's context when ctx is not set
_ACTIVITY = re.compile(r"^llamacpp:(requests_processing|requests_deferred|n_decode_total|prompt_tokens_total|tokens_predicted_total)\s+(\S+)", re.M)


def find_llama_server(configured: str | None) -> str | None:
    """The llama-server binary: ``configured`` (a path or a name on PATH), else the one
    ``kcode models build-server`` built into the cache, else ``llama-server`` on PATH."""
    from kcode.llm.serve._build import built_llama_server

    if configured:
        path = Path(configured).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        return shutil.which(configured)
    built = built_llama_server()
    if built.is_file() and os.access(built, os.X_OK):
        return str(built)
    return shutil.which("llama-server")


def llama_server_command(binary: str, path: Path, options: LlamaCppOptions, slots: int, port: int, token: str) -> list[str]:
    ctx = options.ctx or DEFAULT_SLOT_CTX
    command = [binary, "-m", str(path), "--host", "127.0.0.1", "--port", str(port), "--parallel", str(slots),
               "--ctx-size", str(ctx * slots), "--api-key", token, "--metrics", "--jinja"]
    if options.threads:
        command += ["--threads", str(options.threads)]
    if options.gpu_layers is not None:
        command += ["--n-gpu-layers", str(options.gpu_layers)]
    if options.n_batch:
        command += ["--batch-size", str(options.n_batch)]
    if options.n_ubatch:
        command += ["--ubatch-size", str(options.n_ubatch)]
    return command


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str, token: str, timeout: float = 2.0) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, ""
    except (OSError, ValueError):
        return 0, ""


def supervise(request: dict[str, Any], start_timeout: float = 600.0) -> int:
    """Run llama-server for ``request`` until a reason to stop; its exit status."""
    path, key = Path(request["path"]), request["key"]
    options = LlamaCppOptions(**request["options"])
    slots = int(options.parallel_slots)
    keep_alive = float("inf") if float(request["keep_alive"]) < 0 else float(request["keep_alive"])
    token, port = secrets.token_urlsafe(32), _free_port()
    identity = file_identity(path)
    command = llama_server_command(request["llama_server"], path, options, slots, port, token)
    server_log("kcode model server: " + " ".join(c if c != token else "***" for c in command))
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, close_fds=True)  # its output goes to our log
    stopping = threading.Event()
    why = ["llama-server exited"]

    def stop(reason: str) -> None:
        why[0] = reason
        stopping.set()

    signal.signal(signal.SIGTERM, lambda *_: stop("SIGTERM"))
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + start_timeout
    while _get(base + "/health", token)[0] != 200:
        if child.poll() is not None or time.monotonic() > deadline or stopping.is_set():
            child.kill()
            child.wait()
            server_log(f"kcode model server: llama-server did not start (status {child.returncode})")
            return 1
        time.sleep(0.1)
    record = ServerRecord(key=key, pid=os.getpid(), port=port, token=token, model=str(path), started=time.time(),
                          keep_alive=keep_alive, ctx=options.ctx or DEFAULT_SLOT_CTX, log=request.get("log", ""),
                          kind="llama-server", slots=slots, last_used=time.time())
    write_record(record)
    server_log(f"kcode model server pid {os.getpid()}: llama-server pid {child.pid} on 127.0.0.1:{port}, {slots} slots")
    last_seen, idle_since = "", time.monotonic()
    try:
        while not stopping.wait(0.5):
            if child.poll() is not None:
                stop(f"llama-server exited with status {child.returncode}")
                break
            status, metrics = _get(base + "/metrics", token)
            activity = " ".join(f"{m.group(1)}={m.group(2)}" for m in _ACTIVITY.finditer(metrics))
            busy = any(m.group(1) in ("requests_processing", "requests_deferred") and float(m.group(2)) > 0
                       for m in _ACTIVITY.finditer(metrics))
            if status == 200 and (activity != last_seen or busy):
                last_seen, idle_since = activity, time.monotonic()
            if time.monotonic() - idle_since > keep_alive:
                stop(f"idle for {time.monotonic() - idle_since:.0f} s (keep_alive {keep_alive:g} s)")
            try:
                changed = file_identity(path) != identity
            except OSError:
                changed = True
            if changed:
                stop("its model file changed")
    finally:
        remove_record(key, os.getpid())
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        server_log(f"kcode model server pid {os.getpid()} stopped: {why[0]}")
    return 0
