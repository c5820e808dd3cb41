"""``kcode doctor`` and ``kcode sandbox exec|profiles``.

``kcode sandbox exec`` exit codes: the command's own; 124 when the timeout killed it, 125
when the sandbox could not be set up, 2 for a usage error, 130 when interrupted.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]

EXIT_USAGE, EXIT_TIMEOUT, EXIT_SANDBOX, EXIT_INTERRUPTED = 2, 124, 125, 130

sandbox_app = typer.Typer(
    name="sandbox",
    help="Run commands under a sandbox profile; list profiles.",
    no_args_is_help=True,
    add_completion=False,
)


def _repo_root(repo: Path | None) -> Path:
    """``--repo``, else the git repository around the current directory, else the directory."""
    if repo is not None:
        return repo.resolve()
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        top = ""
    return Path(top).resolve() if top else Path.cwd().resolve()


@sandbox_app.command("exec", context_settings={"ignore_unknown_options": True})
def exec_command(
    command: Annotated[list[str], typer.Argument(help="The command and its arguments (after --).")],
    sandbox: Annotated[str | None, typer.Option("--sandbox", "-s", help="Profile name (default: config `sandbox`).")] = None,
    repo: Annotated[Path | None, typer.Option("--repo", help="Repository root (default: the current git repository).")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", min=0.001, help="Seconds before the whole process tree is killed.")] = None,
    writable: Annotated[list[Path], typer.Option("--writable", "-w", help="Another host path writable inside (repeatable).")] = [],  # noqa: B006
) -> None:
    """Run one command under a sandbox profile in the repository; exit with its exit code.

    Example: kcode sandbox exec --sandbox read-only -- git status
    """
    from kcode.cancel import CancelToken
    from kcode.config import load_config
    from kcode.errors import SandboxError, UsageError
    from kcode.sandbox import create_sandbox, load_policy
    from kcode.trust import check_project_settings

    root = _repo_root(repo)
    if not root.is_dir():
        typer.echo(f"kcode sandbox exec: {root} is not a directory", err=True)
        raise typer.Exit(EXIT_USAGE)
    cwd = Path.cwd().resolve()
    if not (cwd == root or root in cwd.parents):
        cwd = root
    try:
        config = load_config(root)
        check_project_settings(config, root, load_policy)
        profile = sandbox or config.sandbox
        runner = create_sandbox(profile, root, extra_writable=writable)
    except UsageError as error:
        typer.echo(f"kcode sandbox exec: {error}", err=True)
        raise typer.Exit(EXIT_USAGE) from error
    except SandboxError as error:
        typer.echo(f"kcode sandbox exec: {error}", err=True)
        raise typer.Exit(EXIT_SANDBOX) from error

    out = sys.stdout.buffer

    def stream(chunk: bytes) -> None:
        out.write(chunk)
        out.flush()

    cancel = CancelToken()
    try:
        result = runner.run(list(command), cwd=cwd, timeout=timeout, cancel=cancel, on_output=stream)
    except KeyboardInterrupt:  # pragma: no cover - interactive
        cancel.cancel()
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if result.timed_out:
        typer.echo(f"kcode sandbox exec: timed out after {timeout:g}s; the process tree was killed", err=True)
        raise typer.Exit(EXIT_TIMEOUT)
    code = result.exit_code
    raise typer.Exit(128 - code if code < 0 else code)


@sandbox_app.command("profiles")
def profiles_command(
    repo: Annotated[Path | None, typer.Option("--repo", help="Repository root (default: the current git repository).")] = None,
) -> None:
    """List the sandbox profiles visible here (built-in, user and project)."""
    from kcode.errors import KcodeError
    from kcode.sandbox import load_policy, profile_names

    root = _repo_root(repo)
    for name in profile_names(root):
        try:
            policy = load_policy(name, root)
        except KcodeError as error:
            typer.echo(f"{name:28} (invalid: {error})")
            continue
        network = "network" if policy.network or policy.mode == "off" else "no network"
        typer.echo(f"{name:28} {policy.mode:16} {network:11} {policy.description}")


def doctor(
    sandbox: Annotated[str, typer.Option("--sandbox", "-s", help="Profile to try a command under.")] = "workspace-write",
) -> None:
    """Check that commands can be sandboxed here (bubblewrap, user namespaces, limits)."""
    from kcode.sandbox.diagnose import run_checks

    checks, usable = run_checks(sandbox)
    checks.append(_project_check())
    marks = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}
    for check in checks:
        typer.echo(f"[{marks[check.status]}] {check.name}: {check.detail}")
        if check.fix:
            fix = check.fix.replace("\n", "\n       ")
            typer.echo(f"       fix: {fix}")
    if usable:
        typer.echo("Sandbox: usable.")
    else:
        typer.echo("Sandbox: NOT usable. kcode refuses to run commands until this is fixed (or --sandbox off).")
    raise typer.Exit(0 if usable else 1)


def _project_check():
    """What commands in this repository use: the interpreter, the environment, the ignored
    inputs a work tree shows read-only (the same discovery as ``kcode run``)."""
    from kcode.sandbox.diagnose import Check
    from kcode.sandbox.project import discover_project, ignored_inputs, shown_line

    root = _repo_root(None)
    view = discover_project(root)
    shown, left_out = ignored_inputs(root)
    detail = view.environment_line() + (f"; {shown_line(shown, left_out)}" if shown else "")
    if view.python is None:
        return Check("project environment", "warn", detail, "install python3, or create the project's venv (.venv/)")
    return Check("project environment", "ok", detail)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
    app.add_typer(sandbox_app, name="sandbox")
