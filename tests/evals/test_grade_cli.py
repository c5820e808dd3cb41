"""``kcode eval grade`` through the real command line (a subprocess): predictions files, gold
and empty, the summary line and exit codes, clear usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kcode.evals.dataset import instance_to_row
from tests.evals.grading_fixture import Tiny, skip_unless_ready

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    skip_unless_ready()
    home = tmp_path_factory.mktemp("home")
    tiny = Tiny(home / "lib")
    tiny.cache = home / "cache"  # KCODE_HOME/cache: where the command looks for environments
    tiny.prepare_env(tiny.instance())
    dataset = home / "tiny.jsonl"
    rows = [instance_to_row(tiny.instance("pypi__tiny-001")), instance_to_row(tiny.instance("pypi__tiny-002"))]
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return home, tiny, dataset


def kcode(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KCODE_HOME": str(home), "PYTHONPATH": str(ROOT), "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "kcode", "eval", "grade", *args], cwd=home, env=env, capture_output=True, text=True, timeout=600)


def test_predictions_file_graded_through_the_command(setup) -> None:
    home, tiny, dataset = setup
    preds = home / "preds.jsonl"
    preds.write_text(
        json.dumps({"instance_id": "pypi__tiny-001", "model_name_or_path": "m", "model_patch": tiny.gold}) + "\n"
        + json.dumps({"instance_id": "pypi__tiny-002", "model_name_or_path": "m", "model_patch": tiny.gold.replace("a + b", "b - a")}) + "\n"
    )
    done = kcode(home, "--dataset", str(dataset), "--predictions", str(preds), "-w", "2", "--repos", str(tiny.repos), "--out", "out", "--run-id", "r1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "kcode eval grade: 1/2 resolved, 1 unresolved, 0 empty, 0 errors" in done.stdout
    summary = json.loads((home / "out" / "r1.json").read_text())
    assert summary["resolved_ids"] == ["pypi__tiny-001"] and summary["schema_version"] == 2
    assert json.loads((home / "out" / "pypi__tiny-002" / "report.json").read_text())["pypi__tiny-002"]["resolved"] is False


def test_gold_and_empty_and_one_instance(setup) -> None:
    home, tiny, dataset = setup
    gold = kcode(home, "--dataset", str(dataset), "--predictions", "gold", "--instances", "pypi__tiny-002", "--repos", str(tiny.repos), "--out", "g")
    assert gold.returncode == 0 and "1/1 resolved" in gold.stdout, gold.stdout + gold.stderr
    empty = kcode(home, "--dataset", str(dataset), "--predictions", "empty", "--repos", str(tiny.repos), "--out", "e")
    assert empty.returncode == 0 and "0/2 resolved, 0 unresolved, 2 empty" in empty.stdout


def test_usage_errors_are_clear(setup) -> None:
    home, tiny, dataset = setup
    bad = home / "bad.jsonl"
    bad.write_text('{"instance_id": "pypi__tiny-001"}\n')
    done = kcode(home, "--dataset", str(dataset), "--predictions", str(bad))
    assert done.returncode == 2 and "bad.jsonl line 1: 'model_patch' is a required property" in done.stderr
    done = kcode(home, "--dataset", str(dataset), "--predictions", "gold", "--instances", "nope")
    assert done.returncode == 2 and "unknown instances: nope" in done.stderr
    done = kcode(home, "--dataset", str(home / "missing.jsonl"), "--predictions", "gold")
    assert done.returncode == 2 and "no such dataset file" in done.stderr


def test_the_docker_harness_needs_the_official_one(setup) -> None:
    import importlib.util

    if importlib.util.find_spec("docker") is not None:
        pytest.skip("docker is installed here: the hand-over would really start the official harness")
    home, _, dataset = setup
    done = kcode(home, "--dataset", str(dataset), "--predictions", "gold", "--harness", "docker")
    assert done.returncode == 2 and "--harness docker needs the official harness" in done.stderr and "missing: docker" in done.stderr
    done = kcode(home, "--dataset", str(dataset), "--predictions", "gold", "--harness", "podman")
    assert done.returncode == 2 and "--harness must be local, docker or modal" in done.stderr
