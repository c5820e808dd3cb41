"""Sandboxed command execution.

``create_sandbox(profile, root)`` is the one way to get a sandbox: bubblewrap for every
profile but ``off``; when bubblewrap cannot work here it raises :class:`SandboxError` with
the reason and the fix. It never falls back to running commands unsandboxed.
"""

from __future__ import annotations

import dataclasses

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kcode.cancel import CancelToken
from kcode.errors import SandboxError
from kcode.sandbox.base import ExecResult, Sandbox
from kcode.sandbox.bwrap import BubblewrapSandbox
from kcode.sandbox.local import LocalSandbox
from kcode.sandbox.policy import Limits, SandboxPolicy, load_policy, profile_names
from kcode.sandbox.probe import BubblewrapStatus, probe_bubblewrap
from kcode.sandbox.project import ProjectView, discover_project

__all__ = [
    "ExecResult",
    "Sandbox",
    "LocalSandbox",
    "UnsandboxedSandbox",
    "BubblewrapSandbox",
    "SandboxPolicy",
    "Limits",
    "BubblewrapStatus",
    "create_sandbox",
    "load_policy",
    "profile_names",
    "probe_bubblewrap",
    "UNSANDBOXED_WARNING",
    "ProjectView",
    "discover_project",
]

log = logging.getLogger(__name__)

UNSANDBOXED_WARNING = "sandbox is off: this command runs with your user's full access to files, network and secrets"


class UnsandboxedSandbox(LocalSandbox):
    """``--sandbox off``: the local runner, with a warning logged on every command."""

    def __init__(self, root: Path, *, policy: SandboxPolicy | None = None, **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        self.policy = policy

    def run(
        self,
        command: str | Sequence[str],
        *,
        cwd: Path | None = None,
        timeout: float | None = 120.0,
        env: Mapping[str, str] | None = None,
        cancel: CancelToken | None = None,
        on_output: Callable[[bytes], None] | None = None,
    ) -> ExecResult:
        log.warning(UNSANDBOXED_WARNING)
        return super().run(command, cwd=cwd, timeout=timeout, env=env, cancel=cancel, on_output=on_output)


def create_sandbox(
    profile: str,
    root: Path,
    *,
    extra_writable: Iterable[Path] = (),
    extra_readable: Iterable[Path | str] = (),
    head_bytes: int = 5000,
    tail_bytes: int = 5000,
    trusted: bool | None = None,
    view: ProjectView | None = None,
) -> Sandbox:
    """The sandbox for ``profile`` (a name from ``sandbox/``, the user's or the project's
    profiles) confined to the repository at ``root``; ``extra_writable`` adds host paths the
    commands may write (a scratch directory), ``extra_readable`` paths they may read (under a
    hidden home too).

    Raises :class:`kcode.errors.ConfigError` for an unknown or invalid profile and
    :class:`SandboxError` when bubblewrap is unusable. ``trusted``: whether the repository's
    own profiles may loosen the sandbox (None: :func:`kcode.trust.is_trusted` of ``root``).
    ``view``: how commands see the project (:func:`discover_project`): a work tree at the
    checkout's path, the project's environment first on ``PATH``.
    """
    root = Path(root).resolve()
    policy = load_policy(profile, root, trusted=trusted)
    if extra_readable:
        policy = dataclasses.replace(policy, readable=(*policy.readable, *(str(Path(p)) for p in extra_readable)))
    if policy.mode == "off":
        prefix = view.path_prefix if view is not None else ()
        return UnsandboxedSandbox(root, policy=policy, head_bytes=head_bytes, tail_bytes=tail_bytes, path_prefix=prefix)
    status = probe_bubblewrap()
    if not status.usable:
        raise SandboxError(
            f"cannot sandbox commands with profile {profile!r}: {status.message()}\n"
            "(kcode never runs commands unsandboxed unless you choose --sandbox off.)"
        )
    return BubblewrapSandbox(
        policy,
        root,
        extra_writable=extra_writable,
        bwrap=status.bwrap,
        head_bytes=head_bytes,
        tail_bytes=tail_bytes,
        view=view,
    )
