"""One executor interface: local threads and processes, and Ray (a local Ray, slow)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from kcode.errors import UsageError
from kcode.evals.executor import create_executor
from kcode.evals.run import EvalOptions, load_results, run_eval


def _square(x: int) -> tuple[int, int]:
    time.sleep(0.2)
    return x * x, os.getpid()


def _where(_: int) -> str:
    time.sleep(0.3)
    return threading.current_thread().name


def test_threads_bound_concurrency():
    pool = create_executor("local", workers=2)
    try:
        started = time.monotonic()
        names = [f.result() for f in [pool.submit(_where, i) for i in range(4)]]
        took = time.monotonic() - started
    finally:
        pool.shutdown()
    assert pool.kind == "local:threads" and len(set(names)) == 2
    assert 0.55 < took < 1.5  # 4 jobs of 0.3 s, 2 at a time


def test_processes_run_elsewhere():
    pool = create_executor("local:processes", workers=2)
    try:
        results = [f.result() for f in [pool.submit(_square, i) for i in range(3)]]
    finally:
        pool.shutdown()
    assert [r[0] for r in results] == [0, 1, 4] and os.getpid() not in {r[1] for r in results}


def test_unknown_executor_is_a_clear_error():
    with pytest.raises(UsageError, match="unknown executor 'k8s'"):
        create_executor("k8s")
    with pytest.raises(UsageError, match="threads or :processes"):
        create_executor("local:gpu")


@pytest.mark.slow
def test_ray_executor_runs_an_eval(eval_fixture, tmp_path):
    """Three instances as Ray tasks on a local Ray, two at a time."""
    pytest.importorskip("ray")
    from kcode.evals.dataset import load_dataset

    mirrors, dataset, scripts = eval_fixture
    out = tmp_path / "run"
    counts = run_eval(load_dataset(dataset), EvalOptions(str(out), model=f"scripted:{scripts}", repos_dir=str(mirrors), config={"max_steps": 5}),
                      workers=2, executor="ray")
    assert counts["done"] == 3 and counts["failed"] == 0, load_results(out)
    results = load_results(out)
    assert {r["status"] for r in results.values()} == {"finished"}
    assert all(r["patch_lines"] == 2 for r in results.values())
    import json

    assert json.loads((out / "manifest.json").read_text())["executor"] == "ray"
