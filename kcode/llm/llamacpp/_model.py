"""The in-process llama.cpp backend (``--model PATH.gguf``).

One long-lived ``Llama`` per conversation. Each step renders the whole conversation with the
GGUF's own chat template, but tokenizes only what is new: when the new prompt text extends
the previous prompt plus what the model generated, the previous token ids (including the
generated ones, never re-tokenized) are kept and only the suffix is tokenized, so llama.cpp
evaluates just the new tokens. Tokens are decoded with special tokens kept (Kimi's tool-call
markers are CONTROL tokens; :mod:`kcode.llm.llamacpp._vocab`), streamed as reasoning/text,
and parsed into tool calls at the end of the step. ``--constrain-tools`` switches to a GBNF
grammar once a tool-call opener appears.

The prompt's head is tokenized layer by layer (the first system message with the tool schemas;
then every leading system message), so each layer is a token prefix of the prompt. With a
prefix cache (:mod:`kcode.llm.llamacpp._prefix_cache`, on by default through the registry) a new
conversation restores the cached state sharing the longest token prefix with it; the fixed
layer is saved the first time it is evaluated, the whole head after the first step. Every
prefill's speed, from llama.cpp's own counters, refreshes the stored prefill speed
(:mod:`kcode.llm.prefill`).
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kcode.cancel import CancelToken
from kcode.config import LlamaCppOptions
from kcode.errors import ConfigError, Interrupted, ModelRequestError
from kcode.llm.base import (
    Message,
    ReasoningChunk,
    StepEnd,
    StreamChunk,
    TextChunk,
    TokenUsage,
    ToolSpec,
)
from kcode.llm.llamacpp._chat_template import ChatTemplate
from kcode.llm.llamacpp._grammar import tool_call_grammar
from kcode.llm.llamacpp._infill import FillInTheMiddle
from kcode.llm.llamacpp._loader import load_llama
from kcode.llm.llamacpp._prefix_cache import (
    PrefixStore,
    model_identity,
    prefix_cache_dir,
)
from kcode.llm.llamacpp._sampler import TokenSampler
from kcode.llm.llamacpp._streaming import OutputSplitter
from kcode.llm.llamacpp._vocab import Vocabulary
from kcode.llm.prefill import (
    EMA_WEIGHT,
    MIN_SAMPLE_TOKENS,
    PrefillSpeed,
    SpeedStore,
    calibration_text,
    speed_key,
)
from kcode.llm.toolcall_parse import (
    HERMES_BEGIN,
    KIMI_SECTION_BEGIN,
    THINK_BEGIN,
    parse_output,
)

__all__ = ["LlamaCppModel", "Sampling", "StepTimings", "PrefixStatus", "decode_counters", "DEFAULT_MAX_OUTPUT_TOKENS"]

_OPENERS = {"kimi": KIMI_SECTION_BEGIN, "hermes": HERMES_BEGIN}
_MIN_LAYER_TOKENS = 32  # a prompt layer shorter than this is not worth a cache entry
# A step's output cap unless --max-output-tokens says otherwise: a small local model can write
# prose until the wall-clock cap; 2048 tokens hold any tool call worth making (~8 KB of code).
DEFAULT_MAX_OUTPUT_TOKENS = 2048


def decode_counters(llm: Any) -> tuple[int, float]:
    """(tokens decoded, seconds spent decoding) in ``llm``'s context so far, from llama.cpp's
    performance counters. ``llama_perf_context`` reports a count of 0 as 1; a count whose
    time is 0 is taken as 0."""
    import llama_cpp

    ctx = llm._ctx.ctx
    llama_cpp.llama_synchronize(ctx)  # the counters are updated when the queued work is done
    perf = llama_cpp.llama_perf_context(ctx)
    tokens = (perf.n_p_eval if perf.t_p_eval_ms > 0 else 0) + (perf.n_eval if perf.t_eval_ms > 0 else 0)
    return tokens, (perf.t_p_eval_ms + perf.t_eval_ms) / 1000


@dataclass
class StepTimings:
    """What the last step's prefill cost, from llama.cpp's own counters."""

    prompt_tokens: int = 0
    reused_tokens: int = 0  # already in the context (the conversation so far)
    restored_tokens: int = 0  # read from the prefix cache this step
    evaluated_tokens: int = 0  # llama.cpp's n_p_eval + n_eval over the prefill
    prefill_seconds: float = 0.0  # llama.cpp's t_p_eval + t_eval over the prefill
    started_at: float = 0.0  # time.perf_counter() when the step began
    first_token_at: float | None = None  # time.perf_counter() when the first token was sampled
    resampled_tokens: int = 0  # tokens the tool-call grammar rejected (sampled again under it)
    head_tokens: int = 0  # of the prompt, its head: the system messages (what the prefix cache keeps)


@dataclass
class PrefixStatus:
    """The fixed part of the prompt (system message and tool schemas) before the first step."""

    tokens: int
    cached: bool  # a cache entry holds it: the first step restores it instead of evaluating
    evaluated_tokens: int = 0  # evaluated now (and saved) because no entry held it
    seconds: float = 0.0


class Sampling:
    """Sampling settings for ``Llama.generate`` (temperature 0 is greedy); ``seed`` is given
    to llama.cpp when the model loads (None: llama.cpp's own)."""

    def __init__(self, temperature: float = 0.6, top_p: float = 0.95, top_k: int = 40,
                 min_p: float = 0.05, repeat_penalty: float = 1.0, *, seed: int | None = None) -> None:
        self.kwargs = dict(temp=temperature, top_p=top_p, top_k=top_k, min_p=min_p,
                           repeat_penalty=repeat_penalty)
        self.seed = seed


class LlamaCppModel(FillInTheMiddle):
    """A GGUF model run in process. ``options``: placement, context, batch sizes, the prefix
    cache (``prefix_cache``: None is the cache folder's ``prefix/``, "off" none).
    ``on_notice`` hears what the user should know (a context lowered to fit the memory, an
    unusable cache entry); nothing is printed."""

    serves_one_at_a_time = True  # one conversation at a time: sub-agents take turns on it (kcode.agent.subagents)
    serving = "in process"  # for the run header (a kept-alive server's model says which server)

    def __init__(
        self,
        path: Path | str,
        options: LlamaCppOptions | None = None,
        *,
        sampling: Sampling | None = None,
        speed_store: Path | str | None = None,
        max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS,
        on_notice: Callable[[str], None] | None = None,
    ) -> None:
        options = options or LlamaCppOptions()
        if options.tool_calls not in (None, "auto", "required"):
            raise ConfigError(f"tool_calls must be 'auto' or 'required', not {options.tool_calls!r}")
        self.path = Path(path).expanduser()
        self.name = f"llamacpp:{self.path.name}"
        self._sampling = sampling or Sampling()
        started = time.perf_counter()
        loaded = load_llama(self.path, options, seed=self._sampling.seed)
        self.load_seconds = time.perf_counter() - started  # part of the wait before the first token
        self._llm = loaded.llm
        self._overrides = loaded.overrides  # the C array must outlive the model
        self._n_ctx = loaded.n_ctx
        for notice in loaded.notices:
            if on_notice is not None:
                on_notice(notice)
        self.settings = loaded.settings
        metadata = self._llm.metadata
        self.vocabulary = Vocabulary(self._llm, add_bos=metadata.get("tokenizer.ggml.add_bos_token", "false") == "true")
        self._template = ChatTemplate(metadata.get("tokenizer.chat_template", ""), bos_token=self.vocabulary.bos_text,
                                      eos_token=self.vocabulary.eos_text)
        self._constrain_tools = options.constrain_tools
        self._identity = model_identity(self.path, self.settings)
        cache_folder = prefix_cache_dir(options.prefix_cache)
        self._store = PrefixStore(cache_folder, int(options.prefix_cache_gib * 2**30), on_notice=on_notice) if cache_folder else None
        self._speeds = SpeedStore(Path(speed_store).expanduser()) if speed_store else None
        self._speed_key = speed_key(f"{self.path.name}:{self._identity}", self.settings)
        self._speed: PrefillSpeed | None = None
        self._label = ""  # what the prompt head belongs to (the repository), for cache entries
        self._note: dict[str, Any] = {}
        self._layers: tuple[int, int] = (0, 0)  # token ends of the fixed part and the whole head
        self._saved_heads: set[tuple[int, ...]] = set()
        self.last_step = StepTimings()
        self._max_output_tokens = max_output_tokens
        self._thinking = options.thinking
        self._raw_arguments: dict[str, str] = {}
        self._step = 0
        # What the context holds as text and ids: the last prompt, then prompt + generation.
        self._last_prompt: tuple[str, list[int]] = ("", [])
        self._last_turn: tuple[str, list[int]] = ("", [])
        self.last_prefix_restored = False  # the last new conversation restored a cached prefix
        # The next step must call a tool (the grammar starts at once): the loop sets it after an
        # answer without a tool call, whatever constrain_tools says.
        self.require_tool_call = False
        # Every step calls a tool (tool_calls "required"; by default when the template does not
        # think): no prose steps, which a small model writes at length instead of acting.
        self._always_call = options.tool_calls == "required" or (options.tool_calls is None and not options.thinking)
        self.withheld_tools: frozenset[str] = frozenset()  # left out of this step's grammar (not the prompt)
        self._grammar_first = False  # llama-cpp-python's order (the grammar on the whole vocabulary): benchmarks only

    # --- ChatModel -------------------------------------------------------------------------

    @property
    def context_window(self) -> int:
        return self._n_ctx

    def count_tokens(self, text: str) -> int:
        return len(self.vocabulary.tokenize(text))

    def count_prompt_tokens(self, messages: list[Message], tools: list[ToolSpec]) -> int:
        """Tokens of ``messages`` and ``tools`` as this model's chat template renders them."""
        text = self._template.render(messages, tools, add_generation_prompt=False, thinking=self._thinking)
        return len(self.vocabulary.tokenize(text, first=True))

    def state(self) -> dict[str, Any]:
        return {}  # the KV cache is rebuilt (or restored from the prefix cache) on resume

    def restore(self, state: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    def stream(self, messages: list[Message], tools: list[ToolSpec], *,
               cancel: CancelToken | None = None) -> Iterator[StreamChunk]:
        self._step += 1
        timings = self.last_step = StepTimings(started_at=time.perf_counter())
        prompt = self._template.render(messages, tools, add_generation_prompt=True,
                                       thinking=self._thinking, raw_arguments=self._raw_arguments)
        tokens = self._prompt_tokens(prompt, messages, tools)
        timings.head_tokens = self._layers[1]
        if len(tokens) >= self._n_ctx:
            raise ModelRequestError(
                f"the prompt has {len(tokens)} tokens but the context holds {self._n_ctx}; "
                "compact the conversation or raise --ctx")
        cached = self._evaluate_prompt(tokens, cancel)
        usage = TokenUsage(input_tokens=len(tokens) - cached, cached_input_tokens=cached)
        splitter = OutputSplitter(reasoning_open=prompt.rstrip().endswith(THINK_BEGIN))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        generated: list[int] = []
        finish_reason = "stop"
        budget = min(self._max_output_tokens, self._n_ctx - len(tokens) - 1)
        sampler = TokenSampler(self._llm, self._sampling.kwargs, grammar_first=self._grammar_first)
        try:
            must_call = self.require_tool_call or self._always_call
            opener = _OPENERS.get(self._template.tool_call_format) if must_call and tools else None
            allowed = [tool for tool in tools if tool.name not in self.withheld_tools] or tools
            if opener is not None:  # set by the loop after an answer without a tool call
                # The step opens with the opener's own (special) token, put there rather than
                # sampled: under a grammar matched by text it would be spelled in plain pieces
                # ("<", "tool", "_call", ">"), each a token the grammar had to refuse first.
                forced = self.vocabulary.tokenize(opener)
                try:
                    self._llm.eval(forced)
                except RuntimeError as error:
                    raise ModelRequestError(f"llama.cpp failed while generating: {error}") from error
                generated += forced
                timings.first_token_at = time.perf_counter()
                yield from self._chunks(splitter.feed(decoder.decode(b"".join(self.vocabulary.piece(t) for t in forced))))
                sampler.constrain(tool_call_grammar(allowed, opener, single=True))  # one call, then the results
            for token in self._generate(sampler):
                if timings.first_token_at is None:
                    timings.first_token_at = time.perf_counter()
                if cancel is not None and cancel.cancelled:
                    raise Interrupted("interrupted by the user")
                generated.append(token)
                if self.vocabulary.is_end_of_turn(token):
                    break
                yield from self._chunks(splitter.feed(decoder.decode(self.vocabulary.piece(token))))
                if len(generated) >= budget:
                    finish_reason = "length"
                    break
                if (self._constrain_tools and tools and not sampler.constrained
                        and splitter.tool_opener is not None):
                    sampler.constrain(tool_call_grammar(allowed, splitter.tool_opener))
        finally:
            self.last_step.resampled_tokens = sampler.resampled
            sampler.close()
        self._save_head()
        yield from self._chunks(splitter.feed(decoder.decode(b"", final=True)))
        yield from self._chunks(splitter.finish())
        text = self.vocabulary.detokenize(generated)
        body = self.vocabulary.detokenize([t for t in generated if not self.vocabulary.is_end_of_turn(t)])
        self._last_prompt = (prompt, tokens)
        self._last_turn = (prompt + text, tokens + generated)
        parsed = parse_output(body, tools, id_prefix=f"call_{self._step}")
        for call in parsed.tool_calls:
            if call.error is None:
                self._raw_arguments[call.id] = call.raw.strip()
        if parsed.tool_calls and finish_reason == "stop":
            finish_reason = "tool_calls"
        usage.output_tokens = len(generated)
        yield StepEnd(parsed.content, parsed.reasoning, parsed.tool_calls, usage, finish_reason)

    # --- prefill speed and the prompt's fixed part ----------------------------------------

    def prefill_speed(self, *, measure: bool = False) -> PrefillSpeed | None:
        """This model's prompt-processing speed with these settings on this machine: the
        stored figure, or (``measure``) a calibration run when none is stored."""
        if self._speed is None and self._speeds is not None:
            self._speed = self._speeds.get(self._speed_key)
        if self._speed is None and measure:
            self._speed = self.calibrate()
        return self._speed

    def remember_prefill_speed(self, speed: PrefillSpeed) -> None:
        """Store ``speed`` as this backend's figure (e.g. the median of several calibrations)."""
        self._speed = speed
        if self._speeds is not None:
            self._speeds.put(self._speed_key, speed)

    def calibrate(self, n_tokens: int = 256) -> PrefillSpeed:
        """Time a prefill of ``n_tokens`` tokens from an empty context (a few seconds on a
        CPU) and store it. The context is emptied; the next step restores or re-evaluates."""
        llm = self._llm
        tokens = self.vocabulary.tokenize(calibration_text(n_tokens + 8), first=True)
        llm.reset()
        llm.eval(tokens[:8])  # the first decode allocates buffers; keep it out of the figure
        evaluated, seconds = self._timed_eval(tokens[8 : 8 + min(n_tokens, self._n_ctx - 16)])
        llm.reset()
        self._last_prompt = self._last_turn = ("", [])
        speed = PrefillSpeed(evaluated / max(seconds, 1e-6), "calibration", 1, time.time())
        if self._speeds is not None:
            self._speeds.put(self._speed_key, speed)
        self._speed = speed
        return speed

    def prepare_prefix(self, messages: list[Message], tools: list[ToolSpec], *, label: str = "") -> PrefixStatus:
        """Make the fixed part of every prompt (``messages``: the system message; the tool
        schemas) ready before the first step: note that the cache holds it, or evaluate it
        now and save it (which also measures the prefill speed). ``label`` names what the
        following prompt head belongs to (the repository) in the cache entries written later."""
        self._label = label
        text = self._template.render(messages, tools, add_generation_prompt=False, thinking=self._thinking)
        tokens = self.vocabulary.tokenize(text, first=True)
        if self._store is None or len(tokens) < _MIN_LAYER_TOKENS:
            return PrefixStatus(len(tokens), False)
        if self._store.find(self._identity, tokens) is not None:
            return PrefixStatus(len(tokens), True)
        llm = self._llm
        held = self._common_with_context(tokens)
        llm.n_tokens = held
        evaluated, seconds = self._timed_eval(tokens[held:])
        self._store.save(llm, self._identity, self.path.name, stable_tokens=len(tokens),
                         fixed_tokens=len(tokens), label="(fixed prompt)")
        self._last_prompt = self._last_turn = ("", [])
        return PrefixStatus(len(tokens), False, evaluated, seconds)

    def note_prefix(self, **note: Any) -> None:
        """Facts kept with the cache entries this model writes from now on (e.g. the pack's budget)."""
        self._note = dict(note)

    def cached_prefix(self, label: str) -> dict[str, Any] | None:
        """The most recent cache entry for ``label``: ``tokens`` (of the prompt head after the
        fixed part) and what was noted with it; None when the cache holds none."""
        if self._store is None or not label:
            return None
        for entry in self._store.entries(self._identity):  # most recently used first
            if entry.label == label:
                return {**entry.note, "tokens": entry.stable_tokens - entry.fixed_tokens}
        return None

    # --- prompt bookkeeping ---------------------------------------------------------------

    def _prompt_tokens(self, prompt: str, messages: list[Message], tools: list[ToolSpec]) -> list[int]:
        """Token ids for ``prompt``, reusing what the context already holds as ids; a new
        conversation is tokenized layer by layer so that each layer is a token prefix."""
        for known_text, known_tokens in (self._last_turn, self._last_prompt):
            if known_text and prompt.startswith(known_text):
                return known_tokens + self.vocabulary.tokenize(prompt[len(known_text):])
        heads = 0
        while heads < len(messages) and messages[heads].get("role") == "system":
            heads += 1
        tokens: list[int] = []
        done = ""
        ends = []
        for count in (1, heads) if heads else ():
            layer = self._template.render(messages[:count], tools, add_generation_prompt=False,
                                          thinking=self._thinking, raw_arguments=self._raw_arguments)
            if len(layer) > len(done) and prompt.startswith(layer) and layer.startswith(done):
                tokens += self.vocabulary.tokenize(layer[len(done):], first=not done)
                done = layer
            ends.append(len(tokens))
        self._layers = (ends[0], ends[-1]) if ends else (0, 0)
        return tokens + self.vocabulary.tokenize(prompt[len(done):], first=not done)

    def _common_with_context(self, tokens: list[int]) -> int:
        held = self._llm.input_ids[: self._llm.n_tokens]
        reuse = 0
        for limit in range(min(len(held), len(tokens))):
            if held[limit] != tokens[limit]:
                break
            reuse = limit + 1
        return reuse

    def _restore(self, tokens: list[int], have: int) -> int:
        """Restore the cached state sharing the longest prefix with ``tokens`` when that
        beats evaluating; the number of tokens the context now holds."""
        if self._store is None or have >= len(tokens) - 1:
            return have
        speed = self._speed or (self._speeds.get(self._speed_key) if self._speeds else None)
        found = self._store.best(self._identity, tokens, have=have,
                                 tokens_per_second=speed.tokens_per_second if speed else None)
        if found is None:
            return have
        entry, matched = found
        if self._store.load(self._llm, entry, matched):
            self.last_prefix_restored = True
            self.last_step.restored_tokens = matched
            return matched
        return 0

    def _evaluate_prompt(self, tokens: list[int], cancel: CancelToken | None) -> int:
        """Evaluate what the context lacks, batch by batch; return how many were reused
        (held by the context or restored from the prefix cache)."""
        llm = self._llm
        reuse = self._common_with_context(tokens)
        if reuse < self._layers[1] or reuse == 0:
            self.last_prefix_restored = False
            reuse = self._restore(tokens, reuse)
        if reuse == len(tokens):
            reuse -= 1  # the last prompt token is evaluated again to get fresh logits
        self.last_step.prompt_tokens = len(tokens)
        self.last_step.reused_tokens = reuse - self.last_step.restored_tokens
        llm.n_tokens = reuse
        fixed_end = self._layers[0]
        save_fixed = (self._store is not None and reuse < fixed_end and fixed_end >= _MIN_LAYER_TOKENS
                      and self._store.find(self._identity, tokens[:fixed_end]) is None)
        position = reuse
        for stop in ((fixed_end, len(tokens)) if save_fixed else (len(tokens),)):
            evaluated, seconds = self._timed_eval(tokens[position:stop], cancel)
            self.last_step.evaluated_tokens += evaluated
            self.last_step.prefill_seconds += seconds
            position = stop
            if stop == fixed_end and save_fixed and self._store is not None:
                self._store.save(llm, self._identity, self.path.name, stable_tokens=fixed_end,
                                 fixed_tokens=fixed_end, label="(fixed prompt)")
        return reuse

    def _timed_eval(self, tokens: list[int], cancel: CancelToken | None = None) -> tuple[int, float]:
        """Evaluate ``tokens`` after what the context holds; (tokens llama.cpp evaluated,
        seconds it spent) from its own counters. Refreshes the stored prefill speed."""
        llm = self._llm
        if not tokens:
            return 0, 0.0
        before = decode_counters(llm)
        for start in range(0, len(tokens), llm.n_batch):
            if cancel is not None and cancel.cancelled:
                raise Interrupted("interrupted by the user")
            try:
                llm.eval(tokens[start : start + llm.n_batch])
            except RuntimeError as error:
                raise ModelRequestError(f"llama.cpp failed to evaluate the prompt: {error}") from error
        after = decode_counters(llm)
        evaluated, seconds = after[0] - before[0], after[1] - before[1]
        if evaluated <= 0:  # counters off (no_perf): count what was given, time nothing
            evaluated, seconds = len(tokens), 0.0
        if seconds > 0 and self._speeds is not None:
            self._speed = self._speeds.record(self._speed_key, evaluated, seconds, "steps") or self._speed
        elif seconds > 0 and evaluated >= MIN_SAMPLE_TOKENS:  # no store: an average for this process
            measured = evaluated / seconds
            known = self._speed
            self._speed = PrefillSpeed(
                measured if known is None else (1 - EMA_WEIGHT) * known.tokens_per_second + EMA_WEIGHT * measured,
                "steps", 1 if known is None else known.samples + 1, time.time())
        return evaluated, seconds

    def _save_head(self) -> None:
        """After the first step of a new prompt head, save the context under that head."""
        fixed_end, head_end = self._layers
        if self._store is None or head_end <= fixed_end or head_end < _MIN_LAYER_TOKENS:
            return
        head = tuple(self._llm.input_ids[:head_end])
        if head in self._saved_heads or self._llm.n_tokens < head_end:
            return
        self._saved_heads.add(head)
        if self.last_step.restored_tokens + self.last_step.reused_tokens >= head_end:
            return  # restored whole: the entry is there already
        self._store.save(self._llm, self._identity, self.path.name, stable_tokens=head_end,
                         fixed_tokens=fixed_end, label=self._label, note=self._note)

    def _generate(self, sampler: TokenSampler) -> Iterator[int]:
        """Tokens sampled one by one after the evaluated prompt, each evaluated before the next."""
        llm = self._llm
        while True:
            token = sampler.sample()
            yield token
            try:
                llm.eval([token])
            except RuntimeError as error:  # llama_decode failed (e.g. no KV cache slot left)
                raise ModelRequestError(f"llama.cpp failed while generating: {error}") from error

    @staticmethod
    def _chunks(pairs: list[tuple[str, str]]) -> Iterator[StreamChunk]:
        for kind, text in pairs:
            yield ReasoningChunk(text) if kind == "reasoning" else TextChunk(text)
