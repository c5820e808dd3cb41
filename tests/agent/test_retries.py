"""The one retry layer: the agent loop retries a transient model failure, the HTTP backend
never does, so a failing server sees exactly ``RetryPolicy.attempts`` requests per step.

A real HTTP server on loopback answers; the runs go through the runner the CLI uses, or
through an ``Agent`` built here when a test needs its own :class:`RetryPolicy`."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kcode.agent.loop import Agent, RetryPolicy
from kcode.agent.runner import run_task
from kcode.config import Config
from kcode.events import ErrorEvent, EventBus
from kcode.llm.openai_compat import PROVIDERS, OpenAICompatModel
from kcode.sandbox import LocalSandbox
from kcode.tools import default_tools
from kcode.tools.base import SessionState, ToolContext

from tests.llm.test_openai_faults import Reply, Server, chunk

TASK = "Explain the calc package"  # a question: a finish without changes is accepted at once
FINISH = Reply(
    events=[
        chunk({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
               "function": {"name": "finish", "arguments": '{"summary": "add returns a - b"}'}}]}),
        chunk({}, "tool_calls"),
    ]
)  # fmt: skip
# Retry-After: 0 keeps the default policy's backoff out of the tests that run the default policy.
UNAVAILABLE = Reply(503, body='{"error": {"message": "overloaded"}}', headers={"Retry-After": "0"})


@pytest.fixture
def server() -> Iterator[Server]:
    instance = Server()
    yield instance
    instance.close()


def chat_requests(server: Server) -> int:
    assert all(request["path"] == "/v1/chat/completions" for request in server.requests), server.requests
    return len(server.requests)


def run_through_runner(server: Server, repo: Path) -> tuple[object, list]:
    events: list = []
    # a configured window: the server is not asked for one, so every request is a step's
    config = Config(model="vllm:test-model", base_url=server.url, context_window=8192)
    outcome = run_task(TASK, config, repo=repo, subscribers=[events.append])
    return outcome, events


def test_a_server_that_always_answers_503_gets_exactly_six_requests(server: Server, calc_repo: Path) -> None:
    server.default = UNAVAILABLE
    outcome, events = run_through_runner(server, calc_repo)
    assert chat_requests(server) == 6  # RetryPolicy().attempts, not 6 x the backend's own retries
    assert outcome.result.status == "error" and outcome.result.exit_code == 1
    assert "giving up after 6 attempts" in outcome.result.summary
    assert "server error (HTTP 503): overloaded" in outcome.result.summary
    retries = [event for event in events if isinstance(event, ErrorEvent) and event.kind == "model_retry"]
    assert [event.message.split("(attempt ")[1][:3] for event in retries] == ["1/6", "2/6", "3/6", "4/6", "5/6"]


def test_two_503s_then_an_answer_take_exactly_three_requests(server: Server, calc_repo: Path) -> None:
    server.replies = [UNAVAILABLE, UNAVAILABLE]
    server.default = FINISH
    outcome, events = run_through_runner(server, calc_repo)
    assert chat_requests(server) == 3
    assert outcome.result.status == "finished" and outcome.result.summary == "add returns a - b"
    assert outcome.result.steps == 1
    assert sum(isinstance(event, ErrorEvent) and event.kind == "model_retry" for event in events) == 2


def agent(server: Server, root: Path, retry: RetryPolicy, events: list) -> Agent:
    """An Agent without git or a sandbox: the model never gets to call a tool that runs one."""
    bus = EventBus()
    bus.subscribe(events.append)
    model = OpenAICompatModel(PROVIDERS["vllm"], "test-model", base_url=server.url, context_window=8192)
    ctx = ToolContext(root=root, sandbox=LocalSandbox(root), state=SessionState())
    return Agent(model, default_tools(), ctx, bus, None, [{"role": "user", "content": TASK}], retry=retry)


def test_the_policy_sets_the_count_and_the_backoff_without_retry_after(server: Server, tmp_path: Path) -> None:
    server.default = Reply(502, body="{}")  # no Retry-After: the policy's own backoff
    events: list = []
    started = time.monotonic()
    result = agent(server, tmp_path, RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.1), events).run()
    waited = time.monotonic() - started
    assert chat_requests(server) == 3
    assert result.status == "error" and "giving up after 3 attempts" in result.summary and "HTTP 502" in result.summary
    delays = [float(event.message.rsplit("retrying in ", 1)[1].rstrip("s)")) for event in events if isinstance(event, ErrorEvent) and event.kind == "model_retry"]
    assert len(delays) == 2
    assert 0.025 <= delays[0] <= 0.05 and 0.05 <= delays[1] <= 0.1  # base * 2^(n-1), jittered by 0.5-1
    assert waited >= sum(delays) - 0.01


def test_a_connection_refused_is_retried_then_explained(tmp_path: Path) -> None:
    server = Server()
    server.close()  # nothing listens on its port any more
    events: list = []
    result = agent(server, tmp_path, RetryPolicy(attempts=2, base_delay=0.01), events).run()
    assert result.status == "error" and "giving up after 2 attempts" in result.summary
    assert "cannot connect to" in result.summary and "is the server running" in result.summary


def test_cancel_during_backoff_stops_the_run_at_once(server: Server, tmp_path: Path) -> None:
    server.default = Reply(500, body="{}")
    events: list = []
    run = agent(server, tmp_path, RetryPolicy(base_delay=30.0, max_delay=30.0), events)
    threading.Timer(0.3, run.ctx.cancel.cancel).start()
    started = time.monotonic()
    result = run.run()
    assert result.status == "interrupted" and time.monotonic() - started < 5
    assert chat_requests(server) == 1
