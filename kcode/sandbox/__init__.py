"""Sandboxed command execution."""

from pathlib import Path

from kcode.sandbox.base import ExecResult, Sandbox
from kcode.sandbox.local import LocalSandbox

__all__ = ["ExecResult", "Sandbox", "LocalSandbox", "create_sandbox"]


def create_sandbox(profile: str, root: Path, *, extra_writable: list[Path] = ()) -> Sandbox:
    """The sandbox for a policy profile. (Until bubblewrap lands every profile runs locally.)"""
    return LocalSandbox(root)
