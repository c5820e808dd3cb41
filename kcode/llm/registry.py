"""Turn a ``--model`` spec into a :class:`~kcode.llm.base.ChatModel`.

Specs:
    scripted:FILE              a script of turns (tests, demos)
    chaos:RATE:SPEC            SPEC with faults injected at RATE (0..1)
    openai:NAME moonshot:NAME openrouter:VENDOR/NAME llama-server:NAME vllm:NAME sglang:NAME
                               an OpenAI-compatible server (see kcode.llm.openai_compat)
    PATH.gguf                  a local GGUF file, run in process by llama.cpp
    CATALOG-NAME               a catalog model (``kcode models list``), pulled on first use

With no spec at all the default catalog model runs (``qwen2.5-coder-1.5b``, on the CPU).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kcode.config import LlamaCppOptions
from kcode.errors import UsageError
from kcode.llm.base import ChatModel

if TYPE_CHECKING:
    from kcode.llm.models import NoticeCallback, ProgressCallback

__all__ = ["ModelOptions", "create_model", "catalog_name", "speed_store_path"]


@dataclass
class ModelOptions:
    """Settings a backend may need besides the spec."""

    base_url: str | None = None
    session_id: str | None = None
    api_key: str | None = None  # else KCODE_API_KEY, else the provider's variable
    context_window: int | None = None  # overrides what the server or preset says (llama.cpp: the ctx when unset)
    # sampling, any backend (None: the backend's default)
    temperature: float | None = None  # llama.cpp: 0.6
    seed: int | None = None
    max_output_tokens: int | None = None  # per step; None: llama.cpp 2048 (DEFAULT_MAX_OUTPUT_TOKENS), a server its own
    llamacpp: LlamaCppOptions = field(default_factory=LlamaCppOptions)  # PATH.gguf and catalog models
    # a local model may be kept alive in a server for later runs (llamacpp.keep_alive), as the
    # runner's model is; False: loaded in this process, whatever keep_alive says
    serve: bool = False
    # what the backend reports instead of printing (None: not reported)
    on_progress: ProgressCallback | None = None  # pulling a catalog model
    on_notice: NoticeCallback | None = None  # e.g. a download starting, a context lowered to fit the memory


_OPENAI_KINDS = ("openai", "moonshot", "openrouter", "llama-server", "vllm", "sglang")


def catalog_name(spec: str | None) -> str | None:
    """The catalog model a ``--model`` spec names (no spec: the default model), else None."""
    from kcode.llm.models import DEFAULT_MODEL, find_entry

    if not spec:
        return DEFAULT_MODEL
    entry = None if ":" in spec or spec.endswith(".gguf") else find_entry(spec)
    return entry.name if entry is not None else None


def create_model(spec: str | None, options: ModelOptions | None = None) -> ChatModel:
    options = options or ModelOptions()
    catalog = catalog_name(spec)
    if catalog is not None:
        from kcode.llm.models import ensure_model

        path = ensure_model(catalog, on_progress=options.on_progress, on_notice=options.on_notice)
        return _llamacpp_model(path, options)
    kind, _, rest = spec.partition(":")
    if kind == "scripted" and rest:
        from kcode.llm.scripted import ScriptedModel

        return ScriptedModel.from_file(Path(rest), **({"context_window": options.context_window} if options.context_window else {}))
    if kind == "chaos":
        rate_text, _, inner_spec = rest.partition(":")
        try:
            rate = float(rate_text)
        except ValueError as error:
            raise UsageError(f"chaos model: invalid rate {rate_text!r} in {spec!r}") from error
        from kcode.llm.chaos import ChaosModel

        return ChaosModel(create_model(inner_spec, options), rate)
    if rest and kind in _OPENAI_KINDS:
        from kcode.llm.openai_compat import PROVIDERS, OpenAICompatModel

        sampling = {"temperature": options.temperature, "seed": options.seed, "max_tokens": options.max_output_tokens}
        return OpenAICompatModel(
            PROVIDERS[kind], rest, base_url=options.base_url, api_key=options.api_key,
            session_id=options.session_id, context_window=options.context_window,
            extra_body={key: value for key, value in sampling.items() if value is not None},
            speed_store=speed_store_path(),
        )  # fmt: skip
    if spec.endswith(".gguf"):
        return _llamacpp_model(Path(spec), options)
    raise UsageError(f"unknown model {spec!r}")


def _llamacpp_model(path: Path, options: ModelOptions) -> ChatModel:
    from kcode.llm.llamacpp import DEFAULT_MAX_OUTPUT_TOKENS, LlamaCppModel, Sampling

    llamacpp = options.llamacpp
    if llamacpp.ctx is None and options.context_window:
        llamacpp = dataclasses.replace(llamacpp, ctx=options.context_window)
    sampling = Sampling(seed=options.seed) if options.temperature is None else Sampling(options.temperature, seed=options.seed)
    max_output = options.max_output_tokens or DEFAULT_MAX_OUTPUT_TOKENS
    served = _served_model(path, llamacpp, sampling, max_output, options)
    if served is not None:
        return served
    return LlamaCppModel(
        path, llamacpp, sampling=sampling, speed_store=speed_store_path(),
        max_output_tokens=max_output, on_notice=options.on_notice,
    )


def _served_model(path: Path, llamacpp: LlamaCppOptions, sampling: object, max_output: int, options: ModelOptions) -> ChatModel | None:
    """The model on a kept-alive server (``serve`` and ``keep_alive`` > 0), or None: in process
    (not ``serve``, ``keep_alive`` 0, or a server that could not be started: a notice says why)."""
    from kcode.errors import ModelError
    from kcode.llm.serve import ServedModel, parse_keep_alive

    keep_alive = parse_keep_alive(llamacpp.keep_alive)
    if keep_alive <= 0 or not options.serve:
        return None
    if not path.expanduser().is_file():
        return None  # the in-process backend says what is wrong with the path
    if llamacpp.parallel_slots > 0:
        slotted = _slots_model(path.expanduser(), llamacpp, sampling, max_output, keep_alive, options)
        if slotted is not None:
            return slotted
    try:
        return ServedModel(path.expanduser(), llamacpp, seed=sampling.seed, sampling=sampling.kwargs, keep_alive=keep_alive,
                           max_output_tokens=max_output, speed_store=speed_store_path(), on_notice=options.on_notice)
    except ModelError as error:
        if options.on_notice is not None:
            options.on_notice(f"could not use a kept-alive model server ({error}); running the model in process")
        return None


def speed_store_path() -> Path:
    """The file of measured prefill speeds (kcode.llm.prefill)."""
    from kcode.paths import cache_dir

    return cache_dir() / "prefill-speed.json"


def _slots_model(path: Path, llamacpp: LlamaCppOptions, sampling: object, max_output: int, keep_alive: float,
                 options: ModelOptions) -> ChatModel | None:
    """The model on llama.cpp's own llama-server with ``parallel_slots`` slots (kept alive), or
    None when there is no llama-server binary or it does not start (a notice says so)."""
    from kcode.errors import ModelError
    from kcode.llm.openai_compat import PROVIDERS, OpenAICompatModel
    from kcode.llm.serve import connect
    from kcode.llm.serve._slots import find_llama_server

    notice = options.on_notice or (lambda text: None)
    binary = find_llama_server(llamacpp.llama_server)
    if binary is None:
        notice(f"parallel_slots = {llamacpp.parallel_slots} needs llama.cpp's llama-server (`kcode models build-server`, "
               "or on PATH, or llama_server = PATH); the model serves one conversation at a time")
        return None
    try:
        record, started = connect(path, llamacpp, sampling.seed, keep_alive, on_notice=notice, llama_server=binary)
    except ModelError as error:
        notice(f"llama-server with parallel slots did not start ({error}); the model serves one conversation at a time")
        return None
    body = {"temperature": sampling.kwargs["temp"], "seed": sampling.seed, "max_tokens": max_output}
    model = OpenAICompatModel(PROVIDERS["llama-server"], path.name, base_url=f"{record.url}/v1", api_key=record.token,
                              session_id=options.session_id, context_window=record.ctx,
                              extra_body={k: v for k, v in body.items() if v is not None}, speed_store=speed_store_path())
    model.parallel_slots = record.slots
    how = "started now" if started else "already loaded"
    model.serving = f"llama-server (kept alive by pid {record.pid}) on 127.0.0.1:{record.port} with {record.slots} parallel slots ({how})"
    return model

