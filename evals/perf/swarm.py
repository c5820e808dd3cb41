"""Swarm speedup, per-sub-agent overhead and a soak, against a loopback OpenAI-compatible
server that takes ``--latency`` seconds per step (default 0.2).

A parent run calls ``swarm`` over ``--agents`` items (edit mode: each sub-agent takes
``--steps`` steps, the last but one writes its own file, the last finishes), once with
``max_parallel`` ``--parallel`` and once with 1 (the baseline, measured in the same run).

Prints the swarm tool's wall time for both, ``speedup N.Nx`` (serial / parallel), and the
overhead per sub-agent (its work tree and session): the time from the parent starting it to
the parent having its report (the work tree made, the run, the merge, the work tree removed)
minus its model time (the server's own time per request) minus its tools' time; p50 and p95,
one at a time (max_parallel 1) and side by side (max_parallel N, which adds the waits for the
parent's tree and for the CPU).

``--soak``: 300 sub-agents and 4,000 steps (13 or 14 each) on a zero-latency server; prints
the parent's peak RSS, its open file descriptors before and after, the work trees left, and
the time, each against its target.

    python evals/perf/swarm.py [--agents 32] [--steps 10] [--parallel 8] [--latency 0.2]
    python evals/perf/swarm.py --soak [--agents 300] [--total-steps 4000] [--parallel 8]
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
    its last steps (write its file, finish). ``spent`` sums the server's time per sub-agent.
    ``total_steps``: the sub-agents' steps in all, spread over them (else ``steps`` each)."""

    def __init__(self, latency: float, agents: int, steps: int, total_steps: int | None = None) -> None:
        self.latency, self.agents = latency, agents
        self.items = [f"a{i:03d}" for i in range(agents)]
        total = total_steps or steps * agents
        self.steps_of = {item: total // agents + (1 if i < total % agents else 0) for i, item in enumerate(self.items)}
        self.steps = max(self.steps_of.values())
        self.parallel = 1
        self.cpu = 0.0
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
                        sse(self, call("swarm", {"description": "bench", "prompt_template": "work on {item}", "items": outer.items, "mode": "edit",
                                                 "max_parallel": outer.parallel}, 0), "tool_calls")
                    else:
                        sse(self, call("finish", {"summary": "done"}, done), "tool_calls")
                    return
                item = task.split("work on ")[-1].strip()
                steps = outer.steps_of[item]
                if done < steps - 2:
                    sse(self, call("todo", {"items": [{"content": f"step {done}", "status": "in_progress"}]}, done), "tool_calls")
                elif done == steps - 2:
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


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (git) so far."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def run_once(server: Server, parallel: int, root: Path, **settings: object) -> tuple[float, list[float], Path]:
    """One parent run (``settings``: more configuration); returns the swarm tool's wall time,
    the overhead of each sub-agent, and the repository. ``server.cpu``: CPU seconds per
    sub-agent (kcode, its git processes and the loopback server: the same process)."""
    from kcode.agent.runner import run_task
    from kcode.agent.subagents import Subagents
    from kcode.config import load_config
    from kcode.session import SessionStore, read_event_dicts

    server.parallel = parallel
    server.spent.clear()
    repo = make_repo(root / f"p{parallel}")
    store = SessionStore(root / f"p{parallel}" / "sessions")
    config = load_config(repo, {"model": "llama-server:bench", "base_url": server.url, "subagents": "on", "auto_test": False,
                                "max_parallel": max(parallel, 1), "subagent_steps": server.steps + 2, "pack": "none", **settings})
    spans: dict[str, tuple[float, float]] = {}  # item -> when the parent started it, when it had the report
    plain_run = Subagents.run

    def timed_run(self: Subagents, spec):  # the parent's view of each sub-agent
        began = time.time()
        try:
            return plain_run(self, spec)
        finally:
            spans[spec.prompt.split("work on ")[-1].strip()] = (began, time.time())

    Subagents.run = timed_run
    cpu = cpu_seconds()
    try:
        outcome = run_task("Run the swarm", config, repo=repo, store=store)
    finally:
        Subagents.run = plain_run
    server.cpu = (cpu_seconds() - cpu) / server.agents
    assert outcome.result.status == "finished", outcome.result.summary
    events = list(read_event_dicts(store.log_path(outcome.meta.session_id)))
    own = outcome.meta.session_id
    start = next(e["ts"] for e in events if e["type"] == "tool.started" and e["agent_id"] == own and e["name"] == "swarm")
    end = next(e["ts"] for e in events if e["type"] == "tool.finished" and e["agent_id"] == own and e["name"] == "swarm")
    report = next(e for e in events if e["type"] == "tool.finished" and e["agent_id"] == own and e["name"] == "swarm")["output"]
    assert f"{server.agents} merged, 0 conflicts" in report, report[:300]
    tools: dict[str, float] = {}
    for event in events:
        if event["type"] == "tool.finished" and event.get("parent_id") == own:
            tools[event["agent_id"]] = tools.get(event["agent_id"], 0.0) + event.get("duration_ms", 0) / 1000
    overheads = []
    for meta in store.list():
        if meta.parent_id != own:
            continue
        item = meta.task.split("work on ")[-1].strip()
        began, ended = spans[item]
        overheads.append(ended - began - server.spent.get(item, 0.0) - tools.get(meta.session_id, 0.0))
    return end - start, overheads, repo


def percentiles(values: list[float]) -> str:
    q = statistics.quantiles(values, n=20) if len(values) >= 2 else values * 19
    return f"p50 {statistics.median(values) * 1000:.0f} ms, p95 {q[18] * 1000:.0f} ms"


def soak(args: argparse.Namespace, root: Path) -> int:
    """300 sub-agents, 4,000 steps, zero latency: memory, descriptors, work trees, time."""
    import psutil

    from kcode.paths import data_dir

    process = psutil.Process()
    server = Server(0.0, args.agents, 0, total_steps=args.total_steps)
    fds_start = process.num_fds()
    peak = [process.memory_info().rss]
    running = threading.Event()
    running.set()

    def sample() -> None:
        while running.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    steps = sum(server.steps_of.values())
    began = time.perf_counter()
    # each sub-agent holds its cap of the step budget while it runs: room for the last ones' caps
    budget = steps + (server.steps + 2) * args.parallel
    swarm_time, overheads, repo = run_once(server, args.parallel, root, max_swarm_steps=budget)
    took = time.perf_counter() - began
    running.clear()
    sampler.join()
    peak[0] = max(peak[0], process.memory_info().rss)
    deadline = time.monotonic() + 5  # the server's last connections close
    while process.num_fds() > fds_start and time.monotonic() < deadline:
        time.sleep(0.1)
    fds_end = process.num_fds()
    listed = subprocess.run(["git", "worktree", "list", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True).stdout
    trees_left = listed.count("worktree ") - 1  # the checkout itself
    folder = data_dir() / "worktrees"
    dirs_left = len(list(folder.iterdir())) if folder.is_dir() else 0
    verdict = {True: "ok", False: "MISSED"}
    print(f"soak: {args.agents} sub-agents, {steps} steps, max_parallel {args.parallel}, zero latency")
    print(f"parent peak RSS {peak[0] / 2**20:.0f} MB (target <= 1024 MB): {verdict[peak[0] <= 2**30]}")
    print(f"open file descriptors: start {fds_start}, end {fds_end} (target: equal): {verdict[fds_end <= fds_start]}")
    print(f"work trees left: {trees_left} registered, {dirs_left} folders (target 0): {verdict[trees_left == 0 and dirs_left == 0]}")
    print(f"time {took:.1f} s, the swarm {swarm_time:.1f} s (target <= 300 s): {verdict[took <= 300]}")
    print(f"overhead per sub-agent: {percentiles(overheads)}; CPU per sub-agent {server.cpu * 1000:.0f} ms; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    ok = peak[0] <= 2**30 and fds_end <= fds_start and trees_left == 0 and dirs_left == 0 and took <= 300
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--soak", action="store_true", help="300 sub-agents and 4,000 steps on a zero-latency server")
    parser.add_argument("--agents", type=int, default=None, help="sub-agents (default 32; 300 with --soak)")
    parser.add_argument("--steps", type=int, default=10, help="steps per sub-agent")
    parser.add_argument("--total-steps", type=int, default=4000, help="with --soak: the sub-agents' steps in all")
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.2)
    args = parser.parse_args()
    args.agents = args.agents or (300 if args.soak else 32)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("KCODE_HOME", str(Path(tmp) / "home"))
        if args.soak:
            return soak(args, Path(tmp))
        server = Server(args.latency, args.agents, args.steps)
        fast, side_by_side, _ = run_once(server, args.parallel, Path(tmp))
        cpu_parallel = server.cpu
        slow, one_at_a_time, _ = run_once(server, 1, Path(tmp))
    print(f"{args.agents} sub-agents x {args.steps} steps, {args.latency * 1000:.0f} ms per step")
    print(f"max_parallel {args.parallel}: {fast:.1f} s   max_parallel 1 (baseline): {slow:.1f} s")
    print(f"speedup {slow / fast:.1f}x")
    print("overhead per sub-agent (work tree and session: its time in the parent - model time - tool time), target p50 <= 150 ms:")
    print(f"  one at a time: {percentiles(one_at_a_time)};  {args.parallel} side by side: {percentiles(side_by_side)}")
    print(f"CPU per sub-agent (kcode, git and the test server, {args.steps} steps each): {server.cpu * 1000:.0f} ms one at a time, "
          f"{cpu_parallel * 1000:.0f} ms side by side; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
