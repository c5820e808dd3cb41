"""A 4,000-step scripted run in one agent (Kimi K2.6's coordinated-step ceiling).

Prints: total time; kcode's own per-step overhead (step wall time − model − tools) around
step 100 and around the last step — it must stay flat, because compaction bounds the prompt;
the conversation size at those points; peak RSS growth (target < 100 MB); open file
descriptors at the end vs the start (must be equal).

    python evals/perf/soak.py [--steps 4000] [--ctx 32768]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loop_overhead import TimedModel, make_repo, make_turns  # noqa: E402


def window_median(values: dict[int, float], center: int, half: int = 50) -> float:
    picked = [v for step, v in values.items() if center - half <= step <= center + half]
    return statistics.median(picked) if picked else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--ctx", type=int, default=32768, help="the scripted model's window (small, so compaction runs)")
    args = parser.parse_args()
    process = psutil.Process()
    with tempfile.TemporaryDirectory(prefix="kcode-soak-") as tmp:
        os.environ["KCODE_HOME"] = str(Path(tmp) / "home")
        from kcode.agent import runner
        from kcode.config import Config
        from kcode.llm.scripted import ScriptedModel

        repo = make_repo(Path(tmp))
        script = Path(tmp) / "script.json"
        script.write_text(json.dumps({"turns": make_turns(args.steps)}))
        timed = TimedModel(ScriptedModel.from_file(script, context_window=args.ctx))
        runner._model = lambda config, session_id, on_notice=None: timed
        fds_start = process.num_fds()
        rss_start = process.memory_info().rss
        rows: dict[int, dict] = {}
        peak = {"rss": rss_start}
        compactions: list[tuple[int, str, int, int]] = []

        def observe(event):
            now = time.perf_counter()
            row = rows.setdefault(getattr(event, "step", 0), {"tool": 0.0})
            if event.type == "turn.started":
                row["start"], row["model_before"] = now, timed.spent
            elif event.type == "tool.finished":
                row["tool"] += event.duration_ms / 1000
            elif event.type == "compaction":
                compactions.append((event.step, event.strategy, event.tokens_before, event.tokens_after))
            elif event.type == "turn.completed":
                row["wall"] = now - row["start"]
                row["model"] = timed.spent - row["model_before"]
                if event.step % 50 == 0:
                    peak["rss"] = max(peak["rss"], process.memory_info().rss)

        started = time.perf_counter()
        outcome = runner.run_task("soak", Config(model="scripted:soak", pack="none", stuck_steps=10**6, max_steps=args.steps + 10), repo=repo, subscribers=[observe])
        total = time.perf_counter() - started
        peak["rss"] = max(peak["rss"], process.memory_info().rss)
        fds_end = process.num_fds()
    if outcome.result.status != "finished":
        print(f"run did not finish: {outcome.result.status}: {outcome.result.summary}", file=sys.stderr)
        return 1
    overhead = {s: (r["wall"] - r["model"] - r["tool"]) * 1000 for s, r in rows.items() if "wall" in r}
    early, late = window_median(overhead, 100), window_median(overhead, args.steps - 50)
    print(f"steps: {outcome.result.steps}  total: {total:.1f}s  ({total / outcome.result.steps * 1000:.1f} ms/step including tools)")
    print(f"kcode overhead per step, median of 100 steps: around step 100 {early:.2f} ms, around step {args.steps - 50} {late:.2f} ms  (ratio {late / early:.2f}; flat = 1)")
    print(f"compactions: {len(compactions)} ({', '.join(sorted({c[1] for c in compactions}))}); last: step {compactions[-1][0]}, {compactions[-1][2]} → {compactions[-1][3]} tokens" if compactions else "compactions: 0")
    print(f"peak RSS growth: {(peak['rss'] - rss_start) / 2**20:.1f} MB  (target < 100 MB)")
    print(f"open file descriptors: start {fds_start}, end {fds_end}  ({'equal' if fds_start == fds_end else 'LEAK'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
