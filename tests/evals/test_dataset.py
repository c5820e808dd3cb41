"""Datasets in the official schemas: SWE-bench (JSON-string test lists), SWE-bench Pro
(lowercase columns, Python-literal lists), as JSON, JSONL and parquet; bad rows named."""

import json

import pytest

from kcode.evals.dataset import DatasetError, instance_to_row, load_dataset, select

ROW = {
    "instance_id": "psf__requests-1",
    "repo": "psf/requests",
    "base_commit": "a" * 40,
    "problem_statement": "it breaks",
    "patch": "diff --git a/x b/x\n",
    "test_patch": "",
    "FAIL_TO_PASS": json.dumps(["test_a.py::test_one"]),
    "PASS_TO_PASS": json.dumps(["test_a.py::test_two", "test_a.py::test_three"]),
    "version": "2.0",
    "environment_setup_commit": "b" * 40,
}


def _jsonl(tmp_path, rows, name="d.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_swebench_jsonl_parses_json_string_lists(tmp_path):
    [inst] = load_dataset(_jsonl(tmp_path, [ROW]))
    assert inst.fail_to_pass == ["test_a.py::test_one"]
    assert inst.pass_to_pass == ["test_a.py::test_two", "test_a.py::test_three"]
    assert inst.version == "2.0" and inst.repo == "psf/requests"
    # and back to the official schema, losslessly
    assert json.loads(instance_to_row(inst)["FAIL_TO_PASS"]) == inst.fail_to_pass


def test_pro_lowercase_python_literals_never_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    pro = {k.lower(): v for k, v in ROW.items()}
    pro["fail_to_pass"] = "['tests/a.py::t1', 'tests/a.py::t2']"
    pro["pass_to_pass"] = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    path = tmp_path / "pro.json"
    path.write_text(json.dumps([pro]))
    with pytest.raises(DatasetError, match="item 0.*PASS_TO_PASS"):
        load_dataset(path)
    assert not marker.exists()  # literal_eval, never eval
    pro["pass_to_pass"] = "[]"
    path.write_text(json.dumps([pro]))
    [inst] = load_dataset(path)
    assert inst.fail_to_pass == ["tests/a.py::t1", "tests/a.py::t2"] and inst.pass_to_pass == []


def test_parquet_and_numeric_version(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    row = dict(ROW, instance_id="x__y-2")
    pq.write_table(pa.Table.from_pylist([ROW, row]), tmp_path / "test.parquet")
    insts = load_dataset(tmp_path, split="test")
    assert [i.instance_id for i in insts] == ["psf__requests-1", "x__y-2"]
    # a version written as a number keeps its text form
    [inst] = load_dataset(_jsonl(tmp_path, [dict(ROW, version=0.13)]))
    assert inst.version == "0.13"


def test_bad_rows_are_named_or_skipped(tmp_path):
    path = tmp_path / "d.jsonl"
    good = json.dumps(ROW)
    path.write_text(good + "\n{not json\n" + json.dumps({"instance_id": "q"}) + "\n")
    with pytest.raises(DatasetError, match="line 2"):
        load_dataset(path)
    bad = []
    insts = load_dataset(path, skip_bad=True, on_bad=lambda where, why: bad.append((where, why)))
    assert [i.instance_id for i in insts] == ["psf__requests-1"]
    assert [w for w, _ in bad] == ["d.jsonl line 2", "d.jsonl line 3"] and "missing repo" in bad[1][1]
    with pytest.raises(DatasetError, match="no such dataset"):
        load_dataset(tmp_path / "nope.jsonl")


def test_overrides_and_tier(tmp_path):
    row = dict(ROW, tier="easy", python="3.11", test_cmd="pytest -rA", test_files=["tests/t.py"], packages='["pytest==8"]')
    [inst] = load_dataset(_jsonl(tmp_path, [row]))
    assert inst.tier == "easy"
    assert inst.overrides == {"python": "3.11", "test_cmd": "pytest -rA", "test_files": ["tests/t.py"], "packages": ["pytest==8"]}
    assert instance_to_row(inst)["test_cmd"] == "pytest -rA"


def test_select():
    from kcode.evals.dataset import Instance

    insts = [Instance(f"r__r-{i}", "o/r", "c", "p") for i in range(10)]
    assert [i.instance_id for i in select(insts, ids=["r__r-3", "r__r-1"])] == ["r__r-3", "r__r-1"]
    with pytest.raises(DatasetError, match="r__r-99"):
        select(insts, ids=["r__r-99"])
    assert len(select(insts, filter=r"-[0-4]$")) == 5
    assert [i.instance_id for i in select(insts, slice="2:4")] == ["r__r-2", "r__r-3"]
    a = select(insts, shuffle=7)
    assert a == select(insts, shuffle=7) and a != insts and sorted(x.instance_id for x in a) == sorted(x.instance_id for x in insts)
    with pytest.raises(DatasetError, match="--slice"):
        select(insts, slice="x")
