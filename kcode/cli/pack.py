"""``kcode pack``: print the repository pack (or, with ``--json``, its statistics)."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["register"]

DEFAULT_WINDOW = 262_144  # Kimi K2.6's context window, used when no model is given


def _fixed_prompt(chat_model: object | None) -> tuple[int, str]:
    """(tokens, how counted) of the system prompt + default tool schemas: with the given
    model, else with the default model's tokenizer and chat template when it is downloaded,
    else a conservative estimate."""
    from kcode.agent.pack_budget import fixed_prompt_tokens
    from kcode.llm.llamacpp import default_model_tokenizer
    from kcode.tools import default_tools

    tools = default_tools().specs()
    if chat_model is not None:
        tokens, how = fixed_prompt_tokens(chat_model, tools)
        return tokens, f"{getattr(chat_model, 'name', 'model')} ({how})"
    tokenizer = default_model_tokenizer()
    if tokenizer is None:
        return fixed_prompt_tokens(object(), tools)
    try:
        tokens, how = fixed_prompt_tokens(tokenizer, tools)
        return tokens, f"{tokenizer.name} ({how})"
    finally:
        tokenizer.close()


def register(app: typer.Typer) -> None:
    @app.command()
    def pack(
        repo: Path = typer.Option(Path("."), "--repo", help="Repository root."),
        task: str = typer.Option("", "--task", help="Task text: seeds the ranking."),
        budget: int | None = typer.Option(None, "--budget", help="Token budget (default: pack_share of the window)."),
        mode: str | None = typer.Option(None, "--mode", help="auto | map | full | none (default: config `pack`)."),
        model: str | None = typer.Option(None, "--model", help="Count tokens with this model's tokenizer."),
        focus: list[str] = typer.Option([], "--focus", help="A file the agent read or edited (repeatable)."),
        as_json: bool = typer.Option(False, "--json", help="Print statistics as JSON instead of the pack."),
    ) -> None:
        """Pack the repository into a token budget: whole if it fits, else repo map + top files.
        ``--json`` also shows the fixed prompt's size (system prompt + tool schemas)."""
        import json
        import sys

        from kcode.agent.prompt import FIXED_PROMPT_LIMIT
        from kcode.config import load_config
        from kcode.context import build_pack, default_budget
        from kcode.errors import KcodeError
        from kcode.llm.base import estimate_tokens
        from kcode.sandbox import load_policy
        from kcode.trust import check_project_settings

        root = repo.resolve()
        if not root.is_dir():
            typer.echo(f"kcode pack: {repo} is not a directory", err=True)
            raise typer.Exit(2)
        try:
            config = load_config(root)
            check_project_settings(config, root, load_policy)
            window, count_tokens, tokenizer = DEFAULT_WINDOW, estimate_tokens, "estimate"
            spec = model or config.model
            if model:
                from kcode.cli._progress import ensure_catalog_model, show_notice
                from kcode.llm.registry import ModelOptions, create_model

                ensure_catalog_model(spec)
                chat_model = create_model(spec, ModelOptions(base_url=config.base_url, on_notice=show_notice))
                window, count_tokens, tokenizer = chat_model.context_window, chat_model.count_tokens, spec
            chosen = budget if budget is not None else config.pack_budget
            if chosen is None:
                chosen = default_budget(window, config.pack_share)
            result = build_pack(
                root,
                task=task,
                count_tokens=count_tokens,
                budget=chosen,
                mode=mode or config.pack,
                focus_files=focus,
                tokenizer=tokenizer,
            )
        except KcodeError as error:
            typer.echo(f"kcode pack: {error}", err=True)
            raise typer.Exit(2) from error
        if as_json:
            fixed, counted = _fixed_prompt(chat_model if model else None)
            stats = {**result.stats, "fixed_prompt_tokens": fixed, "fixed_prompt_counted": counted,
                     "fixed_prompt_limit": FIXED_PROMPT_LIMIT}
            typer.echo(json.dumps(stats, indent=2, sort_keys=True))
        else:
            sys.stdout.write(result.text)
