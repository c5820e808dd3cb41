"""An HTTP backend's prefill speed: from llama-server's ``timings``, else from the time to the
first token over the prompt tokens the server computed; stored across runs."""

from __future__ import annotations

from kcode.llm.openai_compat import PROVIDERS, OpenAICompatModel
from kcode.llm.prefill import SpeedStore

from tests.llm.test_openai_faults import Reply, chunk  # the server fixture: tests/llm/conftest.py

USAGE = {"prompt_tokens": 400, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 0}}


def make(server, store):
    return OpenAICompatModel(PROVIDERS["llama-server"], "m", base_url=server.url, speed_store=store)


def test_llama_server_timings_give_the_speed_and_it_is_kept(server, tmp_path):
    store = tmp_path / "speed.json"
    server.default = Reply(events=[chunk({"role": "assistant", "content": "hi"}),
                                   chunk({}, "stop", usage=USAGE, timings={"prompt_n": 512, "prompt_ms": 1000.0,
                                                                          "prompt_per_second": 512.0})])
    model = make(server, store)
    assert model.prefill_speed() is None
    list(model.stream([{"role": "user", "content": "hello"}], []))
    speed = model.prefill_speed()
    assert (speed.tokens_per_second, speed.source) == (512.0, "server")
    model.close()
    again = make(server, store)
    assert again.prefill_speed() == speed  # the next run knows it before its first request
    assert len(SpeedStore(store).items()) == 1
    again.close()


def test_without_timings_the_time_to_the_first_token_counts(server, tmp_path):
    server.default = Reply(events=[chunk({"role": "assistant", "content": "hi"}), chunk({}, "stop", usage=USAGE)],
                           delay=0.5)
    model = make(server, tmp_path / "speed.json")
    list(model.stream([{"role": "user", "content": "hello"}], []))
    speed = model.prefill_speed()
    assert speed.source == "first-token" and 100 < speed.tokens_per_second <= 800
    model.close()


def test_calibrate_sends_one_short_answer_request(server, tmp_path):
    server.default = Reply(events=[chunk({"role": "assistant", "content": "x"}),
                                   chunk({}, "stop", usage=USAGE, timings={"prompt_n": 600, "prompt_ms": 2000.0})])
    model = make(server, tmp_path / "speed.json")
    speed = model.calibrate(512)
    body = server.requests[-1]["json"]
    assert body["max_tokens"] == 1 and len(body["messages"][0]["content"]) > 1500
    assert speed.tokens_per_second == 300.0 and "max_tokens" not in model.extra_body
    model.close()
