"""Parallel slots for a local model's sub-agents: with ``parallel_slots`` and a llama-server
binary, the kept-alive server is llama.cpp's llama-server, started with the slots on loopback
with its own API key, and requests run at once; without the binary, the sub-agents queue on
kcode's own server, and the run header says which. llama-server is not on the test machines:
a stand-in binary (tests/llm/data/fake_llama_server.py) takes its flags and serves its API;
the supervisor, the records and the client are kcode's own, run for real."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from kcode.config import config_with
from kcode.agent.subagents import serving_line
from kcode.llm import StepEnd
from kcode.llm.serve import ServedModel, running_servers, stop_servers
from kcode.llm.serve._records import process_alive
from tests.llm.test_serve import TOOLS, conversation, model, wait_until

FAKE = Path(__file__).parent / "data" / "fake_llama_server.py"

pytest.importorskip("llama_cpp")


@pytest.fixture
def tiny(tiny_llama_moe: Path, tmp_path: Path) -> Path:
    return Path(shutil.copy(tiny_llama_moe, tmp_path / "tiny.gguf"))


@pytest.fixture
def fake_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "fake-llama-server.json"
    monkeypatch.setenv("FAKE_LLAMA_SERVER_LOG", str(log))
    return log


def test_parallel_slots_run_llama_server_and_serve_requests_at_once(tiny, fake_log):
    chat = model(tiny, parallel_slots=4, llama_server=str(FAKE), ctx=1024)
    assert chat.parallel_slots == 4 and chat.parallel_requests
    assert "with 4 parallel slots (started now)" in chat.serving
    assert serving_line(config_with(), chat) == f"4 parallel slots on llama-server:{tiny.name}"
    (record,) = running_servers()
    argv = json.loads(fake_log.read_text())["argv"]
    flags = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("-")}
    assert flags["-m"] == str(tiny) and flags["--host"] == "127.0.0.1" and flags["--parallel"] == "4"
    assert flags["--ctx-size"] == "4096" and flags["--api-key"] == record.token and "--jinja" in argv
    assert chat.context_window == 1024

    others = [model(tiny, parallel_slots=4, llama_server=str(FAKE), ctx=1024) for _ in range(3)]
    assert all("already loaded" in other.serving for other in others)
    ends: list[StepEnd] = []
    threads = [threading.Thread(target=lambda c=c: ends.append(list(c.stream(conversation("Fix add_3."), TOOLS))[-1]))
               for c in [chat, *others]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [end.content for end in ends] == ["ok done"] * 4
    # at once, not one by one: the stand-in saw four requests in flight together (a wall-time
    # bound failed on a loaded CI machine, and says less than this does)
    assert json.loads(fake_log.read_text())["peak"] == 4

    (stopped,) = stop_servers(tiny.name)
    assert not process_alive(stopped.pid) and running_servers() == []


def test_an_idle_llama_server_is_stopped_after_keep_alive(tiny, fake_log):
    chat = model(tiny, keep_alive="1s", parallel_slots=2, llama_server=str(FAKE))
    list(chat.stream(conversation("Fix add_3."), TOOLS))
    (record,) = running_servers()
    assert wait_until(lambda: not process_alive(record.pid), 15)
    assert running_servers() == []


def test_without_llama_server_sub_agents_queue_on_kcodes_server(tiny, monkeypatch):
    monkeypatch.setenv("PATH", str(tiny.parent))  # no llama-server anywhere on it
    notes: list[str] = []
    chat = model(tiny, notes, parallel_slots=4)
    assert isinstance(chat, ServedModel)
    assert any("parallel_slots = 4 needs llama.cpp's llama-server" in note for note in notes)
    assert serving_line(config_with(subagents="on"), chat) == "queued on the kept-alive model server (one conversation at a time)"
    local = model(tiny, keep_alive="0")
    assert serving_line(config_with(subagents="on"), local) == "queued on the in-process model"
    assert serving_line(config_with(), local).startswith("off (the model serves one conversation at a time")
    local.close()
