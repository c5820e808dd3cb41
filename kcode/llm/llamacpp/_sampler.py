"""Token sampling for one step, with a GBNF grammar checked last.

llama-cpp-python's own chain puts the grammar *first*: every token, the grammar is matched
against the whole vocabulary (152K pieces for Qwen) before top-k narrows it, which costs more
than decoding a token of a small model on a CPU (measured: ~24 ms a token inside a JSON
string, ~27 µs for one piece). Here, as llama.cpp's own ``common_sampler`` does, the
token is sampled without the grammar, then checked alone; only when the grammar rejects it
is the step sampled again with the grammar applied to every candidate. Under greedy
sampling both orders pick the same token (the best token the grammar allows).

``grammar_first`` keeps llama-cpp-python's order, for the benchmark that compares them
(``evals/perf/grammar.py``).
"""

from __future__ import annotations

import ctypes
from typing import Any

from kcode.errors import ModelRequestError

__all__ = ["TokenSampler"]


class TokenSampler:
    """Samples the next token from the logits of the last evaluated token of ``llm`` (a
    ``llama_cpp.Llama``), with ``kwargs`` as for ``Llama.generate`` (temp, top_k, ...)."""

    def __init__(self, llm: Any, kwargs: dict[str, Any], *, grammar_first: bool = False) -> None:
        import llama_cpp
        import numpy as np

        self._llm = llm
        self._chain = llm._init_sampler(**kwargs)  # llama-cpp-python's chain, without a grammar
        self._grammar: Any = None  # a llama_sampler_p, or None: free sampling
        self._grammar_first = grammar_first
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(llm._model.vocab)
        self._dtype = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)
        self._ids = np.arange(self._n_vocab, dtype=np.intc)
        self._buffer = np.zeros(self._n_vocab, dtype=self._dtype)
        self._one = np.zeros(1, dtype=self._dtype)
        self.resampled = 0  # tokens the grammar rejected, sampled again under it

    @property
    def constrained(self) -> bool:
        return self._grammar is not None

    def constrain(self, grammar: str) -> None:
        """From the next token on, every token must fit ``grammar`` (GBNF, rule ``root``)."""
        import llama_cpp

        self.close_grammar()
        pointer = llama_cpp.llama_sampler_init_grammar(self._llm._model.vocab, grammar.encode("utf-8"), b"root")
        if not pointer:
            raise ModelRequestError("llama.cpp rejected the tool-call grammar")
        self._grammar = pointer

    def sample(self) -> int:
        import llama_cpp

        ctx = self._llm._ctx.ctx
        if self._grammar is None:
            return int(llama_cpp.llama_sampler_sample(self._chain.sampler, ctx, -1))
        logits = llama_cpp.llama_get_logits_ith(ctx, -1)
        if self._grammar_first:
            token = self._pick(logits, with_grammar=True)
        else:
            token = self._pick(logits, with_grammar=False)
            if not self._allowed(token):
                self.resampled += 1
                token = self._pick(logits, with_grammar=True)
        llama_cpp.llama_sampler_accept(self._grammar, token)
        llama_cpp.llama_sampler_accept(self._chain.sampler, token)
        return token

    def close_grammar(self) -> None:
        import llama_cpp

        if self._grammar is not None:
            llama_cpp.llama_sampler_free(self._grammar)
            self._grammar = None

    def close(self) -> None:
        self.close_grammar()
        self._chain.close()

    # -- candidates ------------------------------------------------------------------------

    def _array(self, rows: Any) -> Any:
        import llama_cpp

        return llama_cpp.llama_token_data_array(
            data=rows.ctypes.data_as(llama_cpp.llama_token_data_p), size=len(rows), selected=-1, sorted=False)

    def _pick(self, logits: Any, *, with_grammar: bool) -> int:
        """The chain's choice among every token (``with_grammar``: those the grammar allows)."""
        import llama_cpp
        import numpy as np

        rows = self._buffer
        rows["id"] = self._ids
        rows["logit"] = np.ctypeslib.as_array(ctypes.cast(logits, ctypes.POINTER(ctypes.c_float)), shape=(self._n_vocab,))
        rows["p"] = 0.0
        candidates = self._array(rows)
        if with_grammar:
            llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(candidates))
            if not np.isfinite(rows["logit"][: candidates.size]).any():
                raise ModelRequestError("the tool-call grammar allows no token here")
        llama_cpp.llama_sampler_apply(self._chain.sampler, ctypes.byref(candidates))
        if not 0 <= candidates.selected < candidates.size:
            raise ModelRequestError("llama.cpp's sampler selected no token")
        return int(candidates.data[candidates.selected].id)  # a sampler may point data elsewhere

    def _allowed(self, token: int) -> bool:
        """Whether the grammar admits ``token`` next (checked alone: microseconds)."""
        import llama_cpp
        import numpy as np

        self._one["id"] = token
        self._one["logit"] = 0.0
        self._one["p"] = 0.0
        candidates = self._array(self._one)
        llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(candidates))
        return bool(np.isfinite(self._one["logit"][0]))
