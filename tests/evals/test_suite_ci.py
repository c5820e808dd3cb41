"""The built-in suite, on a fast subset (2 libraries, 4 tasks), built from PyPI as CI does:
gold resolves 100 %, empty 0 %. Skipped, with the reason, when PyPI cannot be reached."""

from __future__ import annotations

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
