"""The built-in suite's builder (``kcode eval build-suite``): SWE-smith-style tasks from pinned
sdists and injected bugs.

``evals/suites/<suite>/libraries.toml`` pins each library's sdist (sha256) and its test
environment; ``tasks.toml`` holds the tasks (a report, the test files, a ``bug_patch``).
Per library: the sdist is downloaded (checked against its sha256), unpacked and committed
into a git repository ``<repos>/pypi__<name>`` with a fixed author, committer and date, so
the clean commit has the same sha on every machine. Per task: the bug patch is committed on
branch ``task/<instance_id>`` as a child of the clean commit (the instance's base commit),
the gold patch is its reverse, and the library's own tests in ``test_files`` are run at the
base and with the gold patch: FAIL_TO_PASS fail (or are missing) at the base and pass with
gold, PASS_TO_PASS pass on both. The rows are written in the official SWE-bench schema plus
``tier`` and the environment overrides.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import tomllib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kcode import paths
from kcode.errors import KcodeError

__all__ = ["Library", "SuiteError", "Task", "build_suite", "default_repos_dir", "fetch_sdist", "label_tests", "library_repo", "load_suite", "task_commit"]

_GIT_ID = {
    "GIT_AUTHOR_NAME": "kcode suite", "GIT_AUTHOR_EMAIL": "suite@kcode.invalid", "GIT_AUTHOR_DATE": "2024-01-01T00:00:00+0000",
    "GIT_COMMITTER_NAME": "kcode suite", "GIT_COMMITTER_EMAIL": "suite@kcode.invalid", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00+0000",
}


class SuiteError(KcodeError):
    """A suite that cannot be built; the message names the library or task."""


@dataclass
class Library:
    name: str
    version: str
    sdist_url: str
    sha256: str
    python: str
    packages: list[str]
    install: str
    test_cmd: str

    @property
    def repo(self) -> str:
        return f"pypi/{self.name}"


@dataclass
class Task:
    instance_id: str
    library: str
    tier: str
    problem_statement: str
    test_files: list[str]
    bug_patch: str


def default_repos_dir(suite: str = "pypi-bugs") -> Path:
    return paths.cache_dir() / "evals" / "suites" / suite / "repos"


def load_suite(suite_dir: Path) -> tuple[dict[str, Library], list[Task]]:
    """The libraries and tasks of a suite folder; a missing field is a SuiteError naming it."""
    suite_dir = Path(suite_dir)
    libraries: dict[str, Library] = {}
    for n, row in enumerate(_toml(suite_dir / "libraries.toml").get("library", []), 1):
        lib = _make(Library, row, f"libraries.toml library {n}")
        if lib.name in libraries:
            raise SuiteError(f"libraries.toml: library {lib.name} appears twice")
        libraries[lib.name] = lib
    tasks: list[Task] = []
    seen: set[str] = set()
    for n, row in enumerate(_toml(suite_dir / "tasks.toml").get("task", []), 1):
        task = _make(Task, row, f"tasks.toml task {n}")
        if task.library not in libraries:
            raise SuiteError(f"tasks.toml task {task.instance_id}: unknown library {task.library!r}")
        if task.instance_id in seen:
            raise SuiteError(f"tasks.toml: instance_id {task.instance_id} appears twice")
        seen.add(task.instance_id)
        task.problem_statement = task.problem_statement.strip() + "\n"
        task.bug_patch = task.bug_patch.lstrip("\n")
        tasks.append(task)
    return libraries, tasks


def _toml(path: Path) -> dict:
    if not path.is_file():
        raise SuiteError(f"{path}: no such file")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{path}: not valid TOML: {exc}") from exc


def _make(cls, row: dict, where: str):
    names = list(cls.__dataclass_fields__)
    missing = [n for n in names if n not in row]
    if missing:
        raise SuiteError(f"{where}: missing {', '.join(missing)}")
    return cls(**{n: row[n] for n in names})


def _git(repo: Path, *args: str, stdin: str | None = None) -> str:
    env = {**os.environ, **_GIT_ID, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_SYSTEM": "/dev/null"}
    done = subprocess.run(["git", "-C", str(repo), *args], input=stdin, capture_output=True, text=True, env=env, timeout=600)
    if done.returncode != 0:
        raise SuiteError(f"git {' '.join(args[:2])} in {repo.name}: {done.stderr.strip()[-400:]}")
    return done.stdout


def fetch_sdist(lib: Library, cache_dir: Path | None = None) -> Path:
    """The library's sdist in the cache, downloaded once; its sha256 is always checked."""
    import httpx

    target = (cache_dir or paths.cache_dir()) / "evals" / "sdists" / lib.sdist_url.rsplit("/", 1)[-1]
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with httpx.stream("GET", lib.sdist_url, follow_redirects=True, timeout=120) as response:
                response.raise_for_status()
                tmp = target.with_suffix(".part")
                with open(tmp, "wb") as handle:
                    for chunk in response.iter_bytes():
                        handle.write(chunk)
        except httpx.HTTPError as exc:
            raise SuiteError(f"{lib.name}: cannot download {lib.sdist_url}: {exc}") from exc
        tmp.replace(target)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    if digest != lib.sha256:
        target.unlink()
        raise SuiteError(f"{lib.name}: sha256 of {target.name} is {digest}, libraries.toml pins {lib.sha256}")
    return target


def library_repo(lib: Library, repos_dir: Path, cache_dir: Path | None = None) -> tuple[Path, str]:
    """``<repos>/pypi__<name>`` with the clean sdist tree committed on ``main``; its sha."""
    repo = Path(repos_dir) / f"pypi__{lib.name}"
    if (repo / ".git").is_dir():
        try:
            return repo, _git(repo, "rev-parse", "refs/heads/main").strip()
        except SuiteError:
            pass
    sdist = fetch_sdist(lib, cache_dir)
    shutil.rmtree(repo, ignore_errors=True)
    repo.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(sdist) as archive:
            archive.extractall(tmp, filter="data")
        tops = list(Path(tmp).iterdir())
        if len(tops) != 1 or not tops[0].is_dir():
            raise SuiteError(f"{lib.name}: the sdist does not hold one top-level folder")
        shutil.copytree(tops[0], repo, symlinks=True)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A", "-f", ".")
    _git(repo, "commit", "-q", "--no-verify", "-m", f"{lib.name} {lib.version} (sdist)")
    return repo, _git(repo, "rev-parse", "HEAD").strip()


def task_commit(repo: Path, clean: str, task: Task) -> tuple[str, str]:
    """The task's base commit (the bug injected) and the gold patch (its reverse)."""
    _git(repo, "checkout", "-q", "-f", "-B", f"task/{task.instance_id}", clean)
    try:
        _git(repo, "apply", "--whitespace=nowarn", "-", stdin=task.bug_patch)
    except SuiteError as exc:
        raise SuiteError(f"{task.instance_id}: bug_patch does not apply to {task.library}'s sdist: {exc}") from None
    _git(repo, "add", "-A", "-f", ".")
    _git(repo, "commit", "-q", "--no-verify", "-m", f"{task.instance_id}: inject the bug")
    base = _git(repo, "rev-parse", "HEAD").strip()
    gold = _git(repo, "diff", "--no-color", "--no-ext-diff", base, clean)
    _git(repo, "checkout", "-q", "-f", "main")
    return base, gold


def _instance(lib: Library, task: Task, base: str, gold: str):
    from kcode.evals.dataset import Instance

    overrides = {"python": lib.python, "packages": list(lib.packages), "install": lib.install, "test_cmd": lib.test_cmd,
                 "test_files": list(task.test_files)}
    return Instance(instance_id=task.instance_id, repo=lib.repo, base_commit=base, problem_statement=task.problem_statement,
                    patch=gold, version=lib.version, environment_setup_commit=base, tier=task.tier, overrides=overrides,
                    created_at="2024-01-01T00:00:00Z")


def _passed(status: dict[str, str]) -> set[str]:
    return {t for t, s in status.items() if s in ("PASSED", "XFAIL")}


def label_tests(inst: Any, work_dir: Path, *, cache_dir: Path | None, repos_dir: Path) -> None:
    """FAIL_TO_PASS and PASS_TO_PASS from runs at the base and with the gold patch."""
    from kcode.evals import grade, swebench_compat

    runs = {}
    for which, patch in (("base", None), ("gold", inst.patch)):
        log: list[str] = []
        out = work_dir / f"{inst.instance_id}.{which}"
        out.mkdir(parents=True, exist_ok=True)
        try:
            run = grade.run_tests(inst, patch, out, log, cache_dir=cache_dir, repos_dir=repos_dir)
        except KcodeError as exc:
            raise SuiteError(f"{inst.instance_id}: the {which} test run failed: {exc}") from exc
        runs[which] = swebench_compat.parse_test_output(inst, run.spec, run.output)
    gold_passed, base_passed = _passed(runs["gold"]), _passed(runs["base"])
    inst.fail_to_pass = sorted(gold_passed - base_passed)
    inst.pass_to_pass = sorted(gold_passed & base_passed)
    if not inst.fail_to_pass:
        raise SuiteError(f"{inst.instance_id}: no test fails at the base and passes with the gold patch (the bug is not caught)")


def build_suite(
    suite_dir: Path,
    out_path: Path,
    *,
    repos_dir: Path | None = None,
    cache_dir: Path | None = None,
    libraries: list[str] | None = None,
    task_ids: list[str] | None = None,
    workers: int = 1,
    on_event: Callable[[str], None] | None = None,
) -> dict:
    """Build the suite (or the named libraries / tasks of it) and write ``out_path`` (JSONL);
    returns {"instances": n, "failed": {instance_id: reason}, "repos": dir}."""
    from kcode.evals.dataset import instance_to_row

    libs, tasks = load_suite(suite_dir)
    if libraries:
        unknown = sorted(set(libraries) - set(libs))
        if unknown:
            raise SuiteError(f"unknown libraries: {', '.join(unknown)}")
        tasks = [t for t in tasks if t.library in libraries]
    if task_ids:
        unknown = sorted(set(task_ids) - {t.instance_id for t in tasks})
        if unknown:
            raise SuiteError(f"unknown tasks: {', '.join(unknown)}")
        tasks = [t for t in tasks if t.instance_id in task_ids]
    repos_dir = Path(repos_dir or default_repos_dir(Path(suite_dir).name))
    say = on_event or (lambda _text: None)
    failed: dict[str, str] = {}
    built: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="kcode-suite-"))

    def one_library(name: str) -> None:
        lib = libs[name]
        try:
            repo, clean = library_repo(lib, repos_dir, cache_dir)
        except SuiteError as exc:
            for task in (t for t in tasks if t.library == name):
                failed[task.instance_id] = str(exc)
            return
        for task in (t for t in tasks if t.library == name):
            try:
                base, gold = task_commit(repo, clean, task)
                inst = _instance(lib, task, base, gold)
                label_tests(inst, work, cache_dir=cache_dir, repos_dir=repos_dir)
            except SuiteError as exc:
                failed[task.instance_id] = str(exc)
                say(f"{task.instance_id}: FAILED {exc}")
                continue
            built[task.instance_id] = inst
            say(f"{task.instance_id}: {len(inst.fail_to_pass)} FAIL_TO_PASS, {len(inst.pass_to_pass)} PASS_TO_PASS")

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(one_library, sorted({t.library for t in tasks})))
    shutil.rmtree(work, ignore_errors=True)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    rows = [instance_to_row(built[t.instance_id]) for t in tasks if t.instance_id in built]
    out_path.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))
    return {"instances": len(rows), "failed": failed, "repos": str(repos_dir), "out": str(out_path)}
