"""Where kept-alive model servers are written down: one record per server, keyed by what
makes two servers different (the model file as it is on disk, the llama.cpp settings, the
seed), in the cache folder's ``servers/`` (mode 0700; records 0600: they hold the token).

A record is written by the server once it listens and removed by it when it stops; a record
whose process is gone (killed) is stale and is removed by whoever finds it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kcode.config import LlamaCppOptions
from kcode.errors import ConfigError

__all__ = ["server_log", "ServerRecord", "servers_dir", "server_key", "file_identity", "parse_keep_alive",
           "read_records", "read_record", "write_record", "remove_record", "start_lock", "process_alive"]

# llama.cpp settings that do not change what a server computes: a server is shared across them
_NOT_KEYED = frozenset({"keep_alive"})
_KEEP_ALIVE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_keep_alive(value: str | float | int | None) -> float:
    """ollama's ``keep_alive``: ``"5m"``, ``"30s"``, ``"1h"``, ``300`` → seconds; ``0`` → 0 (no
    server: the model runs in process); a negative value → forever (``inf``)."""
    if value is None or value == "":
        return 0.0
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _KEEP_ALIVE.match(str(value))
        if not match:
            raise ConfigError(f"invalid keep_alive {value!r} (use e.g. 5m, 30s, 1h, 0 for in process, -1 for forever)")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    return float("inf") if seconds < 0 else seconds


def servers_dir() -> Path:
    from kcode.paths import cache_dir

    folder = cache_dir() / "servers"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def file_identity(path: Path) -> list[int]:
    """The model file as it is now: a server stops when this changes under it."""
    stat = path.stat()
    return [stat.st_ino, stat.st_size, stat.st_mtime_ns]


def server_key(path: Path, options: LlamaCppOptions, seed: int | None) -> str:
    """What a server is for: the same key, the same answers."""
    settings = {k: v for k, v in dataclasses.asdict(options).items() if k not in _NOT_KEYED}
    what = {"path": str(path.resolve()), "file": file_identity(path), "options": settings, "seed": seed}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:20]


@dataclass
class ServerRecord:
    key: str
    pid: int
    port: int
    token: str
    model: str  # the model file's path
    started: float  # time.time()
    keep_alive: float  # seconds (inf: forever)
    ctx: int = 0
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    log: str = ""
    last_used: float = 0.0  # time.time() of the last request's end (0: none yet)
    kind: str = "kcode"  # kcode's own server, or "llama-server" (llama.cpp's, with parallel slots)
    slots: int = 1  # conversations served at once

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["keep_alive"] = -1 if self.keep_alive == float("inf") else self.keep_alive
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> ServerRecord:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        record = cls(**{k: v for k, v in data.items() if k in known})
        if record.keep_alive < 0:
            record.keep_alive = float("inf")
        return record


def _record_path(key: str) -> Path:
    return servers_dir() / f"{key}.json"


def read_record(key: str) -> ServerRecord | None:
    try:
        return ServerRecord.from_json(_record_path(key).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return None


def read_records() -> list[ServerRecord]:
    found = []
    for path in sorted(servers_dir().glob("*.json")):
        record = read_record(path.stem)
        if record is not None:
            found.append(record)
    return found


def write_record(record: ServerRecord) -> None:
    path = _record_path(record.key)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(record.to_json())
    os.replace(tmp, path)


def remove_record(key: str, pid: int | None = None) -> None:
    """Remove ``key``'s record (only if it is still ``pid``'s, when given)."""
    if pid is not None:
        current = read_record(key)
        if current is not None and current.pid != pid:
            return
    with contextlib.suppress(FileNotFoundError):
        _record_path(key).unlink()


@contextlib.contextmanager
def start_lock(key: str) -> Iterator[None]:
    """Held while a client finds or starts ``key``'s server: two runs at once start one."""
    path = servers_dir() / f"{key}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def server_log(line: str) -> None:
    """One line of a server process's own log: its standard output, which the starter points at
    the server's log file (never a terminal: the server is detached)."""
    os.write(1, (line + "\n").encode("utf-8", errors="replace"))
