"""``kcode run --ci``: a run for a CI job. It never asks, it refuses to run unsandboxed unless
``--sandbox off`` was given on the command line, and ``--artifacts DIR`` leaves what a job
uploads or posts:

- ``patch.diff``: the run's change against its start (``git apply``-able, binary-safe);
- ``events.jsonl``: the session's event log;
- ``summary.md``: status, tests, diff stat, tokens and time, ready for a step summary;
- ``result.json``: the same as data (schema below, ``schema_version`` 1).

When ``GITHUB_STEP_SUMMARY`` is set, ``summary.md`` is appended to it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kcode.errors import UsageError
from kcode.vcs.git import git

__all__ = ["append_step_summary", "ci_preflight", "result_data", "summary_markdown", "write_artifacts"]

_ICONS = {"finished": "✅", "budget_exhausted": "⏳", "interrupted": "⏹️", "error": "❌"}


def ci_preflight(config_sandbox: str, sandbox_flag: str | None) -> None:
    """Refuse a CI run that would not be sandboxed: bubblewrap must work, unless the command
    line itself said ``--sandbox off`` (a config file or environment variable saying so is
    not enough in CI: the job's author must write it where reviewers see it)."""
    if config_sandbox == "off":
        if sandbox_flag == "off":
            return
        raise UsageError("--ci refuses to run without a sandbox: the configuration turns it off; pass --sandbox off on the command line to mean it")
    from kcode.sandbox.probe import probe_bubblewrap

    status = probe_bubblewrap()
    if not status.usable:
        raise UsageError(f"--ci needs the sandbox, and it cannot start here: {status.message()}\n"
                         "Or, if the job's machine is itself disposable, pass --sandbox off explicitly.")


def _patch(outcome: Any) -> str:
    meta = outcome.meta
    return str(git(["diff", "--binary", "--no-color", "--no-ext-diff", meta.base_commit, outcome.workspace.head], Path(meta.repo)))


def result_data(outcome: Any, task: str) -> dict[str, Any]:
    result, meta = outcome.result, outcome.meta
    return {
        "schema_version": 1,
        "status": result.status,
        "exit_code": result.exit_code,
        "task": task,
        "summary": result.summary,
        "steps": result.steps,
        "duration_s": round(result.duration, 2),
        "tokens": result.usage.as_dict(),
        "session_id": meta.session_id,
        "model": meta.model,
        "branch": meta.branch,
        "base_commit": meta.base_commit,
        "head": outcome.workspace.head,
        "changed_files": outcome.changed_files,
        "diff_stat": outcome.diff_stat,
        "tests": outcome.tests,
    }


def summary_markdown(data: Mapping[str, Any]) -> str:
    """The step summary: a title with the status, then tests, changes, tokens and time."""
    status = data["status"]
    lines = [f"## kcode: {status.replace('_', ' ')} {_ICONS.get(status, '')}".rstrip(), ""]
    task = " ".join(str(data["task"]).split())
    lines.append(f"**Task:** {task[:300]}{'…' if len(task) > 300 else ''}")
    lines.append("")
    if data.get("summary"):
        lines += [f"**Summary:** {data['summary']}", ""]
    tests = data.get("tests")
    if tests:
        state = "passing" if tests.get("ok") else "failing"
        lines.append(f"**Tests:** {state}: {tests.get('passed', 0)} passed, {tests.get('failed', 0)} failed, {tests.get('errors', 0)} errors (`{tests.get('command', '')}`)")
    else:
        lines.append("**Tests:** not run")
    files = data.get("changed_files") or []
    lines.append(f"**Changes:** {len(files)} file{'s' if len(files) != 1 else ''}" if files else "**Changes:** none")
    if data.get("diff_stat"):
        lines += ["", "```", data["diff_stat"], "```"]
    tokens = data.get("tokens") or {}
    lines += ["", "| steps | time | input tokens | reused | output tokens |", "|---|---|---|---|---|",
              f"| {data['steps']} | {data['duration_s']:.0f} s | {tokens.get('input_tokens', 0)} | {tokens.get('cached_input_tokens', 0)} | {tokens.get('output_tokens', 0)} |",
              "", f"Session `{data['session_id']}` on branch `{data['branch']}` (model `{data['model']}`)."]
    return "\n".join(lines) + "\n"


def append_step_summary(text: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """Append to ``$GITHUB_STEP_SUMMARY`` when it is set; return its path."""
    target = (environ if environ is not None else os.environ).get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    path = Path(target)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(text)
    return path


def write_artifacts(outcome: Any, directory: Path, task: str, log_path: Path) -> dict[str, Path]:
    """Write the four artifacts into ``directory`` (made if needed); return their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = result_data(outcome, task)
    paths = {name: directory / name for name in ("patch.diff", "events.jsonl", "summary.md", "result.json")}
    paths["patch.diff"].write_text(_patch(outcome), encoding="utf-8")
    if log_path.exists():
        shutil.copyfile(log_path, paths["events.jsonl"])
    else:
        paths["events.jsonl"].write_text("", encoding="utf-8")
    paths["summary.md"].write_text(summary_markdown(data), encoding="utf-8")
    paths["result.json"].write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return paths
