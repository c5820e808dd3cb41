"""Where independent jobs run: local worker threads or processes, or Ray tasks.

One interface for ``kcode eval`` (an instance per job) and the swarm (a sub-agent per job):
``submit(fn, *args)`` returns a :class:`concurrent.futures.Future`, at most ``workers`` jobs
run at once, the rest wait in a queue. ``fn`` and its arguments must be picklable for the
process and Ray executors (a module-level function, plain data). ``submit_cancellable(fn,
*args, cancel=token)`` is the same, and a cancelled token stops the job: a Ray task is
cancelled (its worker killed); a local job that has not started is dropped, one running goes
on (give it the token itself). A Ray executor made with ``retries`` lets Ray run a job again when its worker
dies (the job must then be safe to repeat: a sub-agent resumes from its log).

Specs: ``local`` (threads, the default), ``local:threads``, ``local:processes``, ``ray`` (a
local Ray started for the run, or the cluster ``RAY_ADDRESS`` names), ``ray:ADDRESS``. Ray is
the optional extra ``kcode[ray]``.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from collections.abc import Callable
from typing import Any, Protocol

from kcode.cancel import CancelToken
from kcode.errors import KcodeError, UsageError

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "create_executor"]


class Executor(Protocol):
    kind: str
    workers: int

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future: ...

    def submit_cancellable(self, fn: Callable[..., Any], *args: Any, cancel: CancelToken) -> cf.Future: ...

    def shutdown(self, cancel_pending: bool = False) -> None: ...


class LocalExecutor:
    """Worker threads (jobs share the process: a model loaded once per worker is reused) or
    worker processes (isolated; each loads its own)."""

    def __init__(self, workers: int = 1, processes: bool = False) -> None:
        if workers < 1:
            raise UsageError("workers must be at least 1")
        self.workers = workers
        self.kind = "local:processes" if processes else "local:threads"
        if processes:
            import multiprocessing

            # spawn, not fork: the parent may hold threads (a loaded model, a progress bar)
            self._pool: cf.Executor = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        else:
            self._pool = cf.ThreadPoolExecutor(workers, thread_name_prefix="kcode-worker")

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        return self._pool.submit(fn, *args)

    def submit_cancellable(self, fn: Callable[..., Any], *args: Any, cancel: CancelToken) -> cf.Future:
        def unless_cancelled() -> Any:
            if cancel.cancelled:
                raise KcodeError("cancelled")
            return fn(*args)

        return self._pool.submit(unless_cancelled) if self.kind == "local:threads" else self._pool.submit(fn, *args)

    def shutdown(self, cancel_pending: bool = False) -> None:
        self._pool.shutdown(wait=True, cancel_futures=cancel_pending)


class RayExecutor:
    """Each job a Ray task, at most ``workers`` in flight (a local gate: the cluster may have
    more room, the run's budget says how much of it to use)."""

    def __init__(self, workers: int = 1, address: str | None = None, retries: int = 0) -> None:
        try:
            import ray
        except ImportError as exc:
            raise UsageError("--executor ray needs Ray: pip install 'kcode[ray]'") from exc
        self._ray = ray
        self.workers = workers
        self.retries = retries
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.kind = f"ray:{self.address}" if self.address else "ray"
        self._started = False
        if not ray.is_initialized():
            # a local Ray: this machine's cores, no dashboard; the cluster's when an address is given
            kwargs: dict[str, Any] = {"address": self.address} if self.address else {
                "num_cpus": max(workers, os.cpu_count() or 1), "include_dashboard": False,
            }
            try:
                ray.init(ignore_reinit_error=True, log_to_driver=False, configure_logging=False, **kwargs)
            except Exception as error:  # Ray's own: a local Ray that did not come up, a cluster not reached
                ray.shutdown()  # what it started of a local Ray
                where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
                raise KcodeError(f"could not start {where}: {str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__}") from error
            self._started = True
        self._gate = cf.ThreadPoolExecutor(workers, thread_name_prefix="kcode-ray")
        self._remote: dict[Callable, Any] = {}

    def _remote_of(self, fn: Callable[..., Any]) -> Any:
        remote = self._remote.get(fn)
        if remote is None:
            # retries=0 (the default): a task that died is reported, and the caller decides (an
            # eval instance is rerun on the next `kcode eval run`; it never half-repeats here)
            remote = self._remote[fn] = self._ray.remote(num_cpus=1, max_retries=self.retries, retry_exceptions=False)(fn)
        return remote

    def _run(self, fn: Callable[..., Any], args: tuple) -> Any:
        return self._ray.get(self._remote_of(fn).remote(*args))

    def _run_cancellable(self, fn: Callable[..., Any], args: tuple, cancel: CancelToken) -> Any:
        ref = self._remote_of(fn).remote(*args)
        while True:
            done, _ = self._ray.wait([ref], timeout=0.2)
            if done:
                return self._ray.get(ref)
            if cancel.cancelled:
                self._ray.cancel(ref, force=True)
                raise KcodeError("cancelled")

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        return self._gate.submit(self._run, fn, args)

    def submit_cancellable(self, fn: Callable[..., Any], *args: Any, cancel: CancelToken) -> cf.Future:
        return self._gate.submit(self._run_cancellable, fn, args, cancel)

    def shutdown(self, cancel_pending: bool = False) -> None:
        self._gate.shutdown(wait=True, cancel_futures=cancel_pending)
        if self._started:
            self._ray.shutdown()


def create_executor(spec: str | None, workers: int = 1, retries: int = 0) -> Executor:
    """The executor ``spec`` names (see the module's doc); ``retries``: Ray's, per job."""
    spec = (spec or "local").strip()
    kind, _, rest = spec.partition(":")
    if kind == "local":
        if rest not in ("", "threads", "processes"):
            raise UsageError(f"--executor local takes :threads or :processes, not {rest!r}")
        return LocalExecutor(workers, processes=rest == "processes")
    if kind == "ray":
        return RayExecutor(workers, rest or None, retries=retries)
    raise UsageError(f"unknown executor {spec!r} (local, local:processes, ray, ray:ADDRESS)")
