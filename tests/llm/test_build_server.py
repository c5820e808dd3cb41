"""``kcode models build-server``: llama.cpp's sources (a folder, an sdist's tarball with
vendor/llama.cpp) built with real cmake for the llama-server target into kcode's cache, where
find_llama_server finds it after the configured binary and before PATH. The sources here are
a stand-in llama.cpp tree whose llama-server is a small C program (the real one takes
minutes; tests/llm/test_slots_real.py runs it where CI has built it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kcode.cli.models import app
from kcode.llm.serve._build import CMAKE_FLAGS, built_llama_server
from kcode.llm.serve._slots import find_llama_server

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("cc") is None, reason="needs cmake and a C compiler")

CMAKELISTS = """cmake_minimum_required(VERSION 3.14)
project(fake_llama C)
option(GGML_NATIVE "" ON)
option(LLAMA_CURL "" ON)
set(CMAKE_RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)
add_executable(llama-server tools/server/server.c)
target_compile_definitions(llama-server PRIVATE NATIVE="${GGML_NATIVE}" CURL="${LLAMA_CURL}")
add_executable(llama-other tools/server/server.c)
"""
SERVER_C = '#include <stdio.h>\nint main(void) { printf("fake llama-server native=%s curl=%s\\n", NATIVE, CURL); return 0; }\n'


def fake_llama_cpp(root: Path) -> Path:
    (root / "tools" / "server").mkdir(parents=True)
    (root / "CMakeLists.txt").write_text(CMAKELISTS)
    (root / "tools" / "server" / "server.c").write_text(SERVER_C)
    return root


def test_build_server_builds_the_target_into_the_cache_where_kcode_finds_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", os.pathsep.join(str(Path(shutil.which(t)).parent) for t in ("cmake", "cc")))
    assert shutil.which("llama-server") is None and find_llama_server(None) is None
    source = fake_llama_cpp(tmp_path / "llama.cpp")
    runner = CliRunner()
    result = runner.invoke(app, ["build-server", "--source", str(source), "-j", "2"])
    assert result.exit_code == 0, result.output
    binary = built_llama_server()
    assert result.stdout.strip() == str(binary) and "configuring" in result.stderr and "compiling llama-server with 2 jobs" in result.stderr
    ran = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout
    assert ran == "fake llama-server native=OFF curl=OFF\n"  # kcode's portable flags reached cmake
    assert "-DGGML_NATIVE=OFF" in CMAKE_FLAGS and "-DBUILD_SHARED_LIBS=OFF" in CMAKE_FLAGS
    assert not (binary.parent / "llama-other").exists()  # the one target, copied alone
    assert [p.name for p in binary.parent.iterdir() if p.is_dir()] == []  # no build folder left
    assert find_llama_server(None) == str(binary)

    # the configured binary wins over the cache; a second build is skipped, --force builds again
    configured = tmp_path / "mine"
    configured.write_text("#!/bin/sh\n")
    configured.chmod(0o755)
    assert find_llama_server(str(configured)) == str(configured)
    before = binary.stat().st_mtime_ns
    again = runner.invoke(app, ["build-server", "--source", str(source)])
    assert again.exit_code == 0 and "already built" in again.stderr and binary.stat().st_mtime_ns == before
    forced = runner.invoke(app, ["build-server", "--source", str(source), "--force"])
    assert forced.exit_code == 0, forced.output
    assert binary.stat().st_mtime_ns != before


def test_build_server_takes_an_sdist_tarball_with_vendored_llama_cpp(tmp_path):
    package = tmp_path / "pkg" / "llama_cpp_python-9.9.9"
    fake_llama_cpp(package / "vendor" / "llama.cpp")
    tarball = tmp_path / "llama_cpp_python-9.9.9.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(package, arcname=package.name)
    result = CliRunner().invoke(app, ["build-server", "--source", str(tarball)])
    assert result.exit_code == 0, result.output
    assert "unpacking llama_cpp_python-9.9.9.tar.gz" in result.stderr
    info = (built_llama_server().with_name("llama-server.json")).read_text()
    assert str(tarball) in info


def test_build_server_explains_bad_sources_and_failed_builds(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["build-server", "--source", str(tmp_path / "nope")])
    assert result.exit_code == 1 and "no such source" in result.stderr
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["build-server", "--source", str(tmp_path / "empty")])
    assert result.exit_code == 1 and "no llama.cpp sources in it" in result.stderr
    broken = fake_llama_cpp(tmp_path / "broken")
    (broken / "tools" / "server" / "server.c").write_text("this is not C\n")
    result = runner.invoke(app, ["build-server", "--source", str(broken)])
    assert result.exit_code == 1 and "cmake --build failed" in result.stderr and "llama-server-build.log" in result.stderr
    assert not built_llama_server().exists()
