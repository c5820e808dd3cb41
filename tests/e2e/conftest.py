from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


@pytest.fixture
def kcode(kcode_home: Path):
    """Run the real ``kcode`` executable as a subprocess."""
    executable = shutil.which("kcode")
    assert executable, "kcode is not installed (pip install -e '.[dev]')"

    def run(*args: str, cwd: Path, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "KCODE_HOME": str(kcode_home), "NO_COLOR": "1", **(env or {})}
        return subprocess.run([executable, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    return run
