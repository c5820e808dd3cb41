"""Grading without Docker on a real library: real git, a real venv, the real sandbox, the
official parser and resolution rules. Each case is what a model's patch can do."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from kcode.evals import grade as grading
from kcode.evals.schemas import INSTANCE_REPORT_SCHEMA, RUN_SUMMARY_SCHEMA
from tests.evals.grading_fixture import BUG, LIB, TESTS, Tiny, skip_unless_ready


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    skip_unless_ready()
    lib = Tiny(tmp_path_factory.mktemp("tiny"))
    lib.prepare_env(lib.instance())
    return lib


def run(tiny: Tiny, patch: str | None, out: Path, **changes) -> grading.InstanceReport:
    inst = tiny.instance(**changes)
    return grading.grade_one(inst, patch, out, cache_dir=tiny.cache, repos_dir=tiny.repos, timeout=60)


def test_gold_resolves_and_the_report_is_the_official_schema(tiny: Tiny, tmp_path: Path) -> None:
    result = run(tiny, tiny.gold, tmp_path)
    assert result.resolved and result.error is None and result.reason is None
    report = json.loads((tmp_path / "pypi__tiny-001" / "report.json").read_text())
    jsonschema.validate(report, INSTANCE_REPORT_SCHEMA)
    body = report["pypi__tiny-001"]
    assert body["patch_successfully_applied"] and body["resolved"]
    assert body["tests_status"]["FAIL_TO_PASS"] == {"success": ["tests/test_tiny.py::test_add"], "failure": []}
    output = (tmp_path / "pypi__tiny-001" / "test_output.txt").read_text()
    assert ">>>>> Start Test Output " in output and "PASSED tests/test_tiny.py::test_add" in output


def test_the_bug_itself_is_unresolved(tiny: Tiny, tmp_path: Path) -> None:
    result = run(tiny, tiny.patch({"tiny.py": BUG.replace("return sum(values)", "return 0 + sum(values)")}), tmp_path)
    assert not result.resolved and result.error is None
    status = result.report["pypi__tiny-001"]["tests_status"]
    assert status["FAIL_TO_PASS"]["failure"] == ["tests/test_tiny.py::test_add"]


def test_an_empty_patch_is_never_run(tiny: Tiny, tmp_path: Path) -> None:
    result = run(tiny, "", tmp_path)
    assert not result.resolved and result.error == "empty patch (not run)"
    assert not (tmp_path / "pypi__tiny-001" / "test_output.txt").exists()
    assert result.report["pypi__tiny-001"]["patch_successfully_applied"] is False


def test_a_patch_that_does_not_apply_is_an_error(tiny: Tiny, tmp_path: Path) -> None:
    patch = tiny.gold.replace("-    return a - b", "-    return a * b")
    result = run(tiny, patch, tmp_path)
    assert result.error == "patch does not apply" and not result.resolved
    log = (tmp_path / "pypi__tiny-001" / "run_instance.log").read_text()
    assert "git apply --verbose --reject" in log and "patch --batch --fuzz=5 -p1 -i" in log


def test_a_patch_applied_by_the_fuzzy_fallback_counts(tiny: Tiny, tmp_path: Path) -> None:
    # the context line is off by a word: git apply refuses it, GNU patch's fuzz applies it
    patch = tiny.gold.replace(" def add(a, b):", " def add(a, c):")
    result = run(tiny, patch, tmp_path)
    assert result.resolved, (tmp_path / "pypi__tiny-001" / "run_instance.log").read_text()[-2000:]
    assert "(patch --batch --fuzz=5 -p1 -i)" in (tmp_path / "pypi__tiny-001" / "run_instance.log").read_text()


def test_tests_that_hang_time_out(tiny: Tiny, tmp_path: Path) -> None:
    hang = LIB.replace("return a + b", "import time\n    time.sleep(3600)\n    return a + b")
    inst = tiny.instance(overrides={**tiny.instance().overrides, "timeout": 5})
    result = grading.grade_one(inst, tiny.patch({"tiny.py": hang}), tmp_path, cache_dir=tiny.cache, repos_dir=tiny.repos)
    assert result.error == "tests timed out after 5s" and not result.resolved
    assert result.seconds < 60


def test_a_conftest_that_fakes_passes_is_rejected(tiny: Tiny, tmp_path: Path) -> None:
    fake = (
        "import pytest\n\n\n@pytest.hookimpl(hookwrapper=True)\ndef pytest_runtest_makereport(item, call):\n"
        "    outcome = yield\n    report = outcome.get_result()\n    report.outcome = 'passed'\n"
    )
    result = run(tiny, tiny.patch({"tests/conftest.py": fake}), tmp_path)
    assert not result.resolved and "conftest.py" in result.reason
    assert result.error is None  # graded: unresolved, with the reason


def test_a_tampered_test_file_is_rejected(tiny: Tiny, tmp_path: Path) -> None:
    tampered = TESTS.replace("assert add(2, 3) == 5", "assert True")
    result = run(tiny, tiny.patch({"tests/test_tiny.py": tampered}), tmp_path)
    assert not result.resolved and "tests/test_tiny.py" in result.reason


def test_pytest_configuration_in_the_patch_is_rejected(tiny: Tiny, tmp_path: Path) -> None:
    config = "[tool.pytest.ini_options]\npythonpath = ['.']\naddopts = '-p no:python'\n"
    result = run(tiny, tiny.patch({"pyproject.toml": config, "tiny.py": LIB}), tmp_path)
    assert not result.resolved and "pytest configuration" in result.reason


def test_printed_markers_and_pass_lines_do_not_count(tiny: Tiny, tmp_path: Path) -> None:
    # the library prints a fake end marker and fake PASSED lines straight to the terminal's
    # fd, then ends the process with exit code 0 before pytest can report anything
    spoof = (
        "import os\n"
        "os.write(1, b'>>>>> End Test Output\\nPASSED tests/test_tiny.py::test_add\\n"
        "PASSED tests/test_tiny.py::test_add_zero\\nPASSED tests/test_tiny.py::test_mean\\n"
        "============ 3 passed in 0.01s ============\\n')\n"
        "os._exit(0)\n\n" + LIB.replace("return a + b", "return a - b")
    )
    result = run(tiny, tiny.patch({"tiny.py": spoof}), tmp_path)
    assert not result.resolved and "did not finish" in result.reason
    assert result.report["pypi__tiny-001"]["tests_status"]["FAIL_TO_PASS"]["failure"] == ["tests/test_tiny.py::test_add"]


def test_an_exit_code_that_contradicts_the_output_is_unresolved(tiny: Tiny, tmp_path: Path) -> None:
    # every test passes, then the library's atexit hook prints PASSED lines and exits 1
    spoof = "import atexit, os\natexit.register(lambda: os._exit(1))\n\n" + LIB
    result = run(tiny, tiny.patch({"tiny.py": spoof}), tmp_path)
    assert not result.resolved and "exited 1" in result.reason


def test_missing_tests_count_as_failures(tiny: Tiny, tmp_path: Path) -> None:
    result = run(tiny, tiny.gold, tmp_path, fail_to_pass=["tests/test_tiny.py::test_add", "tests/test_tiny.py::test_gone"])
    assert not result.resolved
    assert result.report["pypi__tiny-001"]["tests_status"]["FAIL_TO_PASS"]["failure"] == ["tests/test_tiny.py::test_gone"]


def test_no_test_files_is_an_error(tiny: Tiny, tmp_path: Path) -> None:
    inst = tiny.instance(overrides={k: v for k, v in tiny.instance().overrides.items() if k != "test_files"})
    result = grading.grade_one(inst, tiny.gold, tmp_path, cache_dir=tiny.cache, repos_dir=tiny.repos)
    assert result.error.startswith("no test files to run")


def test_grade_writes_the_official_summary_and_reuses_the_env(tiny: Tiny, tmp_path: Path) -> None:
    instances = [tiny.instance("pypi__tiny-001"), tiny.instance("pypi__tiny-002"), tiny.instance("pypi__tiny-003")]
    predictions = {"pypi__tiny-001": tiny.gold, "pypi__tiny-002": "", "pypi__tiny-003": tiny.gold.replace("a + b", "a * b")}
    summary = grading.grade(instances, predictions, tmp_path, workers=2, run_id="t", cache_dir=tiny.cache, repos_dir=tiny.repos)
    jsonschema.validate(summary, RUN_SUMMARY_SCHEMA)
    assert json.loads((tmp_path / "t.json").read_text())["resolved_ids"] == ["pypi__tiny-001"]
    assert summary["empty_patch_ids"] == ["pypi__tiny-002"] and summary["unresolved_ids"] == ["pypi__tiny-003"]
    assert summary["error_ids"] == [] and summary["completed_instances"] == 2
    # two workers, one env: graded in turn under its lock, built never (the fixture built it)
    assert summary["kcode"]["env_cache"] == {"built": 0, "reused": 2, "envs": ["pypi__tiny-1.0"]}


def test_gold_and_empty_predictions(tiny: Tiny, tmp_path: Path) -> None:
    instances = [tiny.instance("pypi__tiny-001")]
    gold = grading.grade(instances, "gold", tmp_path / "gold", cache_dir=tiny.cache, repos_dir=tiny.repos)
    empty = grading.grade(instances, "empty", tmp_path / "empty", cache_dir=tiny.cache, repos_dir=tiny.repos)
    assert gold["resolved_ids"] == ["pypi__tiny-001"]
    assert empty["resolved_instances"] == 0 and empty["empty_patch_ids"] == ["pypi__tiny-001"]
    with pytest.raises(grading.GradeError, match="must be a mapping"):
        grading.grade(instances, "golden", tmp_path / "x")
