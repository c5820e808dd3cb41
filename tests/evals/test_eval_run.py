"""`kcode eval run` end to end with a scripted model over three instances: the official
preds.jsonl, a trajectory and result per instance, the manifest; resumable; the report."""

from __future__ import annotations

import json
import subprocess

from kcode.evals.dataset import load_dataset
from kcode.evals.run import EvalOptions, load_results, run_eval


def _preds(out):
    return {p["instance_id"]: p for p in map(json.loads, (out / "preds.jsonl").read_text().splitlines())}


def test_eval_run_three_instances(eval_fixture, kcode, tmp_path):
    mirrors, dataset, scripts = eval_fixture
    out = tmp_path / "run"
    proc = kcode("eval", "run", "--dataset", str(dataset), "--repos", str(mirrors), "--model", f"scripted:{scripts}",
                     "--max-steps", "6", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3/3 done" in proc.stdout
    preds = _preds(out)
    assert sorted(preds) == ["acme__calc-1", "acme__calc-2", "acme__calc-3"]
    for iid, pred in preds.items():
        assert set(pred) == {"instance_id", "model_name_or_path", "model_patch"}
        assert pred["model_name_or_path"] == f"scripted:{scripts}"
        assert pred["model_patch"].startswith("diff --git a/calc/__init__.py b/calc/__init__.py")
        result = json.loads((out / "instances" / iid / "result.json").read_text())
        assert result["status"] == "finished" and result["steps"] == 3 and result["patch_lines"] == 2
        events = [json.loads(line) for line in (out / "instances" / iid / "trajectory.jsonl").read_text().splitlines()]
        assert any(e.get("type") == "tool.finished" or e.get("type", "").startswith("tool") for e in events)
        assert not (out / "work" / iid).exists()  # the checkout is gone once the patch is taken
    assert "+    return a * b" in preds["acme__calc-2"]["model_patch"]
    # the patch is against the base: it can be applied to a fresh base checkout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["instances"] == sorted(preds) and manifest["budgets"]["max_steps"] == 6
    assert len(manifest["dataset"]["sha256"]) == 64 and manifest["executor"] == "local:threads"

    # a second run skips what is done; --redo runs it again
    again = kcode("eval", "run", "--dataset", str(dataset), "--repos", str(mirrors), "--model", f"scripted:{scripts}", "--out", str(out), cwd=tmp_path)
    assert again.returncode == 0 and "(3 done already)" in again.stderr
    before = (out / "instances" / "acme__calc-1" / "result.json").stat().st_mtime_ns
    redo = kcode("eval", "run", "--dataset", str(dataset), "--repos", str(mirrors), "--model", f"scripted:{scripts}", "--out", str(out),
                     "--instances", "acme__calc-1", "--redo", cwd=tmp_path)
    assert redo.returncode == 0, redo.stderr
    assert (out / "instances" / "acme__calc-1" / "result.json").stat().st_mtime_ns != before

    report = kcode("eval", "report", str(out), "--html", str(tmp_path / "r.html"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "acme/calc" in report.stdout and "no change" not in report.stdout
    page = (tmp_path / "r.html").read_text()
    assert "<svg" in page and "acme__calc-1" in page and "<script" not in page


def test_agent_sees_nothing_newer_than_base(eval_fixture, tmp_path):
    """The checkout an instance runs in: no future commit, tag or remote (checked from inside
    a run: the scripted model's bash call lists them into the trajectory)."""
    mirrors, dataset, scripts = eval_fixture
    iid = "acme__calc-1"
    (scripts / f"{iid}.json").write_text(json.dumps({"turns": [
        {"tool_calls": [{"name": "bash", "arguments": {"command": "git log --all --oneline; git tag; git remote; ls"}}]},
        {"tool_calls": [{"name": "finish", "arguments": {"summary": "looked"}}]},
    ]}))
    [inst] = [i for i in load_dataset(dataset) if i.instance_id == iid]
    out = tmp_path / "run"
    counts = run_eval([inst], EvalOptions(str(out), model=f"scripted:{scripts}", repos_dir=str(mirrors), config={"max_steps": 4}))
    assert counts["done"] == 1
    log = (out / "instances" / iid / "trajectory.jsonl").read_text()
    assert "bug acme__calc-1" in log and "clean" in log
    assert "future" not in log and "v9" not in log and "FUTURE.txt" not in log


def test_broken_instance_is_an_error_not_a_crash(eval_fixture, tmp_path):
    mirrors, dataset, scripts = eval_fixture
    insts = load_dataset(dataset)
    insts[0].base_commit = "f" * 40  # not in the mirror
    (scripts / f"{insts[1].instance_id}.json").unlink()  # no script
    out = tmp_path / "run"
    counts = run_eval(insts, EvalOptions(str(out), model=f"scripted:{scripts}", repos_dir=str(mirrors), config={"max_steps": 4}), workers=2)
    results = load_results(out)
    assert counts["done"] == 3 and counts["failed"] == 2
    assert "cannot check out ffffffffffff" in results[insts[0].instance_id]["error"]
    assert "no script" in results[insts[1].instance_id]["error"]
    assert results[insts[2].instance_id]["status"] == "finished"
    preds = _preds(out)
    assert preds[insts[0].instance_id]["model_patch"] == "" and preds[insts[2].instance_id]["model_patch"]


def test_interrupted_run_resumes(eval_fixture, kcode, tmp_path):
    """SIGINT during the second instance: the first stays done, the second leaves no result,
    and the next run does the rest."""
    mirrors, dataset, scripts = eval_fixture
    slow = {"turns": [{"tool_calls": [{"name": "bash", "arguments": {"command": "sleep 30"}}]},
                      {"tool_calls": [{"name": "finish", "arguments": {"summary": "slow"}}]}]}
    (scripts / "acme__calc-2.json").write_text(json.dumps(slow))
    out = tmp_path / "run"
    import os
    import shutil
    import signal
    import time

    env = {**os.environ, "NO_COLOR": "1", "KCODE_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen([shutil.which("kcode"), "eval", "run", "--dataset", str(dataset), "--repos", str(mirrors), "--model", f"scripted:{scripts}",
                             "--out", str(out)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "instances" / "acme__calc-1" / "result.json").exists() or not (out / "instances" / "acme__calc-2").exists():
        assert time.monotonic() < deadline, "the run never reached the second instance"
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    done = load_results(out)
    assert "acme__calc-1" in done and "acme__calc-2" not in done
    assert [json.loads(line)["instance_id"] for line in (out / "preds.jsonl").read_text().splitlines()] == ["acme__calc-1"]
    (scripts / "acme__calc-2.json").write_text(json.dumps({"turns": [{"tool_calls": [{"name": "finish", "arguments": {"summary": "ok"}}]}]}))
    rest = subprocess.run([shutil.which("kcode"), "eval", "run", "--dataset", str(dataset), "--repos", str(mirrors), "--model", f"scripted:{scripts}",
                           "--out", str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert rest.returncode == 0, rest.stderr
    assert "(1 done already)" in rest.stderr
    assert sorted(load_results(out)) == ["acme__calc-1", "acme__calc-2", "acme__calc-3"]


def test_an_empty_patch_is_unresolved_not_failed(eval_fixture, tmp_path):
    """An instance whose agent changed nothing is graded unresolved without running (no
    environment needed), and neither the counts nor the progress line call it failed."""
    mirrors, dataset, scripts = eval_fixture
    insts = load_dataset(dataset)[:1]
    iid = insts[0].instance_id
    (scripts / f"{iid}.json").write_text(json.dumps({"turns": [
        {"tool_calls": [{"name": "read_file", "arguments": {"path": "calc/__init__.py"}}]},
        {"tool_calls": [{"name": "finish", "arguments": {"summary": "nothing to do"}}]},
        {"tool_calls": [{"name": "finish", "arguments": {"summary": "nothing to do"}}]},
    ]}))
    out = tmp_path / "run"
    seen = []
    counts = run_eval(insts, EvalOptions(str(out), model=f"scripted:{scripts}", repos_dir=str(mirrors), grade=True,
                                         config={"max_steps": 4}), on_result=lambda result, done, total: seen.append(result))
    result = load_results(out)[iid]
    assert result["patch_lines"] == 0 and result["resolved"] is False and result["grade_error"] is None
    assert counts["failed"] == 0 and counts["resolved"] == 0 and seen[0]["resolved"] is False
    from kcode.cli.eval import _Progress

    progress = _Progress(1, 0)
    progress(seen[0], 1, 1)
    assert progress._counts() == "resolved 0  failed 0"
