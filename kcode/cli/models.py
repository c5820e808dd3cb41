"""``kcode models ...``: inspect and manage local models.

``plan`` reads a GGUF's header and tensor table (no weights loaded) and says where each
tensor group would go under the given placement flags.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

__all__ = ["app"]

app = typer.Typer(name="models", help="Inspect and manage local models.", no_args_is_help=True)


@app.command("plan")
def plan(
    model: str = typer.Argument(..., help="A .gguf file."),
    vram: float = typer.Option(0.0, "--vram", help="GPU memory to plan for, in GiB."),
    ram: float | None = typer.Option(None, "--ram", help="CPU memory, in GiB (default: this machine's)."),
    ctx: int | None = typer.Option(None, "--ctx", help="Context length (default: the model's trained context)."),
    gpu_layers: int | None = typer.Option(None, "--gpu-layers", help="Layers on the GPU (default: all when --vram > 0)."),
    n_cpu_moe: int | None = typer.Option(None, "--n-cpu-moe", help="Keep the experts of the first N layers on the CPU."),
    cpu_moe: bool = typer.Option(False, "--cpu-moe", help="Keep all routed experts on the CPU."),
    kv_type: str = typer.Option("f16", "--kv-type", help="KV cache type: f16, q8_0 or q4_0."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    """Show where a GGUF model's tensors go and what fits, without loading it."""
    from kcode.errors import KcodeError
    from kcode.llm.plan import PlanRequest, format_plan, make_plan

    request = PlanRequest(
        vram_gib=vram,
        ram_gib=ram,
        ctx=ctx,
        gpu_layers=gpu_layers,
        n_cpu_moe=n_cpu_moe,
        cpu_moe=cpu_moe,
        kv_type=kv_type,
    )
    try:
        result = make_plan(_resolve_model_path(model), request)
    except KcodeError as error:
        typer.echo(f"kcode models plan: {error}", err=True)
        raise typer.Exit(2) from error
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        typer.echo(format_plan(result))


def _resolve_model_path(model: str) -> Path:
    """The GGUF file to plan for (catalog names are resolved here once the catalog exists)."""
    return Path(model).expanduser()
