"""``kcode eval grade`` (grading without Docker, or handed to the official harness) and
``kcode eval build-suite`` (the built-in suite from pinned sdists); registered by
:mod:`kcode.cli.eval`.

Exit codes: 0 when every instance was graded (resolved or not), 1 when some could not be
graded, 2 for a usage error (a bad dataset, predictions file or option).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["build_suite", "grade"]

EXIT_USAGE = 2


def _dataset_path(dataset: str) -> Path:
    path = Path(dataset).expanduser()
    if path.exists() or "/" in dataset or path.suffix:
        return path
    from kcode.resources import resource_dir

    return resource_dir("evals") / "suites" / f"{dataset}.jsonl"


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    typer.echo(f"kcode eval: {message}", err=True)
    return typer.Exit(code)


def grade(
    dataset: Annotated[str, typer.Option("--dataset", help="SWE-bench-schema .json/.jsonl/.parquet, or a built-in suite's name (pypi-bugs).")],
    predictions: Annotated[str, typer.Option("--predictions", "-p", help="preds.jsonl / .json, or gold, or empty.")],
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, help="Instances graded at once (one per environment at a time).")] = 1,
    instances: Annotated[list[str], typer.Option("--instances", help="Instance ids (repeatable, or comma-separated).")] = [],  # noqa: B006
    split: Annotated[str | None, typer.Option("--split", help="Dataset split (a folder with one file per split).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: ./kcode-eval/<run-id>).")] = None,
    run_id: Annotated[str, typer.Option("--run-id", help="Names the run summary <out>/<run-id>.json.")] = "kcode",
    repos: Annotated[Path | None, typer.Option("--repos", help="Local mirrors, one clone per repository (the suite's: its build folder).")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds for one instance's test command.")] = 1800,
    harness: Annotated[str, typer.Option("--harness", help="local (no Docker), or docker / modal: the official swebench harness.")] = "local",
) -> None:
    """Grade predictions: per-instance report.json and the run summary, in the official schema.

    Example: kcode eval grade --dataset pypi-bugs --predictions gold -w 2
    """
    from kcode.errors import KcodeError
    from kcode.evals import dataset as datasets

    try:
        rows = datasets.load_dataset(_dataset_path(dataset), split)
        ids = [i for entry in instances for i in entry.split(",") if i]
        if ids:
            known = {r.instance_id for r in rows}
            unknown = [i for i in ids if i not in known]
            if unknown:
                raise _fail(f"unknown instances: {', '.join(unknown)}")
            rows = datasets.select(rows, ids=ids)
        if harness not in ("local", "docker", "modal"):
            raise _fail(f"--harness must be local, docker or modal, got {harness!r}")
        if harness != "local":
            raise typer.Exit(_official_harness(harness, rows, predictions, workers, run_id, timeout))
        from kcode.evals import grade as grading
        from kcode.evals.suite import default_repos_dir

        preds: dict[str, str] | str = predictions if predictions in ("gold", "empty") else grading.load_predictions(Path(predictions))
        if repos is None and rows and all(r.repo.startswith("pypi/") for r in rows):
            repos = default_repos_dir(_dataset_path(dataset).stem)
        out_dir = out or Path("kcode-eval") / run_id
        summary = grading.grade(rows, preds, out_dir, workers=workers, run_id=run_id, repos_dir=repos, timeout=timeout)
    except KcodeError as exc:
        raise _fail(str(exc)) from None
    extra = summary["kcode"]
    typer.echo(
        f"kcode eval grade: {summary['resolved_instances']}/{summary['submitted_instances']} resolved, "
        f"{summary['unresolved_instances']} unresolved, {summary['empty_patch_instances']} empty, {summary['error_instances']} errors "
        f"in {extra['seconds']:.0f}s; environments built {extra['env_cache']['built']}, reused {extra['env_cache']['reused']}; "
        f"summary: {out_dir / (run_id + '.json')}"
    )
    for instance_id, reason in sorted({**extra["errors"], **extra["reasons"]}.items()):
        typer.echo(f"  {instance_id}: {reason}")
    raise typer.Exit(1 if summary["error_instances"] else 0)


def _official_harness(harness: str, rows, predictions: str, workers: int, run_id: str, timeout: float) -> int:
    """Hands over to ``python -m swebench.harness.run_evaluation`` (it needs docker, and modal
    for --harness modal); returns its exit code."""
    needed = ["swebench", "docker"] + (["modal"] if harness == "modal" else [])
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise _fail(f"--harness {harness} needs the official harness: pip install 'swebench==4.1.0' {' '.join(missing[1:])} (missing: {', '.join(missing)})")
    from kcode.evals.dataset import instance_to_row

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "dataset.json"
        data.write_text(json.dumps([instance_to_row(r) for r in rows]))
        argv = [sys.executable, "-m", "swebench.harness.run_evaluation", "--dataset_name", str(data), "--predictions_path", predictions,
                "--max_workers", str(workers), "--run_id", run_id, "--timeout", str(int(timeout))]
        if harness == "modal":
            argv += ["--modal", "true"]
        return subprocess.run(argv).returncode


def build_suite(
    suite: Annotated[str, typer.Option("--suite", help="A suite folder (libraries.toml + tasks.toml) or a built-in suite's name.")] = "pypi-bugs",
    out: Annotated[Path | None, typer.Option("--out", help="The JSONL to write (default: evals/suites/<suite>.jsonl).")] = None,
    repos: Annotated[Path | None, typer.Option("--repos", help="Where the libraries' git repositories go (default: the cache).")] = None,
    libraries: Annotated[list[str], typer.Option("--libraries", help="Only these libraries (repeatable, or comma-separated).")] = [],  # noqa: B006
    tasks: Annotated[list[str], typer.Option("--tasks", help="Only these tasks (repeatable, or comma-separated).")] = [],  # noqa: B006
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, help="Libraries built at once.")] = 1,
) -> None:
    """Build the built-in suite: sdists (sha256-checked) into git repositories, one commit per
    injected bug, FAIL_TO_PASS/PASS_TO_PASS from the library's own tests; writes the JSONL.

    Example: kcode eval build-suite --libraries inflection,idna --out /tmp/subset.jsonl
    """
    from kcode.errors import KcodeError
    from kcode.evals.suite import build_suite as build

    folder = Path(suite).expanduser()
    if not folder.is_dir():
        from kcode.resources import resource_dir

        folder = resource_dir("evals") / "suites" / suite
    target = out or folder.parent / f"{folder.name}.jsonl"
    try:
        result = build(folder, target, repos_dir=repos, libraries=[n for e in libraries for n in e.split(",") if n] or None,
                       task_ids=[n for e in tasks for n in e.split(",") if n] or None, workers=workers, on_event=typer.echo)
    except KcodeError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"kcode eval build-suite: {result['instances']} instances in {result['out']} (repositories: {result['repos']})")
    for instance_id, reason in sorted(result["failed"].items()):
        typer.echo(f"  {instance_id}: {reason}", err=True)
    raise typer.Exit(1 if result["failed"] else 0)
