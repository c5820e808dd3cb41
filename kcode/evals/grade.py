"""Grading without Docker: apply a patch, run the instance's tests in the sandbox, decide.

One instance (:func:`grade_one`), in the official order: a fresh checkout at ``base_commit``
in the environment's testbed; the model's patch through the official apply chain; the
repository's pre-install and install (offline: the env holds the dependencies) in the
sandbox; the test files restored to the base and ``test_patch`` applied; the test command
with the test directives in the sandbox, network off, with a timeout. The official log
parser reads the test output and the official rules decide (see :mod:`swebench_compat`).

Guards against fake passes: a patch that touches the tests the grading runs, or adds pytest
configuration (``conftest.py``, ``pytest.ini``, a ``[tool:pytest]`` section, ...) or start-up
hooks (``sitecustomize``, ``.pth``), is graded unresolved with the reason. Only the test
command's own output is parsed: kcode runs it as its own command and writes the markers
around it with a per-run nonce, so markers or "PASSED" lines printed during install do not
count; and the test command's exit code must agree with the parsed outcome.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kcode.errors import KcodeError
from kcode.evals import envs, swebench_compat
from kcode.evals.schemas import load_predictions

__all__ = [
    "GIT_APPLY_CMDS", "GradeError", "InstanceReport", "TestRun", "exit_code_disagrees", "grade", "grade_one", "load_predictions",
    "patch_guard", "run_tests",
]

GIT_APPLY_CMDS = ["git apply --verbose", "git apply --verbose --reject", "patch --batch --fuzz=5 -p1 -i"]
APPLY_PATCH_FAIL = ">>>>> Patch Apply Failed"
APPLY_PATCH_PASS = ">>>>> Applied Patch"
TESTS_TIMEOUT = ">>>>> Tests Timed Out"
_OUTPUT_BYTES = 4_000_000
_CONFIG_FILES = {"pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml", ".pytest.ini"}
_STARTUP_FILES = {"sitecustomize.py", "usercustomize.py"}


class GradeError(KcodeError):
    """An instance could not be graded (the message is the report's ``error``)."""


@dataclass
class InstanceReport:
    instance_id: str
    resolved: bool
    error: str | None
    report: dict
    seconds: float
    reason: str | None = None  # why a graded patch is unresolved by a guard
    env: dict = field(default_factory=dict)  # {"key": ..., "built": bool}


def _empty_report(instance_id: str, patch: str | None) -> dict:
    return {
        instance_id: {
            "patch_is_None": patch is None,
            "patch_exists": patch is not None,
            "patch_successfully_applied": False,
            "resolved": False,
        }
    }


def _patch_files(patch: str) -> list[tuple[str, str, str]]:
    """(old path, new path, the block's text) for each file of a git diff."""
    out = []
    for block in re.split(r"(?m)^(?=diff --git )", patch):
        head = re.match(r"diff --git a/(\S+) b/(\S+)", block)
        if head:
            out.append((head.group(1), head.group(2), block))
    return out


def patch_guard(inst: Any, patch: str, directives: Iterable[str]) -> str | None:
    """Why ``patch`` may not be graded as it is (None: it may): it touches a test file the
    grading runs, or adds pytest configuration or start-up hooks."""
    protected = set(directives) | set(swebench_compat.modified_files(inst.test_patch or ""))
    protected |= {b for _, b, _ in _patch_files(inst.test_patch or "")}
    protected |= {t.split("::", 1)[0] for t in [*inst.fail_to_pass, *inst.pass_to_pass] if "::" in t}
    for old, new, block in _patch_files(patch):
        for path in {old, new}:
            name = path.rsplit("/", 1)[-1]
            if path in protected:
                return f"the patch modifies {path}, a test file the grading runs"
            if name in _STARTUP_FILES or name.endswith(".pth"):
                return f"the patch changes {path}, which Python loads at start-up"
            if name == "conftest.py" and (re.search(r"(?m)^new file mode", block) or _above_any(path, protected)):
                return f"the patch {'adds' if 'new file mode' in block else 'changes'} {path}, which pytest loads for the graded tests"
            changed = "\n".join(line for line in block.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---")))
            if name in _CONFIG_FILES and re.search(r"pytest|addopts|testpaths|python_files", changed):
                return f"the patch changes the pytest configuration in {path}"
    return None


def _above_any(conftest: str, tests: set[str]) -> bool:
    folder = conftest.rsplit("/", 1)[0] + "/" if "/" in conftest else ""
    return any(t.startswith(folder) for t in tests)


def _run(argv: list[str] | str, cwd: Path, log: list[str], *, stdin: str | None = None) -> subprocess.CompletedProcess:
    log.append(f"[{time.strftime('%H:%M:%S')}]")
    done = subprocess.run(argv, cwd=cwd, input=stdin, capture_output=True, text=True, shell=isinstance(argv, str), timeout=600)
    log.append(f"$ {argv if isinstance(argv, str) else ' '.join(argv)}\n{done.stdout}{done.stderr}[exit {done.returncode}]")
    return done


def _apply_chain(testbed: Path, patch_file: Path, log: list[str]) -> str | None:
    """The official chain; the command that applied the patch, or None. The tree is reset
    between tries, so a partial ``--reject`` does not leave hunks behind."""
    for command in GIT_APPLY_CMDS:
        if _run(f"{command} {shlex.quote(str(patch_file))}", testbed, log).returncode == 0:
            return command
        _run(["git", "checkout", "--", "."], testbed, log)
        _run(["git", "clean", "-fdq", "-e", "*.egg-info"], testbed, log)
    return None


def _checkout(inst: Any, dest: Path, repos_dir: Path | None) -> None:
    from kcode.evals import repos

    if dest.exists():
        shutil.rmtree(dest)
    if repos_dir is None and inst.repo.startswith("pypi/"):
        from kcode.evals.suite import default_repos_dir

        repos_dir = default_repos_dir()  # the built-in suite's repositories (kcode eval build-suite)
    repos.checkout(inst, dest, repos_dir)


def _sandbox(testbed: Path, env: envs.Env):
    from kcode.sandbox import create_sandbox

    return create_sandbox("workspace-write", testbed, extra_writable=[env.root], head_bytes=_OUTPUT_BYTES, tail_bytes=_OUTPUT_BYTES, trusted=False)


def _setup(sandbox, commands: list[str], timeout: float, env: dict, log: list[str]):
    log.append(f"[{time.strftime('%H:%M:%S')}]")
    done = sandbox.run(" && ".join(f"({c})" for c in commands), timeout=min(timeout, 900), env=env)
    log.append(f"$ setup (sandbox)\n{done.output}[exit {done.exit_code}]")
    return done


def _runner_crashed(test_cmd: str, code: int) -> bool:
    if code < 0:
        return True
    return "pytest" in test_cmd and code not in (0, 1)


def grade_one(
    inst: Any,
    patch: str | None,
    out_dir: Path,
    *,
    cache_dir: Path | None = None,
    timeout: float = 1800,
    repos_dir: Path | None = None,
    stats: envs.EnvStats | None = None,
) -> InstanceReport:
    """Grade one patch; writes ``out_dir/<instance_id>/`` (report.json, test_output.txt,
    patch.diff, run_instance.log). An empty or missing patch is never run."""
    started = time.monotonic()
    inst_dir = Path(out_dir) / inst.instance_id
    inst_dir.mkdir(parents=True, exist_ok=True)
    (inst_dir / "patch.diff").write_text(patch or "")
    if patch is not None and not patch.endswith("\n"):
        patch += "\n"  # git apply rejects a last line without its newline
    log: list[str] = []
    result = InstanceReport(inst.instance_id, False, None, _empty_report(inst.instance_id, patch), 0.0)
    try:
        if not patch or not patch.strip():
            result.error = "empty patch (not run)"
        else:
            _grade(inst, patch, inst_dir, result, log, cache_dir=cache_dir, timeout=timeout, repos_dir=repos_dir, stats=stats)
    except (KcodeError, OSError, subprocess.SubprocessError) as exc:
        result.error = str(exc) or type(exc).__name__
        log.append(f"error: {result.error}")
    result.resolved = bool(result.report[inst.instance_id]["resolved"])
    result.seconds = round(time.monotonic() - started, 3)
    (inst_dir / "report.json").write_text(json.dumps(result.report, indent=4))
    (inst_dir / "run_instance.log").write_text("\n".join(log) + f"\nresolved={result.resolved} error={result.error} reason={result.reason}\n")
    return result


@dataclass
class TestRun:
    """The test command's run in the sandbox: only this output is ever parsed."""

    command: str
    output: str
    exit_code: int
    timed_out: bool
    spec: swebench_compat.RepoSpec


def run_tests(inst, patch: str | None, inst_dir: Path, log: list[str], *, cache_dir=None, timeout: float = 1800,
              repos_dir=None, stats=None, env_info: dict | None = None) -> TestRun:
    """Check out, apply ``patch`` (None: the base as it is), install, restore the test files,
    apply ``test_patch`` and run the tests; raises GradeError when a step fails."""
    spec = swebench_compat.repo_spec(inst)
    directives = swebench_compat.test_directives(inst)
    if not directives:
        raise GradeError("no test files to run (test_patch touches none and no test_files given)")
    timeout = float(inst.overrides.get("timeout", timeout)) if getattr(inst, "overrides", None) else timeout
    env_info = {} if env_info is None else env_info
    root = envs.envs_dir(cache_dir) / spec.env_key
    with envs.env_lock(root):
        testbed = root / "testbed"
        _checkout(inst, testbed, repos_dir)
        before = len(stats.built) if stats else 0
        env = envs.ensure_env(
            spec.env_key, spec.python, spec.packages, source=testbed, requirements_paths=spec.requirements_paths,
            install=spec.install, extra_env=spec.env, cache_dir=cache_dir, stats=stats, log=log,
        )
        env_info.update(key=env.key, built=bool(stats and len(stats.built) > before))
        if patch is not None:
            patch_file = inst_dir / "patch.diff"
            patch_file.write_text(patch)
            applied = _apply_chain(testbed, patch_file.resolve(), log)
            if applied is None:
                log.append(APPLY_PATCH_FAIL)
                raise GradeError("patch does not apply")
            log.append(f"{APPLY_PATCH_PASS} ({applied})")
        sandbox = _sandbox(testbed, env)
        path_env = {"PATH": f"{env.bin}:/usr/local/bin:/usr/bin:/bin", "VIRTUAL_ENV": str(env.venv), "PYTHONDONTWRITEBYTECODE": "1", **spec.env}
        setup = [*spec.eval_commands, *spec.pre_install]
        if spec.install:
            setup.append(envs.offline_install(spec.install, env))
        if setup:
            done = _setup(sandbox, setup, timeout, path_env, log)
            if done.exit_code != 0 and "No matching distribution" in done.output:
                envs.download_build_requires(env, testbed, log)  # this checkout builds with other requirements
                done = _setup(sandbox, setup, timeout, path_env, log)
            if done.exit_code != 0:
                raise GradeError(f"the repository's install failed after the patch (exit {done.exit_code})")
            missing = envs.missing_requirements(env)
            if missing:
                log.append(f"top-up: {' '.join(missing)}")
                envs.top_up(env, missing, log)
                env_info["top_up"] = missing
        test_files = swebench_compat.modified_files(inst.test_patch or "")
        if test_files:
            _run(["git", "checkout", inst.base_commit, "--", *test_files], testbed, log)
        if inst.test_patch:
            if _run(["git", "apply", "-v", "-"], testbed, log, stdin=inst.test_patch).returncode != 0:
                raise GradeError("test_patch does not apply")
        command = " ".join([spec.test_cmd, *directives])
        log.append(f"[{time.strftime('%H:%M:%S')}] tests")
        done = sandbox.run(command, timeout=timeout, env=path_env)
    nonce = secrets.token_hex(8)
    start, end = f">>>>> Start Test Output {nonce}", f">>>>> End Test Output {nonce}"
    text = "\n".join(log) + f"\n+ {command}\n{start}\n{done.output}\n{end} exit={done.exit_code}\n"
    (inst_dir / "test_output.txt").write_text(text)
    if done.timed_out:
        log.append(TESTS_TIMEOUT)
        raise GradeError(f"tests timed out after {timeout:g}s")
    region = text.split(start + "\n", 1)[1].rsplit("\n" + end, 1)[0]
    return TestRun(command, region, done.exit_code, done.timed_out, spec)


_PYTEST_SUMMARY = re.compile(r"^=+ .*\bin [\d.]+s\b.* =+$")


def exit_code_disagrees(run: TestRun, status: dict[str, str]) -> str | None:
    """Why the test command's exit code (or its end) contradicts the parsed outcome."""
    if _runner_crashed(run.spec.test_cmd, run.exit_code):
        return f"the test command crashed or was interrupted (exit {run.exit_code})"
    if "pytest" not in run.spec.test_cmd:
        return None
    if run.exit_code != 0 and not any(v in ("FAILED", "ERROR") for v in status.values()):
        return f"the test command exited {run.exit_code} but its output reports no failure"
    lines = [line for line in run.output.splitlines() if line.strip()]
    if not lines or not _PYTEST_SUMMARY.match(lines[-1].strip()):
        return "the test run did not finish: its output does not end with pytest's summary line"
    return None


def _grade(inst, patch, inst_dir, result, log, *, cache_dir, timeout, repos_dir, stats) -> None:
    body = result.report[inst.instance_id]
    body["tests_status"] = swebench_compat.tests_report(inst, {})[0]
    reason = patch_guard(inst, patch, swebench_compat.test_directives(inst))
    if reason:
        result.reason = reason
        log.append(f"guard: {reason}")
        return
    run = run_tests(inst, patch, inst_dir, log, cache_dir=cache_dir, timeout=timeout, repos_dir=repos_dir, stats=stats, env_info=result.env)
    status = swebench_compat.parse_test_output(inst, run.spec, run.output)
    tests_status, resolved = swebench_compat.tests_report(inst, status)
    body["patch_successfully_applied"] = True
    body["tests_status"] = tests_status
    result.reason = exit_code_disagrees(run, status)
    body["resolved"] = resolved and result.reason is None


def grade(
    instances: list[Any],
    predictions: dict[str, str] | str,
    out_dir: Path,
    *,
    workers: int = 1,
    run_id: str = "kcode",
    cache_dir: Path | None = None,
    repos_dir: Path | None = None,
    timeout: float = 1800,
    model_name: str = "kcode",
) -> dict:
    """Grade predictions ({instance_id: patch}, or "gold" / "empty") for ``instances``;
    returns and writes ``out_dir/<run_id>.json``, the official run summary."""
    if predictions == "gold":
        patches = {i.instance_id: i.patch for i in instances}
    elif predictions == "empty":
        patches = {i.instance_id: "" for i in instances}
    elif isinstance(predictions, dict):
        patches = dict(predictions)
    else:
        raise GradeError(f"predictions must be a mapping, 'gold' or 'empty', got {predictions!r}")
    if workers < 1:
        raise GradeError(f"workers must be at least 1, got {workers}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = envs.EnvStats()
    todo = [i for i in instances if i.instance_id in patches]
    started = time.monotonic()

    def one(inst):
        return grade_one(inst, patches[inst.instance_id], out_dir, cache_dir=cache_dir, timeout=timeout, repos_dir=repos_dir, stats=stats)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(one, todo))
    summary = run_summary(instances, patches, results)
    summary["kcode"] = {
        "run_id": run_id,
        "model_name_or_path": model_name,
        "workers": workers,
        "seconds": round(time.monotonic() - started, 3),
        "env_cache": stats.as_dict(),
        "errors": {r.instance_id: r.error for r in results if r.error and r.instance_id not in summary["empty_patch_ids"]},
        "reasons": {r.instance_id: r.reason for r in results if r.reason},
        "instance_seconds": {r.instance_id: r.seconds for r in results},
    }
    (out_dir / f"{run_id}.json").write_text(json.dumps(summary, indent=4))
    return summary


def run_summary(instances: list[Any], patches: dict[str, str], results: list[InstanceReport]) -> dict:
    """The official run summary (``make_run_report``'s keys, schema_version 2)."""
    by_id = {r.instance_id: r for r in results}
    ids = {i.instance_id for i in instances}
    incomplete = sorted(i for i in ids if i not in patches)
    empty = sorted(i for i in ids if i in patches and not (patches[i] or "").strip())
    errors = sorted(i for i, r in by_id.items() if r.error and i not in empty)
    completed = sorted(i for i, r in by_id.items() if i not in empty and not r.error)
    resolved = sorted(i for i in completed if by_id[i].resolved)
    unresolved = sorted(i for i in completed if not by_id[i].resolved)
    return {
        "total_instances": len(instances),
        "submitted_instances": len(patches),
        "completed_instances": len(completed),
        "resolved_instances": len(resolved),
        "unresolved_instances": len(unresolved),
        "empty_patch_instances": len(empty),
        "error_instances": len(errors),
        "completed_ids": completed,
        "incomplete_ids": incomplete,
        "empty_patch_ids": empty,
        "submitted_ids": sorted(patches),
        "resolved_ids": resolved,
        "unresolved_ids": unresolved,
        "error_ids": errors,
        "schema_version": 2,
    }
