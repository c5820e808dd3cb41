"""What the sandbox costs: added latency per command, and on a 200-test pytest run.

Runs, alternating so machine noise hits both sides alike:
  - ``true`` through the bubblewrap sandbox (``create_sandbox``) and bare (``LocalSandbox``,
    the same process runner without isolation), ``--runs`` times each: median and p95, and
    the median added milliseconds per command (target ≤ 20 ms);
  - ``python -m pytest`` on a throwaway project with 200 trivial tests, ``--suite-runs``
    times each way: median seconds and the ratio (target ≤ 5 % added).

    python evals/perf/sandbox.py [--profile workspace-write] [--runs 50] [--suite-runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEST_FILE = "\n\n".join(f"def test_{n}(tmp_path):\n    assert {n} + 1 == {n + 1}" for n in range(40))


def make_project(root: Path) -> Path:
    project = root / "project"
    (project / "tests").mkdir(parents=True)
    for n in range(5):  # 5 files x 40 tests = 200
        (project / "tests" / f"test_mod{n}.py").write_text(TEST_FILE + "\n")
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    return project


def timed(sandbox, command: str, timeout: float) -> float:
    started = time.perf_counter()
    result = sandbox.run(command, timeout=timeout)
    elapsed = time.perf_counter() - started
    if result.exit_code != 0:
        raise SystemExit(f"{sandbox.name}: {command!r} failed:\n{result.describe()}")
    return elapsed


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="workspace-write")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--suite-runs", type=int, default=5)
    args = parser.parse_args()

    from kcode.sandbox import LocalSandbox, create_sandbox

    with tempfile.TemporaryDirectory(prefix="kcode-perf-sandbox-") as scratch:
        project = make_project(Path(scratch))
        sandboxed = create_sandbox(args.profile, project)
        bare = LocalSandbox(project)
        pytest_cmd = f"{sys.executable} -m pytest -q -p no:cacheprovider tests"

        for runner in (sandboxed, bare):  # warm the page cache and the cgroup probe
            timed(runner, "true", 30)
        true_times: dict[str, list[float]] = {"sandbox": [], "bare": []}
        for _ in range(args.runs):
            true_times["sandbox"].append(timed(sandboxed, "true", 30))
            true_times["bare"].append(timed(bare, "true", 30))

        for runner in (sandboxed, bare):
            timed(runner, pytest_cmd, 600)
        suite_times: dict[str, list[float]] = {"sandbox": [], "bare": []}
        for _ in range(args.suite_runs):
            suite_times["sandbox"].append(timed(sandboxed, pytest_cmd, 600))
            suite_times["bare"].append(timed(bare, pytest_cmd, 600))

    ms = {k: [v * 1000 for v in vs] for k, vs in true_times.items()}
    added = statistics.median(ms["sandbox"]) - statistics.median(ms["bare"])
    suite = {k: statistics.median(vs) for k, vs in suite_times.items()}
    ratio = suite["sandbox"] / suite["bare"]
    print(f"profile {args.profile!r}; `true` x{args.runs}, 200-test pytest x{args.suite_runs}, alternating")
    for kind in ("bare", "sandbox"):
        print(f"  true    {kind:8} median {statistics.median(ms[kind]):6.1f} ms   p95 {p95(ms[kind]):6.1f} ms")
    print(f"  true    added    {added:6.1f} ms per command ({statistics.median(ms['sandbox']) / statistics.median(ms['bare']):.2f}x)  target <= 20 ms: {'OK' if added <= 20 else 'MISSED'}")
    for kind in ("bare", "sandbox"):
        print(f"  pytest  {kind:8} median {suite[kind]:6.2f} s")
    print(f"  pytest  ratio    {ratio:.3f} ({(ratio - 1) * 100:+.1f} %)  target <= 5 %: {'OK' if ratio <= 1.05 else 'MISSED'}")


if __name__ == "__main__":
    main()
