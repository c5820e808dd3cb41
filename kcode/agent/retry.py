"""kcode's one retry layer for model calls (used by :class:`kcode.agent.loop.Agent`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RetryPolicy"]


@dataclass
class RetryPolicy:
    """A step whose model call raised a TransientModelError is called again, up to
    ``attempts`` calls in all, after the server's Retry-After or a jittered exponential
    backoff; then the run ends with an error. Backends make one attempt per call. It lives
    in the agent layer, not in the HTTP backend, because only the loop can redo a step whose
    stream broke after output came, it serves every backend (HTTP, llama.cpp, chaos), and
    each retry is a ``model_retry`` event the user sees."""

    attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 30.0
