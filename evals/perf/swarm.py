"""Swarm speedup and per-sub-agent overhead against a loopback OpenAI-compatible server that
takes ``--latency`` seconds per step (default 0.2).

A parent run calls ``swarm`` over ``--agents`` items (edit mode: each sub-agent takes
``--steps`` steps, the last but one writes its own file, the last finishes), once with
``max_parallel`` ``--parallel`` and once with 1 (the baseline, measured in the same run).

Prints the swarm tool's wall time for both, ``speedup N.Nx`` (serial / parallel), and the
overhead per sub-agent: its wall time (from the parent starting it to its report) minus its
model time (the server's own time per request) minus its tools' time; p50 and p95.

    python evals/perf/swarm.py [--agents 32] [--steps 10] [--parallel 8] [--latency 0.2]
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def sse(handler: http.server.BaseHTTPRequestHandler, delta: dict, finish: str) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.end_headers()
    for chunk in ({"choices": [{"index": 0, "delta": delta}]}, {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}],
                                                               "usage": {"prompt_tokens": 100, "completion_tokens": 10}}):
        handler.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
    handler.wfile.write(b"data: [DONE]\n\n")


def call(name: str, args: dict, n: int) -> dict:
    return {"role": "assistant", "tool_calls": [{"index": 0, "id": f"c{n}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]}


class Server:
    """Answers the parent with a swarm call, then finish; a sub-agent with cheap calls until
    its last steps (write its file, finish). ``spent`` sums the server's time per sub-agent."""

    def __init__(self, latency: float, agents: int, steps: int) -> None:
        self.latency, self.agents, self.steps = latency, agents, steps
        self.parallel = 1
        self.spent: dict[str, float] = {}
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = json.dumps({"data": [{"id": "bench", "context_length": 32768}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                started = time.perf_counter()
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.close_connection = True
                if not self.path.endswith("/chat/completions"):  # /tokenize: the client counts tokens itself then
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                request = json.loads(raw)
                time.sleep(outer.latency)
                messages = request["messages"]
                task = next(m["content"] for m in messages if m["role"] == "user")
                done = sum(1 for m in messages if m["role"] == "assistant")
                self.close_connection = True
                if "Your task (" not in task:  # the parent
                    if done == 0:
                        items = [f"a{i:03d}" for i in range(outer.agents)]
                        sse(self, call("swarm", {"description": "bench", "prompt_template": "work on {item}", "items": items, "mode": "edit",
                                                 "max_parallel": outer.parallel}, 0), "tool_calls")
                    else:
                        sse(self, call("finish", {"summary": "done"}, done), "tool_calls")
                    return
                item = task.split("work on ")[-1].strip()
                if done < outer.steps - 2:
                    sse(self, call("todo", {"items": [{"content": f"step {done}", "status": "in_progress"}]}, done), "tool_calls")
                elif done == outer.steps - 2:
                    sse(self, call("write_file", {"path": f"out/{item}.txt", "content": f"{item}\n"}, done), "tool_calls")
                else:
                    sse(self, call("finish", {"summary": f"did {item}"}, done), "tool_calls")
                with outer.lock:
                    outer.spent[item] = outer.spent.get(item, 0.0) + time.perf_counter() - started

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir(parents=True)
    (repo / "README.md").write_text("bench\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    return repo


def run_once(server: Server, parallel: int, root: Path) -> tuple[float, list[float]]:
    from kcode.agent.runner import run_task
    from kcode.config import load_config
    from kcode.session import SessionStore, read_event_dicts

    server.parallel = parallel
    server.spent.clear()
    repo = make_repo(root / f"p{parallel}")
    store = SessionStore(root / f"p{parallel}" / "sessions")
    config = load_config(repo, {"model": "llama-server:bench", "base_url": server.url, "subagents": "on", "auto_test": False,
                                "max_parallel": max(parallel, 1), "subagent_steps": server.steps + 2, "pack": "none"})
    outcome = run_task("Run the swarm", config, repo=repo, store=store)
    assert outcome.result.status == "finished", outcome.result.summary
    events = list(read_event_dicts(store.log_path(outcome.meta.session_id)))
    own = outcome.meta.session_id
    start = next(e["ts"] for e in events if e["type"] == "tool.started" and e["agent_id"] == own and e["name"] == "swarm")
    end = next(e["ts"] for e in events if e["type"] == "tool.finished" and e["agent_id"] == own and e["name"] == "swarm")
    report = next(e for e in events if e["type"] == "tool.finished" and e["agent_id"] == own and e["name"] == "swarm")["output"]
    assert f"{server.agents} merged, 0 conflicts" in report, report[:300]
    overheads = []
    for meta in store.list():
        if meta.parent_id != own:
            continue
        child = [e for e in events if e.get("agent_id") == meta.session_id]
        wall = child[-1]["ts"] - child[0]["ts"]
        tools = sum(e.get("duration_ms", 0) for e in child if e["type"] == "tool.finished") / 1000
        item = meta.task.split("work on ")[-1].strip()
        overheads.append(wall - server.spent.get(item, 0.0) - tools)
    return end - start, overheads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("KCODE_HOME", str(Path(tmp) / "home"))
        server = Server(args.latency, args.agents, args.steps)
        fast, overheads = run_once(server, args.parallel, Path(tmp))
        slow, _ = run_once(server, 1, Path(tmp))
    print(f"{args.agents} sub-agents x {args.steps} steps, {args.latency * 1000:.0f} ms per step")
    print(f"max_parallel {args.parallel}: {fast:.1f} s   max_parallel 1 (baseline): {slow:.1f} s")
    print(f"speedup {slow / fast:.1f}x")
    q = statistics.quantiles(overheads, n=20) if len(overheads) >= 2 else overheads * 19
    print(f"overhead per sub-agent (its wall time - model time - tool time): p50 {statistics.median(overheads) * 1000:.0f} ms, p95 {q[18] * 1000:.0f} ms")


if __name__ == "__main__":
    sys.exit(main())
