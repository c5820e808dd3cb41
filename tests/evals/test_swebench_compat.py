"""The official swebench package, reused without Docker: what is loaded, the specs, the test
directives; the predictions and report schemas; finding interpreters."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kcode.evals import envs, swebench_compat
from kcode.evals.dataset import Instance
from kcode.evals.schemas import PredictionsError, load_predictions

pytestmark = pytest.mark.skipif(importlib.util.find_spec("swebench") is None, reason="swebench==4.1.0 is not installed (pip install -e '.[eval]')")
ROOT = Path(__file__).resolve().parents[2]


def verified_like(repo: str, version: str, test_patch: str = "") -> Instance:
    return Instance(instance_id="x__y-1", repo=repo, base_commit="0" * 40, problem_statement="p", version=version, test_patch=test_patch)


def test_grading_never_imports_docker_modal_or_datasets(tmp_path: Path) -> None:
    # a real grade of a real patch in a subprocess, then a look at sys.modules
    script = f"""
import sys, json
sys.path.insert(0, {str(ROOT)!r})
from pathlib import Path
from tests.evals.grading_fixture import Tiny, skip_unless_ready
from kcode.evals import grade
tiny = Tiny(Path({str(tmp_path)!r}))
tiny.prepare_env(tiny.instance())
result = grade.grade_one(tiny.instance(), tiny.gold, Path({str(tmp_path / "out")!r}), cache_dir=tiny.cache, repos_dir=tiny.repos)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("docker", "modal", "datasets", "requests"))
swebench = sorted(m for m in sys.modules if m.startswith("swebench"))
print(json.dumps({{"resolved": result.resolved, "error": result.error, "heavy": heavy, "swebench": swebench}}))
"""
    from tests.evals.grading_fixture import skip_unless_ready

    skip_unless_ready()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["resolved"] is True, seen
    assert seen["heavy"] == []
    assert "swebench.harness.grading" in seen["swebench"] and "swebench.harness.log_parsers.python" in seen["swebench"]
    assert "swebench.harness.docker_build" not in seen["swebench"] and "swebench.harness.run_evaluation" not in seen["swebench"]


def test_the_official_spec_of_a_pip_only_repository() -> None:
    spec = swebench_compat.repo_spec(verified_like("pytest-dev/pytest", "5.4"))
    assert spec.official and spec.python == "3.9" and spec.test_cmd == "pytest -rA"
    assert "pluggy==0.13.1" in spec.packages and spec.install == "python -m pip install -e ."
    assert spec.env_key == "pytest-dev__pytest-5.4"
    assert spec.parser is swebench_compat.official().parsers["pytest-dev/pytest"]


def test_unsupported_instances_say_why() -> None:
    with pytest.raises(swebench_compat.UnsupportedInstance, match="conda environment.yml"):
        swebench_compat.repo_spec(verified_like("pydata/xarray", "2022.06"))
    with pytest.raises(swebench_compat.UnsupportedInstance, match="apt-get"):
        swebench_compat.repo_spec(verified_like("sphinx-doc/sphinx", "7.2"))
    with pytest.raises(swebench_compat.UnsupportedInstance, match="no official spec for version '0.0'"):
        swebench_compat.repo_spec(verified_like("psf/requests", "0.0"))


def test_an_unknown_repository_takes_its_overrides() -> None:
    inst = verified_like("pypi/tiny", "1.0")
    inst.overrides = {"python": "3.12", "packages": ["pytest==8.3.3"], "install": "pip install -e .", "test_cmd": "python -m pytest -rA"}
    spec = swebench_compat.repo_spec(inst)
    assert (spec.python, spec.packages, spec.install, spec.test_cmd, spec.official) == ("3.12", ["pytest==8.3.3"], "pip install -e .", "python -m pytest -rA", False)
    status = swebench_compat.parse_test_output(inst, spec, "PASSED t.py::a\nFAILED t.py::b - boom\n")
    assert status == {"t.py::a": "PASSED", "t.py::b": "FAILED"}


def test_test_directives_follow_the_official_rule() -> None:
    patch = "diff --git a/tests/test_a.py b/tests/test_a.py\n--- a/x\n+++ b/x\ndiff --git a/tests/data.json b/tests/data.json\n"
    assert swebench_compat.test_directives(verified_like("psf/requests", "2.26", patch)) == ["tests/test_a.py"]
    django = "diff --git a/tests/auth_tests/test_views.py b/tests/auth_tests/test_views.py\n"
    assert swebench_compat.test_directives(verified_like("django/django", "4.0", django)) == ["auth_tests.test_views"]


def test_modified_files_leave_out_new_files() -> None:
    patch = (
        "diff --git a/a.py b/a.py\nindex 1..2 100644\n--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-x\n+y\n"
        "diff --git a/new.py b/new.py\nnew file mode 100644\n--- /dev/null\n+++ b/new.py\n@@ -0,0 +1 @@\n+z\n"
    )
    assert swebench_compat.modified_files(patch) == ["a.py"]


def test_resolution_uses_the_official_rules() -> None:
    inst = verified_like("psf/requests", "2.26")
    inst.fail_to_pass, inst.pass_to_pass = ["t::a"], ["t::b"]
    assert swebench_compat.tests_report(inst, {"t::a": "PASSED", "t::b": "PASSED"})[1] is True
    assert swebench_compat.tests_report(inst, {"t::a": "XFAIL", "t::b": "PASSED"})[1] is True
    assert swebench_compat.tests_report(inst, {"t::a": "PASSED", "t::b": "FAILED"})[1] is False
    report, resolved = swebench_compat.tests_report(inst, {"t::b": "PASSED"})
    assert not resolved and report["FAIL_TO_PASS"] == {"success": [], "failure": ["t::a"]}


def test_predictions_are_schema_checked(tmp_path: Path) -> None:
    good = tmp_path / "preds.jsonl"
    good.write_text(json.dumps({"instance_id": "a", "model_name_or_path": "m", "model_patch": "diff"}) + "\n\n"
                    + json.dumps({"instance_id": "b", "model_name_or_path": "m", "model_patch": None}) + "\n")
    assert load_predictions(good) == {"a": "diff", "b": ""}
    as_map = tmp_path / "preds.json"
    as_map.write_text(json.dumps({"a": {"model_name_or_path": "m", "model_patch": "d"}}))
    assert load_predictions(as_map) == {"a": "d"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"instance_id": "a", "model_patch": "d"}) + "\n" + json.dumps({"instance_id": "b", "model_patch": 3}) + "\n")
    with pytest.raises(PredictionsError, match="bad.jsonl line 2: 3 is not of type"):
        load_predictions(bad)
    missing = tmp_path / "missing.jsonl"
    missing.write_text(json.dumps({"instance_id": "a"}) + "\n")
    with pytest.raises(PredictionsError, match="'model_patch' is a required property"):
        load_predictions(missing)
    dup = tmp_path / "dup.jsonl"
    dup.write_text((json.dumps({"instance_id": "a", "model_patch": ""}) + "\n") * 2)
    with pytest.raises(PredictionsError, match="duplicate instance_id a"):
        load_predictions(dup)
    (tmp_path / "preds.txt").write_text("")
    with pytest.raises(PredictionsError, match="must be .jsonl or .json"):
        load_predictions(tmp_path / "preds.txt")


def test_a_missing_python_is_a_clear_error_naming_it() -> None:
    with pytest.raises(envs.PythonNotFound, match=r"python 2\.1 not available"):
        envs.find_python("2.1")
    with pytest.raises(envs.PythonNotFound, match="must look like 3.9"):
        envs.find_python("three")
    found = envs.find_python(f"{sys.version_info[0]}.{sys.version_info[1]}")
    assert found.is_file()


def test_the_official_install_becomes_offline(tmp_path: Path) -> None:
    env = envs.Env("k", tmp_path)
    assert envs.offline_install("python -m pip install -e .[test]", env) == (
        f"python -m pip install --disable-pip-version-check -q --no-index --find-links {tmp_path / 'wheels'} --no-deps -e .[test]"
    )
    assert envs.offline_install("python setup.py develop", env) == "python setup.py develop"
