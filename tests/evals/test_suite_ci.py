"""The built-in suite, on a fast subset (2 libraries, 4 tasks), built from PyPI as CI does:
gold resolves 100 %, empty 0 %. Skipped, with the reason, when PyPI cannot be reached."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kcode.evals import suite
from kcode.evals.dataset import load_dataset
from kcode.evals.grade import grade

PREFERRED = ["idna", "inflection", "cachetools", "toolz", "parse"]


def suite_dir() -> Path:
    from kcode.resources import resource_dir

    return resource_dir("evals") / "suites" / "pypi-bugs"


def pypi_reachable() -> str | None:
    import httpx

    try:
        httpx.head("https://files.pythonhosted.org/", timeout=5, follow_redirects=True)
        httpx.head("https://pypi.org/simple/pip/", timeout=5, follow_redirects=True)
    except httpx.HTTPError as exc:
        return f"PyPI is unreachable ({type(exc).__name__}): the suite's sdists and test packages come from there"
    return None


@pytest.mark.slow
def test_a_fast_subset_builds_and_gold_resolves_all_and_empty_none(tmp_path: Path) -> None:
    if not (suite_dir() / "tasks.toml").is_file():
        pytest.skip("evals/suites/pypi-bugs/ is not in this checkout")
    why = pypi_reachable()
    if why:
        pytest.skip(why)
    from tests.evals.grading_fixture import skip_unless_ready

    skip_unless_ready(host_pytest=False)
    libraries, tasks = suite.load_suite(suite_dir())
    chosen = [name for name in PREFERRED if name in libraries][:2]
    picked = [t.instance_id for name in chosen for t in [t for t in tasks if t.library == name][:2]]
    assert len(picked) >= 3, f"the subset is too small: {picked}"
    out = tmp_path / "subset.jsonl"
    built = suite.build_suite(suite_dir(), out, repos_dir=tmp_path / "repos", cache_dir=tmp_path / "cache", task_ids=picked, workers=2)
    assert built["failed"] == {} and built["instances"] == len(picked)
    instances = load_dataset(out)
    assert all(i.fail_to_pass for i in instances)
    gold = grade(instances, "gold", tmp_path / "gold", workers=2, cache_dir=tmp_path / "cache", repos_dir=tmp_path / "repos")
    empty = grade(instances, "empty", tmp_path / "empty", workers=2, cache_dir=tmp_path / "cache", repos_dir=tmp_path / "repos")
    assert gold["resolved_ids"] == sorted(picked), gold["kcode"]
    assert empty["resolved_instances"] == 0 and empty["empty_patch_ids"] == sorted(picked)
    # the built suite matches the committed one: same base commits, same test labels
    committed = {i.instance_id: i for i in load_dataset(suite_dir().parent / "pypi-bugs.jsonl")}
    for inst in instances:
        assert inst.base_commit == committed[inst.instance_id].base_commit
        assert inst.fail_to_pass == committed[inst.instance_id].fail_to_pass

    # the agent's environment in an instance's checkout: the project imported from the
    # checkout, its tests runnable, the bug visible (a FAIL_TO_PASS test fails)
    import subprocess

    from kcode.evals.agent_env import prepare_agent_env
    from kcode.evals.repos import checkout

    inst = instances[0]
    repo = checkout(inst, tmp_path / "agent" / "repo", tmp_path / "repos")
    venv, env_root = prepare_agent_env(inst, repo, repos_dir=tmp_path / "repos", cache_dir=tmp_path / "cache")
    assert env_root.parent.name == "envs"
    assert venv == repo / ".venv" and subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout == ""
    test_id = inst.fail_to_pass[0]
    run = subprocess.run([str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", test_id], cwd=repo, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and "1 failed" in run.stdout, run.stdout[-2000:]
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import importlib, sys; m = importlib.import_module(sys.argv[1]); print(m.__file__)",
                            inst.repo.split("/")[1].replace("-", "_")], cwd=tmp_path, capture_output=True, text=True)
    assert where.stdout.startswith(str(repo)), where.stdout + where.stderr
    # a bare `pytest`, with the agent's PATH (.venv/bin first): the same tests, of the checkout
    path = f"{venv / 'bin'}:{os.environ['PATH']}"
    bare = subprocess.run(["pytest", "-q", "-p", "no:cacheprovider", test_id], cwd=repo, capture_output=True, text=True, timeout=300, env={**os.environ, "PATH": path})
    assert bare.returncode == 1 and "1 failed" in bare.stdout, bare.stdout[-2000:] + bare.stderr[-2000:]
