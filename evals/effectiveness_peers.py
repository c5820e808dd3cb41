"""The parts of ``evals/effectiveness.py`` that run things: the peers' throwaway venvs, the
llama-cpp-python server, the loopback proxy that counts each agent run's tokens, and one
function per agent that works on an instance's checkout.

Tokens: kcode reports its own (``result.json``); for the peers a loopback proxy between them
and the server sums the ``usage`` of every response (they are run without streaming, so the
server reports both prompt and completion tokens) and counts the requests (model calls).
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "PEER_VERSIONS", "AgentRun", "LlamaServer", "UsageProxy", "ensure_peer", "free_port",
    "run_aider", "run_mini", "run_process", "take_patch",
]

# Pinned: the newest releases on PyPI when this benchmark was written.
PEER_VERSIONS = {"mini": ("mini-swe-agent", "2.4.6"), "aider": ("aider-chat", "0.86.2")}
INSTALLED = ".kcode-installed"
# what an agent leaves in a checkout that is not part of its patch
PATCH_EXCLUDES = (".aider*", ".aider*/**", ".kcode/**", "**/__pycache__/**", "**/*.pyc", "**/.pytest_cache/**", ".mini-*")


@dataclass
class AgentRun:
    """One agent on one instance."""

    instance_id: str
    patch: str = ""
    status: str = "done"  # done | timeout | error
    error: str | None = None
    wall_s: float = 0.0
    tokens: int = 0  # prompt + completion, summed over the run's model calls
    calls: int = 0  # model requests
    extra: dict[str, Any] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_peer(agent: str, root: Path, *, python: str = "python3.11", log: Any = print) -> Path:
    """The venv of a peer (``root/<project>-<version>``), made and installed on first use;
    returns its ``bin`` folder. A venv whose install did not finish is made again."""
    project, version = PEER_VERSIONS[agent]
    venv = root / f"{project}-{version}"
    if (venv / INSTALLED).exists():
        return venv / "bin"
    log(f"installing {project}=={version} into {venv} (once)")
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["rm", "-rf", str(venv)], check=True)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{project}=={version}"],
                             capture_output=True, text=True)
    if install.returncode != 0:
        raise RuntimeError(f"installing {project}=={version} failed:\n{install.stderr[-2000:]}")
    (venv / INSTALLED).write_text(f"{project}=={version}\n")
    return venv / "bin"


class LlamaServer:
    """``python -m llama_cpp.server`` on 127.0.0.1 with one GGUF, the model named ``alias``."""

    def __init__(self, gguf: Path, *, alias: str = "local", n_ctx: int = 16384, threads: int | None = None,
                 log_path: Path | None = None, startup_s: float = 300) -> None:
        self.gguf, self.alias, self.n_ctx = gguf, alias, n_ctx
        self.threads = threads or os.cpu_count() or 2
        self.port = free_port()
        self.log_path = log_path
        self.startup_s = startup_s
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> LlamaServer:
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115 - closed in __exit__
        self._log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(self.gguf), "--model_alias", self.alias,
             "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.n_ctx),
             "--n_threads", str(self.threads), "--verbose", "False"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self.proc.returncode} (log: {self.log_path})")
            try:
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.__exit__()
        raise RuntimeError(f"llama_cpp.server did not answer within {self.startup_s:.0f} s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            _kill_group(self.proc)
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()

    def restart(self) -> None:
        """Stop and start again on the same port: a request whose client was killed at the wall
        cap may still be generating, and the next agent must not wait behind it."""
        self.__exit__()
        self.__enter__()


class UsageProxy:
    """A loopback HTTP proxy to ``upstream`` that sums the ``usage`` of every response (JSON
    bodies and SSE chunks alike) into the current tally; :meth:`reset` starts a new one."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/").removesuffix("/v1")
        self.lock = threading.Lock()
        self.tally = {"prompt_tokens": 0, "completion_tokens": 0, "calls": 0}
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # the body ends when the connection closes

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                proxy._forward(self, "GET")

            def do_POST(self) -> None:
                proxy._forward(self, "POST")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.client = httpx.Client(timeout=httpx.Timeout(900, connect=10))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> UsageProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.client.close()

    def reset(self) -> dict[str, int]:
        """The tally so far; counting starts again from zero."""
        with self.lock:
            tally, self.tally = self.tally, {"prompt_tokens": 0, "completion_tokens": 0, "calls": 0}
        return tally

    def _count(self, usage: Any, call: bool) -> None:
        with self.lock:
            self.tally["calls"] += call
            if isinstance(usage, dict):
                self.tally["prompt_tokens"] += int(usage.get("prompt_tokens") or 0)
                self.tally["completion_tokens"] += int(usage.get("completion_tokens") or 0)

    def _forward(self, handler: http.server.BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else None
        headers = {k: v for k, v in handler.headers.items() if k.lower() in ("content-type", "authorization", "accept")}
        completion = handler.path.rstrip("/").endswith("/completions")
        try:
            with self.client.stream(method, self.upstream + handler.path, content=body, headers=headers) as response:
                handler.send_response(response.status_code)
                handler.send_header("content-type", response.headers.get("content-type", "application/json"))
                handler.end_headers()
                if "text/event-stream" in response.headers.get("content-type", ""):
                    usage = None
                    for line in response.iter_lines():
                        handler.wfile.write(line.encode() + b"\n")
                        handler.wfile.flush()
                        if line.startswith("data:") and '"usage"' in line:
                            try:
                                usage = json.loads(line[5:]).get("usage") or usage
                            except json.JSONDecodeError:
                                pass
                    self._count(usage, completion)
                else:
                    data = response.read()
                    handler.wfile.write(data)
                    if completion:
                        try:
                            self._count(json.loads(data).get("usage"), True)
                        except (json.JSONDecodeError, AttributeError):
                            self._count(None, True)
        except (httpx.HTTPError, BrokenPipeError, ConnectionResetError) as error:
            try:
                handler.send_error(502, f"proxy: {error}")
            except OSError:
                pass


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def run_process(args: list[str], cwd: Path, *, timeout: float, log_path: Path, env: dict[str, str] | None = None) -> tuple[int | None, float]:
    """Run ``args`` in its own process group, output to ``log_path``; the whole group is killed
    at ``timeout``. Returns (exit code, or None on timeout; wall seconds)."""
    started = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
        try:
            code: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            code = None
    return code, round(time.monotonic() - started, 2)


def take_patch(repo: Path, base_commit: str) -> str:
    """Everything the agent changed against the base commit, new files included."""
    excludes = [f":(exclude,glob){pattern}" for pattern in PATCH_EXCLUDES]
    subprocess.run(["git", "add", "-A", "--", ".", *excludes], cwd=repo, check=True, capture_output=True)
    return subprocess.run(["git", "diff", "--cached", "--no-color", "--no-ext-diff", "--full-index", base_commit],
                          cwd=repo, check=True, capture_output=True, text=True).stdout


def _peer_env(bin_dir: Path, api_base: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", OPENAI_API_BASE=api_base, OPENAI_BASE_URL=api_base,
               OPENAI_API_KEY="x", NO_COLOR="1", LITELLM_LOCAL_MODEL_COST_MAP="True", MSWEA_CONFIGURED="true")
    return env


def run_mini(bin_dir: Path, repo: Path, task: str, *, model: str, api_base: str, max_steps: int, max_time: float,
             work: Path, max_output_tokens: int = 2048, mode: str = "text") -> tuple[int | None, float]:
    """The ``mini`` CLI in ``repo``, unattended (``--yolo --exit-immediately``), its default
    agent and local environment; ``agent.step_limit`` is the step cap. ``mode`` "text" is
    its text-based action format (``mini_textbased.yaml``: one fenced command per answer),
    "tools" its tool-calling default (``mini.yaml``), which needs a server that returns
    structured ``tool_calls`` (llama-cpp-python's does not: it passes them through as text)."""
    config, model_class = ("mini_textbased.yaml", "litellm_textbased") if mode == "text" else ("mini.yaml", "litellm")
    settings = {
        "agent.agent_class": "default", "agent.step_limit": max_steps, "agent.cost_limit": 0,
        "agent.wall_time_limit_seconds": int(max_time), "environment.timeout": 120, "model.cost_tracking": "ignore_errors",
        "model.model_kwargs.api_base": api_base, "model.model_kwargs.api_key": "x", "model.model_kwargs.temperature": 0.0,
        "model.model_kwargs.max_tokens": max_output_tokens,
    }  # fmt: skip
    args = [str(bin_dir / "mini"), "--model", f"openai/{model}", "--model-class", model_class, "-c", config]
    for key, value in settings.items():
        args += ["-c", f"{key}={json.dumps(value)}"]
    args += ["--yolo", "--exit-immediately", "--output", str(work / "mini.traj.json"), "--task", task]
    env = {**_peer_env(bin_dir, api_base), "MSWEA_GLOBAL_CONFIG_DIR": str(work / "mswea"), "MSWEA_SILENT_STARTUP": "1"}
    return run_process(args, repo, timeout=max_time, log_path=work / "agent.log", env=env)


def run_aider(bin_dir: Path, repo: Path, task: str, *, model: str, api_base: str, max_time: float, work: Path,
              max_output_tokens: int = 2048) -> tuple[int | None, float]:
    """Aider's one-message mode in ``repo`` (no step cap of its own: the wall cap bounds it),
    its default edit format and repo map; the same output cap per model call as the others
    (``extra_params.max_tokens`` in a model-settings file)."""
    settings = work / "aider.model-settings.yml"
    settings.write_text(json.dumps([{"name": f"openai/{model}", "extra_params": {"max_tokens": max_output_tokens, "temperature": 0.0}}]))
    args = [
        str(bin_dir / "aider"), "--model", f"openai/{model}", "--model-settings-file", str(settings), "--openai-api-base", api_base, "--openai-api-key", "x",
        "--yes-always", "--no-auto-commits", "--no-check-update", "--no-show-model-warnings", "--no-stream",
        "--no-gitignore", "--no-analytics", "--no-pretty", "--no-fancy-input",
        "--input-history-file", str(work / "aider.input.history"), "--chat-history-file", str(work / "aider.chat.md"),
        "--message", task,
    ]  # fmt: skip
    return run_process(args, repo, timeout=max_time, log_path=work / "agent.log", env=_peer_env(bin_dir, api_base))
