"""Prefill is a budget: how fast a backend processes prompt tokens, and the pack size that buys.

A local model's prompt-processing speed is measured once on this machine by a short
calibration run (or by the first real prefill), kept in ``cache_dir()/prefill-speed.json``
under the model file, the llama.cpp settings and the machine (CPU model and count), and
refreshed from every step's own timings (llama.cpp's counters) as an exponential average.
An HTTP server's speed comes from its ``timings`` (llama-server) or from the time to the first
token over the prompt tokens it computed.

:func:`choose_pack_budget` turns the speed into the repository pack's token budget: the
smaller of the window share and what prefills within ``first_step_seconds``, counting what the
prefix cache will restore as free; of it, a part for the task that prefills within
``next_step_seconds``, after a task-independent part that every run in the repository shares.
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "PrefillSpeed",
    "SpeedStore",
    "PackBudget",
    "choose_pack_budget",
    "machine_description",
    "speed_key",
    "calibration_text",
    "EMA_WEIGHT",
    "MIN_SAMPLE_TOKENS",
    "MIN_PACK_BUDGET",
    "REPACK_GROWTH",
    "MIN_TASK_PART",
]

EMA_WEIGHT = 0.3  # weight of a new step's measurement in the running average
MIN_SAMPLE_TOKENS = 32  # a prefill shorter than this says more about overhead than speed
MIN_PACK_BUDGET = 512  # below this a pack holds too little to be worth having
# A repository whose pack is cached keeps that pack's size unless the time budget is this much
# larger: a pack of another size has other content, and loses the cached prefix.
REPACK_GROWTH = 0.8
MIN_TASK_PART = 64  # a part for the task smaller than this holds nothing useful: none then


def calibration_text(n_tokens: int) -> str:
    """Code-like text of at least ``n_tokens`` tokens (5 characters a token: code tokenizes denser)."""
    block = "".join(
        f"def helper_{n}(values, scale={n}):\n    \"\"\"Scale the values by {n}.\"\"\"\n"
        f"    return [value * scale + {n * 7} for value in values if value]\n\n" for n in range(40))
    return (block * (1 + n_tokens * 5 // len(block)))[: n_tokens * 5]


@dataclass
class PrefillSpeed:
    tokens_per_second: float
    source: str  # "calibration" | "steps" | "server" | "first-token"
    samples: int = 1
    updated: float = 0.0

    def describe(self) -> str:
        return f"{self.tokens_per_second:.0f} tok/s ({self.source}, {self.samples} sample{'s' if self.samples != 1 else ''})"


def machine_description() -> str:
    """The CPU model and count: what a CPU prefill speed depends on besides the settings."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} x{os.cpu_count() or 1}"


def speed_key(model: str, settings: dict[str, Any]) -> str:
    """The store key: model identity, the settings that change the speed, the machine."""
    shaping = {key: settings[key] for key in sorted(settings) if key != "n_ctx"}
    return json.dumps({"model": model, "settings": shaping, "machine": machine_description()}, sort_keys=True)


class SpeedStore:
    """A small JSON file of measured speeds (one process writes at a time; last write wins)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def get(self, key: str) -> PrefillSpeed | None:
        value = self._read().get(key)
        try:
            return PrefillSpeed(**value) if value else None
        except TypeError:
            return None

    def put(self, key: str, speed: PrefillSpeed) -> None:
        data = self._read()
        data[key] = asdict(speed)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # per process and thread: sub-agents in threads record their speeds at the same time
        partial = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        partial.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(partial, self.path)

    def record(self, key: str, tokens: int, seconds: float, source: str) -> PrefillSpeed | None:
        """Fold one measurement into the running average; None when too small to count."""
        if tokens < MIN_SAMPLE_TOKENS or seconds <= 0:
            return self.get(key)
        measured = tokens / seconds
        known = self.get(key)
        if known is None or source == "calibration":
            speed = PrefillSpeed(measured, source, 1, time.time())
        else:
            average = (1 - EMA_WEIGHT) * known.tokens_per_second + EMA_WEIGHT * measured
            speed = PrefillSpeed(average, "steps" if known.source != "server" else source, known.samples + 1, time.time())
        self.put(key, speed)
        return speed

    def items(self) -> dict[str, PrefillSpeed]:
        result = {}
        for key, value in self._read().items():
            try:
                result[key] = PrefillSpeed(**value)
            except TypeError:
                continue
        return result


@dataclass
class PackBudget:
    tokens: int  # the pack's token budget (both parts)
    reason: str  # "time" | "window" | "flag"
    why: str  # for people: "time: 20 s at 41 tok/s", "window share 40 %", "--pack-budget"
    tokens_per_second: float | None = None
    window_tokens: int = 0  # the window share's budget
    time_tokens: int | None = None  # what prefills in first_step_seconds (before the cache bonus)
    restored_tokens: int = 0  # of the repository part, expected from the prefix cache
    base_tokens: int = 0  # what the first prefill evaluates besides the pack
    task_tokens: int = 0  # of ``tokens``, the part packed for this task (after the task-independent part)

    @property
    def stable_tokens(self) -> int:
        """The task-independent part's budget: the same for every task, so its KV state is reused."""
        return self.tokens - self.task_tokens

    def prefill_seconds(self, pack_tokens: int | None = None) -> float | None:
        """The first step's expected prefill for a pack of ``pack_tokens`` (default: the budget)."""
        if not self.tokens_per_second:
            return None
        pack = self.tokens if pack_tokens is None else pack_tokens
        return round((self.base_tokens + max(0, pack - self.restored_tokens)) / self.tokens_per_second, 1)


def choose_pack_budget(
    *,
    window_tokens: int,
    window_share: float,
    override: int | None = None,
    tokens_per_second: float | None = None,
    first_step_seconds: float = 20.0,
    next_step_seconds: float | None = None,
    spent_seconds: float = 0.0,
    fixed_tokens: int = 0,
    fixed_cached: bool = False,
    other_tokens: int = 0,
    restored_tokens: int = 0,
    speed_share: float = 1.0,
) -> PackBudget:
    """The pack budget for the first step, in two parts when the speed is known: a
    task-independent part (cached, reused by every run in the repository) and a part for this
    task that prefills within ``next_step_seconds`` with the task itself (what a run in a warm
    repository waits for).

    ``window_tokens``: the window share's budget (``default_budget(window, pack_share)``).
    ``spent_seconds``: of ``first_step_seconds``, what goes to other things than the prefill
    (loading the model, building the pack).
    ``fixed_tokens``: the system prompt and tool schemas; free when ``fixed_cached``.
    ``other_tokens``: what else the first prompt holds (the task, the repository header,
    AGENTS.md, the chat template's markers). ``restored_tokens``: the task-independent part's
    budget when the prefix cache holds it from an earlier run: it costs no prefill, so that
    part keeps its size when it is larger than the time allows, or not much smaller
    (``REPACK_GROWTH``): a pack of another size has other content and loses the cached prefix.
    ``speed_share``: the share of ``tokens_per_second`` to plan with (the pack is prefilled
    after the fixed prompt, deeper in the context than the figure was measured, and slower).
    """
    measured = tokens_per_second or None
    speed = measured * speed_share if measured else None
    base = (0 if fixed_cached else fixed_tokens) + other_tokens
    common = dict(tokens_per_second=speed, window_tokens=window_tokens, restored_tokens=restored_tokens,
                  base_tokens=base)
    if override is not None:
        return PackBudget(override, "flag", "--pack-budget", **common)
    share = f"window share {window_share * 100:.0f} %"
    if speed is None:
        return PackBudget(window_tokens, "window", f"{share} (prefill speed not measured yet)", **common)
    time_tokens = int(speed * max(0.0, first_step_seconds - spent_seconds)) - base
    # the next run waits as long to load and pack: what is left of next_step_seconds prefills the task's part
    task = int(speed * max(0.0, next_step_seconds - spent_seconds)) - other_tokens if next_step_seconds else 0
    task = task if task >= MIN_TASK_PART else 0
    core_time = time_tokens - task
    kept = restored_tokens >= REPACK_GROWTH * core_time
    core = max(restored_tokens if kept else core_time, MIN_PACK_BUDGET)
    if core + task >= window_tokens:
        task = min(task, window_tokens // 4)
        return PackBudget(window_tokens, "window", share + (f"; {task} for this task" if task else ""),
                          time_tokens=time_tokens, task_tokens=task, **common)
    why = f"time: {first_step_seconds:g} s at {speed:.0f} tok/s"
    if speed_share < 1.0:
        why += f" ({speed_share * 100:.0f} % of the {measured:.0f} measured)"
    if spent_seconds >= 0.05:
        why += f", {spent_seconds:.1f} s of it loading and packing"
    if not fixed_cached and fixed_tokens:
        why += f", after the {fixed_tokens}-token fixed prompt"
    if kept and core == restored_tokens and restored_tokens != core_time:
        why += f"; the {restored_tokens} cached pack tokens kept"
    elif core == MIN_PACK_BUDGET and core_time < MIN_PACK_BUDGET:
        why += f" (at least {MIN_PACK_BUDGET})"
    if task:
        why += f"; {task} for this task ({next_step_seconds:g} s)"
    return PackBudget(core + task, "time", why, time_tokens=time_tokens, task_tokens=task, **common)
