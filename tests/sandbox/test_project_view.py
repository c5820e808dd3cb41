"""The project's interpreter version is asked once per interpreter, not once per run (a
swarm's sub-agents each discover the same project)."""

from __future__ import annotations

import os
import stat

from kcode.sandbox import project


def _fake_python(path, version, calls):
    path.write_text(f"#!/bin/sh\necho asked >> {calls}\necho {version}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_the_version_is_asked_once_and_again_when_the_interpreter_changes(tmp_path):
    python, calls = tmp_path / "python", tmp_path / "calls"
    _fake_python(python, "3.99.1", calls)
    assert project._python_version(str(python)) == "3.99.1"
    assert project._python_version(str(python)) == "3.99.1"
    assert calls.read_text().count("asked") == 1
    _fake_python(python, "3.99.22", calls)  # replaced (a venv recreated): other size and time
    os.utime(python, ns=(python.stat().st_atime_ns, python.stat().st_mtime_ns + 10**9))
    assert project._python_version(str(python)) == "3.99.22"
    assert calls.read_text().count("asked") == 2


def test_a_failing_interpreter_is_asked_again(tmp_path):
    python, calls = tmp_path / "python", tmp_path / "calls"
    python.write_text(f"#!/bin/sh\necho asked >> {calls}\nexit 1\n")
    python.chmod(0o755)
    assert project._python_version(str(python)) == ""
    assert project._python_version(str(python)) == ""
    assert calls.read_text().count("asked") == 2
