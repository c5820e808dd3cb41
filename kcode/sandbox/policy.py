"""Sandbox policies: TOML profiles, looked up by name and merged along ``extends``.

Three layers, highest first: the project (``<repo>/.kcode/sandbox/NAME.toml``), the user
(``config_dir()/sandbox/NAME.toml``) and the profiles shipped in the top-level ``sandbox/``
folder. A profile may ``extends = "OTHER"``; when it extends its own name it means the
same-named profile of the layer below (a project ``workspace-write.toml`` that tightens the
built-in one). Lists are appended, tables merged key by key, scalars replaced.

A project's profiles come with the repository, so unless the user trusts it
(:mod:`kcode.trust`) they must extend a built-in or user profile and may not loosen it: no
network, no looser mode, no writable or readable paths outside the repository.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kcode.config import parse_duration
from kcode.errors import ConfigError
from kcode.paths import config_dir
from kcode.resources import resource_dir
from kcode.trust import TRUST_HINT, is_trusted

__all__ = [
    "SandboxPolicy",
    "Limits",
    "MODES",
    "load_policy",
    "profile_names",
    "parse_size",
]

MODES = ("workspace-write", "read-only", "off")

_LIST_KEYS = ("writable", "readable", "hidden")
_KNOWN_KEYS = {"extends", "description", "mode", "network", "limits", "env", *_LIST_KEYS}
_LIMIT_KEYS = ("address_space", "processes", "file_size", "cpu_time", "open_files", "tmp_size")
_ENV_KEYS = ("allow", "set")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Limits:
    """Per-process resource limits; ``None`` means no limit (the inherited one)."""

    address_space: int | None = None  # bytes (RLIMIT_AS)
    processes: int | None = None  # RLIMIT_NPROC, and pids.max of a cgroup when root
    file_size: int | None = None  # bytes (RLIMIT_FSIZE)
    cpu_time: int | None = None  # seconds (RLIMIT_CPU)
    open_files: int | None = None  # RLIMIT_NOFILE
    tmp_size: int | None = None  # bytes: size of the private /tmp and $HOME tmpfs


@dataclass(frozen=True)
class SandboxPolicy:
    name: str
    mode: str = "workspace-write"
    description: str = ""
    network: bool = False
    writable: tuple[str, ...] = ()
    readable: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    env_allow: tuple[str, ...] = ()
    env_set: dict[str, str] = field(default_factory=dict)
    sources: tuple[Path, ...] = ()  # the files merged, lowest first


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(value: Any) -> int | None:
    """``"512MiB"``, ``"8G"``, ``1048576`` → bytes; ``0``/``"unlimited"`` → ``None``."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int | float):
        return int(value) or None
    text = str(value).strip()
    if text.lower() in ("unlimited", "none", "0"):
        return None
    match = _SIZE.match(text)
    if not match:
        raise ValueError(value)
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]) or None


def _parse_count(value: Any) -> int | None:
    if isinstance(value, str) and value.strip().lower() == "unlimited":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(value)
    return value or None


def _parse_seconds(value: Any) -> int | None:
    if isinstance(value, str) and value.strip().lower() == "unlimited":
        return None
    seconds = parse_duration(value)
    return max(1, round(seconds)) if seconds else None


_LIMIT_PARSERS = {
    "address_space": parse_size,
    "processes": _parse_count,
    "file_size": parse_size,
    "cpu_time": _parse_seconds,
    "open_files": _parse_count,
    "tmp_size": parse_size,
}


def _layers(root: Path | None) -> list[Path]:
    """Profile directories, highest precedence first."""
    layers = []
    if root is not None:
        layers.append(Path(root) / ".kcode" / "sandbox")
    layers.append(config_dir() / "sandbox")
    layers.append(resource_dir("sandbox"))
    return layers


def profile_names(root: Path | None = None) -> list[str]:
    """Every profile name visible from ``root`` (built-in, user and project)."""
    names: set[str] = set()
    for layer in _layers(root):
        if layer.is_dir():
            names.update(path.stem for path in layer.glob("*.toml"))
    return sorted(names)


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except (tomllib.TOMLDecodeError, OSError) as error:
        raise ConfigError(f"sandbox profile {path}: {error}") from error
    unknown = set(data) - _KNOWN_KEYS
    if unknown:
        raise ConfigError(f"sandbox profile {path}: unknown key(s) {', '.join(sorted(unknown))}")
    for key, allowed in (("limits", _LIMIT_KEYS), ("env", _ENV_KEYS)):
        table = data.get(key, {})
        if not isinstance(table, dict):
            raise ConfigError(f"sandbox profile {path}: [{key}] must be a table")
        unknown = set(table) - set(allowed)
        if unknown:
            raise ConfigError(f"sandbox profile {path}: unknown [{key}] key(s) {', '.join(sorted(unknown))}")
    for key in _LIST_KEYS:
        if not all(isinstance(item, str) for item in _as_list(data.get(key, []), path, key)):
            raise ConfigError(f"sandbox profile {path}: {key} must be a list of strings")
    return data


def _as_list(value: Any, path: Path, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"sandbox profile {path}: {key} must be a list")
    return value


def _find(name: str, layers: list[Path], start: int) -> tuple[int, Path] | None:
    for index in range(start, len(layers)):
        candidate = layers[index] / f"{name}.toml"
        if candidate.is_file():
            return index, candidate
    return None


def _chain(name: str, root: Path | None) -> list[tuple[int, Path]]:
    """The profile files to merge, from the base of the ``extends`` chain up to ``name``."""
    if not _NAME.match(name):
        raise ConfigError(f"invalid sandbox profile name {name!r}")
    layers = _layers(root)
    found = _find(name, layers, 0)
    if found is None:
        known = ", ".join(profile_names(root)) or "(none)"
        raise ConfigError(f"unknown sandbox profile {name!r} (known: {known})")
    chain: list[tuple[int, Path]] = []
    seen: set[Path] = set()
    current_name = name
    while found is not None:
        index, path = found
        if path in seen:
            raise ConfigError(f"sandbox profile {name!r}: extends forms a cycle through {path}")
        seen.add(path)
        chain.append((index, path))
        parent = _read(path).get("extends")
        if parent is None:
            break
        if not isinstance(parent, str) or not _NAME.match(parent):
            raise ConfigError(f"sandbox profile {path}: invalid extends {parent!r}")
        # Extending one's own name means the same-named profile one layer down.
        found = _find(parent, layers, index + 1 if parent == current_name else 0)
        if found is None:
            raise ConfigError(f"sandbox profile {path}: extends unknown profile {parent!r}")
        current_name = parent
    chain.reverse()
    return chain


def _merge(base: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in layer.items():
        if key == "extends":
            continue
        if key in _LIST_KEYS:
            merged[key] = [*merged.get(key, []), *value]
        elif key == "limits":
            merged[key] = {**merged.get(key, {}), **value}
        elif key == "env":
            env = dict(merged.get("env", {}))
            if "allow" in value:
                env["allow"] = [*env.get("allow", []), *value["allow"]]
            if "set" in value:
                env["set"] = {**env.get("set", {}), **value["set"]}
            merged[key] = env
        else:
            merged[key] = value
    return merged


_STRICTNESS = {"off": 0, "workspace-write": 1, "read-only": 2}


def _check_tightens(base: dict[str, Any], layer: dict[str, Any], path: Path, root: Path) -> None:
    """Refuse an untrusted project profile that loosens what it extends (``base``): network,
    mode, host paths outside the repository. (Limits may change: a JVM build needs a larger
    address space, and a limit guards against accidents, not against the repository.)"""
    def refuse(what: str) -> None:
        raise ConfigError(
            f"sandbox profile {path} comes with the repository and may only tighten the sandbox, "
            f"but it {what}; {TRUST_HINT}"
        )

    if layer.get("network") is True and base.get("network") is not True:
        refuse("turns the network on")
    mode, base_mode = layer.get("mode"), base.get("mode", "workspace-write")
    if mode is not None and _STRICTNESS.get(mode, 1) < _STRICTNESS.get(base_mode, 1):
        refuse(f"relaxes mode {base_mode!r} to {mode!r}")
    inside = root.resolve()
    for key in ("writable", "readable"):
        for entry in layer.get(key, []):
            target = Path(entry)
            if entry.startswith("~") or target.is_absolute() or not (inside / target).resolve().is_relative_to(inside):
                refuse(f"adds the host path {entry!r} to {key} (paths inside the repository only)")


def load_policy(name: str, root: Path | None = None, *, trusted: bool | None = None) -> SandboxPolicy:
    """Load profile ``name`` as seen from the repository at ``root``, fully merged.

    ``trusted``: whether the repository's own profiles may loosen the sandbox; ``None``
    asks :func:`kcode.trust.is_trusted` about ``root``."""
    chain = _chain(name, root)
    if trusted is None:
        trusted = is_trusted(root)
    if root is not None and chain[0][0] == 0 and not trusted:
        raise ConfigError(
            f"sandbox profile {chain[0][1]} comes with the repository and extends no built-in or user "
            f"profile, so nothing bounds it; make it `extends = \"workspace-write\"` (or another), or {TRUST_HINT}"
        )
    data: dict[str, Any] = {}
    for index, path in chain:
        layer = _read(path)
        if root is not None and index == 0 and not trusted:  # the project's own layer
            _check_tightens(data, layer, path, root)
        data = _merge(data, layer)
    where = chain[-1][1]
    mode = data.get("mode", "workspace-write")
    if mode not in MODES:
        raise ConfigError(f"sandbox profile {where}: mode must be one of {', '.join(MODES)}, not {mode!r}")
    network = data.get("network", False)
    if not isinstance(network, bool):
        raise ConfigError(f"sandbox profile {where}: network must be true or false")
    limits: dict[str, int | None] = {}
    for key, value in data.get("limits", {}).items():
        try:
            limits[key] = _LIMIT_PARSERS[key](value)
        except (ValueError, ConfigError) as error:
            raise ConfigError(f"sandbox profile {where}: invalid limits.{key} = {value!r}") from error
    env = data.get("env", {})
    allow = env.get("allow", [])
    env_set = env.get("set", {})
    if not all(isinstance(item, str) for item in allow):
        raise ConfigError(f"sandbox profile {where}: env.allow must be a list of strings")
    if not isinstance(env_set, dict) or not all(isinstance(v, str) for v in env_set.values()):
        raise ConfigError(f"sandbox profile {where}: env.set must be a table of strings")
    return SandboxPolicy(
        name=name,
        mode=mode,
        description=str(data.get("description", "")),
        network=network,
        writable=tuple(data.get("writable", [])),
        readable=tuple(data.get("readable", [])),
        hidden=tuple(data.get("hidden", [])),
        limits=Limits(**limits),
        env_allow=tuple(allow),
        env_set=dict(env_set),
        sources=tuple(path for _, path in chain),
    )
