"""``kcode run``, ``resume``, ``rewind``, ``apply``, ``diff``, ``sessions`` and ``replay``.

Exit codes: 0 finished, 1 error, 2 usage error, 3 budget exhausted, 130 interrupted.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["register"]

EXIT_ERROR, EXIT_USAGE = 1, 2

RepoOption = Annotated[Path | None, typer.Option("--repo", help="The git repository (default: the current directory's).")]
ModelOption = Annotated[str | None, typer.Option("--model", "-m", help="Model: scripted:FILE, chaos:RATE:SPEC, …")]
FormatOption = Annotated[str, typer.Option("--output-format", help="text (progress on stderr, summary on stdout) or stream-json (JSONL on stdout).")]
OutputFileOption = Annotated[Path | None, typer.Option("--output-last-message", "-o", help="Also write the final message to this file.")]


def _fail(message: str, code: int) -> None:
    typer.echo(f"kcode: error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def _errors() -> Iterator[None]:
    """Translate kcode's exceptions into messages and exit codes."""
    from kcode.errors import KcodeError, UsageError

    try:
        yield
    except UsageError as error:
        _fail(str(error), EXIT_USAGE)
    except KcodeError as error:
        _fail(str(error), EXIT_ERROR)


@contextmanager
def _cancel_on_signals() -> Iterator[Any]:
    """SIGINT/SIGTERM cancel the run (it stops cleanly, exit 130); a second SIGINT aborts."""
    from kcode.cancel import CancelToken

    cancel = CancelToken()

    def handler(signum: int, frame: Any) -> None:
        if cancel.cancelled and signum == signal.SIGINT:
            raise KeyboardInterrupt
        cancel.cancel()
        sys.stderr.write("\nkcode: stopping (press Ctrl-C again to abort at once)\n")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield cancel
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _subscribers(output_format: str) -> list[Callable]:
    from kcode.headless import StreamJsonRenderer, TextRenderer

    if output_format == "stream-json":
        return [StreamJsonRenderer(sys.stdout)]
    if output_format == "text":
        return [TextRenderer(sys.stderr)]
    _fail(f"unknown output format {output_format!r} (text or stream-json)", EXIT_USAGE)
    return []


def _summary(outcome: Any) -> str:
    result, meta = outcome.result, outcome.meta
    lines = [f"Status: {result.status} after {result.steps} steps ({result.duration:.1f}s)"]
    if result.summary:
        lines.append(f"Summary: {result.summary}")
    if outcome.tests:
        t = outcome.tests
        state = "passing" if t["ok"] else "failing"
        lines.append(f"Tests: {state} ({t['passed']} passed, {t['failed']} failed, {t['errors']} errors) — {t['command']}")
    else:
        lines.append("Tests: not run")
    if outcome.changed_files:
        lines.append(f"Changes since the start ({meta.base_commit[:10]}):")
        lines.extend("  " + line for line in outcome.diff_stat.splitlines())
    else:
        lines.append("Changes: none")
    if outcome.applied is not None:
        report = outcome.applied
        lines.append(f"Applied to {meta.repo}: {len(report.applied) + len(report.merged)} files" + (f", {len(report.conflicts)} conflicts" if report.conflicts else ""))
        lines.extend("  " + note for note in report.notes)
    elif meta.mode == "worktree" and outcome.changed_files:
        lines.append(f"Result on branch {meta.branch}.")
        lines.append(f"  Bring it into your checkout:  kcode apply {meta.session_id}")
        lines.append(f"  Or review it:                 kcode diff {meta.session_id}   (or: git switch {meta.branch})")
    elif meta.mode == "in-place":
        lines.append(f"Edited in place; checkpoints are on {meta.branch}.")
    if result.status != "finished":
        lines.append(f"Continue with:  kcode resume {meta.session_id}")
    return "\n".join(lines)


def _ci_outputs(outcome: Any, task: str, artifacts: Path | None, ci: bool) -> None:
    from kcode.headless.ci import append_step_summary, result_data, summary_markdown, write_artifacts
    from kcode.session import SessionStore

    if artifacts is not None:
        written = write_artifacts(outcome, artifacts, task, SessionStore().log_path(outcome.meta.session_id))
        typer.echo(f"kcode: artifacts in {artifacts} ({', '.join(written)})", err=True)
    if ci:
        append_step_summary(summary_markdown(result_data(outcome, task)))


def _finish(outcome: Any, output_format: str, output_file: Path | None) -> None:
    if output_file is not None:
        message = outcome.result.summary if outcome.result.status == "finished" else (outcome.result.last_message or outcome.result.summary)
        output_file.write_text(message + "\n", encoding="utf-8")
    if output_format == "text":
        typer.echo(_summary(outcome))
    raise typer.Exit(outcome.result.exit_code)


def _config(repo: Path | None, **overrides: Any) -> Any:
    from kcode.config import load_config
    from kcode.vcs import repo_root

    root = repo_root(repo or Path.cwd())
    return root, load_config(root, overrides)


def _prune(store: Any, root: Path | None, older_than: str, delete_branches: bool) -> None:
    from kcode.config import parse_duration
    from kcode.agent.prune import prune_sessions

    results = prune_sessions(store, root, older_than=parse_duration(older_than), delete_branches=delete_branches)
    for pruned in results:
        if pruned.removed_worktree:
            typer.echo(f"  {pruned.session_id}  removed work tree {pruned.removed_worktree}")
        if pruned.deleted_branch:
            typer.echo(f"  {pruned.session_id}  deleted branch {pruned.deleted_branch}")
        if pruned.note:
            typer.echo(f"  {pruned.session_id}  left alone: {pruned.note}")
    worktrees = sum(bool(p.removed_worktree) for p in results)
    branches = sum(bool(p.deleted_branch) for p in results)
    summary = f"kcode sessions --prune: {worktrees} work trees removed"
    if delete_branches:
        summary += f", {branches} branches deleted"
    typer.echo(summary + f" (sessions idle for {older_than} or more)")


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        task: Annotated[str, typer.Argument(help="What to do, in plain words.")],
        repo: RepoOption = None,
        model: ModelOption = None,
        base_url: Annotated[str | None, typer.Option(help="Server URL for OpenAI-compatible models.")] = None,
        max_steps: Annotated[int | None, typer.Option(min=1, help="Stop after this many steps (default 1000).")] = None,
        max_time: Annotated[str | None, typer.Option(help="Stop after this long, e.g. 30m or 12h (default 12h).")] = None,
        max_tokens: Annotated[int | None, typer.Option(min=1, help="Stop after the model computed this many tokens (input + output).")] = None,
        test_command: Annotated[str | None, typer.Option(help="The command that runs the tests (default: detected).")] = None,
        sandbox: Annotated[str | None, typer.Option(help="Sandbox profile: workspace-write, read-only, workspace-write-network, off.")] = None,
        ctx: Annotated[int | None, typer.Option("--ctx", min=256, help="Context window in tokens (llama.cpp: default the model's trained context, lowered to fit memory; servers: what the server reports).")] = None,
        temperature: Annotated[float | None, typer.Option(min=0.0, help="Sampling temperature (default 0.6).")] = None,
        seed: Annotated[int | None, typer.Option(help="Sampling seed, for repeatable runs.")] = None,
        max_output_tokens: Annotated[int | None, typer.Option(min=1, help="Most tokens the model may write in one step.")] = None,
        gpu_layers: Annotated[int | None, typer.Option(help="llama.cpp: layers on the GPU (default: all when a GPU backend is present).")] = None,
        cpu_moe: Annotated[bool, typer.Option("--cpu-moe", help="llama.cpp: keep every layer's routed experts in CPU RAM.")] = False,
        n_cpu_moe: Annotated[int | None, typer.Option(min=0, help="llama.cpp: keep the routed experts of the first N layers in CPU RAM.")] = None,
        override_tensor: Annotated[list[str] | None, typer.Option("--override-tensor", help="llama.cpp: REGEX=BUFFER tensor placement (repeatable, first match wins).")] = None,
        kv_type: Annotated[str | None, typer.Option(help="llama.cpp: KV cache type f16, q8_0 or q4_0 (turns on flash attention).")] = None,
        threads: Annotated[int | None, typer.Option(min=1, help="llama.cpp: CPU threads.")] = None,
        constrain_tools: Annotated[bool | None, typer.Option("--constrain-tools/--no-constrain-tools", help="llama.cpp: constrain tool calls with a GBNF grammar once the model opens one (default on).")] = None,
        prefix_cache: Annotated[str | None, typer.Option(help="llama.cpp: directory to save/restore the stable prefix's KV state.")] = None,
        pack: Annotated[str | None, typer.Option(help="Repository in the prompt: auto (whole repo if it fits, else map + top files), map, full, none.")] = None,
        pack_budget: Annotated[int | None, typer.Option(min=0, help="Tokens for the repository pack (default: a share of the model's window).")] = None,
        output_format: FormatOption = "text",
        output_last_message: OutputFileOption = None,
        apply: Annotated[bool, typer.Option("--apply", help="Bring the result into your checkout when the run succeeds.")] = False,
        in_place: Annotated[bool, typer.Option("--in-place", help="Edit your checkout directly (checkpoints go to refs/kcode/<session>).")] = False,
        ci: Annotated[bool, typer.Option("--ci", help="A CI job's run: never asks, refuses to run unsandboxed unless --sandbox off is given, writes $GITHUB_STEP_SUMMARY.")] = False,
        artifacts: Annotated[Path | None, typer.Option("--artifacts", help="Write patch.diff, events.jsonl, summary.md and result.json here.")] = None,
        approvals: Annotated[str, typer.Option(help="never (headless default; the config's approvals is the TUI's), or on-request: a command that needs more than the sandbox allows waits for an answer from `kcode attach`.")] = "never",
    ) -> None:
        """Run TASK headless in a separate work tree of the current repository."""
        from kcode.agent.run_control import RunControl
        from kcode.agent.runner import process_start, run_task
        from kcode.cli._progress import ensure_catalog_model

        with _errors():
            root, config = _config(
                repo, model=model, base_url=base_url, max_steps=max_steps, max_time=max_time, max_tokens=max_tokens,
                test_command=test_command, sandbox=sandbox, pack=pack, pack_budget=pack_budget,
                ctx=ctx, context_window=ctx, temperature=temperature, seed=seed, max_output_tokens=max_output_tokens, gpu_layers=gpu_layers, cpu_moe=cpu_moe or None, n_cpu_moe=n_cpu_moe, override_tensor=override_tensor or None,
                kv_type=kv_type, threads=threads, constrain_tools=constrain_tools, prefix_cache=prefix_cache,
            )
            if ci:
                from kcode.headless.ci import ci_preflight

                ci_preflight(config.sandbox, sandbox)
                if approvals != "never":
                    _fail("--ci never asks: --approvals on-request does not go with it", EXIT_USAGE)
            control = RunControl(approvals=approvals)
            subscribers = _subscribers(output_format)
            ensure_catalog_model(config.model)  # a first pull draws its progress here, before the run
            with _cancel_on_signals() as cancel:
                outcome = run_task(task, config, repo=root, cwd=Path.cwd(), in_place=in_place, apply=apply, subscribers=subscribers, cancel=cancel, started_at=process_start(), control=control)
            if ci or artifacts:
                _ci_outputs(outcome, task, artifacts, ci)
        _finish(outcome, output_format, output_last_message)

    @app.command()
    def resume(
        session: Annotated[str | None, typer.Argument(help="Session id (default: the latest of this repository).")] = None,
        repo: RepoOption = None,
        model: ModelOption = None,
        max_steps: Annotated[int | None, typer.Option(min=1, help="New total step budget.")] = None,
        max_time: Annotated[str | None, typer.Option(help="New total time budget, e.g. 2h.")] = None,
        max_tokens: Annotated[int | None, typer.Option(min=1, help="New total token budget.")] = None,
        output_format: FormatOption = "text",
        output_last_message: OutputFileOption = None,
    ) -> None:
        """Continue a session after it finished, ran out of budget, was interrupted or crashed.

        The session keeps the settings it was started with; the options given here change them."""
        from kcode.agent.runner import resume_task
        from kcode.vcs import repo_root

        with _errors():
            root = None if session else repo_root(repo or Path.cwd())
            overrides = {"model": model, "max_steps": max_steps, "max_time": max_time, "max_tokens": max_tokens}
            subscribers = _subscribers(output_format)
            with _cancel_on_signals() as cancel:
                outcome = resume_task(session, overrides, repo=root, subscribers=subscribers, cancel=cancel)
        _finish(outcome, output_format, output_last_message)

    @app.command()
    def rewind(
        session: Annotated[str, typer.Argument(help="Session id (or a unique prefix).")],
        to: Annotated[int, typer.Option("--to", min=0, help="The step to go back to (its end state).")],
        repo: RepoOption = None,
    ) -> None:
        """Restore a session's files and conversation to the end of a step; continue with kcode resume."""
        from kcode.agent.runner import rewind_session

        with _errors():
            meta, event = rewind_session(session, to, repo)
        typer.echo(f"kcode rewind {meta.session_id}: back at step {event.to_step} (from {event.from_step}), files at {event.commit[:10]}")
        if event.abandoned_ref:
            typer.echo(f"  the abandoned steps' files are kept at {event.abandoned_ref}")
        typer.echo(f"  continue with:  kcode resume {meta.session_id}")

    @app.command(name="apply")
    def apply_command(
        session: Annotated[str | None, typer.Argument(help="Session id (default: the latest of this repository).")] = None,
        repo: RepoOption = None,
    ) -> None:
        """Bring a session's result into your working tree (3-way; conflicts are reported)."""
        from kcode.agent.runner import apply_session
        from kcode.vcs import repo_root

        with _errors():
            root = repo_root(repo or Path.cwd()) if session is None else repo
            meta, report = apply_session(session, root)
        for name in report.applied + report.merged:
            typer.echo(f"  {'merged' if name in report.merged else 'applied'}  {name}")
        for note in report.notes:
            typer.echo(f"  conflict {note}")
        total = len(report.applied) + len(report.merged)
        typer.echo(f"kcode apply {meta.session_id}: {total} files brought over, {len(report.unchanged)} already identical, {len(report.conflicts)} conflicts")
        raise typer.Exit(0 if report.ok else EXIT_ERROR)

    @app.command()
    def diff(
        session: Annotated[str | None, typer.Argument(help="Session id (default: the latest of this repository).")] = None,
        repo: RepoOption = None,
        stat: Annotated[bool, typer.Option("--stat", help="Only the changed files and line counts.")] = False,
    ) -> None:
        """Show what a session changed since its start (from its branch; no work tree needed)."""
        from kcode.session import SessionStore
        from kcode.vcs import git, repo_root

        with _errors():
            meta = SessionStore().resolve(session, repo_root(repo or Path.cwd()) if session is None else None)
            text = git(["diff", *(["--stat"] if stat else []), meta.base_commit, meta.branch, "--"], Path(meta.repo))
        typer.echo(str(text), nl=False)

    @app.command()
    def sessions(
        repo: RepoOption = None,
        all_repos: Annotated[bool, typer.Option("--all", help="Sessions of every repository.")] = False,
        prune: Annotated[bool, typer.Option("--prune", help="Remove the work trees of sessions idle for --older-than (their branches stay).")] = False,
        older_than: Annotated[str, typer.Option("--older-than", help="With --prune: idle for at least this long, e.g. 30d, 12h, 0.")] = "30d",
        delete_branches: Annotated[bool, typer.Option("--delete-branches", help="With --prune: delete those sessions' branches (their results) too.")] = False,
    ) -> None:
        """List sessions: id, status, steps, branch, last activity; or prune old ones."""
        import time

        from kcode.session import SessionStore
        from kcode.vcs import repo_root

        with _errors():
            root = None if all_repos else repo_root(repo or Path.cwd())
            if prune:
                _prune(SessionStore(), root, older_than, delete_branches)
                return
            if delete_branches:
                _fail("--delete-branches only goes with --prune", EXIT_USAGE)
            metas = SessionStore().list(root)
        if not metas:
            typer.echo("no sessions")
            return
        typer.echo(f"{'SESSION':<24} {'STATUS':<17} {'STEPS':>5}  {'LAST ACTIVITY':<19}  BRANCH / TASK")
        for meta in metas:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(meta.updated))
            task = meta.task.splitlines()[0][:50] if meta.task else ""
            typer.echo(f"{meta.session_id:<24} {meta.status:<17} {meta.steps:>5}  {when:<19}  {meta.branch}  {task}")

    @app.command()
    def replay(
        session: Annotated[str | None, typer.Argument(help="Session id (default: the latest of this repository).")] = None,
        repo: RepoOption = None,
        output_format: FormatOption = "stream-json",
    ) -> None:
        """Print a session's recorded events through a renderer, as the live run printed them."""
        from kcode.session import SessionStore, read_events
        from kcode.vcs import repo_root

        with _errors():
            store = SessionStore()
            meta = store.resolve(session, repo_root(repo or Path.cwd()) if session is None else None)
            subscribers = _subscribers(output_format)
            for event in read_events(store.log_path(meta.session_id)):
                for subscriber in subscribers:
                    subscriber(event)

    @app.command()
    def version() -> None:
        """Print kcode's version."""
        from kcode import __version__

        typer.echo(__version__)
