"""The in-process llama.cpp backend (``--model PATH.gguf``).

One long-lived ``Llama`` per conversation. Each step renders the whole conversation with the
GGUF's own chat template, but tokenizes only what is new: when the new prompt text extends
the previous prompt plus what the model generated, the previous token ids (including the
generated ones, never re-tokenized) are kept and only the suffix is tokenized, so llama.cpp
evaluates just the new tokens. Tokens are decoded with special tokens kept (Kimi's tool-call
markers are CONTROL tokens), streamed as reasoning/text, and parsed into tool calls at the
end of the step. ``--constrain-tools`` switches to a GBNF grammar once a tool-call opener
appears; ``--prefix-cache DIR`` restores the KV state of the stable prefix across runs.
"""

from __future__ import annotations

import codecs
import functools
import ctypes
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kcode.errors import Interrupted, ModelRequestError
from kcode.llm._chat_template import ChatTemplate
from kcode.llm._loader import Placement, load_llama
from kcode.llm._prefix_cache import PrefixCache, stable_prefix
from kcode.llm._streaming import OutputSplitter
from kcode.llm.base import (
    CancelToken,
    Message,
    ReasoningChunk,
    StepEnd,
    StreamChunk,
    TextChunk,
    TokenUsage,
    ToolSpec,
)
from kcode.llm.grammar import tool_call_grammar
from kcode.llm.toolcall_parse import HERMES_BEGIN, KIMI_SECTION_BEGIN, THINK_BEGIN, parse_output

__all__ = ["LlamaCppModel", "Sampling"]

_OPENERS = {"kimi": KIMI_SECTION_BEGIN, "hermes": HERMES_BEGIN}


class Sampling:
    """Sampling settings for ``Llama.generate`` (temperature 0 is greedy)."""

    def __init__(self, temperature: float = 0.6, top_p: float = 0.95, top_k: int = 40,
                 min_p: float = 0.05, repeat_penalty: float = 1.0) -> None:
        self.kwargs = dict(temp=temperature, top_p=top_p, top_k=top_k, min_p=min_p,
                           repeat_penalty=repeat_penalty)


class LlamaCppModel:
    def __init__(
        self,
        path: Path | str,
        *,
        placement: Placement | None = None,
        sampling: Sampling | None = None,
        constrain_tools: bool = False,
        prefix_cache: Path | str | None = None,
        max_output_tokens: int = 8192,
        thinking: bool = False,
    ) -> None:
        self.path = Path(path).expanduser()
        self.name = f"llamacpp:{self.path.name}"
        self._placement = placement or Placement()
        loaded = load_llama(self.path, self._placement)
        self._llm = loaded.llm
        self._overrides = loaded.overrides  # the C array must outlive the model
        self._n_ctx = loaded.n_ctx
        self.notices = loaded.notices
        metadata = self._llm.metadata
        self._vocab = self._llm._model.vocab
        self._pieces: dict[int, bytes] = {}
        self._template = ChatTemplate(
            metadata.get("tokenizer.chat_template", ""),
            bos_token=self._token_text(self._llm.token_bos()),
            eos_token=self._token_text(self._llm.token_eos()),
        )
        self._add_bos = metadata.get("tokenizer.ggml.add_bos_token", "false") == "true"
        self._sampling = sampling or Sampling()
        self._constrain_tools = constrain_tools
        self._prefix_cache = (
            PrefixCache(Path(prefix_cache).expanduser(), self.path, self._placement.kv_type or "f16")
            if prefix_cache else None)
        self._max_output_tokens = max_output_tokens
        self._thinking = thinking
        self._raw_arguments: dict[str, str] = {}
        self._step = 0
        # What the context holds as text and ids: the last prompt, then prompt + generation.
        self._last_prompt: tuple[str, list[int]] = ("", [])
        self._last_turn: tuple[str, list[int]] = ("", [])
        self.last_prefix_restored = False
        # With constrain_tools: the next steps must call a tool (the grammar starts at once).
        self.require_tool_call = False

    # --- ChatModel -------------------------------------------------------------------------

    @property
    def context_window(self) -> int:
        return self._n_ctx

    def count_tokens(self, text: str) -> int:
        return len(self._tokenize(text))

    def state(self) -> dict[str, Any]:
        return {}  # the KV cache is rebuilt (or restored from --prefix-cache) on resume

    def restore(self, state: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    def stream(self, messages: list[Message], tools: list[ToolSpec], *,
               cancel: CancelToken | None = None) -> Iterator[StreamChunk]:
        self._step += 1
        prompt = self._template.render(messages, tools, add_generation_prompt=True,
                                       thinking=self._thinking, raw_arguments=self._raw_arguments)
        tokens = self._prompt_tokens(prompt, messages, tools)
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
        constrained = False
        grammar = None
        if self.require_tool_call and self._constrain_tools and tools:
            opener = _OPENERS.get(self._template.tool_call_format)
            if opener is not None:  # the whole step is a tool call, opener included
                grammar = self._grammar(tools, opener, include_opener=True)
                constrained = True
        generator = self._llm.generate(tokens, grammar=grammar, **self._sampling.kwargs)
        while True:
            try:
                token = next(generator)
            except StopIteration:
                break
            except RuntimeError as error:  # llama_decode failed (e.g. no KV cache slot left)
                raise ModelRequestError(f"llama.cpp failed while generating: {error}") from error
            if cancel is not None and cancel.cancelled:
                generator.close()
                raise Interrupted("interrupted by the user")
            generated.append(token)
            if self._is_end_of_turn(token):
                break
            yield from self._chunks(splitter.feed(decoder.decode(self._piece(token))))
            if len(generated) >= budget:
                finish_reason = "length"
                break
            if (self._constrain_tools and tools and not constrained
                    and splitter.tool_opener is not None):
                generator.close()
                grammar = self._grammar(tools, splitter.tool_opener)
                generator = self._llm.generate(tokens + generated, grammar=grammar,
                                               **self._sampling.kwargs)
                constrained = True
        generator.close()
        yield from self._chunks(splitter.feed(decoder.decode(b"", final=True)))
        yield from self._chunks(splitter.finish())
        text = self._detokenize(generated)
        body = self._detokenize([t for t in generated if not self._is_end_of_turn(t)])
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

    # --- prompt bookkeeping ---------------------------------------------------------------

    def _prompt_tokens(self, prompt: str, messages: list[Message], tools: list[ToolSpec]) -> list[int]:
        """Token ids for ``prompt``, reusing what the context already holds as ids."""
        for known_text, known_tokens in (self._last_turn, self._last_prompt):
            if known_text and prompt.startswith(known_text):
                return known_tokens + self._tokenize(prompt[len(known_text):])
        if self._prefix_cache is not None:
            stable = self._template.render(stable_prefix(messages), tools, add_generation_prompt=False,
                                           thinking=self._thinking, raw_arguments=self._raw_arguments)
            if stable and prompt.startswith(stable):
                stable_tokens = self._tokenize(stable, first=True)
                self._use_prefix_cache(stable_tokens)
                return stable_tokens + self._tokenize(prompt[len(stable):])
        return self._tokenize(prompt, first=True)

    def _use_prefix_cache(self, stable_tokens: list[int]) -> None:
        """Restore the stable prefix's KV state, or compute and save it."""
        assert self._prefix_cache is not None
        llm = self._llm
        if llm.n_tokens >= len(stable_tokens) and list(llm.input_ids[: len(stable_tokens)]) == stable_tokens:
            return  # already in the context
        llm.reset()
        restored = self._prefix_cache.load(llm, stable_tokens)
        self.last_prefix_restored = restored
        if not restored:
            llm.eval(stable_tokens)
            self._prefix_cache.save(llm, stable_tokens)

    def _evaluate_prompt(self, tokens: list[int], cancel: CancelToken | None) -> int:
        """Evaluate what the context lacks, batch by batch; return how many were reused."""
        llm = self._llm
        held = llm.input_ids[: llm.n_tokens]
        reuse = 0
        for limit in range(min(len(held), len(tokens))):
            if held[limit] != tokens[limit]:
                break
            reuse = limit + 1
        if reuse == len(tokens):
            reuse -= 1  # the last prompt token is evaluated again to get fresh logits
        llm.n_tokens = reuse
        for start in range(reuse, len(tokens), llm.n_batch):
            if cancel is not None and cancel.cancelled:
                raise Interrupted("interrupted by the user")
            try:
                llm.eval(tokens[start : start + llm.n_batch])
            except RuntimeError as error:
                raise ModelRequestError(f"llama.cpp failed to evaluate the prompt: {error}") from error
        return reuse

    # --- tokens and text ------------------------------------------------------------------

    def _tokenize(self, text: str, *, first: bool = False) -> list[int]:
        add_bos = first and self._add_bos and not (
            self._template.bos_token and text.startswith(self._template.bos_token))
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    def _piece(self, token: int) -> bytes:
        """The bytes of one token with special tokens kept (llama-cpp-python's own
        detokenize uses a 32-byte buffer; long pieces need more)."""
        piece = self._pieces.get(token)
        if piece is None:
            import llama_cpp

            size = 64
            while True:
                buffer = ctypes.create_string_buffer(size)
                n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, size, 0, True)
                if n >= 0:
                    piece = buffer.raw[:n]
                    break
                size = -n
            self._pieces[token] = piece
        return piece

    def _detokenize(self, tokens: list[int]) -> str:
        return b"".join(self._piece(t) for t in tokens).decode("utf-8", errors="replace")

    def _token_text(self, token: int) -> str:
        return self._piece(token).decode("utf-8", errors="replace") if token >= 0 else ""

    def _is_end_of_turn(self, token: int) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token)) or token in self._turn_openers

    @functools.cached_property
    def _turn_openers(self) -> frozenset[int]:
        """Control tokens that open a new chat turn. A model that emits one has finished its
        own turn (small models sometimes skip the end-of-turn token and start the next)."""
        openers = set()
        for text in ("<|im_start|>", "<|im_user|>", "<|im_assistant|>", "<|im_system|>", "<|start_header_id|>"):
            tokens = self._llm.tokenize(text.encode(), add_bos=False, special=True)
            if len(tokens) == 1:
                openers.add(tokens[0])
        return frozenset(openers)

    def _grammar(self, tools: list[ToolSpec], opener: str, *, include_opener: bool = False) -> Any:
        import llama_cpp

        text = tool_call_grammar(tools, opener, include_opener=include_opener)
        return llama_cpp.LlamaGrammar.from_string(text, verbose=False)

    @staticmethod
    def _chunks(pairs: list[tuple[str, str]]) -> Iterator[StreamChunk]:
        for kind, text in pairs:
            yield ReasoningChunk(text) if kind == "reasoning" else TextChunk(text)
