"""An eval fixture: a mirror folder holding one small repository with three bugs (one base
commit each), a dataset of three instances in the official schema, and per-instance scripts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import CALC_BUGGY, CALC_TESTS, git

# (instance, buggy source, the edit that fixes it)
BUGS = {
    "acme__calc-1": (CALC_BUGGY, ("return a - b", "return a + b")),
    "acme__calc-2": (CALC_BUGGY.replace("return a - b", "return a + b").replace("return a * b", "return a ** b"), ("return a ** b", "return a * b")),
    "acme__calc-3": (CALC_BUGGY.replace("return a * b", "return a * b + 0"), ("return a - b", "return a + b")),
}


@pytest.fixture
def eval_fixture(tmp_path: Path):
    """(mirrors dir, dataset path, scripts dir): acme/calc with a clean commit, then one
    commit per bug on its own branch; a newer "fix" commit on main the checkouts must hide."""
    repo = tmp_path / "mirrors" / "acme__calc"
    (repo / "calc").mkdir(parents=True)
    (repo / "tests").mkdir()
    (repo / "tests" / "test_calc.py").write_text(CALC_TESTS)
    (repo / "pyproject.toml").write_text("[tool.pytest.ini_options]\npythonpath = ['.']\n")
    (repo / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n")
    (repo / "calc" / "__init__.py").write_text("def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "clean")
    rows = []
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    for iid, (source, (old, new)) in BUGS.items():
        git(repo, "checkout", "-q", "-b", iid, "main")
        (repo / "calc" / "__init__.py").write_text(source)
        git(repo, "commit", "-qam", f"bug {iid}")
        base = git(repo, "rev-parse", "HEAD").strip()
        rows.append({"instance_id": iid, "repo": "acme/calc", "base_commit": base, "version": "1.0",
                     "problem_statement": f"calc is wrong ({iid}): 2 and 3 do not give what the docs say.",
                     "patch": "", "test_patch": "", "FAIL_TO_PASS": "[]", "PASS_TO_PASS": "[]"})
        turns = [
            {"tool_calls": [{"name": "read_file", "arguments": {"path": "calc/__init__.py"}}]},
            {"tool_calls": [{"name": "edit_file", "arguments": {"path": "calc/__init__.py", "old": old, "new": new}}]},
            {"tool_calls": [{"name": "finish", "arguments": {"summary": "fixed"}}]},
        ]
        (scripts / f"{iid}.json").write_text(json.dumps({"turns": turns}))
    git(repo, "checkout", "-q", "main")
    (repo / "FUTURE.txt").write_text("the fix for everything\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "the future fix")
    git(repo, "tag", "v9")
    dataset = tmp_path / "calc.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return repo.parent, dataset, scripts
