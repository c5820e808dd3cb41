"""Sandboxed command execution."""

from kcode.sandbox.base import ExecResult, Sandbox
from kcode.sandbox.local import LocalSandbox

__all__ = ["ExecResult", "Sandbox", "LocalSandbox"]
