"""Parsing many files at once: worker processes on cold builds.

Tree-sitter parsing and reading the query captures is almost all of a cold build, and it is
CPU-bound Python, so threads do not help; processes do. Workers are plain subprocesses
(``python -m kcode.context.workers``), not ``multiprocessing``: forking the agent's threaded
process can deadlock, and ``spawn`` re-runs the caller's ``__main__`` script in each child.
The files are split by size into one share per process; this process parses the first share
itself while the workers parse the others, and they send back the tags in their stored form
(:func:`encode_tags`), which the cache keeps as is, so nothing is serialised twice. A worker
that fails has its share parsed here instead. Results are in input order whatever finishes
first. Workers are used only when there are enough files to repay their start-up.

``workers``: ``None`` means one process per CPU this process may run on (at most 8);
1 parses everything here. ``KCODE_PACK_WORKERS`` overrides ``None``.
"""

from __future__ import annotations

import marshal
import os
from collections.abc import Sequence

from kcode.context.tags import FileTags, extract_tags

__all__ = ["parse_sources", "encode_tags", "decode_tags", "pool_size", "POOL_MIN_FILES"]

POOL_MIN_FILES = 200  # fewer files are parsed here: a worker's start-up costs ~0.2 s
_MAX_WORKERS = 8


def encode_tags(tags: FileTags) -> bytes:
    """The stored form: ``marshal`` of :meth:`FileTags.to_json` (several times faster than
    JSON both ways; the cache key carries the Python version, marshal's format may change)."""
    return marshal.dumps(tags.to_json())


def decode_tags(blob: bytes) -> FileTags:
    return FileTags.from_json(marshal.loads(blob))


def pool_size(workers: int | None, jobs: int) -> int:
    """How many processes parse ``jobs`` files."""
    if workers is None:
        env = os.environ.get("KCODE_PACK_WORKERS", "").strip()
        if env.isdigit() and int(env) > 0:
            workers = int(env)
        else:
            try:
                workers = min(len(os.sched_getaffinity(0)), _MAX_WORKERS)
            except AttributeError:  # not on Linux
                workers = min(os.cpu_count() or 1, _MAX_WORKERS)
    if workers <= 1 or jobs < POOL_MIN_FILES:
        return 1
    return min(workers, max(1, jobs // (POOL_MIN_FILES // 2)))


def _parse_share(share: list[tuple[bytes, str]]) -> list[bytes]:
    return [encode_tags(extract_tags(data, language)) for data, language in share]


def _run_worker(share: list[tuple[bytes, str]]) -> list[bytes] | None:
    """One worker subprocess parses ``share``; None if it failed.

    Input and output go through temporary files, not pipes: feeding a pipe from a Python
    thread needs the GIL for every small write, which the parsing main thread holds most of
    the time, and the worker would sit starved of input."""
    import subprocess
    import sys
    import tempfile

    import kcode

    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(kcode.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = package_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        with tempfile.TemporaryFile() as source, tempfile.TemporaryFile() as output:
            source.write(marshal.dumps(share))
            source.seek(0)
            done = subprocess.run(
                [sys.executable, "-m", "kcode.context.workers"],
                stdin=source,
                stdout=output,
                stderr=subprocess.DEVNULL,
                env=env,
                timeout=600,
            )
            output.seek(0)
            result = marshal.loads(output.read()) if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, EOFError, ValueError, TypeError):
        return None
    return result if isinstance(result, list) and len(result) == len(share) else None


def parse_sources(
    jobs: Sequence[tuple[bytes, str]], workers: int | None = None
) -> tuple[list[FileTags], list[bytes], int]:
    """Tags of each ``(source, language)``, their stored forms, and the processes used."""
    size = pool_size(workers, len(jobs))
    if size == 1:
        tags = [extract_tags(data, language) for data, language in jobs]
        return tags, [encode_tags(t) for t in tags], 1
    from concurrent.futures import ThreadPoolExecutor

    # Largest first, each to the share with the fewest bytes so far: shares of equal work.
    shares: list[list[int]] = [[] for _ in range(size)]
    load = [0] * size
    for i in sorted(range(len(jobs)), key=lambda i: (-len(jobs[i][0]), i)):
        k = load.index(min(load))
        shares[k].append(i)
        load[k] += len(jobs[i][0]) + 1000  # a file costs something however small
    blobs: list[bytes] = [b""] * len(jobs)
    with ThreadPoolExecutor(size - 1) as threads:  # each thread waits on one subprocess
        pending = [threads.submit(_run_worker, [jobs[i] for i in share]) for share in shares[1:]]
        results = [_parse_share([jobs[i] for i in shares[0]])]
        for share, future in zip(shares[1:], pending):
            result = future.result()
            results.append(result if result is not None else _parse_share([jobs[i] for i in share]))
    for share, result in zip(shares, results):
        for i, blob in zip(share, result):
            blobs[i] = blob
    return [decode_tags(b) for b in blobs], blobs, size


def _serve() -> None:
    """The worker: a marshalled list of (source, language) on stdin, blobs on stdout."""
    import sys

    jobs = marshal.loads(sys.stdin.buffer.read())
    sys.stdout.buffer.write(marshal.dumps(_parse_share(jobs)))


if __name__ == "__main__":
    _serve()
