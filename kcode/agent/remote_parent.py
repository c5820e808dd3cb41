"""The parent's side of remote sub-agents (kcode.agent.remote): ship the checkpoint, wait for
the Ray task (a cancel stops it), then take its session and branch back and merge them like a
local sub-agent's."""

from __future__ import annotations

import concurrent.futures as cf
import json
import time
from typing import TYPE_CHECKING

from kcode.cancel import CancelToken
from kcode.config import Config
from kcode.errors import KcodeError
from kcode.paths import data_dir
from kcode.session import SessionMeta, read_events
from kcode.vcs.git import git, git_ok

if TYPE_CHECKING:
    from kcode.agent.subagents import SubagentReport, SubagentSpec, Subagents

__all__ = ["close_remote", "run_remote"]

RETRIES = 2  # Ray runs a sub-agent's task again this many times when its worker dies
GRACE = 15.0  # seconds a cancelled task has to stop before it is killed


def _executor(sub: Subagents):
    """The run's Ray executor and keeper, started with the first remote sub-agent. One that
    could not start is not tried again for every later sub-agent: they all get its error."""
    with sub._lock:
        if sub._executor_error is not None:
            raise KcodeError(sub._executor_error)
        if sub._executor is None:
            from kcode.agent.remote import start_keeper
            from kcode.executor import create_executor

            try:
                sub._executor = create_executor(sub.config.executor, sub.limits.max_parallel, retries=RETRIES)
                sub._keeper = start_keeper(sub.store.dir(sub.meta.session_id) / "remote")
            except Exception as error:
                if sub._executor is not None:
                    sub._executor.shutdown(cancel_pending=True)
                    sub._executor = None
                sub._executor_error = f"{error}" if isinstance(error, KcodeError) else f"could not start the Ray executor: {error}"
                raise KcodeError(sub._executor_error) from error
        return sub._executor


def run_remote(sub: Subagents, spec: SubagentSpec, key: str, steps: int, config: Config, cancel: CancelToken) -> SubagentReport:
    from kcode.agent.remote import RemoteJob, run_shipped, ship_start, take_back
    from kcode.agent.subagents import SubagentReport, _child_task

    executor = _executor(sub)
    repo = sub.workspace.path
    with sub._tree, sub._lock:
        if spec.mode == "edit" and not sub._quiet:
            sub._checkpoint_parent("kcode: before sub-agent " + spec.description[:60])
        base = sub.workspace.head
        started = _saved_start(sub, key)
        if started and started != base and not git_ok(["merge-base", "--is-ancestor", started, base], repo):
            resume_base, bundle = started, ship_start(repo, base, started)  # its own start goes along
        else:
            resume_base = ""
            if sub._shipped[0] != base:  # a swarm's sub-agents share one bundle until a merge moves the parent
                sub._shipped = (base, ship_start(repo, base))
            bundle = sub._shipped[1]
        start_ref = f"refs/kcode/remote-start/{sub.meta.session_id}/{key}"
        git(["update-ref", start_ref, resume_base or started or base], repo)  # kept until it is back
    job = RemoteJob(key, spec.description, spec.prompt, spec.mode, _child_task(spec), config, steps, sub.meta.session_id, base, bundle,
                    sub._keeper, resume_base=resume_base)
    hard = CancelToken()  # kills the task: when it has not stopped GRACE seconds after a cancel
    future = executor.submit_cancellable(run_shipped, job, cancel=hard)
    try:
        asked = None
        while True:
            try:
                result = future.result(timeout=0.2)
                break
            except cf.TimeoutError:
                pass
            if cancel.cancelled and asked is None:
                sub._keeper.cancel.remote(key)
                asked = time.monotonic()
            elif asked is not None and time.monotonic() - asked > GRACE:
                hard.cancel()
    except KcodeError:
        if cancel.cancelled:
            return SubagentReport(spec.description, spec.mode, status="interrupted", error="the run was cancelled; its task did not stop in time and was killed")
        raise
    except Exception as error:  # Ray's errors: the task failed, or its worker died too often
        raise KcodeError(f"the sub-agent's Ray task failed: {str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__}") from error
    git(["update-ref", "-d", start_ref], repo, check=False)  # its branch holds its start now
    meta = SessionMeta(**result.meta)
    meta.repo, meta.workdir = str(sub.workspace.path), str(data_dir() / "worktrees" / meta.session_id)  # here, not on its worker
    sub.store.write_meta(meta)
    log = sub.store.log_path(meta.session_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(result.log)
    forward = sub._forward(key)
    for event in read_events(log):  # its events, tagged with its id, into the parent's stream and log
        forward(event)
    head = take_back(sub.workspace.path, result)
    report = SubagentReport(spec.description, spec.mode, session_id=meta.session_id, status=meta.status, summary=meta.summary,
                            steps=meta.steps, branch=meta.branch)
    if spec.mode == "edit":
        report.changed_files, report.base, report.head = result.changed_files, base, head
        try:
            sub._merge(report, base, head)
        except KcodeError as error:  # its work stays on its branch
            report.error = f"could not merge (its work is on {report.branch}): {error}"
    return report


def _saved_start(sub: Subagents, key: str) -> str:
    """The commit a sub-agent started from, by the keeper's copy of its metadata (on this
    machine); "" when it has none (it did not start before)."""
    try:
        meta = json.loads((sub.store.dir(sub.meta.session_id) / "remote" / key / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    start = meta.get("base_commit") if isinstance(meta, dict) else None
    return start if isinstance(start, str) and git_ok(["cat-file", "-e", f"{start}^{{commit}}"], sub.workspace.path) else ""


def close_remote(sub: Subagents) -> None:
    with sub._lock:
        executor, keeper, sub._executor, sub._keeper = sub._executor, sub._keeper, None, None
    if executor is None:
        return
    import ray

    if ray.is_initialized():
        ray.kill(keeper)
    executor.shutdown(cancel_pending=True)
