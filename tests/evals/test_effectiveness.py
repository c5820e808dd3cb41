"""evals/effectiveness.py's pure parts: the arguments, the predictions it writes, the patch it
takes from a checkout, the usage proxy's counting, the table and the kcode/peer ratio. The
agents' runs themselves need a model and are measured by running the benchmark."""

from __future__ import annotations

import http.server
import importlib
import json
import sys
import threading
from pathlib import Path

import httpx
import pytest

from kcode.evals.dataset import Instance, load_dataset
from tests.conftest import git

EVALS = Path(__file__).resolve().parents[2] / "evals"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(EVALS))
    try:
        yield importlib.import_module("effectiveness")
    finally:
        sys.path.remove(str(EVALS))


def test_arguments_defaults_and_errors(bench, capsys) -> None:
    args = bench.parse_args(["--dataset", "d.jsonl", "--tier", "easy", "--max-steps", "5", "--max-time", "180"])
    assert (args.agents, args.tier, args.max_steps, args.max_time) == (["kcode", "mini", "aider"], "easy", 5, 180.0)
    assert bench.parse_args(["--agents", "aider, kcode"]).agents == ["aider", "kcode"]
    for bad in (["--agents", "kcode,claude"], ["--max-steps", "0"], ["--tier", "easy", "--instances", "a"], ["--tier", "trivial"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)
    assert "unknown claude" in capsys.readouterr().err


def test_selection_by_ids_tier_and_limit(bench) -> None:
    instances = [Instance(f"i{n}", "o/r", "abc", "x", tier=("easy" if n % 2 else "hard")) for n in range(6)]
    assert [i.instance_id for i in bench.choose(instances, bench.parse_args(["--tier", "easy", "--limit", "2"]))] == ["i1", "i3"]
    assert [i.instance_id for i in bench.choose(instances, bench.parse_args(["--instances", "i4,i0"]))] == ["i4", "i0"]
    with pytest.raises(SystemExit, match="no instance"):
        bench.choose(instances, bench.parse_args(["--tier", "medium"]))


def test_preds_are_the_official_schema_and_runs_load_back(bench, tmp_path: Path) -> None:
    AgentRun = bench.AgentRun
    runs = [AgentRun("a__b-1", patch="diff --git a/x b/x\n", wall_s=3.5, tokens=120, calls=4), AgentRun("a__b-2", status="timeout")]
    preds = bench.write_preds(tmp_path / "mini" / "preds.jsonl", runs, "mini/qwen")
    bench.write_runs(tmp_path / "mini" / "runs.jsonl", runs)
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    assert rows == [
        {"instance_id": "a__b-1", "model_name_or_path": "mini/qwen", "model_patch": "diff --git a/x b/x\n"},
        {"instance_id": "a__b-2", "model_name_or_path": "mini/qwen", "model_patch": ""},
    ]
    assert "patch" not in json.loads((tmp_path / "mini" / "runs.jsonl").read_text().splitlines()[0])
    loaded = bench.load_runs(tmp_path / "mini")
    assert loaded["a__b-1"] == runs[0] and loaded["a__b-2"].status == "timeout"


def test_the_patch_holds_edits_and_new_files_but_not_the_agents_droppings(bench, calc_repo: Path) -> None:
    from effectiveness_peers import take_patch

    base = git(calc_repo, "rev-parse", "HEAD").strip()
    (calc_repo / "calc" / "__init__.py").write_text((calc_repo / "calc" / "__init__.py").read_text().replace("a - b", "a + b"))
    (calc_repo / "repro.py").write_text("print(1)\n")
    (calc_repo / ".aider.chat.history.md").write_text("chat\n")
    (calc_repo / ".aider.tags.cache.v4").mkdir()
    (calc_repo / ".aider.tags.cache.v4" / "cache.db").write_bytes(b"\0")
    (calc_repo / "calc" / "__pycache__").mkdir()
    (calc_repo / "calc" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    patch = take_patch(calc_repo, base)
    assert "+    return a + b" in patch and "b/repro.py" in patch
    assert ".aider" not in patch and "__pycache__" not in patch


def test_the_proxy_sums_usage_of_json_and_streamed_answers(bench) -> None:
    from effectiveness_peers import UsageProxy

    class Upstream(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            self.send_response(200)
            if body.get("stream"):
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                self.wfile.write(b'data: {"choices": [{"delta": {"content": "hi"}}]}\n\n')
                self.wfile.write(b'data: {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}}\n\ndata: [DONE]\n\n')
            else:
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"choices": [{"message": {"content": "ok"}}], "usage": {"prompt_tokens": 10, "completion_tokens": 5}}).encode())

    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        with UsageProxy(f"http://127.0.0.1:{upstream.server_address[1]}/v1") as proxy:
            answer = httpx.post(f"{proxy.url}/chat/completions", json={"model": "m", "messages": []}, timeout=10)
            assert answer.json()["choices"][0]["message"]["content"] == "ok"
            streamed = httpx.post(f"{proxy.url}/chat/completions", json={"model": "m", "stream": True}, timeout=10)
            assert '"content": "hi"' in streamed.text and "[DONE]" in streamed.text
            assert proxy.reset() == {"prompt_tokens": 17, "completion_tokens": 7, "calls": 2}
            assert proxy.reset() == {"prompt_tokens": 0, "completion_tokens": 0, "calls": 0}
    finally:
        upstream.shutdown()
        upstream.server_close()


def test_table_per_agent_and_tier_and_the_ratio(bench, tmp_path: Path) -> None:
    AgentRun = bench.AgentRun
    instances = [Instance("e1", "o/r", "abc", "x", tier="easy"), Instance("e2", "o/r", "abc", "x", tier="easy"), Instance("h1", "o/r", "abc", "x", tier="hard")]
    runs = {
        "kcode": {i.instance_id: AgentRun(i.instance_id, patch="p", wall_s=10, tokens=100, calls=3) for i in instances},
        "mini": {i.instance_id: AgentRun(i.instance_id, wall_s=20, tokens=300, calls=5, status="timeout") for i in instances},
    }
    resolved = {"kcode": {"e1": True, "e2": True, "h1": False}, "mini": {"e1": True, "e2": False, "h1": False}}
    table = bench.summarize(instances, runs, resolved)
    assert table["kcode"]["easy"] == {"total": 2, "resolved": 2, "wall_s": 10.0, "tokens": 100, "calls": 3.0, "empty_patches": 0, "timeouts": 0, "errors": 0}
    assert table["mini"]["all"]["resolved"] == 1 and table["mini"]["all"]["timeouts"] == 3 and table["mini"]["all"]["empty_patches"] == 3
    assert bench.ratio(table) == "2.00"
    text = bench.render_table(table)
    assert "kcode    easy            2/2   100%" in text and "kcode resolve rate / best peer's: 2.00" in text
    resolved["mini"] = {"e1": False, "e2": False, "h1": False}
    assert bench.ratio(bench.summarize(instances, runs, resolved)) == "inf"
    ungraded = bench.summarize(instances, runs, {"kcode": None, "mini": None})
    assert bench.ratio(ungraded) == "n/a" and "       -" in bench.render_table(ungraded)


def test_the_dataset_rows_kcode_gets_load_back(bench, tmp_path: Path) -> None:
    """run_kcode hands kcode eval run a dataset of the selected rows: they must load as they were."""
    from kcode.evals.dataset import instance_to_row

    inst = Instance("a__b-1", "a/b", "abc", "the bug", tier="easy", overrides={"test_cmd": "pytest -rA", "test_files": ["t.py"]})
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(instance_to_row(inst)) + "\n")
    (loaded,) = load_dataset(path)
    assert (loaded.instance_id, loaded.tier, loaded.overrides["test_files"]) == ("a__b-1", "easy", ["t.py"])


def test_kcode_model_calls_are_the_usage_events_of_its_trajectory(bench, eval_fixture, tmp_path: Path) -> None:
    """kcode's calls in the table are its model calls (the repair phase's too), counted from
    the trajectory a real ``kcode eval run`` writes: three scripted turns are three calls,
    whatever its step count, and a torn last line (a killed run) is skipped."""
    from kcode.evals.run import EvalOptions, run_eval

    mirrors, dataset, scripts = eval_fixture
    [inst] = [i for i in load_dataset(dataset) if i.instance_id == "acme__calc-1"]
    out = tmp_path / "run"
    assert run_eval([inst], EvalOptions(str(out), model=f"scripted:{scripts}", repos_dir=str(mirrors), config={"max_steps": 6}))["done"] == 1
    trajectory = out / "instances" / inst.instance_id / "trajectory.jsonl"
    calls, tokens = bench.trajectory_usage(trajectory)
    assert calls == 3
    usage = [json.loads(line) for line in trajectory.read_text().splitlines() if '"usage"' in line]
    assert tokens == sum(e["input_tokens"] + e["output_tokens"] for e in usage if e["type"] == "usage")
    with trajectory.open("a") as log:
        log.write('{"type": "usage", "input_tok')
    assert bench.trajectory_usage(trajectory) == (3, tokens)
    assert bench.trajectory_usage(tmp_path / "missing.jsonl") == (0, 0)
