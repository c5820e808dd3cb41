"""Building llama.cpp's ``llama-server`` (parallel slots) into kcode's cache: ``kcode models build-server``.

llama-cpp-python ships no ``llama-server`` binary, and its own server has no parallel slots.
The llama.cpp it vendors does: its sdist (the installed version's, fetched with ``pip
download --no-binary :all: --no-deps llama-cpp-python==VERSION``; or a given sdist or
folder) holds ``vendor/llama.cpp``, built here with cmake for the ``llama-server`` target
only: portable CPU flags (``GGML_NATIVE=OFF``), no curl or OpenSSL, no tests, examples or web
UI, static libraries, so the one binary stands alone. It goes to
``cache_dir()/bin/llama-server``, where :func:`kcode.llm.serve._slots.find_llama_server`
finds it after the configured ``llama_server`` and before PATH; ``llama-server.json`` beside
it says what it was built from. The build folder is a temporary one, removed afterwards.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from kcode.errors import KcodeError
from kcode.paths import cache_dir

__all__ = ["CMAKE_FLAGS", "build_llama_server", "built_llama_server", "llama_cpp_python_version"]

CMAKE_FLAGS = ["-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=OFF", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF",
               "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
               "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF"]
TARGET = "llama-server"


def built_llama_server() -> Path:
    """Where ``kcode models build-server`` puts the binary (it may not be there)."""
    return cache_dir() / "bin" / TARGET


def llama_cpp_python_version() -> str:
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError as error:
        raise KcodeError("llama-cpp-python is not installed (pip install 'kcode[llama]'); "
                         "give the llama.cpp sources with --source") from error


def _run(command: list[str], log: Path, on_line: Callable[[str], None], cwd: Path | None = None) -> None:
    """Run ``command``, its output appended to ``log`` and each line handed to ``on_line``."""
    with log.open("a", encoding="utf-8") as sink:
        sink.write("$ " + " ".join(command) + "\n")
        sink.flush()
        process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   errors="replace", stdin=subprocess.DEVNULL)
        assert process.stdout is not None
        for line in process.stdout:
            sink.write(line)
            on_line(line.rstrip("\n"))
        status = process.wait()
    if status != 0:
        tail = "".join(log.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)[-15:])
        raise KcodeError(f"{Path(command[0]).name} {command[1] if len(command) > 1 else ''} failed (status {status}); "
                         f"the log: {log}\n{tail}")


def _llama_cpp_root(folder: Path) -> Path | None:
    """The llama.cpp source folder in ``folder``: itself, or its ``vendor/llama.cpp`` (an
    unpacked llama-cpp-python sdist), or that of its one top-level folder (an unpacked tarball)."""
    for candidate in (folder, folder / "vendor" / "llama.cpp"):
        if (candidate / "CMakeLists.txt").is_file() and (candidate / "tools" / "server").is_dir():
            return candidate
    inner = [child for child in folder.iterdir() if child.is_dir()] if folder.is_dir() else []
    return _llama_cpp_root(inner[0]) if len(inner) == 1 and inner[0] != folder else None


def _sources(source: Path | None, scratch: Path, log: Path, on_line: Callable[[str], None],
             on_step: Callable[[str], None]) -> tuple[Path, str]:
    """The llama.cpp folder to build, and what it is (for llama-server.json)."""
    if source is None:
        version = llama_cpp_python_version()
        on_step(f"fetching the llama-cpp-python {version} sdist (pip download)")
        _run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "--disable-pip-version-check",
              f"llama-cpp-python=={version}", "-d", str(scratch / "sdist")], log, on_line)
        (tarball,) = sorted((scratch / "sdist").glob("*.tar.gz")) or [None]
        if tarball is None:
            raise KcodeError(f"pip download gave no llama-cpp-python {version} sdist; the log: {log}")
        source, described = tarball, f"llama-cpp-python {version} sdist"
    else:
        source = source.expanduser().resolve()
        if not source.exists():
            raise KcodeError(f"no such source: {source}")
        described = str(source)
    if source.is_file():
        if not tarfile.is_tarfile(source):
            raise KcodeError(f"{source} is neither a folder nor a tarball of llama.cpp's sources")
        on_step(f"unpacking {source.name}")
        with tarfile.open(source) as archive:
            archive.extractall(scratch / "src", filter="data")
        source = scratch / "src"
    root = _llama_cpp_root(source)
    if root is None:
        raise KcodeError(f"{described}: no llama.cpp sources in it (a CMakeLists.txt and tools/server, "
                         "or vendor/llama.cpp holding them)")
    return root, described


def build_llama_server(source: Path | None = None, jobs: int | None = None, force: bool = False,
                       on_line: Callable[[str], None] = lambda line: None,
                       on_step: Callable[[str], None] = lambda step: None) -> tuple[Path, bool]:
    """Build ``llama-server`` into kcode's cache; its path, and whether it was built now
    (False: it was already there and ``force`` is not set). ``on_line`` gets each line of the
    tools' output, ``on_step`` each step. Raises KcodeError with the log's last lines when a
    step fails."""
    target = built_llama_server()
    if target.is_file() and os.access(target, os.X_OK) and not force:
        return target, False
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise KcodeError(f"building llama-server needs {tool} (apt-get install cmake g++)")
    target.parent.mkdir(parents=True, exist_ok=True)
    log = target.parent / "llama-server-build.log"
    log.write_text("", encoding="utf-8")
    jobs = jobs or os.cpu_count() or 1
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="llama-server-", dir=target.parent) as scratch_name:
        scratch = Path(scratch_name)
        root, described = _sources(source, scratch, log, on_line, on_step)
        build = scratch / "build"
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        on_step(f"configuring {root} (cmake; the log: {log})")
        _run(["cmake", "-S", str(root), "-B", str(build), *generator, *CMAKE_FLAGS], log, on_line)
        on_step(f"compiling {TARGET} with {jobs} jobs")
        _run(["cmake", "--build", str(build), "--target", TARGET, "-j", str(jobs)], log, on_line)
        built = build / "bin" / TARGET
        if not built.is_file():
            raise KcodeError(f"the build made no {built}; the log: {log}")
        partial = target.with_name(TARGET + ".partial")
        shutil.copy2(built, partial)
        partial.chmod(0o755)
        os.replace(partial, target)
    info = {"source": described, "cmake_flags": CMAKE_FLAGS, "seconds": round(time.monotonic() - started, 1),
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    target.with_name(TARGET + ".json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    return target, True
