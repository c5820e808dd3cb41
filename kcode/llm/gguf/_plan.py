"""``kcode models plan``: where a GGUF model's tensors go under llama.cpp placement flags.

Reads only the header and tensor table. The placement mirrors llama.cpp's rules:

- with ``n_gpu_layers = g`` the last ``g`` repeating layers go to the GPU (layers
  ``i >= n_layer - g``) and the output head too when ``g > n_layer``; token embeddings always
  stay on the CPU;
- ``--cpu-moe`` keeps every routed-expert tensor (``ffn_{up,down,gate,gate_up}_(ch)exps``) on
  the CPU, ``--n-cpu-moe N`` those of layers ``< N``;
- a layer's KV cache lives where the layer lives (``offload_kqv``).

Compute buffers (a few hundred MiB per device) are not included.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kcode.config import LlamaCppOptions
from kcode.llm.gguf._info import (
    GgufInfo,
    TensorInfo,
    kv_bytes_per_token,
    read_gguf_info,
)

__all__ = ["EXPERT_REGEX", "Plan", "GroupPlacement", "make_plan", "plan_info", "format_plan"]

GIB = 1024**3
# llama.cpp's own pattern for routed-expert tensors (common/arg.cpp, --cpu-moe).
EXPERT_REGEX = r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"
_EXPERT = re.compile(EXPERT_REGEX)
_ATTENTION = re.compile(r"\.attn_")


@dataclass
class GroupPlacement:
    group: str  # "embeddings" | "output" | "attention" | "ffn" | "experts"
    layer: int | None
    n_bytes: int
    device: str  # "CPU" | "GPU"


@dataclass
class Plan:
    model: str
    architecture: str
    n_layer: int
    file_bytes: int
    weight_bytes: int
    ctx: int
    kv_type: str
    gpu_layers: int
    n_cpu_moe: int | None
    cpu_moe: bool
    groups: list[GroupPlacement]
    kv_bytes: int
    kv_gpu_bytes: int
    device_bytes: dict[str, int]
    vram_bytes: int
    ram_bytes: int
    fits: bool
    max_gpu_layers: int | None  # largest --gpu-layers that fits the VRAM (same expert flags)
    min_n_cpu_moe: int | None  # smallest --n-cpu-moe that fits with all layers on the GPU
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _group_of(tensor: TensorInfo) -> str:
    if tensor.layer is None:
        return "embeddings" if tensor.name.startswith("token_embd") else "output"
    if _EXPERT.search(tensor.name):
        return "experts"
    if _ATTENTION.search(tensor.name):
        return "attention"
    return "ffn"  # dense FFN, shared experts, the router, FFN norms


def _device(tensor: TensorInfo, group: str, n_layer: int, gpu_layers: int,
            n_cpu_moe: int | None, cpu_moe: bool) -> str:
    if group == "embeddings":
        return "CPU"
    if group == "output":
        return "GPU" if gpu_layers > n_layer else "CPU"
    layer = tensor.layer or 0
    if group == "experts" and (cpu_moe or (n_cpu_moe is not None and layer < n_cpu_moe)):
        return "CPU"
    return "GPU" if layer >= n_layer - gpu_layers else "CPU"


def _gpu_bytes(info: GgufInfo, kv_layer: list[float], ctx: int, gpu_layers: int,
               n_cpu_moe: int | None, cpu_moe: bool) -> int:
    total = 0
    for tensor in info.tensors:
        group = _group_of(tensor)
        if _device(tensor, group, info.n_layer, gpu_layers, n_cpu_moe, cpu_moe) == "GPU":
            total += tensor.n_bytes
    for layer, per_token in enumerate(kv_layer):
        if layer >= info.n_layer - gpu_layers:
            total += int(per_token * ctx)
    return total


def plan_info(info: GgufInfo, options: LlamaCppOptions, *, vram_gib: float = 0.0, ram_gib: float | None = None,
              total_ram: int | None = None) -> Plan:
    """The plan for an already-read GGUF header (pure: no I/O). ``options``: the placement
    flags, context and KV type (``gpu_layers`` None: all layers when ``vram_gib`` > 0, else
    none); ``ram_gib`` None: ``total_ram``, else this machine's memory."""
    n_layer = info.n_layer
    ctx = options.ctx or info.context_length
    kv_type = options.kv_type or "f16"
    vram = int(vram_gib * GIB)
    if ram_gib is not None:
        ram = int(ram_gib * GIB)
    else:
        ram = total_ram if total_ram is not None else _machine_ram()
    all_layers = n_layer + 1
    gpu_layers = options.gpu_layers
    if gpu_layers is None:
        gpu_layers = all_layers if vram > 0 else 0
    gpu_layers = max(0, min(gpu_layers, all_layers))
    kv_layer = kv_bytes_per_token(info, kv_type)

    grouped: dict[tuple[str, int | None], GroupPlacement] = {}
    for tensor in info.tensors:
        group = _group_of(tensor)
        device = _device(tensor, group, n_layer, gpu_layers, options.n_cpu_moe, options.cpu_moe)
        key = (group, tensor.layer)
        if key not in grouped:
            grouped[key] = GroupPlacement(group, tensor.layer, 0, device)
        grouped[key].n_bytes += tensor.n_bytes
    order = {"embeddings": 0, "attention": 1, "ffn": 2, "experts": 3, "output": 4}
    groups = sorted(grouped.values(), key=lambda g: (
        -1 if g.group == "embeddings" else (10**9 if g.group == "output" else g.layer or 0),
        order[g.group],
    ))

    kv_total = int(sum(kv_layer) * ctx)
    kv_gpu = int(sum(b for i, b in enumerate(kv_layer) if i >= n_layer - gpu_layers) * ctx)
    device_bytes = {"CPU": 0, "GPU": 0}
    for placed in groups:
        device_bytes[placed.device] += placed.n_bytes
    device_bytes["GPU"] += kv_gpu
    device_bytes["CPU"] += kv_total - kv_gpu

    def fits_gpu(layers: int, n_cpu_moe: int | None, cpu_moe: bool) -> bool:
        return _gpu_bytes(info, kv_layer, ctx, layers, n_cpu_moe, cpu_moe) <= vram

    max_gpu_layers = next(
        (g for g in range(all_layers, -1, -1)
         if fits_gpu(g, options.n_cpu_moe, options.cpu_moe)), None)
    has_experts = any(g.group == "experts" for g in groups)
    min_n_cpu_moe = None
    if has_experts and vram > 0:
        min_n_cpu_moe = next(
            (n for n in range(0, n_layer + 1) if fits_gpu(all_layers, n, False)), None)

    warnings: list[str] = []
    fits = device_bytes["GPU"] <= vram and device_bytes["CPU"] <= ram
    needed = info.weight_bytes + kv_total
    if ram + vram < needed:
        warnings.append(
            f"RAM + VRAM ({_gib(ram + vram)}) is smaller than the model plus its KV cache "
            f"({_gib(needed)}): it will not load (or will page from disk)")
    if device_bytes["GPU"] > vram and vram > 0:
        warnings.append(f"GPU needs {_gib(device_bytes['GPU'])} but --vram is {_gib(vram)}")
    if device_bytes["CPU"] > ram:
        warnings.append(f"CPU needs {_gib(device_bytes['CPU'])} but RAM is {_gib(ram)}")
    return Plan(
        model=str(info.path), architecture=info.architecture, n_layer=n_layer,
        file_bytes=info.file_bytes, weight_bytes=info.weight_bytes, ctx=ctx,
        kv_type=kv_type, gpu_layers=gpu_layers, n_cpu_moe=options.n_cpu_moe,
        cpu_moe=options.cpu_moe, groups=groups, kv_bytes=kv_total, kv_gpu_bytes=kv_gpu,
        device_bytes=device_bytes, vram_bytes=vram, ram_bytes=ram, fits=fits,
        max_gpu_layers=max_gpu_layers, min_n_cpu_moe=min_n_cpu_moe, warnings=warnings,
    )


def make_plan(path: Path | str, options: LlamaCppOptions, *, vram_gib: float = 0.0, ram_gib: float | None = None) -> Plan:
    """Where ``path``'s tensors go under ``options`` with this much GPU and CPU memory."""
    return plan_info(read_gguf_info(path), options, vram_gib=vram_gib, ram_gib=ram_gib)


def _machine_ram() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


def _gib(n_bytes: float) -> str:
    if n_bytes >= GIB / 10:
        return f"{n_bytes / GIB:.2f} GiB"
    return f"{n_bytes / 1024**2:.2f} MiB"


def format_plan(plan: Plan) -> str:
    """A human-readable plan: per-layer groups, totals per device, what fits."""
    lines = [
        f"model        {plan.model}",
        f"architecture {plan.architecture}, {plan.n_layer} layers, "
        f"weights {_gib(plan.weight_bytes)} (file {_gib(plan.file_bytes)})",
        f"flags        gpu_layers={plan.gpu_layers} n_cpu_moe={plan.n_cpu_moe} "
        f"cpu_moe={plan.cpu_moe} ctx={plan.ctx} kv_type={plan.kv_type}",
        "",
        f"{'layer':>6}  {'group':<11} {'bytes':>12}  device",
    ]
    for placed in plan.groups:
        layer = "-" if placed.layer is None else str(placed.layer)
        lines.append(f"{layer:>6}  {placed.group:<11} {_gib(placed.n_bytes):>12}  {placed.device}")
    lines += [
        "",
        f"KV cache     {_gib(plan.kv_bytes)} at ctx {plan.ctx} "
        f"({_gib(plan.kv_gpu_bytes)} on the GPU)"
        + (" — MLA latent cache" if plan.architecture == "deepseek2" else ""),
        f"GPU total    {_gib(plan.device_bytes['GPU'])} of {_gib(plan.vram_bytes)} VRAM",
        f"CPU total    {_gib(plan.device_bytes['CPU'])} of {_gib(plan.ram_bytes)} RAM",
        f"largest --gpu-layers that fits: {_or_none(plan.max_gpu_layers)}",
    ]
    if plan.min_n_cpu_moe is not None or plan.vram_bytes > 0:
        lines.append(f"smallest --n-cpu-moe that fits (all layers on GPU): "
                     f"{_or_none(plan.min_n_cpu_moe)}")
    lines.append("fits" if plan.fits else "does NOT fit")
    lines.append("(compute buffers, a few hundred MiB per device, are not included)")
    lines += [f"warning: {w}" for w in plan.warnings]
    return "\n".join(lines)


def _or_none(value: int | None) -> str:
    return "none" if value is None else str(value)
