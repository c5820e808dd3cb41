"""Expert offload through tensor buffer overrides, checked against llama.cpp's own log, and
``kcode models plan`` checked against the GGUF tensor table."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kcode.config import LlamaCppOptions
from kcode.errors import UsageError
from kcode.llm.gguf import EXPERT_REGEX, make_plan
from kcode.llm.llamacpp._offload import parse_override, placement_rules

pytest.importorskip("llama_cpp")
gguf = pytest.importorskip("gguf")

_LOAD_SCRIPT = """
import json, sys
from kcode.config import LlamaCppOptions
from kcode.llm.llamacpp import load_llama
loaded = load_llama(sys.argv[1], LlamaCppOptions(**json.loads(sys.argv[2])), verbose=True)
print("LOADED n_ctx=%d" % loaded.n_ctx, file=sys.stderr)
"""
_OVERRIDDEN = re.compile(r"tensor (\S+) \(.*\) buffer type overridden to (\S+)")


def load_and_log(model: Path, **placement) -> tuple[dict[str, str], str]:
    """Load in a subprocess with llama.cpp's log on; return {tensor: buffer} it reported."""
    result = subprocess.run(
        [sys.executable, "-c", _LOAD_SCRIPT, str(model), json.dumps(placement)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LOADED" in result.stderr
    return dict(_OVERRIDDEN.findall(result.stderr)), result.stderr


def tensor_names(model: Path) -> list[str]:
    return [t.name for t in gguf.GGUFReader(model).tensors]


def test_n_cpu_moe_puts_exactly_the_first_layers_experts_on_the_cpu(tiny_deepseek2):
    overridden, _ = load_and_log(tiny_deepseek2, n_cpu_moe=2, ctx=256)
    expected = {n for n in tensor_names(tiny_deepseek2)
                if re.search(EXPERT_REGEX, n) and int(n.split(".")[1]) < 2}
    assert expected == {"blk.1.ffn_gate_exps.weight", "blk.1.ffn_up_exps.weight",
                        "blk.1.ffn_down_exps.weight"}  # layer 0 is dense in deepseek2
    assert overridden == {name: "CPU" for name in expected}


def test_cpu_moe_and_override_tensor_first_match_wins(tiny_llama_moe):
    overridden, _ = load_and_log(tiny_llama_moe, cpu_moe=True, ctx=256)
    experts = {n for n in tensor_names(tiny_llama_moe) if re.search(EXPERT_REGEX, n)}
    assert len(experts) == 6 and overridden == {name: "CPU" for name in experts}
    overridden, _ = load_and_log(tiny_llama_moe, override_tensor=[r"blk\.1\.attn_(q|k)=CPU", "attn=CPU"], ctx=256)
    attention = {n for n in tensor_names(tiny_llama_moe) if ".attn" in n}
    assert overridden == {name: "CPU" for name in attention}


def test_kv_type_q8_0_loads_the_mla_model(tiny_deepseek2):
    _, log = load_and_log(tiny_deepseek2, kv_type="q8_0", ctx=512)
    assert "q8_0" in log and "LOADED n_ctx=512" in log


def test_placement_rules_and_their_errors():
    assert placement_rules(n_cpu_moe=2) == [(rf"blk\.0{EXPERT_REGEX}", "CPU"), (rf"blk\.1{EXPERT_REGEX}", "CPU")]
    assert placement_rules(["exps=CUDA0"], cpu_moe=True) == [("exps", "CUDA0"), (EXPERT_REGEX, "CPU")]
    assert parse_override(r"blk\.(0|1)\.ffn=CPU") == (r"blk\.(0|1)\.ffn", "CPU")
    with pytest.raises(UsageError, match="REGEX=BUFFER"):
        parse_override("exps")
    from kcode.llm.llamacpp._offload import build_overrides

    with pytest.raises(UsageError, match="unknown buffer type 'NOPE'"):
        build_overrides([("exps", "NOPE")])


def test_plan_groups_and_totals_match_the_tensor_table(tiny_deepseek2):
    tensors = gguf.GGUFReader(tiny_deepseek2).tensors
    plan = make_plan(tiny_deepseek2, LlamaCppOptions(ctx=1024, n_cpu_moe=2), vram_gib=1.0, ram_gib=8.0)
    assert plan.architecture == "deepseek2" and plan.n_layer == 3
    assert plan.weight_bytes == sum(int(t.n_bytes) for t in tensors)
    by_key = {(g.group, g.layer): g for g in plan.groups}
    experts_1 = sum(int(t.n_bytes) for t in tensors if t.name.startswith("blk.1.") and "_exps" in t.name)
    assert by_key[("experts", 1)].n_bytes == experts_1 and by_key[("experts", 1)].device == "CPU"
    assert by_key[("experts", 2)].device == "GPU" and ("experts", 0) not in by_key
    assert by_key[("embeddings", None)].device == "CPU" and by_key[("output", None)].device == "GPU"
    shexp_2 = sum(int(t.n_bytes) for t in tensors if t.name.startswith("blk.2.ffn") and "_exps" not in t.name)
    assert by_key[("ffn", 2)].n_bytes == shexp_2 + sum(
        int(t.n_bytes) for t in tensors if t.name == "blk.2.exp_probs_b.bias")
    # MLA: one (kv_lora 32 + rope 32)-wide f16 row per layer per token
    assert plan.kv_bytes == 3 * 64 * 2 * 1024
    cpu = sum(g.n_bytes for g in plan.groups if g.device == "CPU")
    assert plan.device_bytes == {"CPU": cpu, "GPU": plan.weight_bytes - cpu + plan.kv_bytes}
    assert plan.fits and plan.max_gpu_layers == 4 and plan.min_n_cpu_moe == 0


def test_plan_finds_the_limits_for_a_small_gpu(tiny_llama_moe):
    info_plan = make_plan(tiny_llama_moe, LlamaCppOptions(ctx=4096), ram_gib=8.0)
    per_layer_kv = 2 * (16 + 16) * 2  # 2 KV heads × (K 16 + V 16) × f16
    assert info_plan.kv_bytes == 2 * per_layer_kv * 4096 and info_plan.gpu_layers == 0
    layer = {g.layer: 0 for g in info_plan.groups}
    for g in info_plan.groups:
        layer[g.layer] += g.n_bytes
    experts_1 = next(g.n_bytes for g in info_plan.groups if g.group == "experts" and g.layer == 1)
    # VRAM for layer 1 without its experts (plus its KV cache), and nothing more
    vram = layer[1] - experts_1 + per_layer_kv * 4096
    plan = make_plan(tiny_llama_moe, LlamaCppOptions(ctx=4096), vram_gib=vram / 2**30, ram_gib=8.0)
    assert not plan.fits and any("GPU needs" in w for w in plan.warnings)
    assert plan.max_gpu_layers == 0
    assert plan.min_n_cpu_moe is None  # even with every expert on the CPU, 2 layers do not fit
    plan = make_plan(tiny_llama_moe, LlamaCppOptions(ctx=4096, cpu_moe=True), vram_gib=vram / 2**30, ram_gib=8.0)
    assert plan.max_gpu_layers == 1
    small = make_plan(tiny_llama_moe, LlamaCppOptions(ctx=4096), ram_gib=0.0001)
    assert any("smaller than the model" in w for w in small.warnings)


def test_models_plan_cli_json_and_text(tiny_deepseek2):
    command = [sys.executable, "-m", "kcode", "models", "plan", str(tiny_deepseek2),
               "--vram", "1", "--ram", "4", "--ctx", "2048", "--n-cpu-moe", "1"]
    result = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["kv_bytes"] == 3 * 64 * 2 * 2048 and data["n_cpu_moe"] == 1
    text = subprocess.run(command, capture_output=True, text=True, timeout=60).stdout
    assert "MLA latent cache" in text and "experts" in text and "largest --gpu-layers" in text
    missing = subprocess.run([sys.executable, "-m", "kcode", "models", "plan", "/nonexistent.gguf"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no such model file" in missing.stderr


def test_split_models_are_planned_and_offloaded_across_all_shards(tmp_path, tiny_deepseek2):
    from kcode.llm.models import write_tiny_deepseek2

    first = write_tiny_deepseek2(tmp_path / "kimi-tiny.gguf", split_max_tensors=20)
    assert first.name == "kimi-tiny-00001-of-00003.gguf"
    split = make_plan(first, LlamaCppOptions(ctx=512), ram_gib=4.0)
    whole = make_plan(tiny_deepseek2, LlamaCppOptions(ctx=512), ram_gib=4.0)
    assert split.weight_bytes == whole.weight_bytes
    assert [(g.group, g.layer, g.n_bytes) for g in split.groups] == [(g.group, g.layer, g.n_bytes) for g in whole.groups]
    assert split.file_bytes == sum(p.stat().st_size for p in tmp_path.glob("kimi-tiny-*.gguf"))
    overridden, _ = load_and_log(first, cpu_moe=True, ctx=256)
    assert len(overridden) == 6 and set(overridden.values()) == {"CPU"}  # experts of layers 1 and 2


def _reference_header(path: Path, long_array: int) -> tuple[dict, list]:
    """What gguf.GGUFReader (slow: it decodes every array element) says of the header."""
    reader = gguf.GGUFReader(path)
    metadata = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        if field.types and field.types[0] == gguf.GGUFValueType.ARRAY and len(field.data) > long_array:
            continue
        metadata[name] = field.contents()
    tensors = [(t.name, int(t.n_bytes), t.tensor_type.name, tuple(int(d) for d in t.shape)) for t in reader.tensors]
    return metadata, tensors


@pytest.mark.parametrize("long_array", [1024, 8])
def test_the_header_reader_agrees_with_gguf(tiny_deepseek2, tiny_llama_moe, long_array, monkeypatch):
    from kcode.llm.gguf import _info as _gguf_info

    monkeypatch.setattr(_gguf_info, "_LONG_ARRAY", long_array)  # 8: the vocabulary is skipped
    for model in (tiny_deepseek2, tiny_llama_moe):
        info = _gguf_info.read_gguf_info(model)
        metadata, tensors = _reference_header(model, long_array)
        assert info.metadata == metadata
        assert [(t.name, t.n_bytes, t.ggml_type, t.shape) for t in info.tensors] == tensors
    assert "tokenizer.ggml.tokens" not in info.metadata if long_array == 8 else "tokenizer.ggml.tokens" in info.metadata


def test_the_header_reader_on_the_real_model_is_fast_and_agrees(qwen_0_5b):
    """A 151K-token vocabulary: skipped without decoding (gguf takes seconds here)."""
    import time

    from kcode.llm.gguf import read_gguf_info

    started = time.perf_counter()
    info = read_gguf_info(qwen_0_5b)
    assert time.perf_counter() - started < 2.0
    metadata, tensors = _reference_header(qwen_0_5b, 1024)
    assert info.metadata == metadata and info.architecture == "qwen2"
    assert [(t.name, t.n_bytes, t.ggml_type, t.shape) for t in info.tensors] == tensors


def test_broken_gguf_files_are_clear_errors(tmp_path, tiny_llama_moe):
    from kcode.errors import ModelUnavailable
    from kcode.llm.gguf import read_gguf_info

    (tmp_path / "text.gguf").write_text("not a model at all\n")
    with pytest.raises(ModelUnavailable, match="not a readable GGUF file: no GGUF magic"):
        read_gguf_info(tmp_path / "text.gguf")
    (tmp_path / "cut.gguf").write_bytes(tiny_llama_moe.read_bytes()[:3000])
    with pytest.raises(ModelUnavailable, match="not a readable GGUF file"):
        read_gguf_info(tmp_path / "cut.gguf")
    (tmp_path / "empty.gguf").write_bytes(b"")
    with pytest.raises(ModelUnavailable, match="not a readable GGUF file"):
        read_gguf_info(tmp_path / "empty.gguf")


def test_models_plan_takes_a_catalog_name(tmp_path, qwen_0_5b):
    """``kcode models plan NAME``: a clear error before the pull, the plan after it (the pull
    is a copy of the local file into the catalog folder, recorded as verified)."""
    import os
    import shutil

    from kcode.llm.models import _catalog as catalog

    env = {**os.environ, "KCODE_HOME": str(tmp_path / "home")}
    command = [sys.executable, "-m", "kcode", "models", "plan", "qwen2.5-coder-0.5b", "--ram", "8", "--json"]
    missing = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert missing.returncode == 2 and "not downloaded yet: run `kcode models pull qwen2.5-coder-0.5b`" in missing.stderr
    folder = tmp_path / "home" / "cache" / "models" / "qwen2.5-coder-0.5b"
    folder.mkdir(parents=True)
    entry = catalog.find_entry("qwen2.5-coder-0.5b")
    target = folder / entry.files()[0]
    shutil.copyfile(qwen_0_5b, target)
    stat = target.stat()
    (folder / catalog._MARKER).write_text(json.dumps({target.name: [stat.st_size, stat.st_mtime_ns]}))
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["architecture"] == "qwen2"
