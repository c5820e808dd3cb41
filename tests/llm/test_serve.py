"""Kept-alive model servers, with real server processes and real HTTP on loopback, on the
tiny random-weight model: the next model connects to the loaded one and its context still
holds the last prompt (llama.cpp's own counters), the same greedy output as in process, the
idle stop, the stop when the model file changes, a killed server replaced, settings keyed,
two clients queued, the bearer token, `kcode models ps|stop`, and no server left behind
(tests/conftest.py stops this test's servers and checks the suite left none)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from kcode.cancel import CancelToken
from kcode.config import LlamaCppOptions
from kcode.errors import Interrupted
from kcode.llm import ModelOptions, StepEnd, TextChunk, ToolSpec, create_model
from kcode.llm.llamacpp import LlamaCppModel
from kcode.llm.serve import ServedModel, running_servers, stop_servers
from kcode.llm.serve._records import process_alive

pytest.importorskip("llama_cpp")

TOOLS = [ToolSpec("read_file", "Read a file", {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]})]
SYSTEM = {"role": "system", "content": "You are kcode. Work in the repository, test, then finish. " * 4}
REPO = {"role": "system", "content": "# Repository `calc`\n" + "".join(f"calc/m{n}.py: def add_{n}(a, b)\n" for n in range(10))}


def conversation(task: str) -> list[dict]:
    return [SYSTEM, REPO, {"role": "user", "content": task}]


def model(path: Path, notes: list[str] | None = None, keep_alive: str = "60s", output: int = 4, **options):
    llamacpp = LlamaCppOptions(ctx=options.pop("ctx", 1024), keep_alive=keep_alive, **options)
    return create_model(str(path), ModelOptions(temperature=0.0, seed=1, max_output_tokens=output, llamacpp=llamacpp,
                                                on_notice=(notes.append if notes is not None else None), serve=True))


def step(chat, messages: list[dict]) -> StepEnd:
    end = list(chat.stream(messages, TOOLS))[-1]
    assert isinstance(end, StepEnd)
    return end


def wait_until(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture
def tiny(tiny_llama_moe: Path, tmp_path: Path) -> Path:
    """A copy of the tiny model this test may change."""
    return Path(shutil.copy(tiny_llama_moe, tmp_path / "tiny.gguf"))


def test_the_next_model_uses_the_loaded_server_and_its_context(tiny):
    first = model(tiny)
    assert isinstance(first, ServedModel) and first.started_server
    assert first.serving.startswith(f"kept-alive model server pid {first._record.pid} on 127.0.0.1:")
    answer = step(first, conversation("Fix add_3."))
    assert first.last_step.started_at < first.last_step.first_token_at <= time.perf_counter()
    assert first.last_step.evaluated_tokens == first.last_step.prompt_tokens  # a cold context: all of it
    first.close()  # the run ends; the server stays
    (record,) = running_servers()
    assert process_alive(record.pid) and record.model == str(tiny)

    notes: list[str] = []
    again = model(tiny, notes)
    assert not again.started_server and again._record.pid == record.pid and notes == []
    assert "already loaded" in again.serving
    assert step(again, conversation("Fix add_3.")).content == answer.content
    assert again.last_step.evaluated_tokens == 1  # the context held it all (the last token again, for its logits)
    step(again, conversation("Now fix add_7 too, please."))
    timings = again.last_step
    assert timings.reused_tokens >= timings.head_tokens > 100  # the prompt head stayed in the context
    assert timings.restored_tokens == 0  # nothing read from the disk cache: it was in memory
    assert timings.evaluated_tokens == timings.prompt_tokens - timings.reused_tokens < 60  # only the new task


def test_the_same_greedy_answers_as_in_process(tiny):
    served = model(tiny, output=12)
    local = model(tiny, keep_alive="0", output=12)
    assert isinstance(local, LlamaCppModel)
    try:
        for task in ("Fix add_3.", "Explain add_5."):
            assert step(served, conversation(task)).content == step(local, conversation(task)).content
        assert served.count_tokens("def add(a, b):") == local.count_tokens("def add(a, b):")
        assert served.context_window == local.context_window
        assert served.prepare_prefix([SYSTEM], TOOLS).tokens == local.prepare_prefix([SYSTEM], TOOLS).tokens
    finally:
        local.close()


def test_an_idle_server_stops_after_keep_alive(tiny):
    chat = model(tiny, keep_alive="1s")
    step(chat, conversation("Fix add_3."))
    pid = chat._record.pid
    assert wait_until(lambda: not process_alive(pid), 15)
    assert running_servers() == []
    log = next((Path(os.environ["KCODE_HOME"]) / "cache" / "servers").glob("*.log")).read_text()
    assert "stopped: idle for" in log


def test_a_changed_model_file_stops_its_server_and_the_next_run_loads_the_new_one(tiny):
    chat = model(tiny)
    pid = chat._record.pid
    with tiny.open("ab") as handle:  # the file is replaced or grows: a different model
        handle.write(b"\0" * 64)
    assert wait_until(lambda: not process_alive(pid), 10)
    fresh = model(tiny)
    assert fresh.started_server and fresh._record.pid != pid
    step(fresh, conversation("Fix add_3."))


def test_a_killed_server_is_replaced_with_a_notice(tiny):
    notes: list[str] = []
    chat = model(tiny, notes)
    step(chat, conversation("Fix add_3."))
    pid = chat._record.pid
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not process_alive(pid))
    end = step(chat, conversation("Fix add_4."))  # the step is sent again to a new server
    assert isinstance(end, StepEnd) and chat._record.pid != pid
    assert any(f"lost the kept-alive model server pid {pid}" in note and "starting a new one" in note for note in notes)
    os.kill(chat._record.pid, signal.SIGKILL)  # and a new run finds its record stale
    assert wait_until(lambda: not process_alive(chat._record.pid))
    later: list[str] = []
    model(tiny, later)
    assert any("is gone or not answering; starting a new one" in note for note in later)


def test_other_settings_get_their_own_server_and_stop_stops_them(tiny):
    small, large = model(tiny, ctx=512), model(tiny, ctx=1024)
    grammar_off = model(tiny, ctx=512, constrain_tools=False)
    assert len({small._record.pid, large._record.pid, grammar_off._record.pid}) == 3
    assert model(tiny, ctx=512, keep_alive="2m")._record.pid == small._record.pid  # keep_alive is no setting of the model
    assert sorted(r.ctx for r in running_servers()) == [512, 512, 1024]
    stopped = stop_servers(tiny.name)
    assert len(stopped) == 3 and running_servers() == []
    assert all(not process_alive(r.pid) for r in stopped)


def test_two_runs_at_once_take_turns(tiny):
    first, second = model(tiny, output=8), model(tiny, output=8)
    assert first._record.pid == second._record.pid
    tasks = [f"Fix add_{n}." for n in range(4)]
    expected = {}
    for task in tasks:  # one by one: what each prompt is
        step(first, conversation(task))
        expected[task] = first.last_step.prompt_tokens
    got: dict[str, tuple[int, int]] = {}
    errors: list[BaseException] = []

    def run(chat, mine):
        try:
            for task in mine:
                end = step(chat, conversation(task))
                got[task] = (chat.last_step.prompt_tokens, end.usage.output_tokens)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(first, tasks[:2])), threading.Thread(target=run, args=(second, tasks[2:]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    # every step of both runs was served, each on its own conversation (the same prompt as alone)
    assert errors == [] and {task: tokens for task, (tokens, _) in got.items()} == expected
    assert all(0 < output <= 8 for _, output in got.values())


def test_an_interrupted_step_stops_and_the_server_serves_the_next(tiny):
    chat = model(tiny, output=400, tool_calls="auto")  # free text, which the loop below cuts
    cancel = CancelToken()
    with pytest.raises(Interrupted):
        for chunk in chat.stream(conversation("Write a long story."), TOOLS, cancel=cancel):
            if isinstance(chunk, TextChunk):
                cancel.cancel()
    assert chat._record.pid in [r.pid for r in running_servers()]
    assert chat.count_tokens("still here") > 0
    short = model(tiny, output=2)
    assert step(short, conversation("Fix add_3.")).usage.output_tokens <= 2


def test_the_server_listens_on_loopback_and_wants_its_token(tiny):
    chat = model(tiny)
    record = chat._record
    connection = http.client.HTTPConnection("127.0.0.1", record.port, timeout=5)
    connection.request("POST", "/call", body=json.dumps({"method": "info"}))
    response = connection.getresponse()
    assert response.status == 401
    connection.close()
    listening = Path("/proc/net/tcp").read_text().splitlines()[1:]
    local = {line.split()[1] for line in listening if line.split()[3] == "0A"}  # LISTEN
    assert f"0100007F:{record.port:04X}" in local  # 127.0.0.1 only
    assert (Path(os.environ["KCODE_HOME"]) / "cache" / "servers").stat().st_mode & 0o077 == 0


def test_keep_alive_zero_runs_in_process_and_a_server_that_cannot_start_falls_back(tiny, monkeypatch):
    assert isinstance(model(tiny, keep_alive="0"), LlamaCppModel)
    unserved = create_model(str(tiny), ModelOptions(llamacpp=LlamaCppOptions(ctx=512, keep_alive="5m")))
    assert isinstance(unserved, LlamaCppModel)  # create_model serves only when asked (the runner asks)
    unserved.close()
    from kcode.llm.serve import _client

    monkeypatch.setattr(_client, "START_TIMEOUT", 0.0)  # no time to load: as a server that never listens
    notes: list[str] = []
    chat = model(tiny, notes)
    assert isinstance(chat, LlamaCppModel)
    assert any("could not use a kept-alive model server" in n and "running the model in process" in n for n in notes)
    assert running_servers() == []


def test_models_ps_and_stop(tiny, kcode):
    chat = model(tiny)
    listed = kcode("models", "ps", cwd=tiny.parent)
    assert listed.returncode == 0 and tiny.name in listed.stdout and str(chat._record.pid) in listed.stdout
    assert "idle left" in listed.stdout
    stopped = kcode("models", "stop", tiny.name, cwd=tiny.parent)
    assert stopped.returncode == 0 and f"stopped {tiny.name} (pid {chat._record.pid})" in stopped.stderr
    assert not process_alive(chat._record.pid)
    assert "no model server is running" in kcode("models", "ps", cwd=tiny.parent).stderr
