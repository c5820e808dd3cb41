"""``kcode models ...``: inspect and manage local models.

``plan`` reads a GGUF's header and tensor table (no weights loaded) and says where each
tensor group would go under the given placement flags. ``bench`` measures how fast a model
processes prompts here (the figure the pack budget is sized by) and generates.
``build-server`` builds llama.cpp's ``llama-server`` (parallel slots) into kcode's cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

__all__ = ["app"]

app = typer.Typer(name="models", help="Inspect and manage local models.", no_args_is_help=True)


@app.command("plan")
def plan(
    model: str = typer.Argument(..., help="A .gguf file (the first shard of a split model) or a catalog name."),
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
    import dataclasses

    from kcode.config import LlamaCppOptions
    from kcode.errors import KcodeError
    from kcode.llm.gguf import format_plan, make_plan
    from kcode.llm.llamacpp import llama_settings

    options = LlamaCppOptions(ctx=ctx, gpu_layers=gpu_layers, n_cpu_moe=n_cpu_moe, cpu_moe=cpu_moe, kv_type=kv_type)
    try:
        result = make_plan(_resolve_model_path(model), options, vram_gib=vram, ram_gib=ram)
    except KcodeError as error:
        typer.echo(f"kcode models plan: {error}", err=True)
        raise typer.Exit(2) from error
    # what a run would give llama.cpp with these flags and the layers the plan puts on the GPU
    placed = dataclasses.replace(options, gpu_layers=result.gpu_layers)
    settings = llama_settings(placed, n_ctx=result.ctx, on_gpu=result.gpu_layers > 0)
    if as_json:
        typer.echo(json.dumps({**result.to_dict(), "llama_settings": settings}, indent=2))
    else:
        typer.echo(format_plan(result))
        from kcode.agent.pack_budget import describe_settings

        typer.echo(f"llama.cpp    {describe_settings(settings)} (defaults; `kcode models bench` measures them)")


@app.command("bench")
def bench(
    model: str = typer.Argument(..., help="A .gguf file, a catalog name, or a server spec (llama-server:NAME, ...)."),
    tokens: int = typer.Option(512, "--tokens", min=32, help="Prompt tokens per measurement."),
    repeat: int = typer.Option(3, "--repeat", min=1, help="Measurements; the median is stored."),
    generate: int = typer.Option(32, "--generate", min=0, help="Tokens to generate for the generation speed (0: skip)."),
    ctx: int = typer.Option(4096, "--ctx", help="Context to load the model with."),
    threads: int | None = typer.Option(None, "--threads", help="Threads (default: the physical cores)."),
    n_batch: int | None = typer.Option(None, "--batch", help="llama.cpp n_batch."),
    n_ubatch: int | None = typer.Option(None, "--ubatch", help="llama.cpp n_ubatch."),
    flash_attn: bool | None = typer.Option(None, "--flash-attn/--no-flash-attn", help="Flash attention (default: on)."),
    repack: bool = typer.Option(True, "--repack/--no-repack", help="llama.cpp's CPU weight repacking (off: faster load, slower generation)."),
    kv_type: str | None = typer.Option(None, "--kv-type", help="KV cache type: f16, q8_0 or q4_0."),
    gpu_layers: int | None = typer.Option(None, "--gpu-layers", help="Layers on the GPU."),
    seconds: float | None = typer.Option(None, "--first-step-seconds", help="The time budget to size the pack for (default: config)."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Measure prompt processing (prefill) and generation speed, store the prefill figure, and
    show the pack budget it gives."""
    import statistics
    import time as clock

    from kcode.agent.pack_budget import describe_settings, fixed_prompt_tokens
    from kcode.cli._progress import show_notice
    from kcode.config import LlamaCppOptions, load_config
    from kcode.errors import KcodeError
    from kcode.llm import ModelOptions, StepEnd, create_model
    from kcode.llm.prefill import choose_pack_budget, machine_description

    config = load_config()
    seconds = seconds if seconds is not None else config.first_step_seconds
    llamacpp = LlamaCppOptions(ctx=ctx, threads=threads, n_batch=n_batch, n_ubatch=n_ubatch, flash_attn=flash_attn,
                               repack=repack, kv_type=kv_type, gpu_layers=gpu_layers, prefix_cache="off",
                               keep_alive="0")  # measured in this process, its load included
    options = ModelOptions(temperature=0.0, max_output_tokens=generate or 1, base_url=config.base_url, llamacpp=llamacpp,
                           on_notice=show_notice)
    spec = str(_resolve_model_path(model)) if model.endswith(".gguf") or _is_local(model) else model
    try:
        chat_model = create_model(spec, options)
    except KcodeError as error:
        typer.echo(f"kcode models bench: {error}", err=True)
        raise typer.Exit(2) from error
    try:
        stored = chat_model.prefill_speed() if hasattr(chat_model, "prefill_speed") else None
        calibrate = getattr(chat_model, "calibrate", None)
        if calibrate is None:
            typer.echo(f"kcode models bench: {chat_model.name} has no prefill to measure", err=True)
            raise typer.Exit(2)
        figures = []
        for _ in range(repeat):
            measured = calibrate(tokens)
            if measured is not None:
                figures.append(measured.tokens_per_second)
        if not figures:
            typer.echo("kcode models bench: the server reported nothing to measure", err=True)
            raise typer.Exit(1)
        median = statistics.median(figures)
        generation = None
        if generate:
            from kcode.resources import read_prompt

            request = [{"role": "user", "content": read_prompt("bench/generation.md").strip()}]
            first = None
            end = None
            for chunk in chat_model.stream(request, []):
                if first is None:
                    first = clock.perf_counter()
                if isinstance(chunk, StepEnd):
                    end = chunk
            if end is not None and first is not None and end.usage.output_tokens > 1:
                generation = (end.usage.output_tokens - 1) / max(clock.perf_counter() - first, 1e-6)
        # the median is the stored figure (the generation step above folded in its own sample)
        from kcode.llm.prefill import PrefillSpeed

        chat_model.remember_prefill_speed(PrefillSpeed(median, "calibration", len(figures), clock.time()))
        from kcode.tools import default_tools

        fixed, counted = fixed_prompt_tokens(chat_model, default_tools().specs())
        from kcode.context import default_budget

        budget = choose_pack_budget(
            window_tokens=default_budget(chat_model.context_window if not model.endswith(".gguf") and not _is_local(model)
                                         else _trained_context(spec), config.pack_share),
            window_share=config.pack_share, tokens_per_second=median, first_step_seconds=seconds,
            fixed_tokens=fixed, fixed_cached=True, other_tokens=100,
        )  # fmt: skip
        result = {
            "model": chat_model.name, "settings": getattr(chat_model, "settings", {}),
            "settings_line": describe_settings(getattr(chat_model, "settings", None)), "machine": machine_description(),
            "load_seconds": round(chat_model.load_seconds, 2) if hasattr(chat_model, "load_seconds") else None,
            "prompt_tokens": tokens, "prefill_tokens_per_second": [round(f, 1) for f in figures],
            "prefill_median": round(median, 1), "stored_before": stored.describe() if stored else None,
            "generation_tokens_per_second": round(generation, 1) if generation else None,
            "fixed_prompt_tokens": fixed, "fixed_prompt_counted": counted,
            "pack_budget": budget.tokens, "pack_budget_why": budget.why, "first_step_seconds": seconds,
        }  # fmt: skip
    finally:
        chat_model.close()
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"model        {result['model']}")
    if result["settings_line"]:
        typer.echo(f"llama.cpp    {result['settings_line']}")
    typer.echo(f"machine      {result['machine']}")
    if result["load_seconds"] is not None:
        typer.echo(f"load         {result['load_seconds']:.1f} s")
    runs = ", ".join(f"{f:.1f}" for f in figures)
    typer.echo(f"prefill      {median:.1f} tok/s over {tokens} tokens (median of {runs}); stored")
    if stored:
        typer.echo(f"             before: {stored.describe()}")
    if generation:
        typer.echo(f"generation   {generation:.1f} tok/s")
    typer.echo(f"pack budget  {budget.tokens} tokens ({budget.why}; fixed prompt {fixed} tokens, cached)")


def _is_local(model: str) -> bool:
    from kcode.llm.models import find_entry

    return find_entry(model) is not None


def _trained_context(path: str) -> int:
    from kcode.llm.gguf import read_gguf_info

    return read_gguf_info(path).context_length


def _resolve_model_path(model: str) -> Path:
    """The GGUF file to plan for: a path, or a catalog name (downloaded or not yet)."""
    from kcode.errors import ModelUnavailable
    from kcode.llm.models import find_entry, is_present, model_path

    entry = find_entry(model)
    if entry is None or Path(model).expanduser().exists():
        return Path(model).expanduser()
    if not is_present(entry):
        raise ModelUnavailable(f"{model} is not downloaded yet: run `kcode models pull {model}` first")
    return model_path(entry)


@app.command("list")
def list_models() -> None:
    """List the catalog: name, size, whether it is downloaded, description."""
    from kcode.llm.models import (
        CATALOG,
        DEFAULT_MODEL,
        format_size,
        is_present,
        models_dir,
    )

    rows = [
        (
            entry.name + (" (default)" if entry.name == DEFAULT_MODEL else ""),
            ("~" if entry.sha256 is None else "") + format_size(entry.size),
            "yes" if is_present(entry) else "no",
            entry.description,
        )
        for entry in CATALOG.values()
    ]
    header = ("NAME", "SIZE", "LOCAL", "DESCRIPTION")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    typer.echo(f"\nmodels are cached in {models_dir()}", err=True)


@app.command("pull")
def pull(name: str = typer.Argument(..., help="A catalog name (see `kcode models list`).")) -> None:
    """Download a catalog model, verify its sha256 and cache it (no work if already there)."""
    from kcode.cli._progress import progress_bar
    from kcode.errors import KcodeError
    from kcode.llm.models import is_present, model_path
    from kcode.llm.models import pull as pull_model

    try:
        if is_present(name):
            typer.echo(f"{name} is already present: {model_path(name)}", err=True)
            typer.echo(str(model_path(name)))
            return
        with progress_bar() as report:
            path = pull_model(name, report)
    except KcodeError as error:
        typer.echo(f"kcode models pull: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(str(path))


@app.command("rm")
def remove(name: str = typer.Argument(..., help="A catalog name.")) -> None:
    """Delete a downloaded catalog model."""
    from kcode.errors import KcodeError
    from kcode.llm.models import remove as remove_model

    try:
        removed = remove_model(name)
    except KcodeError as error:
        typer.echo(f"kcode models rm: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(f"removed {name}" if removed else f"{name} was not downloaded", err=True)


@app.command("ps")
def ps() -> None:
    """List the kept-alive model servers (keep_alive): model, pid, port, context, when each stops."""
    import time as clock

    from kcode.llm.serve import running_servers

    servers = running_servers()
    if not servers:
        typer.echo("no model server is running", err=True)
        return
    header = ("MODEL", "PID", "PORT", "CTX", "UNTIL")
    rows = []
    for record in servers:
        if record.keep_alive == float("inf"):
            until = "forever"
        else:
            left = (record.last_used or record.started) + record.keep_alive - clock.time()
            until = f"{max(0.0, left):.0f} s idle left"
        rows.append((Path(record.model).name, str(record.pid), str(record.port), str(record.ctx), until))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


@app.command("stop")
def stop(model: str = typer.Argument(None, help="A model file, its name or a catalog name (default: every server).")) -> None:
    """Stop kept-alive model servers (all of them, or a model's)."""
    from kcode.llm.serve import stop_servers

    from kcode.errors import KcodeError

    wanted = model
    if model and not model.endswith(".gguf") and _is_local(model):
        try:
            wanted = str(_resolve_model_path(model))
        except KcodeError:
            pass  # not downloaded: matched by name
    stopped = stop_servers(wanted)
    for record in stopped:
        typer.echo(f"stopped {Path(record.model).name} (pid {record.pid})", err=True)
    if not stopped:
        typer.echo("no model server " + (f"for {model} " if model else "") + "is running", err=True)


@app.command("build-server")
def build_server(
    source: Path = typer.Option(None, "--source", help="llama.cpp's sources: a folder or tarball (default: the installed "
                                "llama-cpp-python's sdist, fetched with pip download)."),
    jobs: int = typer.Option(None, "--jobs", "-j", min=1, help="Parallel compile jobs (default: the CPUs)."),
    force: bool = typer.Option(False, "--force", help="Build again even when it is already there."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Print the build's output."),
) -> None:
    """Build llama.cpp's llama-server (parallel slots for sub-agents) into kcode's cache; prints its path."""
    from kcode.errors import KcodeError
    from kcode.llm.serve._build import build_llama_server, built_llama_server

    def on_line(line: str) -> None:
        if verbose:
            typer.echo(line, err=True)

    if not force and built_llama_server().is_file():
        typer.echo(f"llama-server is already built: {built_llama_server()}", err=True)
    else:
        typer.echo("building llama-server from llama.cpp's sources (minutes: about 10 on two cores)", err=True)
    try:
        path, built = build_llama_server(source, jobs=jobs, force=force, on_line=on_line,
                                         on_step=lambda step: typer.echo(step, err=True))
    except KcodeError as error:
        typer.echo(f"kcode models build-server: {error}", err=True)
        raise typer.Exit(1) from error
    if built:
        typer.echo(f"built {path}; with parallel_slots = N in [llamacpp], a local model's sub-agents share it", err=True)
    typer.echo(str(path))
