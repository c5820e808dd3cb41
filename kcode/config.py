"""Configuration: defaults < ``~/.config/kcode/config.toml`` < project ``.kcode/config.toml``
< ``KCODE_*`` environment variables < command-line flags (later wins).

The user directories are :mod:`kcode.paths`. Whether the repository's own settings may
apply is :mod:`kcode.trust`'s question: a :class:`Config` records which settings the
repository chose (``project_settings``), and the runner has them checked before it starts.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kcode.errors import ConfigError
from kcode.paths import cache_dir, config_dir  # noqa: F401  (kcode.llm imports cache_dir from here)

__all__ = ["Config", "load_config", "parse_duration", "setting_names"]


@dataclass
class Config:
    # model
    model: str | None = None
    base_url: str | None = None
    # budgets
    max_steps: int = 1000
    max_time: float = 12 * 3600.0  # seconds
    max_tokens: int | None = None  # input + output tokens the model computed (reused prefix not counted)
    # long runs: compaction and guards
    reserve_output: int | None = None  # tokens kept free for the answer; None: min(8192, window / 8)
    keep_tool_outputs: int = 6  # tool outputs kept verbatim when old ones are masked
    stuck_steps: int = 30  # steps without progress before a nudge (twice as many: stop)
    auto_test: bool = True  # run the tests when the model stops after editing without running them
    # tools
    test_command: str | None = None
    # sandbox profile name (see the top-level sandbox/ folder)
    sandbox: str = "workspace-write"
    # llama.cpp in process (see kcode.llm.registry.ModelOptions)
    gpu_layers: int | None = None
    cpu_moe: bool = False
    n_cpu_moe: int | None = None
    override_tensor: list[str] = dataclasses.field(default_factory=list)
    ctx: int | None = None
    kv_type: str | None = None
    threads: int | None = None
    n_batch: int | None = None  # llama.cpp batch sizes (None: the measured defaults, kcode models bench)
    n_ubatch: int | None = None
    flash_attn: bool | None = None  # None: on (measured: same prefill, faster load); a quantized KV cache needs it
    repack: bool = True  # llama.cpp's CPU weight repacking (off: loads ~3 s faster, generates ~20 % slower)
    constrain_tools: bool = False
    prefix_cache: str | None = None  # KV states of prompt prefixes: None = the cache folder's prefix/, "off" = none
    prefix_cache_gib: float = 4.0  # the prefix cache's size limit; least recently used entries go first
    # sampling, any backend (None: the backend's default)
    temperature: float | None = None
    seed: int | None = None
    max_output_tokens: int | None = None  # per step
    # for servers that do not report their context window (API keys come from the
    # environment only: KCODE_API_KEY or the provider's variable, never a config file)
    context_window: int | None = None
    # repository pack (kcode.context): auto|map|full|none; budget in tokens, or a share of the window
    pack: str = "auto"
    pack_budget: int | None = None
    pack_share: float = 0.4
    first_step_seconds: float = 20.0  # the default pack is what prefills in this time (and fits pack_share)
    next_step_seconds: float = 2.0  # of it, the part for the task: what a warm repository's run prefills
    # Not a setting: the settings whose value is the repository's own .kcode/config.toml's
    # (no environment variable or flag overrides them), for kcode.trust to check.
    project_settings: frozenset[str] = dataclasses.field(default=frozenset(), compare=False, metadata={"setting": False})

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str | float | int) -> float:
    """``90``, ``"90s"``, ``"30m"``, ``"12h"`` → seconds."""
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ConfigError(f"invalid duration {value!r} (use e.g. 90s, 30m, 12h)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def setting_names() -> list[str]:
    """The fields of :class:`Config` that are settings (what files, ``KCODE_*`` variables
    and flags may set), in declaration order."""
    return [f.name for f in dataclasses.fields(Config) if f.metadata.get("setting", True)]


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(Config)
    return {name: hints[name] for name in setting_names()}


def _coerce(name: str, value: Any, annotation: Any, source: str) -> Any:
    if name == "max_time":
        return parse_duration(value)
    base = annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None or (isinstance(value, str) and value == ""):
            return None
        base = args[0]
    try:
        if base is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if base in (int, float, str):
            return base(value)
        if typing.get_origin(base) is list:
            if isinstance(value, str):
                return [item for item in value.split(",") if item]
            return list(value)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{source}: invalid value {value!r} for {name}") from error
    return value


def _apply(values: dict[str, Any], layer: dict[str, Any], source: str) -> None:
    types_by_name = _field_types()
    for key, value in layer.items():
        name = key.replace("-", "_")
        if name not in types_by_name:
            raise ConfigError(f"{source}: unknown setting {key!r}")
        values[name] = _coerce(name, value, types_by_name[name], source)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, OSError) as error:
        raise ConfigError(f"{path}: {error}") from error


def load_config(
    project_root: Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Merge every configuration layer; ``overrides`` are the command-line flags that were set."""
    values: dict[str, Any] = {}
    layers: list[tuple[dict[str, Any], str]] = []
    user_file = config_dir() / "config.toml"
    layers.append((_read_toml(user_file), str(user_file)))
    project: dict[str, Any] = {}
    if project_root is not None:
        project_file = project_root / ".kcode" / "config.toml"
        project = _read_toml(project_file)
        layers.append((project, str(project_file)))
    env = os.environ if environ is None else environ
    env_layer = {name: env[f"KCODE_{name.upper()}"] for name in setting_names() if f"KCODE_{name.upper()}" in env}
    command_line = {k: v for k, v in (overrides or {}).items() if v is not None}
    layers.append((env_layer, "environment"))
    layers.append((command_line, "command line"))
    for layer, source in layers:
        _apply(values, layer, source)
    # A setting the user also sets from the environment or the command line is not the
    # repository's choice.
    above = {key.replace("-", "_") for layer in (env_layer, command_line) for key in layer}
    chosen = frozenset(key.replace("-", "_") for key in project) - above
    return Config(**values, project_settings=chosen)
