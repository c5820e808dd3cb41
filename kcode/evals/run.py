"""``kcode eval run``: the agent on each instance of a dataset, headless, with per-instance
budgets; the official ``preds.jsonl``, one trajectory per instance, a run manifest.

The run directory::

    OUT/manifest.json                  what was run: dataset (and its sha256), model, budgets, executor
    OUT/preds.jsonl                    instance_id, model_name_or_path, model_patch (official schema)
    OUT/instances/<id>/result.json     status, steps, tokens, wall time, error, the grade
    OUT/instances/<id>/trajectory.jsonl   the session's event log
    OUT/instances/<id>/patch.diff

An instance is done once its ``result.json`` exists: a later run with the same OUT skips it
(``--redo`` runs it again), so a run is safe to interrupt. Each instance gets a checkout of its
own (:func:`kcode.evals.repos.checkout`: nothing newer than the base commit), which the agent
edits in place and which is removed once the patch is taken.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kcode import __version__
from kcode.cancel import CancelToken
from kcode.errors import KcodeError, UsageError
from kcode.evals.dataset import Instance, instance_from_row, instance_to_row, load_dataset
from kcode.evals.executor import Executor, create_executor
from kcode.evals.repos import checkout
from kcode.resources import read_prompt

__all__ = ["EvalOptions", "InstanceResult", "load_results", "run_eval", "run_instance", "task_text", "write_predictions"]

RESULT = "result.json"


@dataclass
class EvalOptions:
    """What every instance of a run shares."""

    out_dir: str
    model: str | None = None  # None: the configured default; scripted:DIR gives each instance DIR/<id>.json
    repos_dir: str | None = None
    config: dict[str, Any] = field(default_factory=dict)  # load_config overrides: max_steps, max_time, base_url, ...
    grade: bool = False
    keep_checkouts: bool = False
    grade_timeout: float = 1800.0
    agent_env: bool = True  # the instance's environment in the checkout's .venv (kcode.evals.agent_env)


@dataclass
class InstanceResult:
    instance_id: str
    status: str  # the run's status (finished, budget, error, ...) or "error" when it could not run
    error: str | None = None
    patch_lines: int = 0
    changed_files: list[str] = field(default_factory=list)
    steps: int = 0
    tokens: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    model: str = ""
    session_id: str = ""
    resolved: bool | None = None  # None: not graded
    grade_error: str | None = None
    tier: str = ""
    repo: str = ""
    env: str = ""  # the agent's environment: "ready", or why there was none

    @property
    def failed(self) -> bool:
        return self.status == "error" or self.grade_error is not None


def task_text(inst: Instance) -> str:
    """What the agent is asked (prompts/eval/task.md around the problem statement)."""
    template = read_prompt("eval/task.md").strip()
    return template.replace("{problem_statement}", inst.problem_statement.strip())


# one model per worker, loaded once and reused across its instances (a loaded GGUF, a warm KV
# prefix); threads keep theirs in a thread-local, processes and Ray workers in the module
_worker = threading.local()


def _worker_model(spec: str, config: Any) -> Any:
    from kcode.llm import ModelOptions, create_model

    models = getattr(_worker, "models", None)
    if models is None:
        models = _worker.models = {}
    key = (spec, config.base_url, config.context_window)
    if key not in models:
        options = ModelOptions(
            base_url=config.base_url, session_id=f"eval-{os.getpid()}-{threading.get_ident()}", context_window=config.context_window,
            temperature=config.temperature, seed=config.seed, max_output_tokens=config.max_output_tokens, llamacpp=config.llamacpp,
        )  # fmt: skip
        models[key] = create_model(spec, options)
    return models[key]


def _model_for(inst: Instance, options: EvalOptions, config: Any) -> Any:
    spec = options.model or config.model  # None: the default catalog model
    kind, _, rest = (spec or "").partition(":")
    if kind == "scripted" and Path(rest).is_dir():
        from kcode.llm.scripted import ScriptedModel

        script = Path(rest) / f"{inst.instance_id}.json"
        if not script.exists():
            raise UsageError(f"scripted model: no script {script} for {inst.instance_id}")
        return ScriptedModel.from_file(script)
    return _worker_model(spec, config)


def _default_model_name() -> str:
    from kcode.llm.registry import catalog_name

    return catalog_name(None) or "default"


def _git(args: list[str], cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def run_instance(row: dict[str, Any], options: EvalOptions, cancel: CancelToken | None = None) -> dict[str, Any]:
    """Run the agent on one instance (a dataset row); write its result, trajectory and patch;
    return the result as a dict. Never raises for the instance's own failures: they are the
    result's ``error``. An interrupt leaves no result (the instance is run again next time)."""
    from kcode.agent.runner import run_task
    from kcode.config import load_config
    from kcode.session import SessionStore

    inst = instance_from_row(row)
    out = Path(options.out_dir) / "instances" / inst.instance_id
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    work = Path(options.out_dir) / "work" / inst.instance_id
    result = InstanceResult(inst.instance_id, "error", tier=inst.tier, repo=inst.repo)
    started = time.monotonic()
    try:
        repo = checkout(inst, work / "repo", Path(options.repos_dir) if options.repos_dir else None)
        overrides = dict(options.config)
        if options.agent_env:
            result.env, env_root = _agent_env(inst, repo, options)
            if env_root:  # commands see the grading environment the overlay .venv builds on, read-only
                overrides["sandbox_readable"] = [*overrides.get("sandbox_readable", []), env_root]
        if options.model:
            overrides["model"] = options.model
        config = load_config(repo, overrides)
        model = _model_for(inst, options, config)
        result.model = options.model or config.model or _default_model_name()
        store = SessionStore(out / "session")
        outcome = run_task(task_text(inst), config, repo=repo, in_place=True, model=model, store=store, cancel=cancel)
        if cancel is not None and cancel.cancelled:
            shutil.rmtree(out, ignore_errors=True)
            return {"instance_id": inst.instance_id, "status": "interrupted"}
        patch = _git(["diff", "--no-color", "--no-ext-diff", "--full-index", inst.base_commit, outcome.workspace.head], repo)
        (out / "patch.diff").write_text(patch, encoding="utf-8")
        log = store.log_path(outcome.meta.session_id)
        if log.exists():
            shutil.copyfile(log, out / "trajectory.jsonl")
        usage = outcome.result.usage
        result.status = outcome.result.status
        result.steps = outcome.result.steps
        result.tokens = usage.as_dict()
        result.session_id = outcome.meta.session_id
        result.patch_lines = sum(1 for line in patch.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---"))
        result.changed_files = [c.get("path", "") for c in outcome.changed_files]
        if outcome.result.status == "error":
            result.error = outcome.result.summary[:500]
        if options.grade:
            _grade(inst, patch, out, options, result)
    except KeyboardInterrupt:
        shutil.rmtree(out, ignore_errors=True)
        raise
    except KcodeError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a bug of ours must not stop the other instances: it is this one's error
        result.error = f"{type(exc).__name__}: {exc}"
        (out / "traceback.txt").write_text(traceback.format_exc(), encoding="utf-8")
    finally:
        if not options.keep_checkouts:
            shutil.rmtree(work, ignore_errors=True)
    result.wall_s = round(time.monotonic() - started, 2)
    data = asdict(result)
    _write_json(out / RESULT, data)
    return data


def _agent_env(inst: Instance, repo: Path, options: EvalOptions) -> tuple[str, str | None]:
    """Set up the agent's environment: ("ready", the grading env's folder), or (why not,
    None): a failure is noted and the run goes on without one."""
    try:
        from kcode.evals.agent_env import prepare_agent_env

        _, env_root = prepare_agent_env(inst, repo, repos_dir=Path(options.repos_dir) if options.repos_dir else None)
    except (ImportError, KcodeError) as exc:
        return f"none: {type(exc).__name__}: {str(exc)[:200]}", None
    return "ready", str(env_root)


def _grade(inst: Instance, patch: str, out: Path, options: EvalOptions, result: InstanceResult) -> None:
    try:
        from kcode.evals.grade import grade_one
    except ImportError as exc:  # the grading extra is missing
        result.grade_error = f"grading unavailable: {exc}"
        return
    report = grade_one(inst, patch, out / "grade", timeout=options.grade_timeout)
    result.resolved = bool(report.resolved)
    # an empty patch is unresolved, not a failure of grading (the official summary keeps it
    # apart as well: empty_patch_ids, not error_ids)
    result.grade_error = None if not patch.strip() else report.error


def load_results(out_dir: Path) -> dict[str, dict[str, Any]]:
    """The results already in a run directory, by instance id (unreadable ones left out)."""
    results: dict[str, dict[str, Any]] = {}
    for path in sorted((Path(out_dir) / "instances").glob(f"*/{RESULT}")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and data.get("instance_id"):
            results[data["instance_id"]] = data
    return results


def write_predictions(out_dir: Path, order: Sequence[str], model_name: str) -> Path:
    """``preds.jsonl`` from the instances' patches, in the run's order (rewritten whole, atomically)."""
    out_dir = Path(out_dir)
    results = load_results(out_dir)
    lines = []
    for iid in order:
        if iid not in results:
            continue
        patch_file = out_dir / "instances" / iid / "patch.diff"
        patch = patch_file.read_text(encoding="utf-8") if patch_file.exists() else ""
        lines.append(json.dumps({"instance_id": iid, "model_name_or_path": results[iid].get("model") or model_name, "model_patch": patch}))
    path = out_dir / "preds.jsonl"
    tmp = path.with_name("preds.jsonl.tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest(out_dir: Path, dataset: Path | None, instances: list[Instance], options: EvalOptions, executor: Executor, workers: int) -> dict[str, Any]:
    path = out_dir / "manifest.json"
    previous = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    model = options.model or "default"
    if previous and previous.get("model") not in (None, model):
        raise UsageError(f"{out_dir} holds a run of model {previous.get('model')}: use another --out, or --redo to start it over")
    manifest = {
        "schema_version": 1,
        "run_id": previous.get("run_id") or out_dir.name,
        "kcode_version": __version__,
        "started_at": previous.get("started_at") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "dataset": {"path": str(dataset) if dataset else None, "sha256": _sha256(dataset) if dataset and dataset.is_file() else None},
        "instances": [inst.instance_id for inst in instances],
        "model": model,
        "budgets": {k: options.config.get(k) for k in ("max_steps", "max_time", "max_tokens")},
        "config": options.config,
        "executor": executor.kind,
        "workers": workers,
        "grade": options.grade,
        "repos_dir": options.repos_dir,
    }
    _write_json(path, manifest)
    return manifest


def run_eval(
    instances: list[Instance],
    options: EvalOptions,
    *,
    dataset: Path | None = None,
    workers: int = 1,
    executor: str | None = None,
    redo: bool = False,
    cancel: CancelToken | None = None,
    on_result: Callable[[dict[str, Any], int, int], None] | None = None,
) -> dict[str, Any]:
    """Run every instance not done yet (all with ``redo``); return the run's counts.
    ``on_result(result, done, total)`` is called as each instance ends (the progress bar)."""
    out_dir = Path(options.out_dir)
    if redo and out_dir.exists():
        for name in ("instances", "work", "manifest.json", "preds.jsonl"):
            target = out_dir / name
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    pool = create_executor(executor, workers)
    cancel = cancel or CancelToken()
    order = [inst.instance_id for inst in instances]
    try:
        manifest = _manifest(out_dir, dataset, instances, options, pool, workers)
        done = load_results(out_dir)
        todo = [inst for inst in instances if inst.instance_id not in done]
        counter = {"done": len(instances) - len(todo)}
        lock = threading.Lock()
        futures = []
        threads = pool.kind == "local:threads"
        for inst in todo:
            row = instance_to_row(inst)
            # threads share the run's cancel token (each instance a child of it); processes and
            # Ray tasks stop on their own signals
            args = (row, options, cancel.child()) if threads else (row, options)
            futures.append(pool.submit(run_instance, *args))
        for future in futures:
            try:
                data = future.result()
            except Exception as exc:  # a worker process or Ray task that died
                data = {"instance_id": "?", "status": "error", "error": f"worker died: {exc}"}
            if data.get("status") == "interrupted":
                continue
            with lock:
                counter["done"] += 1
                write_predictions(out_dir, order, manifest["model"])
            if on_result:
                on_result(data, counter["done"], len(instances))
            if cancel.cancelled:
                break
    except KeyboardInterrupt:
        cancel.cancel()
        raise
    finally:
        pool.shutdown(cancel_pending=cancel.cancelled)
        write_predictions(out_dir, order, options.model or "default")
    return summarize(out_dir, order)


def summarize(out_dir: Path, order: Sequence[str]) -> dict[str, Any]:
    results = load_results(out_dir)
    mine = [results[i] for i in order if i in results]
    graded = [r for r in mine if r.get("resolved") is not None]
    return {
        "total": len(order),
        "done": len(mine),
        "resolved": sum(1 for r in graded if r["resolved"]),
        "graded": len(graded),
        "failed": sum(1 for r in mine if r.get("status") == "error" or r.get("grade_error")),
        "empty_patches": sum(1 for r in mine if not r.get("patch_lines")),
        "wall_s": round(sum(r.get("wall_s", 0.0) for r in mine), 1),
    }


def load_selected(dataset: Path, split: str | None, **select_args: Any) -> list[Instance]:
    from kcode.evals.dataset import select

    return select(load_dataset(dataset, split), **select_args)
