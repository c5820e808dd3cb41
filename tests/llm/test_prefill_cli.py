"""``kcode models bench``, ``kcode cache list|clear`` and ``kcode pack --json``'s fixed-prompt
figure, as subprocesses on a tiny random-weight model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from kcode.config import LlamaCppOptions
from kcode.llm.llamacpp import LlamaCppModel, Sampling

pytest.importorskip("llama_cpp")


def kcode(home, *args, timeout=180):
    env = dict(os.environ, KCODE_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "kcode", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def test_models_bench_measures_stores_and_shows_the_budget(tiny_llama_moe, tmp_path):
    first = kcode(tmp_path, "models", "bench", str(tiny_llama_moe), "--tokens", "64", "--repeat", "2",
                  "--generate", "4", "--ctx", "1024", "--json")
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert len(data["prefill_tokens_per_second"]) == 2 and data["prefill_median"] > 0
    assert data["stored_before"] is None and data["settings"]["n_batch"] > 0
    assert data["pack_budget"] > 0 and data["pack_budget_why"]
    stored = json.loads((tmp_path / "cache" / "prefill-speed.json").read_text())
    assert [value["source"] for value in stored.values()] == ["calibration"]
    again = kcode(tmp_path, "models", "bench", str(tiny_llama_moe), "--tokens", "64", "--repeat", "1",
                  "--generate", "0", "--ctx", "1024")
    assert again.returncode == 0, again.stderr
    assert "prefill " in again.stdout and "before: " in again.stdout and "pack budget" in again.stdout
    assert "threads " in again.stdout and "batch " in again.stdout  # the settings are shown


def test_cache_list_and_clear(tiny_llama_moe, tmp_path):
    cache = tmp_path / "cache" / "prefix"
    model = LlamaCppModel(tiny_llama_moe, LlamaCppOptions(ctx=1024, prefix_cache=str(cache)), sampling=Sampling(0.0),
                          max_output_tokens=1)
    messages = [{"role": "system", "content": "You are kcode. " * 20},
                {"role": "system", "content": "# Repository `demo`\n" + "def f(): pass\n" * 20},
                {"role": "user", "content": "Fix f."}]
    list(model.stream(messages, []))
    model.close()
    listed = kcode(tmp_path, "cache", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)
    assert len(entries) == 2 and {e["model"] for e in entries} == {tiny_llama_moe.name}
    assert all(e["size"] > 0 and e["n_tokens"] > 0 for e in entries)
    text = kcode(tmp_path, "cache", "list")
    assert "KEY" in text.stdout and "(fixed prompt)" in text.stdout and "2 entries" in text.stderr
    cleared = kcode(tmp_path, "cache", "clear")
    assert cleared.returncode == 0 and "removed 2 entries" in cleared.stderr
    assert json.loads(kcode(tmp_path, "cache", "list", "--json").stdout) == []


def test_pack_json_shows_the_fixed_prompt(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.py").write_text("def a():\n    return 1\n")
    result = kcode(tmp_path / "home", "pack", "--repo", str(repo), "--json")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert 0 < stats["fixed_prompt_tokens"] <= stats["fixed_prompt_limit"] == 1200
    assert stats["fixed_prompt_counted"] == "estimate"  # no default model in this home


def test_models_bench_without_weight_repacking_is_another_setting(tiny_llama_moe, tmp_path):
    result = kcode(tmp_path, "models", "bench", str(tiny_llama_moe), "--tokens", "64", "--repeat", "1",
                   "--generate", "0", "--ctx", "1024", "--no-repack", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["settings"]["repack"] is False and "no weight repacking" in data["settings_line"]
    assert data["load_seconds"] > 0
