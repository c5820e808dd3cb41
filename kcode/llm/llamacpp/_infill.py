"""Fill in the middle for the in-process llama.cpp model: the code a coder model writes
between a prefix and a suffix (its FIM tokens), up to the end of the line. The repair phase
(kcode.agent.repair) fills lines of a suspect definition in again with it."""

from __future__ import annotations

import functools
from typing import Any

from kcode.cancel import CancelToken
from kcode.errors import Interrupted, ModelRequestError
from kcode.llm.base import TokenUsage
from kcode.llm.llamacpp._sampler import TokenSampler

__all__ = ["FillInTheMiddle"]

# Fill-in-the-middle control tokens (prefix, suffix, middle) by model family: Qwen2.5-Coder
# and StarCoder2 spell them with bars, StarCoder 1 and SantaCoder without.
_FIM_SPELLINGS = (("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"), ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"))


class FillInTheMiddle:
    """Mixed into :class:`~kcode.llm.llamacpp.LlamaCppModel` (its llama, vocabulary, sampling
    and context bookkeeping)."""

    _llm: Any
    vocabulary: Any
    _sampling: Any
    _n_ctx: int

    @functools.cached_property
    def fim_tokens(self) -> tuple[int, int, int] | None:
        """The ids of this model's fill-in-the-middle tokens, None when it has none."""
        for spelling in _FIM_SPELLINGS:
            ids = [self.vocabulary.tokenize(text) for text in spelling]
            if all(len(found) == 1 for found in ids):
                return ids[0][0], ids[1][0], ids[2][0]
        return None

    def infill(self, prefix: str, suffix: str, *, max_tokens: int = 80, temperature: float | None = None,
               cancel: CancelToken | None = None, lines: int = 1) -> tuple[str, TokenUsage] | None:
        """The code the model writes between ``prefix`` and ``suffix`` (its fill-in-the-middle
        mode), up to the end of its ``lines``-th line (or its end, if it ends sooner; the lines
        joined by newlines, the last without one): (text, usage), or None when the model has no such
        mode. The context keeps what it shares with the last prompt (the prefix of the same
        file), so filling line after line of one definition evaluates little."""
        fim = self.fim_tokens
        if fim is None:
            return None
        tokens = ([fim[0]] + self.vocabulary.tokenize(prefix) + [fim[1]] + self.vocabulary.tokenize(suffix) + [fim[2]])
        if len(tokens) + max_tokens >= self._n_ctx:
            raise ModelRequestError(f"the infill prompt has {len(tokens)} tokens but the context holds {self._n_ctx}")
        reuse = min(self._common_with_context(tokens), len(tokens) - 1)
        self._llm.n_tokens = reuse
        self._timed_eval(tokens[reuse:], cancel)
        kwargs = dict(self._sampling.kwargs)
        if temperature is not None:
            kwargs["temp"] = temperature
        sampler = TokenSampler(self._llm, kwargs)
        generated: list[int] = []
        text = ""
        try:
            for token in self._generate(sampler):
                if cancel is not None and cancel.cancelled:
                    raise Interrupted("interrupted by the user")
                if self.vocabulary.is_end_of_turn(token) or token in fim:
                    break
                generated.append(token)
                text = self.vocabulary.detokenize(generated)
                if text.count("\n") >= lines or len(generated) >= max_tokens:
                    break
        finally:
            sampler.close()
        return "\n".join(text.split("\n")[:lines]).rstrip("\n"), TokenUsage(input_tokens=len(tokens) - reuse, cached_input_tokens=reuse,
                                                   output_tokens=len(generated))
