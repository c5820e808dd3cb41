"""A :class:`~kcode.llm.base.ChatModel` for any OpenAI-compatible chat-completions server.

Specs (``--model``) and where they go by default (``--base-url`` overrides)::

    openai:NAME              $OPENAI_BASE_URL or https://api.openai.com/v1   OPENAI_API_KEY
    moonshot:kimi-k2.6       https://api.moonshot.ai/v1                      MOONSHOT_API_KEY
    openrouter:VENDOR/MODEL  https://openrouter.ai/api/v1                    OPENROUTER_API_KEY
    llama-server:NAME        http://127.0.0.1:8080/v1   (llama.cpp's server; no key)
    vllm:NAME                http://127.0.0.1:8000/v1
    sglang:NAME              http://127.0.0.1:30000/v1

``KCODE_API_KEY`` wins over the provider's own variable. Streaming is SSE with
``stream_options.include_usage``; ``prompt_cache_key`` is the session id, so a provider
with prompt caching reuses the stable prefix across steps.

Failures: each :meth:`~OpenAICompatModel.stream` call is exactly one HTTP request; nothing
is retried here. A failure worth retrying raises a
:class:`~kcode.errors.TransientModelError` (:class:`RateLimited` with the server's
``Retry-After``, :class:`ServerError` for 5xx, :class:`ModelTimeout`,
:class:`ModelUnreachable` when no connection is made, :class:`StreamTruncated` for a stream
that stops before ``[DONE]`` or a finish reason), and the agent loop retries the step with
backoff (:class:`kcode.agent.retry.RetryPolicy`, the one retry layer: it serves every backend
and can also redo a step whose stream broke after output). Other 4xx answers are
:class:`ModelRequestError` with the server's own message.
"""

from __future__ import annotations

import email.utils
import functools
import json
import os
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from kcode.cancel import CancelToken
from kcode.errors import (
    Interrupted,
    ModelRequestError,
    ModelTimeout,
    ModelUnreachable,
    RateLimited,
    ServerError,
    StreamTruncated,
    UsageError,
)
from kcode.llm._openai_wire import StepAccumulator, iter_sse_data, to_api_messages
from kcode.llm.prefill import MIN_SAMPLE_TOKENS, PrefillSpeed, SpeedStore, speed_key
from kcode.llm.base import (
    Message,
    ReasoningChunk,
    StepEnd,
    StreamChunk,
    TextChunk,
    ToolSpec,
    estimate_tokens,
)

__all__ = ["Provider", "PROVIDERS", "OpenAICompatModel", "DEFAULT_CONTEXT_WINDOW"]

# When neither the server, the preset nor the configuration says: small but safe.
DEFAULT_CONTEXT_WINDOW = 32_768


@dataclass(frozen=True)
class Provider:
    kind: str
    base_url: str
    key_variable: str | None = None
    needs_key: bool = False
    known_windows: tuple[tuple[str, int], ...] = ()  # model-name prefix -> context window


PROVIDERS: dict[str, Provider] = {
    provider.kind: provider
    for provider in (
        Provider("openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
        Provider(
            "moonshot", "https://api.moonshot.ai/v1", "MOONSHOT_API_KEY", needs_key=True,
            known_windows=(("kimi-k2", 262_144),),
        ),  # fmt: skip
        Provider("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY", needs_key=True),
        Provider("llama-server", "http://127.0.0.1:8080/v1"),
        Provider("vllm", "http://127.0.0.1:8000/v1"),
        Provider("sglang", "http://127.0.0.1:30000/v1"),
    )
}


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _server_message(response: httpx.Response) -> str:
    """The explanation a server put in its error body (OpenAI shape, FastAPI shape, text)."""
    try:
        raw = response.read()
    except httpx.HTTPError:
        return "(no readable error body)"
    try:
        body = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return raw.decode("utf-8", "replace")[:500].strip()
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body.get("message")))
        if isinstance(error, dict):
            error = error.get("message") or json.dumps(error)
        if error is not None:
            return str(error if isinstance(error, str) else json.dumps(error))[:500]
    return json.dumps(body)[:500]


def _complete_calls(end: StepEnd, tools: list[ToolSpec], step: int) -> StepEnd:
    """Check structured calls against their schemas; when the server sent none, parse the
    text the way the in-process backend does (servers without a tool-call parser, such as
    llama-server without ``--jinja``, pass ``<tool_call>`` or bare JSON through as text)."""
    from kcode.llm.toolcall_parse import parse_output, validate_call

    if end.tool_calls:
        end.tool_calls = [validate_call(call, tools) for call in end.tool_calls]
        return end
    if not tools and "<think>" not in end.content:
        return end
    parsed = parse_output(end.content, tools, id_prefix=f"call_{step}")
    end.content = parsed.content
    end.reasoning = end.reasoning or parsed.reasoning
    end.tool_calls = parsed.tool_calls
    if parsed.tool_calls and end.finish_reason == "stop":
        end.finish_reason = "tool_calls"
    return end


_RECORD_EVERY = 2.0  # seconds between speed samples written to the store


@functools.lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    """httpx's default TLS settings (certifi, or SSL_CERT_FILE / SSL_CERT_DIR), made once per
    process: loading the certificates takes tens of milliseconds, once per model otherwise
    (a swarm makes a model per sub-agent)."""
    return httpx.create_ssl_context()


class OpenAICompatModel:
    parallel_requests = True  # a server serves several conversations at once (sub-agents in parallel)

    def __init__(
        self,
        provider: Provider,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        session_id: str | None = None,
        context_window: int | None = None,
        read_timeout: float = 600.0,
        connect_timeout: float = 10.0,
        tool_choice: str | dict[str, Any] | None = None,
        extra_body: dict[str, Any] | None = None,
        speed_store: Path | str | None = None,
    ) -> None:
        self.provider = provider
        self.model = model
        self.name = f"{provider.kind}:{model}"
        self.base_url = (base_url or self._default_base_url()).rstrip("/")
        self.api_key = api_key or os.environ.get("KCODE_API_KEY") or (
            os.environ.get(provider.key_variable) if provider.key_variable else None
        )
        if not self.api_key and (provider.needs_key or self._is_openai_cloud()):
            raise UsageError(
                f"{self.name} needs an API key: set {provider.key_variable} (or KCODE_API_KEY)"
            )
        self.session_id = session_id
        self.tool_choice = tool_choice
        self.extra_body = dict(extra_body or {})  # e.g. temperature, max_tokens, seed
        self._configured_window = context_window
        self._window: int | None = None
        self._tokenize_ok = provider.kind == "llama-server"  # only llama-server has /tokenize
        self._token_counts: dict[str, int] = {}
        self._steps = 0
        self._speeds = SpeedStore(Path(speed_store)) if speed_store else None
        self._speed_key = speed_key(f"{self.name}@{self.base_url}", {})
        self._speed: PrefillSpeed | None = None
        self._recorded_at = float("-inf")  # when a speed sample last went to the store
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        timeout = httpx.Timeout(read_timeout, connect=connect_timeout, write=60.0, pool=10.0)
        self._client = httpx.Client(headers=headers, timeout=timeout, verify=_tls_context())

    def _default_base_url(self) -> str:
        if self.provider.kind == "openai":
            return os.environ.get("OPENAI_BASE_URL") or self.provider.base_url
        return self.provider.base_url

    def _is_openai_cloud(self) -> bool:
        return urlparse(self.base_url).hostname == "api.openai.com"

    @property
    def _root(self) -> str:
        """The server root; llama-server's /props and /tokenize live beside /v1."""
        return self.base_url.removesuffix("/v1")

    # --- ChatModel --------------------------------------------------------------------

    @property
    def context_window(self) -> int:
        if self._window is None:
            self._window = self._configured_window or self._preset_window() or self._server_window()
            self._window = self._window or DEFAULT_CONTEXT_WINDOW
        return self._window

    def count_tokens(self, text: str) -> int:
        if not self._tokenize_ok or len(text) < 64:
            return estimate_tokens(text)
        if text in self._token_counts:
            return self._token_counts[text]
        try:
            response = self._client.post(f"{self._root}/tokenize", json={"content": text}, timeout=10.0)
            response.raise_for_status()
            count = len(response.json()["tokens"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            self._tokenize_ok = False  # don't pay a failing round trip on every call
            return estimate_tokens(text)
        if len(self._token_counts) > 256:
            self._token_counts.clear()
        self._token_counts[text] = count
        return count

    def state(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        self._client.close()

    def stream(
        self,
        messages: list[Message],
        tools: list[ToolSpec],
        *,
        cancel: CancelToken | None = None,
    ) -> Iterator[StreamChunk]:
        self._steps += 1
        body = self._request_body(messages, tools)
        streamed = False
        started, first_delta = time.perf_counter(), None
        try:
            with self._client.stream("POST", f"{self.base_url}/chat/completions", json=body) as response:
                self._check_status(response)
                accumulator = StepAccumulator()
                for reasoning, text in self._events(response, accumulator, cancel):
                    if (reasoning or text or accumulator.calls) and first_delta is None:
                        first_delta = time.perf_counter()
                    if reasoning:
                        streamed = True
                        yield ReasoningChunk(reasoning)
                    if text:
                        streamed = True
                        yield TextChunk(text)
                self._note_prefill(accumulator, first_delta - started if first_delta else None)
                end = _complete_calls(accumulator.finish(step_id=str(self._steps)), tools, self._steps)
                # Estimate what the server did not count (some send no usage at all;
                # llama-cpp-python's server reports 0 completion tokens when streaming).
                if not end.usage.input_tokens:
                    end.usage.input_tokens = estimate_tokens(json.dumps(body["messages"]))
                if not end.usage.output_tokens:
                    output = "".join(accumulator.reasoning + accumulator.content)
                    output += "".join(call.raw for call in end.tool_calls)
                    end.usage.output_tokens = estimate_tokens(output)
                yield end
        except httpx.TimeoutException as error:
            raise ModelTimeout(f"{self.name}: no answer from {self.base_url} in time ({type(error).__name__})") from error
        except httpx.TransportError as error:
            if streamed:
                raise StreamTruncated(f"{self.name}: the connection broke mid-stream ({error})") from error
            raise ModelUnreachable(
                f"{self.name}: cannot connect to {self.base_url} ({type(error).__name__}: {error}); "
                "is the server running and the URL right?"
            ) from error

    # --- prefill speed ----------------------------------------------------------------

    def prefill_speed(self, *, measure: bool = False) -> PrefillSpeed | None:
        """The server's prompt-processing speed as seen from here: from its own ``timings``
        (llama-server) or the time to the first token over the prompt tokens it computed,
        averaged over steps and runs. A server is never calibrated unasked (``measure`` is
        ignored: a request may cost money); ``kcode models bench`` measures on demand."""
        if self._speed is None and self._speeds is not None:
            self._speed = self._speeds.get(self._speed_key)
        return self._speed

    def remember_prefill_speed(self, speed: PrefillSpeed) -> None:
        """Store ``speed`` as this backend's figure (e.g. the median of several calibrations)."""
        self._speed = speed
        if self._speeds is not None:
            self._speeds.put(self._speed_key, speed)

    def calibrate(self, n_tokens: int = 512) -> PrefillSpeed | None:
        """One request with a prompt of about ``n_tokens`` new tokens and a one-token answer."""
        from kcode.llm.prefill import calibration_text

        saved, self.extra_body = self.extra_body, {**self.extra_body, "max_tokens": 1}
        try:
            nonce = f"{time.time_ns()}"  # a prompt the server cannot have cached
            for _ in self.stream([{"role": "user", "content": nonce + "\n" + calibration_text(n_tokens)}], []):
                pass
        finally:
            self.extra_body = saved
        return self._speed

    def _note_prefill(self, accumulator: StepAccumulator, first_token_seconds: float | None) -> None:
        timings = accumulator.timings or {}
        prompt_n, prompt_ms = timings.get("prompt_n"), timings.get("prompt_ms")
        if isinstance(prompt_n, int | float) and isinstance(prompt_ms, int | float) and prompt_ms > 0:
            tokens, seconds, source = int(prompt_n), prompt_ms / 1000, "server"
        elif accumulator.usage is not None and first_token_seconds:
            tokens = accumulator.usage.input_tokens - accumulator.usage.cached_input_tokens
            seconds, source = first_token_seconds, "first-token"
        else:
            return
        if self._speeds is not None:
            now = time.monotonic()
            # the store is a file read and rewritten per sample: at most one every few seconds
            # (a swarm's sub-agents on a fast server take many steps a second)
            if now - self._recorded_at >= _RECORD_EVERY:
                self._speed = self._speeds.record(self._speed_key, tokens, seconds, source) or self._speed
                self._recorded_at = now
        elif tokens >= MIN_SAMPLE_TOKENS and seconds > 0:
            self._speed = PrefillSpeed(tokens / seconds, source, 1, time.time())

    # --- internals --------------------------------------------------------------------

    def _request_body(self, messages: list[Message], tools: list[ToolSpec]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            # OpenAI's own API rejects unknown message fields; every other provider here
            # accepts reasoning_content, and Kimi requires it on every assistant turn.
            "messages": to_api_messages(messages, send_reasoning=not self._is_openai_cloud()),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if tools:
            body["tools"] = [tool.to_openai() for tool in tools]
            if self.tool_choice is not None:
                body["tool_choice"] = self.tool_choice
        if self.session_id:
            body["prompt_cache_key"] = self.session_id
        return {**body, **self.extra_body}

    def _check_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        message = _server_message(response)
        where = f"{self.name} at {self.base_url}"
        if status == 429:
            raise RateLimited(f"{where}: rate limited (HTTP 429): {message}", retry_after=_retry_after(response))
        if status >= 500:
            raise ServerError(f"{where}: server error (HTTP {status}): {message}", retry_after=_retry_after(response))
        hint = {
            401: f" (check {self.provider.key_variable or 'KCODE_API_KEY'})",
            403: f" (check {self.provider.key_variable or 'KCODE_API_KEY'} and the account's access)",
            404: " (check the model name and --base-url)",
            408: "",
        }.get(status, "")
        if status == 408:
            raise ModelTimeout(f"{where}: request timeout (HTTP 408): {message}")
        raise ModelRequestError(f"{where} rejected the request (HTTP {status}){hint}: {message}")

    def _events(
        self, response: httpx.Response, accumulator: StepAccumulator, cancel: CancelToken | None
    ) -> Iterator[tuple[str, str]]:
        done = False
        for data in iter_sse_data(response.iter_lines()):
            if cancel is not None and cancel.cancelled:
                raise Interrupted("interrupted by the user")
            if data.strip() == "[DONE]":
                done = True
                break
            try:
                chunk = json.loads(data)
            except json.JSONDecodeError as error:
                raise StreamTruncated(f"{self.name}: unreadable stream event {data[:200]!r}") from error
            if isinstance(chunk, dict) and "error" in chunk:  # an error reported mid-stream
                detail = chunk["error"]
                detail = detail.get("message", detail) if isinstance(detail, dict) else detail
                raise ServerError(f"{self.name}: the server reported an error mid-stream: {detail}")
            yield accumulator.feed(chunk)
        if not done and accumulator.finish_reason is None:
            raise StreamTruncated(f"{self.name}: the stream ended before the response was complete")

    def _preset_window(self) -> int | None:
        for prefix, window in self.provider.known_windows:
            if self.model.startswith(prefix):
                return window
        return None

    def _server_window(self) -> int | None:
        """Ask the server: llama-server's /props (the loaded n_ctx), then /models fields
        (vLLM ``max_model_len``, OpenRouter ``context_length``, llama-server ``meta``)."""
        try:
            if self.provider.kind in ("llama-server", "openai"):
                props = self._client.get(f"{self._root}/props", timeout=5.0)
                if props.status_code == 200:
                    n_ctx = (props.json().get("default_generation_settings") or {}).get("n_ctx")
                    if isinstance(n_ctx, int) and n_ctx > 0:
                        return n_ctx
            response = self._client.get(f"{self.base_url}/models", timeout=5.0)
            if response.status_code != 200:
                return None
            entries = response.json().get("data") or []
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        matching = [e for e in entries if isinstance(e, dict) and e.get("id") == self.model]
        for entry in matching or entries[:1]:
            meta = entry.get("meta") or {}
            for value in (entry.get("max_model_len"), entry.get("context_length"), meta.get("n_ctx"), meta.get("n_ctx_train")):
                if isinstance(value, int) and value > 0:
                    return value
        return None
