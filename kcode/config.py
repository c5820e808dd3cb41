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
from kcode.paths import config_dir

__all__ = ["Config", "LlamaCppOptions", "load_config", "config_with", "settings", "changed_settings", "setting_names", "parse_duration"]


@dataclass
class LlamaCppOptions:
    """How a GGUF model runs in process with llama.cpp (``--model PATH.gguf`` or a catalog name).

    Defined once: the configuration holds it (:attr:`Config.llamacpp`), ``create_model`` takes
    it (``kcode.llm.ModelOptions.llamacpp``) and hands it to the backend, whose loader turns it
    into llama.cpp's arguments; ``kcode models plan`` places tensors by it. Each setting is
    named as it is in config files, ``KCODE_*`` variables and flags.
    """

    # where the weights go
    gpu_layers: int | None = None  # None: all layers when a GPU backend is present, else 0
    cpu_moe: bool = False  # the routed experts of every layer in CPU RAM
    n_cpu_moe: int | None = None  # the routed experts of the first N layers in CPU RAM
    override_tensor: list[str] = dataclasses.field(default_factory=list)  # REGEX=BUFFER, first match wins
    # context and KV cache
    ctx: int | None = None  # None: the model's trained context, lowered to fit the free memory
    kv_type: str | None = None  # f16 | q8_0 | q4_0, K and V alike (None: f16); a quantized cache needs flash attention
    # prompt processing (None: the measured defaults, kcode.llm.llamacpp.PREFILL_DEFAULTS; `kcode models bench`)
    threads: int | None = None  # None: the physical cores
    n_batch: int | None = None
    n_ubatch: int | None = None  # at most n_batch
    flash_attn: bool | None = None  # None: on (measured: same prefill, faster load)
    repack: bool = True  # CPU weight repacking (off: loads ~3 s faster, generates ~20 % slower)
    # generation
    # a GBNF grammar for tool calls once the model opens one (a step after an answer without a
    # tool call is constrained from its first token either way)
    constrain_tools: bool = True
    # "required": every step is a tool call, constrained from its first token; "auto": the model
    # may answer in prose (then its next step is constrained); None: required unless thinking
    tool_calls: str | None = None
    thinking: bool = False  # the chat template's `thinking` switch
    # KV states of prompt prefixes, kept across runs
    prefix_cache: str | None = None  # None: the cache folder's prefix/; "off": none
    prefix_cache_gib: float = 4.0  # its size limit; least recently used entries go first
    # the model stays loaded in a server process of its own for this long after its last
    # request, for the next runs (ollama's keep_alive: 30s, 5m, 1h; -1 forever; 0 in each run's
    # own process, the default until a kept-alive server's next run is measured faster here);
    # `kcode models ps|stop`
    keep_alive: str = "0"
    # parallel slots for sub-agents: above 0, the kept-alive server is llama.cpp's own
    # llama-server with this many slots (its binary: llama_server, else the one
    # `kcode models build-server` built into the cache, else the one on PATH)
    parallel_slots: int = 0
    llama_server: str | None = None


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
    # test-driven repair before the first step (kcode.agent.repair): "on" runs the tests and,
    # when tests the task speaks of fail, tries model rewrites of the definitions they point at;
    # "off" starts the loop at once; "auto": on, but for the scripted model (its script is the
    # loop's). repair_share: the most of max_time it may take
    repair: str = "auto"
    repair_share: float = 0.5
    # tools
    test_command: str | None = None
    # sandbox profile name (see the top-level sandbox/ folder)
    sandbox: str = "workspace-write"
    sandbox_readable: list[str] = dataclasses.field(default_factory=list)  # host paths commands also see, read-only (e.g. an eval's environment)
    # never | on-request: ask before a command that needs more than the sandbox profile
    # allows (network, writes outside the repository); the TUI's, never a headless run's
    approvals: str = "never"
    # llama.cpp in process: its settings keep their own names (gpu_layers = 10, KCODE_GPU_LAYERS)
    llamacpp: LlamaCppOptions = dataclasses.field(default_factory=LlamaCppOptions)
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
    # sub-agents (the task and swarm tools): auto = on for a server model, off for an in-process
    # one (it serves one conversation at a time); the limits are per run, across all of them
    subagents: str = "auto"  # auto | on | off
    subagent_model: str | None = None  # None: the run's model
    max_subagents: int = 300
    max_swarm_steps: int = 4000
    subagent_steps: int = 30  # per sub-agent
    subagent_time: float | None = None  # seconds per sub-agent (None: the run's max_time)
    subagent_tokens: int | None = None  # per sub-agent, as max_tokens (None: the run's max_tokens)
    max_parallel: int = 8  # sub-agents at once
    executor: str = "local"  # where sub-agents run: local (threads of this process), ray (a local Ray), ray:ADDRESS
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


# Config fields that group settings in a dataclass of their own; their settings keep their own
# names in files, the environment and on the command line.
_SECTIONS: dict[str, type] = {"llamacpp": LlamaCppOptions}


def _setting_types() -> dict[str, tuple[str | None, Any]]:
    """Every setting's name → (the section holding it, None for Config itself; its type)."""
    found: dict[str, tuple[str | None, Any]] = {}
    for owner, cls in ((None, Config), *_SECTIONS.items()):
        hints = typing.get_type_hints(cls)
        for item in dataclasses.fields(cls):
            if item.name not in _SECTIONS and item.metadata.get("setting", True):
                found[item.name] = (owner, hints[item.name])
    return found


def setting_names() -> list[str]:
    """Every setting's name (what files, ``KCODE_*`` variables and flags may set), in
    declaration order: Config's own, then those of its sections (``gpu_layers``, ...)."""
    return list(_setting_types())


def settings(config: Config) -> dict[str, Any]:
    """Every setting by its own name (``max_steps``, ``gpu_layers``, ...): what
    :func:`load_config` accepts back as ``overrides``."""
    return {
        name: getattr(config if owner is None else getattr(config, owner), name)
        for name, (owner, _) in _setting_types().items()
    }


def changed_settings(config: Config) -> dict[str, Any]:
    """The settings that differ from the built-in defaults, by their own names."""
    defaults = settings(Config())
    return {name: value for name, value in settings(config).items() if value != defaults[name]}


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


def _apply(values: dict[str | None, dict[str, Any]], layer: dict[str, Any], source: str) -> None:
    """Set ``values[section][name]`` for each of the layer's settings."""
    types_by_name = _setting_types()
    for key, value in layer.items():
        name = key.replace("-", "_")
        if name not in types_by_name:
            raise ConfigError(f"{source}: unknown setting {key!r}")
        owner, annotation = types_by_name[name]
        values[owner][name] = _coerce(name, value, annotation, source)


def _no_values() -> dict[str | None, dict[str, Any]]:
    return {None: {}, **{section: {} for section in _SECTIONS}}


def _build(values: dict[str | None, dict[str, Any]]) -> Config:
    return Config(**values[None], **{section: cls(**values[section]) for section, cls in _SECTIONS.items()})


def config_with(**settings: Any) -> Config:
    """The built-in defaults with ``settings`` set, by their own names as in a config file
    (``config_with(model="x.gguf", ctx=4096)``); reads no file and no environment."""
    values = _no_values()
    _apply(values, settings, "config_with")
    return _build(values)


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
    values = _no_values()
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
    return dataclasses.replace(_build(values), project_settings=chosen)
