"""Cancellation: one token shared by the loop, the model stream and the sandbox.

A token is a flag that is set once and never cleared. :meth:`CancelToken.child` makes a
token for a part of the work (one run of several, a sub-agent, a tool call): cancelling the
parent cancels every child, cancelling a child leaves the parent and its other children
running.
"""

from __future__ import annotations

import threading
import weakref

__all__ = ["CancelToken"]


class CancelToken:
    """Set once by :meth:`cancel` (from any thread); read with :attr:`cancelled`, or slept
    on with :meth:`wait`."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        # Weak: a child nobody holds any more needs no cancelling, and a long-lived parent
        # (the CLI's token) does not keep every finished child alive.
        self._children: weakref.WeakSet[CancelToken] = weakref.WeakSet()

    def cancel(self) -> None:
        """Set the flag, then cancel the children (and theirs)."""
        with self._lock:
            self._event.set()
            children = list(self._children)
            self._children.clear()
        for child in children:
            child.cancel()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; return True as soon as the token is cancelled (at once
        if it already is), False when the time ran out."""
        return self._event.wait(seconds)

    def child(self) -> CancelToken:
        """A new token cancelled when this one is; already cancelled if this one is."""
        token = CancelToken()
        with self._lock:
            if not self._event.is_set():
                self._children.add(token)
                return token
        token.cancel()
        return token
