"""The OpenAI-compatible backend against a scripted HTTP server on loopback: the normal
stream shape, then every failure the backend must explain, each after exactly one request
(retries are the agent loop's: tests/agent/test_retries.py)."""

from __future__ import annotations

import email.utils
import http.server
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

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
from kcode.llm.base import ReasoningChunk, StepEnd, TextChunk, ToolSpec
from kcode.llm.openai_compat import PROVIDERS, OpenAICompatModel
from kcode.llm.registry import ModelOptions, create_model

READ_FILE = ToolSpec("read_file", "Read a file.", {"type": "object", "properties": {"path": {"type": "string"}}})


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": "c1", "object": "chat.completion.chunk", "choices": choices, **extra}


HELLO = [chunk({"role": "assistant", "content": "Hel"}), chunk({"content": "lo"}, "stop")]


@dataclass
class Reply:
    """One scripted answer: a status with a body, or an SSE stream (optionally cut short)."""

    status: int = 200
    events: list[Any] = field(default_factory=list)
    done: bool = True
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # before the status line (timeouts)


class Server:
    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[dict[str, Any]] = []
        self.default = Reply(events=HELLO)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.handle(self, None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                server.handle(self, json.loads(self.rfile.read(length) or b"null"))

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def handle(self, handler: http.server.BaseHTTPRequestHandler, body: Any) -> None:
        self.requests.append({"path": handler.path, "headers": dict(handler.headers), "json": body})
        reply = self.replies.pop(0) if self.replies else self.default
        time.sleep(reply.delay)
        try:
            handler.send_response(reply.status)
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            if reply.status != 200 or reply.body:
                data = reply.body.encode()
                handler.send_header("Content-Type", "application/json")
                handler.send_header("Content-Length", str(len(data)))
                handler.end_headers()
                handler.wfile.write(data)
                return
            handler.send_header("Content-Type", "text/event-stream")
            handler.end_headers()
            for event in reply.events:
                text = event if isinstance(event, str) else json.dumps(event)
                handler.wfile.write(f"data: {text}\n\n".encode())
                handler.wfile.flush()
            if reply.done:
                handler.wfile.write(b"data: [DONE]\n\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout tests)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def make(server: Server, kind: str = "llama-server", **kwargs: Any) -> OpenAICompatModel:
    return OpenAICompatModel(PROVIDERS[kind], "test-model", base_url=server.url, **kwargs)


def run(model: OpenAICompatModel, messages: list[dict[str, Any]] | None = None, **kwargs: Any) -> list[Any]:
    return list(model.stream(messages or [{"role": "user", "content": "hi"}], [READ_FILE], **kwargs))


# --- the normal path -------------------------------------------------------------------


def test_stream_yields_reasoning_text_tool_calls_and_usage(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KCODE_API_KEY", "sk-test")
    server.default = Reply(
        events=[
            chunk({"role": "assistant", "reasoning_content": "Look at "}),
            chunk({"reasoning_content": "the file."}),
            chunk({"content": "Reading."}),
            # two calls, their argument deltas interleaved, told apart by index
            chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                                   "function": {"name": "read_file", "arguments": '{"pa'}}]}),
            chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                                   "function": {"name": "read_file", "arguments": ""}}]}),
            chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"path": "b.py"}'}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'th": "a.py"}'}}]}),
            chunk({}, "tool_calls"),
            chunk(None, usage={"prompt_tokens": 120, "completion_tokens": 30,
                               "prompt_tokens_details": {"cached_tokens": 100}}),
        ]
    )  # fmt: skip
    model = make(server, session_id="sess-42")
    chunks = run(model)
    assert [c.text for c in chunks if isinstance(c, ReasoningChunk)] == ["Look at ", "the file."]
    assert [c.text for c in chunks if isinstance(c, TextChunk)] == ["Reading."]
    end = chunks[-1]
    assert isinstance(end, StepEnd) and sum(isinstance(c, StepEnd) for c in chunks) == 1
    assert end.content == "Reading." and end.reasoning == "Look at the file."
    assert [(c.id, c.name, c.arguments, c.error) for c in end.tool_calls] == [
        ("call_a", "read_file", {"path": "a.py"}, None),
        ("call_b", "read_file", {"path": "b.py"}, None),
    ]
    assert end.finish_reason == "tool_calls"
    assert end.usage.as_dict() == {"input_tokens": 120, "cached_input_tokens": 100, "output_tokens": 30}
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    body = request["json"]
    assert body["model"] == "test-model" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["prompt_cache_key"] == "sess-42"
    assert body["tools"] == [READ_FILE.to_openai()]


def test_history_is_sent_in_the_api_shape_with_reasoning_on_every_assistant_turn(server: Server) -> None:
    history = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "task"},
        {"role": "assistant", "content": "", "reasoning": "",
         "tool_calls": [{"id": "call_1", "name": "read_file", "arguments": {"path": "x.py"}}]},
        {"role": "tool", "tool_call_id": "call_1", "name": "read_file", "content": "print(1)"},
        {"role": "assistant", "content": "done", "reasoning": "it prints 1"},
        {"role": "user", "content": "thanks"},
    ]  # fmt: skip
    run(make(server, kind="moonshot", api_key="k"), history)
    assert server.requests[0]["json"]["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "task"},
        {"role": "assistant", "content": "", "reasoning_content": "",
         "tool_calls": [{"id": "call_1", "type": "function",
                         "function": {"name": "read_file", "arguments": '{"path": "x.py"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "print(1)"},
        {"role": "assistant", "content": "done", "reasoning_content": "it prints 1"},
        {"role": "user", "content": "thanks"},
    ]  # fmt: skip


def test_invalid_tool_call_json_becomes_an_error_not_a_crash(server: Server) -> None:
    server.default = Reply(
        events=[
            chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "read_file", "arguments": '{"path": '}}]}),
            chunk({"tool_calls": [{"index": 1, "id": "d", "function": {"name": "", "arguments": "{}"}}]}),
            chunk({}, "tool_calls"),
        ]
    )
    end = run(make(server))[-1]
    broken, nameless = end.tool_calls
    assert broken.arguments == {} and broken.raw == '{"path": ' and "not valid JSON" in (broken.error or "")
    assert nameless.error == "the tool call has no function name"


def test_servers_that_repeat_the_name_in_every_delta(server: Server) -> None:
    # llama-cpp-python's server repeats id and name in each tool-call delta
    deltas = ['{"path"', ': "m', 'ain.py"}']
    server.default = Reply(
        events=[chunk({"tool_calls": [{"index": 0, "id": "call_x", "function": {"name": "read_file", "arguments": part}}]})
                for part in deltas] + [chunk({}, "tool_calls")]
    )  # fmt: skip
    (call,) = run(make(server))[-1].tool_calls
    assert (call.id, call.name, call.arguments, call.error) == ("call_x", "read_file", {"path": "main.py"}, None)


def test_structured_calls_are_checked_against_the_schema(server: Server) -> None:
    server.default = Reply(
        events=[
            chunk({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "read_file", "arguments": '{"path": 3}'}}]}),
            chunk({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "rm_rf", "arguments": "{}"}}]}),
            chunk({}, "tool_calls"),
        ]
    )
    wrong_type, unknown = run(make(server))[-1].tool_calls
    assert "do not match its schema" in (wrong_type.error or "")
    assert "unknown tool 'rm_rf'" in (unknown.error or "")


def test_tool_calls_written_as_text_are_parsed(server: Server) -> None:
    # a server without a tool-call parser passes the model's Hermes/Qwen markup through
    text = 'Let me look.\n<tool_call>\n{"name": "read_file", "arguments": {"path": "a.py"}}\n</tool_call>'
    server.default = Reply(events=[chunk({"content": text[:20]}), chunk({"content": text[20:]}, "stop")])
    end = run(make(server))[-1]
    assert [(c.name, c.arguments, c.error) for c in end.tool_calls] == [("read_file", {"path": "a.py"}, None)]
    assert end.content == "Let me look." and end.finish_reason == "tool_calls"


def test_usage_is_estimated_when_the_server_sends_none(server: Server) -> None:
    end = run(make(server))[-1]
    assert end.content == "Hello" and end.usage.input_tokens > 0 and end.usage.output_tokens > 0


# --- transient failures: one request, a typed error the loop retries ------------------


def test_429_is_rate_limited_with_the_servers_retry_after(server: Server) -> None:
    server.default = Reply(429, body='{"error": {"message": "quota"}}', headers={"Retry-After": "0.05"})
    with pytest.raises(RateLimited, match="HTTP 429.*quota") as caught:
        run(make(server))
    assert caught.value.retry_after == pytest.approx(0.05)
    assert len(server.requests) == 1


def test_a_retry_after_date_becomes_seconds(server: Server) -> None:
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    server.default = Reply(429, body="{}", headers={"Retry-After": when})
    with pytest.raises(RateLimited) as caught:
        run(make(server))
    assert 100 < caught.value.retry_after <= 120 and len(server.requests) == 1


def test_5xx_is_a_server_error_with_the_servers_message(server: Server) -> None:
    server.default = Reply(502, body='{"error": {"message": "upstream died"}}')
    with pytest.raises(ServerError, match=r"HTTP 502\): upstream died") as caught:
        run(make(server))
    assert caught.value.retry_after is None and len(server.requests) == 1
    server.default = Reply(503, body='{"detail": "loading model"}', headers={"Retry-After": "2"})
    with pytest.raises(ServerError, match=r"HTTP 503\): loading model") as caught:
        run(make(server))
    assert caught.value.retry_after == 2 and len(server.requests) == 2


def test_read_timeout_is_a_model_timeout(server: Server) -> None:
    server.default = Reply(events=HELLO, delay=1.0)
    with pytest.raises(ModelTimeout, match="no answer"):
        run(make(server, read_timeout=0.3))
    assert len(server.requests) == 1


def test_connection_refused_is_unreachable_and_explained() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model = OpenAICompatModel(PROVIDERS["vllm"], "m", base_url=f"http://127.0.0.1:{port}/v1")
    with pytest.raises(ModelUnreachable, match=r"cannot connect to http://127.0.0.1:\d+/v1 .*is the server running"):
        run(model)


def test_a_stream_cut_before_any_output_is_truncated(server: Server) -> None:
    server.default = Reply(events=[chunk({"role": "assistant"})], done=False)
    with pytest.raises(StreamTruncated, match="ended before the response was complete"):
        run(make(server))
    assert len(server.requests) == 1


def test_a_stream_cut_after_output_is_truncated_after_the_output(server: Server) -> None:
    server.default = Reply(events=[chunk({"content": "partial ans"})], done=False)
    chunks: list[Any] = []
    with pytest.raises(StreamTruncated, match="ended before the response was complete"):
        for item in make(server).stream([{"role": "user", "content": "hi"}], []):
            chunks.append(item)
    assert chunks == [TextChunk("partial ans")] and len(server.requests) == 1


def test_finish_reason_without_done_is_complete(server: Server) -> None:
    server.default = Reply(events=HELLO, done=False)
    assert run(make(server))[-1].content == "Hello"


def test_an_error_event_mid_stream_is_a_server_error(server: Server) -> None:
    server.default = Reply(events=[chunk({"content": "x"}), {"error": {"message": "CUDA out of memory"}}])
    with pytest.raises(ServerError, match="mid-stream: CUDA out of memory"):
        run(make(server))


def test_cancel_mid_stream_stops_at_once(server: Server) -> None:
    server.default = Reply(events=[chunk({"content": "a"}), chunk({"content": "b"}, "stop")])
    cancel = CancelToken()
    stream = make(server).stream([{"role": "user", "content": "hi"}], [], cancel=cancel)
    assert next(stream) == TextChunk("a")
    cancel.cancel()
    with pytest.raises(Interrupted):
        next(stream)


# --- errors that are not retried -------------------------------------------------------


def test_400_is_explained_with_the_servers_message_and_not_retried(server: Server) -> None:
    message = "thinking is enabled but reasoning_content is missing in assistant tool call message at index 2"
    server.default = Reply(400, body=json.dumps({"error": {"message": message, "type": "invalid_request_error"}}))
    with pytest.raises(ModelRequestError, match=r"rejected the request \(HTTP 400\): thinking is enabled"):
        run(make(server))
    assert len(server.requests) == 1


def test_401_names_the_key_variable(server: Server) -> None:
    server.default = Reply(401, body='{"error": {"message": "Invalid Authentication"}}')
    with pytest.raises(ModelRequestError, match=r"HTTP 401\) \(check MOONSHOT_API_KEY\): Invalid Authentication"):
        run(make(server, kind="moonshot", api_key="bad"))


# --- context window, token counting, specs ---------------------------------------------


def test_context_window_from_llama_server_props(server: Server) -> None:
    server.default = Reply(body=json.dumps({"default_generation_settings": {"n_ctx": 8192}}))
    assert make(server).context_window == 8192
    assert server.requests[0]["path"] == "/props"


def test_context_window_from_models_listing(server: Server) -> None:
    server.default = Reply(body=json.dumps({"data": [{"id": "other", "max_model_len": 4096},
                                                     {"id": "test-model", "max_model_len": 65536}]}))  # fmt: skip
    assert make(server, kind="vllm").context_window == 65536
    assert [r["path"] for r in server.requests] == ["/v1/models"]


def test_context_window_from_preset_or_configuration(server: Server) -> None:
    kimi = OpenAICompatModel(PROVIDERS["moonshot"], "kimi-k2.6", base_url=server.url, api_key="k")
    assert kimi.context_window == 262_144
    assert make(server, context_window=1000).context_window == 1000
    assert server.requests == []


def test_count_tokens_uses_llama_server_tokenize(server: Server) -> None:
    server.default = Reply(body=json.dumps({"tokens": list(range(7))}))
    model = make(server)
    text = "def main():\n    print('hello world')\n" * 3
    assert model.count_tokens(text) == 7
    assert model.count_tokens(text) == 7  # cached: one request
    assert [r["path"] for r in server.requests] == ["/tokenize"]
    server.default = Reply(404, body="{}")
    assert model.count_tokens(text + "x") == (len(text) + 1 + 3) // 4  # falls back to the estimate


def test_specs_resolve_to_presets(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="set MOONSHOT_API_KEY"):
        create_model("moonshot:kimi-k2.6")
    monkeypatch.setenv("MOONSHOT_API_KEY", "mk")
    kimi = create_model("moonshot:kimi-k2.6", ModelOptions(session_id="s"))
    assert isinstance(kimi, OpenAICompatModel)
    assert (kimi.base_url, kimi.api_key, kimi.session_id) == ("https://api.moonshot.ai/v1", "mk", "s")
    monkeypatch.setenv("OPENROUTER_API_KEY", "ok")
    router = create_model("openrouter:moonshotai/kimi-k2")
    assert (router.base_url, router.model) == ("https://openrouter.ai/api/v1", "moonshotai/kimi-k2")
    assert create_model("sglang:qwen").base_url == "http://127.0.0.1:30000/v1"
    local = create_model("openai:local", ModelOptions(base_url="http://127.0.0.1:9/v1/"))
    assert local.base_url == "http://127.0.0.1:9/v1" and local.api_key is None
    with pytest.raises(UsageError, match="OPENAI_API_KEY"):
        create_model("openai:gpt-5")
    with pytest.raises(UsageError, match="unknown model 'nonsense:x'"):
        create_model("nonsense:x")
