"""``CancelToken``: set once from any thread, slept on with ``wait``; child tokens follow
their parent, never the other way."""

from __future__ import annotations

import gc
import threading
import time
import weakref

import kcode.llm
import kcode.llm.base
from kcode.cancel import CancelToken


def test_cancel_sets_the_flag_and_wakes_a_waiter() -> None:
    token = CancelToken()
    assert not token.cancelled
    started = time.monotonic()
    assert token.wait(0.05) is False  # the time ran out
    assert time.monotonic() - started >= 0.04
    threading.Timer(0.1, token.cancel).start()
    started = time.monotonic()
    assert token.wait(30) is True
    assert time.monotonic() - started < 5 and token.cancelled
    assert token.wait(30) is True  # at once, once cancelled


def test_cancelling_the_parent_cancels_children_and_grandchildren() -> None:
    parent = CancelToken()
    child, sibling = parent.child(), parent.child()
    grandchild = child.child()
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(grandchild.wait(30)))
    waiter.start()
    parent.cancel()
    waiter.join(5)
    assert woke == [True]
    assert child.cancelled and sibling.cancelled and grandchild.cancelled


def test_cancelling_a_child_leaves_the_parent_and_siblings_running() -> None:
    parent = CancelToken()
    child, sibling = parent.child(), parent.child()
    grandchild = child.child()
    child.cancel()
    assert child.cancelled and grandchild.cancelled
    assert not parent.cancelled and not sibling.cancelled
    assert parent.wait(0.01) is False


def test_a_child_of_a_cancelled_token_is_born_cancelled() -> None:
    parent = CancelToken()
    parent.cancel()
    assert parent.child().cancelled
    assert parent.child().wait(0) is True


def test_a_parent_does_not_keep_its_children_alive() -> None:
    parent = CancelToken()
    child = parent.child()
    alive = weakref.ref(child)
    del child
    gc.collect()
    assert alive() is None
    parent.cancel()  # nothing left to cancel; no error


def test_cancel_from_many_threads_at_once() -> None:
    parent = CancelToken()
    children = [parent.child() for _ in range(50)]
    threads = [threading.Thread(target=parent.cancel) for _ in range(4)] + [threading.Thread(target=c.cancel) for c in children[:10]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert all(child.cancelled for child in children)


def test_the_token_lives_in_the_foundation_only() -> None:
    assert "CancelToken" not in kcode.llm.base.__all__ and "CancelToken" not in kcode.llm.__all__
    assert not hasattr(kcode.llm, "CancelToken")
