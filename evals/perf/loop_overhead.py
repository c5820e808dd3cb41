"""Per-step time spent in kcode itself, excluding model and tool time.

Runs a 200-step scripted session (reads, searches, edits with checkpoint commits, shell
commands, plan updates) through the same runner `kcode run` uses, and for every step
measures: step wall time (turn.started → turn.completed) − model time − tool time. What is
left is kcode's own work: prompt assembly, event fan-out, the fsync'd session log, git
checkpoints. Prints median and p95, overall and split by steps with and without a
checkpoint commit.

    python evals/perf/loop_overhead.py [--steps 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_repo(root: Path, files: int = 40) -> Path:
    repo = root / "repo"
    (repo / "pkg").mkdir(parents=True)
    for n in range(files):
        body = "\n".join(f"def func_{n}_{k}(x):\n    return x + {k}\n" for k in range(30))
        (repo / "pkg" / f"mod_{n}.py").write_text(body)
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=repo, check=True, env=env)
    return repo


def make_turns(steps: int) -> list[dict]:
    turns = []
    for n in range(steps - 1):
        mod = n % 40
        kind = n % 8
        if kind in (0, 4):
            call = {"name": "read_file", "arguments": {"path": f"pkg/mod_{mod}.py", "limit": 60}}
        elif kind == 1:
            call = {"name": "search", "arguments": {"pattern": f"def func_{mod}_1\\b"}}
        elif kind in (2, 6):
            call = {"name": "edit_file", "arguments": {"path": f"pkg/mod_{mod}.py", "old": f"return x + {n % 30}\n", "new": f"return x + {n % 30}  # step {n}\n"}}
        elif kind == 3:
            call = {"name": "bash", "arguments": {"command": "true"}}
        elif kind == 5:
            call = {"name": "todo", "arguments": {"items": [{"text": f"item {k}", "status": "done" if k < n % 5 else "pending"} for k in range(5)]}}
        else:
            call = {"name": "list_files", "arguments": {"pattern": "*.py"}}
        turns.append({"content": f"Step {n}: working.", "tool_calls": [call]})
    turns.append({"tool_calls": [{"name": "finish", "arguments": {"summary": "done"}}]})
    return turns


class TimedModel:
    """Wraps a model and accumulates the time spent inside its stream."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.spent = 0.0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    @property
    def context_window(self):
        return self.inner.context_window

    def stream(self, messages, tools, *, cancel=None):
        iterator = self.inner.stream(messages, tools, cancel=cancel)
        while True:
            started = time.perf_counter()
            try:
                chunk = next(iterator)
            except StopIteration:
                self.spent += time.perf_counter() - started
                return
            self.spent += time.perf_counter() - started
            yield chunk


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kcode-bench-") as tmp:
        os.environ["KCODE_HOME"] = str(Path(tmp) / "home")
        from kcode.agent import runner
        from kcode.config import Config
        from kcode.llm.scripted import ScriptedModel

        repo = make_repo(Path(tmp))
        script = Path(tmp) / "script.json"
        script.write_text(json.dumps({"turns": make_turns(args.steps)}))
        timed = TimedModel(ScriptedModel.from_file(script))
        original = runner._model
        runner._model = lambda config, session_id, on_notice=None: timed  # the benchmark's clock around the model
        rows: dict[int, dict] = {}

        def observe(event):
            now = time.perf_counter()
            row = rows.setdefault(getattr(event, "step", 0), {"tool": 0.0, "checkpoint": False})
            if event.type == "turn.started":
                row["start"], row["model_before"] = now, timed.spent
            elif event.type == "tool.finished":
                row["tool"] += event.duration_ms / 1000
            elif event.type == "checkpoint":
                row["checkpoint"] = True
            elif event.type == "turn.completed":
                row["wall"] = now - row["start"]
                row["model"] = timed.spent - row["model_before"]

        started = time.perf_counter()
        # stuck_steps: past step 120 the scripted edits repeat and fail; the run must not be
        # stopped as stuck, since what is measured is the loop's own work per step
        outcome = runner.run_task("benchmark", Config(model="scripted:bench", sandbox="off", stuck_steps=10**6), repo=repo, subscribers=[observe])
        total = time.perf_counter() - started
        runner._model = original
    if outcome.result.status != "finished":
        print(f"run did not finish: {outcome.result.status}: {outcome.result.summary}", file=sys.stderr)
        return 1
    overhead = {step: (r["wall"] - r["model"] - r["tool"]) * 1000 for step, r in rows.items() if "wall" in r}
    plain = [v for s, v in overhead.items() if not rows[s]["checkpoint"]]
    commits = [v for s, v in overhead.items() if rows[s]["checkpoint"]]
    values = list(overhead.values())
    print(f"steps: {len(values)}  total: {total:.2f}s  ({total / len(values) * 1000:.1f} ms/step including tools)")
    print(f"kcode overhead per step: median {statistics.median(values):.2f} ms, p95 {percentile(values, 0.95):.2f} ms  (target: median < 20 ms)")
    print(f"  steps without a checkpoint ({len(plain)}): median {statistics.median(plain):.2f} ms, p95 {percentile(plain, 0.95):.2f} ms")
    if commits:
        print(f"  steps with a checkpoint commit ({len(commits)}): median {statistics.median(commits):.2f} ms, p95 {percentile(commits, 0.95):.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
