"""The suite builder on a real sdist served over loopback HTTP: sha256 pinning, the same
commits on every build, FAIL_TO_PASS/PASS_TO_PASS from real test runs, a bug no test catches."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import tarfile
import threading
from pathlib import Path

import pytest

from kcode.evals import suite
from kcode.evals.dataset import load_dataset
from kcode.evals.grade import grade
from tests.evals.grading_fixture import LIB, TEST_CMD, TESTS, Tiny, skip_unless_ready


def sdist_bytes() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in {"tiny.py": LIB, "tests/test_tiny.py": TESTS, "pyproject.toml": "[tool.pytest.ini_options]\npythonpath = ['.']\n",
                           "PKG-INFO": "Metadata-Version: 2.1\nName: tiny\nVersion: 1.0\n"}.items():
            data = text.encode()
            info = tarfile.TarInfo(f"tiny-1.0/{name}")
            info.size, info.mtime = len(data), 1_700_000_000
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def served():
    payload = sdist_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            if self.path != "/tiny-1.0.tar.gz":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/tiny-1.0.tar.gz", hashlib.sha256(payload).hexdigest()
    server.shutdown()


def bug_patch() -> str:
    return (
        "diff --git a/tiny.py b/tiny.py\n--- a/tiny.py\n+++ b/tiny.py\n@@ -1,5 +1,5 @@\n def add(a, b):\n"
        "-    return a + b\n+    return a - b\n \n \n def mean(values):\n"
    )


def write_suite(folder: Path, url: str, sha256: str, *, uncaught: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "libraries.toml").write_text(
        f'[[library]]\nname = "tiny"\nversion = "1.0"\nsdist_url = "{url}"\nsha256 = "{sha256}"\npython = "3.11"\n'
        f'packages = []\ninstall = ""\ntest_cmd = "{TEST_CMD}"\n'
    )
    tasks = f'[[task]]\ninstance_id = "pypi__tiny-001"\nlibrary = "tiny"\ntier = "easy"\nproblem_statement = "add(2, 3) gives -1"\ntest_files = ["tests/test_tiny.py"]\nbug_patch = """\n{bug_patch()}"""\n'
    if uncaught:
        harmless = bug_patch().replace("-    return a + b\n+    return a - b", "-    return a + b\n+    return b + a")
        tasks += f'\n[[task]]\ninstance_id = "pypi__tiny-002"\nlibrary = "tiny"\ntier = "easy"\nproblem_statement = "x"\ntest_files = ["tests/test_tiny.py"]\nbug_patch = """\n{harmless}"""\n'
    (folder / "tasks.toml").write_text(tasks)
    return folder


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    """A cache whose pypi__tiny-1.0 env exists (and sees the running interpreter's pytest)."""
    skip_unless_ready()
    tiny = Tiny(tmp_path / "seed")
    tiny.cache = tmp_path / "cache"
    tiny.prepare_env(tiny.instance())
    return tiny.cache


def test_the_builder_makes_the_same_commits_and_labels_the_tests(served, prepared: Path, tmp_path: Path) -> None:
    url, sha = served
    folder = write_suite(tmp_path / "suites" / "tiny-bugs", url, sha, uncaught=True)
    first = suite.build_suite(folder, tmp_path / "one.jsonl", repos_dir=tmp_path / "repos1", cache_dir=prepared)
    assert first["instances"] == 1 and "no test fails at the base" in first["failed"]["pypi__tiny-002"]
    rows = [json.loads(line) for line in (tmp_path / "one.jsonl").read_text().splitlines()]
    row = rows[0]
    # a second build elsewhere makes the same commits (fixed author, committer and dates)
    libraries, tasks = suite.load_suite(folder)
    repo2, clean2 = suite.library_repo(libraries["tiny"], tmp_path / "repos2", prepared)
    assert suite.task_commit(repo2, clean2, tasks[0]) == (row["base_commit"], row["patch"])
    assert json.loads(row["FAIL_TO_PASS"]) == ["tests/test_tiny.py::test_add"]
    assert json.loads(row["PASS_TO_PASS"]) == ["tests/test_tiny.py::test_add_zero", "tests/test_tiny.py::test_mean"]
    assert row["repo"] == "pypi/tiny" and row["tier"] == "easy" and row["test_files"] == ["tests/test_tiny.py"] and row["test_patch"] == ""
    assert "-    return a - b\n+    return a + b" in row["patch"]  # gold is the bug's reverse
    # and the suite grades: gold resolves, empty does not
    instances = load_dataset(tmp_path / "one.jsonl")
    gold = grade(instances, "gold", tmp_path / "gold", cache_dir=prepared, repos_dir=tmp_path / "repos1")
    empty = grade(instances, "empty", tmp_path / "empty", cache_dir=prepared, repos_dir=tmp_path / "repos1")
    assert gold["resolved_ids"] == ["pypi__tiny-001"] and empty["resolved_instances"] == 0
    assert (tmp_path / "repos1" / "pypi__tiny" / "tiny.py").read_text() == LIB  # the clean tree on main


def test_a_wrong_sha256_is_refused(served, tmp_path: Path) -> None:
    url, _ = served
    folder = write_suite(tmp_path / "suites" / "tiny-bugs", url, "0" * 64)
    result = suite.build_suite(folder, tmp_path / "out.jsonl", repos_dir=tmp_path / "repos", cache_dir=tmp_path / "cache")
    assert result["instances"] == 0
    assert "sha256 of tiny-1.0.tar.gz is" in result["failed"]["pypi__tiny-001"] and "pins " + "0" * 64 in result["failed"]["pypi__tiny-001"]
    assert not (tmp_path / "cache" / "evals" / "sdists" / "tiny-1.0.tar.gz").exists()


def test_a_bad_suite_file_names_the_problem(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "libraries.toml").write_text('[[library]]\nname = "tiny"\n')
    (folder / "tasks.toml").write_text("")
    with pytest.raises(suite.SuiteError, match="libraries.toml library 1: missing version, sdist_url"):
        suite.load_suite(folder)
    with pytest.raises(suite.SuiteError, match="no such file"):
        suite.load_suite(tmp_path / "nowhere")
