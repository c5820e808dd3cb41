"""``kcode cache ...``: the prefix cache (KV states of prompt prefixes kept across runs)."""

from __future__ import annotations

import json
import time

import typer

__all__ = ["app"]

app = typer.Typer(name="cache", help="Inspect and clear the prefix cache (saved KV states).", no_args_is_help=True)


def _store(directory: str | None):
    from kcode.config import load_config
    from kcode.llm.llamacpp import PrefixStore, prefix_cache_dir

    llamacpp = load_config().llamacpp
    folder = prefix_cache_dir(directory if directory is not None else llamacpp.prefix_cache)
    if folder is None:
        typer.echo("kcode cache: the prefix cache is off (prefix_cache = \"off\")", err=True)
        raise typer.Exit(1)
    return PrefixStore(folder, int(llamacpp.prefix_cache_gib * 2**30))


def _ago(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


@app.command("list")
def list_entries(
    directory: str | None = typer.Option(None, "--dir", help="Cache folder (default: the configured one)."),
    as_json: bool = typer.Option(False, "--json", help="Print the entries as JSON."),
) -> None:
    """List entries, most recently used first: key, model, tokens, size, last used, what for."""
    from kcode.llm.models import format_size

    store = _store(directory)
    entries = store.entries()
    if as_json:
        typer.echo(json.dumps([entry.to_dict() for entry in entries], indent=2))
        return
    now = time.time()
    rows = [(entry.key[:12], entry.model, str(entry.n_tokens), format_size(entry.size), _ago(now - entry.last_used),
             entry.label or "-") for entry in entries]
    header = ("KEY", "MODEL", "TOKENS", "SIZE", "LAST USED", "FOR")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(5)]
    for row in [header, *rows]:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[5])
    total = sum(entry.size for entry in entries)
    typer.echo(f"\n{len(entries)} entries, {format_size(total)} of {format_size(store.limit_bytes)} "
               f"in {store.directory}", err=True)


@app.command("clear")
def clear(
    model: str | None = typer.Option(None, "--model", help="Only the entries of this model file (its file name)."),
    directory: str | None = typer.Option(None, "--dir", help="Cache folder (default: the configured one)."),
) -> None:
    """Delete the cached entries (all of them, or one model's)."""
    from kcode.llm.models import format_size

    store = _store(directory)
    removed = store.clear(model)
    typer.echo(f"removed {len(removed)} entries ({format_size(sum(entry.size for entry in removed))}) "
               f"from {store.directory}", err=True)
