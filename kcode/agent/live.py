"""A run in a worker thread of this process, driven by a frontend: :class:`LocalRunHandle`.

What ``kcode``, ``kcode TASK`` and ``kcode --resume`` hand the TUI (it implements
:class:`kcode.session.control.RunHandle`). The agent core stays synchronous: the handle runs
``run_task`` / ``resume_task`` in a thread and calls its subscribers with every event from
there (a frontend posts them to its own thread). One :class:`RunControl` serves every run of
the handle's session, so steering sent between runs is not lost: a message sent when no run
is going starts one (a new session for the first message, else a resume of this one), and
steering left undelivered when a run finishes starts the next. While a run goes on, the
handle holds the session's control channel, so a ``kcode attach`` elsewhere is refused
(it may attach read-only).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kcode.agent.run_control import RunControl
from kcode.cancel import CancelToken
from kcode.config import Config
from kcode.errors import ControlBusy, KcodeError, UsageError
from kcode.events import ErrorEvent, Event, SessionStarted
from kcode.llm.base import ChatModel
from kcode.session import SessionStore, read_events
from kcode.session.control import ControlWriter, check_answer

__all__ = ["LocalRunHandle"]

EventCallback = Callable[[Event], None]

log = logging.getLogger(__name__)


class LocalRunHandle:
    """Runs of one session in a worker thread. ``config``: for a new session (a resume
    uses the session's own settings, changed by ``overrides``); ``session_id``: an
    existing session to resume (start it with :meth:`resume`) or None for a new one
    (:meth:`start`, or the first :meth:`steer`). ``model``/``store`` as for ``run_task``."""

    read_only = False

    def __init__(
        self,
        config: Config,
        *,
        repo: Path,
        cwd: Path | None = None,
        session_id: str | None = None,
        overrides: dict[str, Any] | None = None,
        model: ChatModel | None = None,
        store: SessionStore | None = None,
        approvals: str | None = None,
    ) -> None:
        self.config = config
        self.repo = Path(repo)
        self.cwd = cwd
        self.session_id = session_id
        self.overrides = dict(overrides or {})
        self.model = model
        self.store = store or SessionStore()
        self.control = RunControl(approvals=approvals or config.approvals, interactive=True)
        self.outcome: Any = None  # the last run's kcode.agent.runner.RunOutcome
        self.error: Exception | None = None  # what stopped the last run from starting or finishing
        self._callbacks: list[EventCallback] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._cancel = CancelToken()
        self._writer: ControlWriter | None = None

    # -- the RunHandle interface ---------------------------------------------------------

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def history(self) -> Iterator[Event]:
        """The session's logged events (none for a new session)."""
        if self.session_id is None or not self.store.log_path(self.session_id).exists():
            return iter(())
        return read_events(self.store.log_path(self.session_id))

    def subscribe(self, callback: EventCallback) -> None:
        self._callbacks.append(callback)

    def steer(self, text: str) -> None:
        if not text.strip():
            raise UsageError("the message is empty")
        with self._lock:
            if self.running:
                self.control.steer(text)
                return
        if self.session_id is None:
            self.start(text)
        else:
            self.control.steer(text)
            self.resume()

    def interrupt_step(self) -> None:
        self.control.interrupt_step()

    def stop(self) -> None:
        if not self.control.stop():
            self._cancel.cancel()  # a run still starting (no loop yet)

    def answer(self, request_id: str, decision: str, reason: str = "") -> None:
        check_answer(decision)
        self.control.answer(request_id, decision, reason)

    def compact(self) -> None:
        if not self.control.compact():
            raise UsageError("no run is going on: the conversation is compacted by a run (send a message first)")

    def close(self) -> None:
        """Stop a run that is going on and wait for it to end."""
        if self.running:
            self.stop()
        self.wait()
        self._release()

    # -- starting runs -------------------------------------------------------------------

    def start(self, task: str) -> None:
        """A new session for ``task``, in the worker thread."""
        if self.session_id is not None:
            raise UsageError(f"this handle's session is {self.session_id}: steer it or resume it")
        from kcode.agent.runner import run_task

        self._spawn(lambda cancel: run_task(task, self.config, repo=self.repo, cwd=self.cwd, model=self.model, store=self.store, subscribers=[self._dispatch], cancel=cancel, control=self.control))

    def resume(self) -> None:
        """Continue the session (``session_id``, or this repository's latest) in the worker thread."""
        from kcode.agent.runner import resume_task

        root = None if self.session_id else self.repo
        self._spawn(lambda cancel: resume_task(self.session_id, self.overrides, repo=root, model=self.model, store=self.store, subscribers=[self._dispatch], cancel=cancel, control=self.control))

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the worker to end; False when ``timeout`` ran out first."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _spawn(self, run: Callable[[CancelToken], Any]) -> None:
        with self._lock:
            if self.running:
                raise UsageError("a run is already going on")
            self._thread = threading.Thread(target=self._work, args=(run,), name="kcode-run", daemon=True)
            self._thread.start()

    def _work(self, run: Callable[[CancelToken], Any]) -> None:
        from kcode.agent.runner import resume_task

        self.error = None
        while True:
            self._cancel = CancelToken()
            try:
                self.outcome = run(self._cancel)
            except Exception as error:  # a frontend has no traceback to show: it gets the error as an event
                self.error = error
                self._dispatch(ErrorEvent(message=f"{type(error).__name__}: {error}", kind="fatal", recoverable=False))
                if not isinstance(error, KcodeError):
                    log.exception("the run failed")
                break
            finally:
                self._release()
            if self._cancel.cancelled or not self.control.has_steering or self.session_id is None:
                break
            # steering sent during the last step, after the model had finished: go on with it
            run = lambda cancel: resume_task(self.session_id, self.overrides, model=self.model, store=self.store, subscribers=[self._dispatch], cancel=cancel, control=self.control)  # noqa: E731

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, SessionStarted) and event.parent_id is None and event.session_id == event.agent_id:
            self.session_id = event.session_id
            self._hold_channel()
        for callback in list(self._callbacks):
            callback(event)

    def _hold_channel(self) -> None:
        if self._writer is not None or self.session_id is None:
            return
        try:
            self._writer = ControlWriter(self.store.dir(self.session_id))
        except ControlBusy:
            self._writer = None  # an attacher got there first: it may steer this run too

    def _release(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
