"""Evaluation datasets in the official schemas: SWE-bench and SWE-bench Pro, as JSON, JSONL
or parquet.

- SWE-bench: ``FAIL_TO_PASS`` and ``PASS_TO_PASS`` are JSON strings, ``version`` a string.
- SWE-bench Pro: lowercase columns (``fail_to_pass``...), whose lists are Python literals,
  read with :func:`ast.literal_eval` (never ``eval``).

A row that cannot be read raises :class:`DatasetError` naming the row and the field, unless
the caller asks to skip bad rows (then each is reported through ``on_bad``).
"""

from __future__ import annotations

import ast
import json
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kcode.errors import KcodeError

__all__ = ["DatasetError", "Instance", "instance_from_row", "instance_to_row", "load_dataset", "parse_slice", "select"]

# the per-instance environment overrides a dataset row may carry (the built-in suite does)
OVERRIDE_KEYS = ("python", "pre_install", "packages", "install", "test_cmd", "test_files", "timeout")
_REQUIRED = ("instance_id", "repo", "base_commit", "problem_statement")


class DatasetError(KcodeError):
    """A dataset file or row that cannot be read."""


@dataclass
class Instance:
    instance_id: str
    repo: str
    base_commit: str
    problem_statement: str
    patch: str = ""
    test_patch: str = ""
    fail_to_pass: list[str] = field(default_factory=list)
    pass_to_pass: list[str] = field(default_factory=list)
    version: str = ""
    environment_setup_commit: str = ""
    hints_text: str = ""
    created_at: str = ""
    tier: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def _test_list(value: Any, name: str) -> list[str]:
    """A list of test ids from a JSON string (SWE-bench), a Python literal (Pro) or a list."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError) as exc:
                raise DatasetError(f"{name} is neither JSON nor a Python literal list: {value[:80]!r}") from exc
    if hasattr(value, "tolist"):  # a numpy array from parquet
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise DatasetError(f"{name} must be a list of test ids, got {type(value).__name__}")
    return list(value)


def _text(row: dict, key: str) -> str:
    value = row.get(key)
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # SWE-bench's version is a string: "0.12", never the float 0.12 that loses "0.10"'s zero
        return str(value)
    if not isinstance(value, str):
        raise DatasetError(f"{key} must be a string, got {type(value).__name__}")
    return value


def instance_from_row(row: dict) -> Instance:
    """One row of a dataset (a dict in either schema) as an :class:`Instance`."""
    # SWE-bench Pro spells every column in lowercase; SWE-bench has the two test lists upper
    lower = {str(k).lower(): v for k, v in row.items()}
    for key in _REQUIRED:
        if not lower.get(key):
            raise DatasetError(f"missing {key}")
    overrides = {k: lower[k] for k in OVERRIDE_KEYS if lower.get(k) not in (None, "", [])}
    for key in ("pre_install", "packages", "test_files"):
        if key in overrides:
            overrides[key] = _test_list(overrides[key], key)
    tier = _text(lower, "tier") or _text(lower, "difficulty")
    return Instance(
        instance_id=_text(lower, "instance_id"),
        repo=_text(lower, "repo"),
        base_commit=_text(lower, "base_commit"),
        problem_statement=_text(lower, "problem_statement"),
        patch=_text(lower, "patch"),
        test_patch=_text(lower, "test_patch"),
        fail_to_pass=_test_list(lower.get("fail_to_pass"), "FAIL_TO_PASS"),
        pass_to_pass=_test_list(lower.get("pass_to_pass"), "PASS_TO_PASS"),
        version=_text(lower, "version"),
        environment_setup_commit=_text(lower, "environment_setup_commit"),
        hints_text=_text(lower, "hints_text"),
        created_at=str(lower.get("created_at") or ""),
        tier=tier,
        overrides=overrides,
        raw=dict(row),
    )


def _rows(path: Path) -> Iterable[tuple[str, Any]]:
    """(where, row) for each row of the file; ``where`` names it in errors."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise DatasetError("reading parquet needs pyarrow: pip install 'kcode[eval]'") from exc
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises its own error types for a broken file
            raise DatasetError(f"{path}: not a readable parquet file: {exc}") from exc
        for i, row in enumerate(table.to_pylist()):
            yield f"{path.name} row {i}", row
    elif suffix == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield f"{path.name} line {n}", json.loads(line)
                except json.JSONDecodeError as exc:
                    yield f"{path.name} line {n}", DatasetError(f"not JSON: {exc}")
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: not JSON: {exc}") from exc
        if isinstance(data, dict):  # {instance_id: row} or {"instances": [...]}
            data = data.get("instances", list(data.values()))
        if not isinstance(data, list):
            raise DatasetError(f"{path}: expected a list of instances")
        for i, row in enumerate(data):
            yield f"{path.name} item {i}", row
    else:
        raise DatasetError(f"{path}: unknown dataset format (use .json, .jsonl or .parquet)")


def load_dataset(
    path: Path | str,
    split: str | None = None,
    *,
    skip_bad: bool = False,
    on_bad: Callable[[str, str], None] | None = None,
) -> list[Instance]:
    """The instances of the dataset at ``path``. A directory is searched for a file named for
    ``split`` (``*{split}*.parquet``/``.jsonl``/``.json``); a row's ``split`` column, where it
    has one, is filtered by ``split`` too. A bad row raises :class:`DatasetError` (naming the
    row), or with ``skip_bad`` is left out and passed to ``on_bad(where, reason)``."""
    path = Path(path).expanduser()
    if path.is_dir():
        pattern = f"*{split}*" if split else "*"
        found = sorted(p for p in path.glob(pattern) if p.suffix.lower() in (".parquet", ".jsonl", ".json"))
        if not found:
            raise DatasetError(f"{path}: no dataset file for split {split!r}")
        path = found[0]
    elif not path.exists():
        raise DatasetError(f"{path}: no such dataset file")
    instances: list[Instance] = []
    seen: set[str] = set()
    for where, row in _rows(path):
        try:
            if isinstance(row, Exception):
                raise row
            if not isinstance(row, dict):
                raise DatasetError("a row must be an object")
            if split and row.get("split") not in (None, split):
                continue
            inst = instance_from_row(row)
            if inst.instance_id in seen:
                raise DatasetError(f"duplicate instance_id {inst.instance_id}")
        except DatasetError as exc:
            if not skip_bad:
                raise DatasetError(f"{where}: {exc}") from exc
            if on_bad:
                on_bad(where, str(exc))
            continue
        seen.add(inst.instance_id)
        instances.append(inst)
    return instances


def parse_slice(text: str) -> slice:
    """``"A:B"`` (either side may be empty) as a slice."""
    m = re.fullmatch(r"\s*(-?\d*)\s*:\s*(-?\d*)\s*", text or "")
    if not m:
        raise DatasetError(f"--slice takes A:B, got {text!r}")
    return slice(int(m[1]) if m[1] else None, int(m[2]) if m[2] else None)


def select(
    instances: list[Instance],
    ids: Iterable[str] | None = None,
    filter: str | None = None,
    slice: str | None = None,
    shuffle: int | None = None,
) -> list[Instance]:
    """The instances a run covers: named ``ids`` (each must exist), those whose id matches the
    regular expression ``filter``, then ``shuffle`` (a seed), then ``slice`` (``A:B``)."""
    chosen = list(instances)
    if ids:
        wanted = [i.strip() for i in ids if i.strip()]
        by_id = {inst.instance_id: inst for inst in chosen}
        missing = [i for i in wanted if i not in by_id]
        if missing:
            raise DatasetError(f"not in the dataset: {', '.join(missing[:5])}")
        chosen = [by_id[i] for i in dict.fromkeys(wanted)]
    if filter:
        try:
            rx = re.compile(filter)
        except re.error as exc:
            raise DatasetError(f"--filter is not a regular expression: {exc}") from exc
        chosen = [inst for inst in chosen if rx.search(inst.instance_id)]
    if shuffle is not None:
        random.Random(shuffle).shuffle(chosen)
    if slice:
        chosen = chosen[parse_slice(slice)]
    return chosen


def instance_to_row(inst: Instance) -> dict[str, Any]:
    """The instance in the official SWE-bench schema (the test lists as JSON strings), with
    ``tier`` and the environment overrides where it has them."""
    row: dict[str, Any] = {
        "instance_id": inst.instance_id,
        "repo": inst.repo,
        "base_commit": inst.base_commit,
        "problem_statement": inst.problem_statement,
        "patch": inst.patch,
        "test_patch": inst.test_patch,
        "FAIL_TO_PASS": json.dumps(inst.fail_to_pass),
        "PASS_TO_PASS": json.dumps(inst.pass_to_pass),
        "version": inst.version,
        "environment_setup_commit": inst.environment_setup_commit,
        "hints_text": inst.hints_text,
        "created_at": inst.created_at,
    }
    if inst.tier:
        row["tier"] = inst.tier
    row.update(inst.overrides)
    return row
