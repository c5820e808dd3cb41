"""``kcode run --ci`` end to end: the real executable, a scripted model, real git and
bubblewrap. The artifacts are present and valid, the step summary is written, the exit codes
are the documented ones, and an unsandboxed run is refused unless asked for on the command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.conftest import FIX_TURNS, write_script


def _bwrap_usable() -> bool:
    from kcode.sandbox.probe import probe_bubblewrap

    return probe_bubblewrap().usable


needs_bwrap = pytest.mark.skipif(not _bwrap_usable(), reason="bubblewrap cannot sandbox here")


@needs_bwrap
def test_ci_run_writes_artifacts_and_step_summary(kcode, calc_repo, fix_script, tmp_path):
    summary = tmp_path / "step-summary.md"
    summary.write_text("# earlier step\n")
    out = tmp_path / "artifacts"
    proc = kcode("run", "--ci", "Fix the failing test", "--model", f"scripted:{fix_script}", "--artifacts", str(out), cwd=calc_repo,
                 env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["events.jsonl", "patch.diff", "result.json", "summary.md"]
    result = json.loads((out / "result.json").read_text())
    assert result["schema_version"] == 1 and result["status"] == "finished" and result["exit_code"] == 0
    assert result["steps"] == 5 and result["tests"]["ok"] is True and result["tests"]["passed"] == 2
    assert [f["path"] for f in result["changed_files"]] == ["calc/__init__.py"]
    patch = (out / "patch.diff").read_text()
    assert "-    return a - b" in patch and "+    return a + b" in patch
    # the patch applies to the user's checkout as it was
    check = subprocess.run(["git", "apply", "--check", str(out / "patch.diff")], cwd=calc_repo, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert events[0]["type"] == "session.started" and any(e["type"] == "session.finished" for e in events)
    md = (out / "summary.md").read_text()
    assert md.startswith("## kcode: finished ✅") and "**Tests:** passing: 2 passed, 0 failed" in md and "calc/__init__.py" in md
    # appended to the step summary, after what was there
    assert summary.read_text() == "# earlier step\n" + md


@needs_bwrap
def test_ci_budget_exit_code_and_stream_json(kcode, calc_repo, tmp_path):
    script = write_script(tmp_path / "slow.json", FIX_TURNS[:3])
    out = tmp_path / "a"
    proc = kcode("run", "--ci", "Fix it", "--model", f"scripted:{script}", "--max-steps", "2", "--artifacts", str(out),
                 "--output-format", "stream-json", cwd=calc_repo)
    assert proc.returncode == 3, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert lines and all("type" in e for e in lines)
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "budget_exhausted" and result["exit_code"] == 3
    assert "## kcode: budget exhausted" in (out / "summary.md").read_text()


def test_ci_refuses_to_run_unsandboxed(kcode, calc_repo, fix_script, tmp_path):
    # the configuration (here the environment) turning the sandbox off is not enough
    proc = kcode("run", "--ci", "Fix it", "--model", f"scripted:{fix_script}", cwd=calc_repo, env={"KCODE_SANDBOX": "off"})
    assert proc.returncode == 2
    assert "--ci refuses to run without a sandbox" in proc.stderr and "--sandbox off" in proc.stderr
    # no bubblewrap on PATH: refused, with the fix
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git", "python3", "sh", "env"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    no_bwrap = kcode("run", "--ci", "Fix it", "--model", f"scripted:{fix_script}", cwd=calc_repo, env={"PATH": str(bin_dir)})
    assert no_bwrap.returncode == 2
    assert "bubblewrap (bwrap) is not installed" in no_bwrap.stderr and "apt-get install -y bubblewrap" in no_bwrap.stderr
    # the command line saying --sandbox off is the author's explicit choice
    off = kcode("run", "--ci", "Fix it", "--model", f"scripted:{fix_script}", "--sandbox", "off", "--artifacts", str(tmp_path / "a"),
                cwd=calc_repo, env={"PATH": str(bin_dir)})
    assert off.returncode == 0, off.stderr
    assert json.loads((tmp_path / "a" / "result.json").read_text())["status"] == "finished"
