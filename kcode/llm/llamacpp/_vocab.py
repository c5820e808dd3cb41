"""A loaded model's tokens as text: tokenizing with special tokens parsed, pieces decoded with
special tokens kept (Kimi's tool-call markers are CONTROL tokens), and where a turn ends."""

from __future__ import annotations

import ctypes
import functools
from typing import Any

__all__ = ["Vocabulary"]

# Control tokens that open a chat turn, in the templates kcode knows.
_TURN_OPENERS = ("<|im_start|>", "<|im_user|>", "<|im_assistant|>", "<|im_system|>", "<|start_header_id|>")


class Vocabulary:
    """The tokens of ``llm`` (a ``llama_cpp.Llama``); ``add_bos``: the GGUF asks for a BOS
    token before the first text of a prompt."""

    def __init__(self, llm: Any, *, add_bos: bool) -> None:
        self._llm = llm
        self._vocab = llm._model.vocab
        self._pieces: dict[int, bytes] = {}
        self.add_bos = add_bos
        self.bos_text = self.token_text(llm.token_bos())
        self.eos_text = self.token_text(llm.token_eos())

    def tokenize(self, text: str, *, first: bool = False) -> list[int]:
        """``text``'s ids, special tokens parsed; ``first``: it starts a prompt (a BOS token
        goes before it, unless it begins with the BOS text itself)."""
        add_bos = first and self.add_bos and not (self.bos_text and text.startswith(self.bos_text))
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    def piece(self, token: int) -> bytes:
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

    def detokenize(self, tokens: list[int]) -> str:
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", errors="replace")

    def token_text(self, token: int) -> str:
        return self.piece(token).decode("utf-8", errors="replace") if token >= 0 else ""

    def is_end_of_turn(self, token: int) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token)) or token in self.turn_openers

    @functools.cached_property
    def turn_openers(self) -> frozenset[int]:
        """Control tokens that open a new chat turn. A model that emits one has finished its
        own turn (small models sometimes skip the end-of-turn token and start the next)."""
        openers = set()
        for text in _TURN_OPENERS:
            tokens = self._llm.tokenize(text.encode(), add_bos=False, special=True)
            if len(tokens) == 1:
                openers.add(tokens[0])
        return frozenset(openers)
