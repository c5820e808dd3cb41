"""``kcode eval``: SWE-bench-style runs (``run``), Docker-free grading (``grade``), reports
(``report``) and the built-in suite (``build-suite``)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="SWE-bench-style evaluation runs, grading without Docker, and reports.")


def _resolve_dataset(dataset: str) -> Path:
    """A dataset path, or the name of a built-in suite (``pypi-bugs``: evals/suites/pypi-bugs.jsonl)."""
    path = Path(dataset).expanduser()
    if path.exists() or "/" in dataset or path.suffix:
        return path
    from kcode.resources import resource_dir

    return resource_dir("evals") / "suites" / f"{dataset}.jsonl"


class _Progress:
    """done/resolved/failed counts and an ETA: a rich bar on a terminal, one line per
    instance otherwise (CI logs)."""

    def __init__(self, total: int, already: int) -> None:
        self.total = total
        self.started = time.monotonic()
        self.already = already
        self.resolved = self.failed = 0
        self._bar: Any = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("eval"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[counts]}"), TimeRemainingColumn(),
                                 console=Console(stderr=True))
            self._bar.start()
            self._task = self._bar.add_task("eval", total=total, completed=already, counts=self._counts())

    def _counts(self) -> str:
        return f"resolved {self.resolved}  failed {self.failed}"

    def __call__(self, result: dict, done: int, total: int) -> None:
        self.resolved += bool(result.get("resolved"))
        self.failed += result.get("status") == "error" or bool(result.get("grade_error"))
        if self._bar is not None:
            self._bar.update(self._task, completed=done, counts=self._counts())
            return
        ran = done - self.already
        eta = (time.monotonic() - self.started) / max(ran, 1) * (total - done)
        grade = {True: "resolved", False: "unresolved", None: ""}[result.get("resolved")]
        why = f" ({result['error'][:80]})" if result.get("error") else ""
        typer.echo(f"[{done}/{total}] {result.get('instance_id')}: {result.get('status')}{why} {grade} "
                   f"{result.get('patch_lines', 0)} lines, {result.get('wall_s', 0):.0f} s | {self._counts()} | ETA {eta / 60:.1f} min", err=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


@app.command("run")
def run_command(
    dataset: Annotated[str, typer.Option("--dataset", help="A .json/.jsonl/.parquet file in the SWE-bench (or Pro) schema, a folder of them, or a built-in suite's name (pypi-bugs).")],
    split: Annotated[str | None, typer.Option(help="The split (a file of that name in a folder; a row's split column).")] = None,
    instances: Annotated[str | None, typer.Option(help="Comma-separated instance ids.")] = None,
    filter: Annotated[str | None, typer.Option("--filter", help="Instances whose id matches this regular expression.")] = None,
    slice_: Annotated[str | None, typer.Option("--slice", help="A:B of the selection.")] = None,
    shuffle: Annotated[int | None, typer.Option(help="Shuffle the selection with this seed.")] = None,
    workers: Annotated[int, typer.Option("-w", "--workers", min=1, help="Instances at once.")] = 1,
    model: Annotated[str | None, typer.Option(help="The model (as for kcode run; scripted:DIR gives each instance DIR/<id>.json).")] = None,
    base_url: Annotated[str | None, typer.Option(help="Server URL for OpenAI-compatible models.")] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Steps per instance.")] = None,
    max_time: Annotated[str | None, typer.Option(help="Wall time per instance, e.g. 20m.")] = None,
    max_tokens: Annotated[int | None, typer.Option(min=1, help="Tokens per instance.")] = None,
    repos: Annotated[Path | None, typer.Option("--repos", help="A folder of local clones (owner__name, owner+name or name); otherwise each repository is cloned once into the cache.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="The run folder (default ./kcode-eval/<dataset>).")] = None,
    executor: Annotated[str, typer.Option(help="local (threads), local:processes, ray or ray:ADDRESS.")] = "local",
    grade: Annotated[bool, typer.Option("--grade/--no-grade", help="Grade each patch as it is made (no Docker; see kcode eval grade).")] = False,
    redo: Annotated[bool, typer.Option("--redo", help="Run finished instances again.")] = False,
    keep_checkouts: Annotated[bool, typer.Option("--keep-checkouts", help="Keep each instance's checkout under OUT/work/.")] = False,
    agent_env: Annotated[bool, typer.Option("--agent-env/--no-agent-env", help="Give the agent the instance's environment as .venv/ in its checkout.")] = True,
) -> None:
    """Run the agent on each instance, headless: OUT/preds.jsonl, a trajectory per instance, OUT/manifest.json."""
    from kcode.cli.run import _cancel_on_signals, _errors
    from kcode.evals.run import EvalOptions, load_results, run_eval, summarize
    from kcode.evals.dataset import load_dataset, select

    with _errors():
        path = _resolve_dataset(dataset)
        chosen = select(load_dataset(path, split), ids=instances.split(",") if instances else None, filter=filter, slice=slice_, shuffle=shuffle)
        if not chosen:
            raise typer.BadParameter("no instance selected")
        out_dir = (out or Path("kcode-eval") / path.stem).resolve()
        config = {k: v for k, v in {"max_steps": max_steps, "max_time": max_time, "max_tokens": max_tokens, "base_url": base_url}.items() if v is not None}
        options = EvalOptions(str(out_dir), model=model, repos_dir=str(repos.resolve()) if repos else None, config=config, grade=grade, keep_checkouts=keep_checkouts, agent_env=agent_env)
        already = 0 if redo else sum(1 for inst in chosen if inst.instance_id in load_results(out_dir))
        typer.echo(f"kcode eval run: {len(chosen)} instances ({already} done already), {workers} workers ({executor}), out {out_dir}", err=True)
        progress = _Progress(len(chosen), already)
        try:
            with _cancel_on_signals() as cancel:
                counts = run_eval(chosen, options, dataset=path, workers=workers, executor=executor, redo=redo, cancel=cancel, on_result=progress)
        finally:
            progress.close()
        counts = counts or summarize(out_dir, [i.instance_id for i in chosen])
    graded = f", {counts['resolved']}/{counts['graded']} resolved" if counts["graded"] else ""
    typer.echo(f"kcode eval run: {counts['done']}/{counts['total']} done{graded}, {counts['failed']} failed, "
               f"{counts['empty_patches']} empty patches; predictions in {out_dir / 'preds.jsonl'}")
    raise typer.Exit(0 if counts["done"] == counts["total"] else 130)


@app.command("report")
def report_command(
    runs: Annotated[list[Path], typer.Argument(help="A run folder, or two to compare side by side.")],
    html: Annotated[Path | None, typer.Option("--html", help="Also write a self-contained HTML page here.")] = None,
) -> None:
    """Resolved by repository and tier, tokens, steps, wall time and error reasons."""
    from kcode.cli.run import _errors
    from kcode.evals.report import render_html, render_text, load_run

    with _errors():
        if not 1 <= len(runs) <= 2:
            raise typer.BadParameter("give one run folder, or two to compare")
        loaded = [load_run(r) for r in runs]
        typer.echo(render_text(loaded))
        if html:
            html.write_text(render_html(loaded), encoding="utf-8")
            typer.echo(f"kcode eval report: wrote {html}", err=True)


@app.command("support")
def support_command(
    dataset: Annotated[str, typer.Option("--dataset", help="The dataset (as for eval run).")],
    split: Annotated[str | None, typer.Option(help="The split.")] = None,
    filter: Annotated[str | None, typer.Option("--filter", help="Instances whose id matches this regular expression.")] = None,
    repos: Annotated[Path | None, typer.Option("--repos", help="Also require a local mirror in this folder.")] = None,
    ids: Annotated[bool, typer.Option("--ids", help="List the supported instance ids, one per line.")] = False,
) -> None:
    """Which instances run and grade here without Docker, and why the others do not."""
    from kcode.cli.run import _errors
    from kcode.evals.dataset import load_dataset, select
    from kcode.evals.support import check_support, render_support

    with _errors():
        chosen = select(load_dataset(_resolve_dataset(dataset), split), filter=filter)
        verdicts = check_support(chosen, repos.resolve() if repos else None)
    if ids:
        typer.echo("\n".join(v.instance_id for v in verdicts if v.supported))
    else:
        typer.echo(render_support(verdicts))


def _register_grading() -> None:
    """``grade`` and ``build-suite`` (kcode/cli/eval_grade.py)."""
    from kcode.cli import eval_grade

    app.command("grade")(eval_grade.grade)
    app.command("build-suite")(eval_grade.build_suite)


_register_grading()
