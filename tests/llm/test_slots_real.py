"""Parallel slots for real (slow): llama.cpp's own llama-server (built by `kcode models
build-server`; .ci/run builds it and exports KCODE_TEST_LLAMA_SERVER) serving the real 0.5B
model. A `kcode run` on the model says in its header that sub-agents get parallel slots; then
a swarm of four explore sub-agents on that model (a scripted parent starts them) is served by
the one kept-alive llama-server, and its own /slots shows the four requests being processed
at the same time, in four slots."""

from __future__ import annotations

import json
import os
import re
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from kcode.llm import models
from kcode.llm.serve import running_servers
from kcode.llm.serve._build import built_llama_server
from kcode.session import SessionStore, read_event_dicts
from tests.agent.test_subagents import _swarm_turns
from tests.conftest import write_script
from tests.llm.test_serve import wait_until

# taken before tests/conftest.py points KCODE_HOME elsewhere (as tests/e2e/test_kept_alive_model.py)
_SMALL = Path(os.environ.get("KCODE_TEST_MODEL_0_5B") or str(models.model_path("qwen2.5-coder-0.5b")))
_SERVER = Path(os.environ.get("KCODE_TEST_LLAMA_SERVER") or str(built_llama_server()))
SLOTS = 4

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not _SMALL.is_file(), reason="the 0.5B GGUF is not here: kcode models pull qwen2.5-coder-0.5b"),
    pytest.mark.skipif(not _SERVER.is_file(), reason="no llama-server: kcode models build-server (or KCODE_TEST_LLAMA_SERVER)"),
]


def _slots(port: int, token: str) -> list[dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/slots", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


class SlotWatch:
    """Polls llama-server's /slots while a run goes: the most slots processing at once, and
    the distinct tasks seen in each slot."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token
        self.peak, self.busy_together, self.tasks = 0, [], {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(0.05):
            try:
                slots = _slots(self.port, self.token)
            except OSError:
                continue
            busy = [s for s in slots if s.get("is_processing")]
            for slot in busy:
                self.tasks.setdefault(slot["id"], set()).add(slot.get("id_task"))
            if len(busy) > self.peak:
                self.peak, self.busy_together = len(busy), sorted((s["id"], s.get("id_task")) for s in busy)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_a_swarm_on_the_real_model_is_served_by_parallel_slots_at_once(calc_repo, tmp_path, kcode):
    env = {"KCODE_PARALLEL_SLOTS": str(SLOTS), "KCODE_LLAMA_SERVER": str(_SERVER), "KCODE_KEEP_ALIVE": "5m"}
    flags = ["--max-output-tokens", "8", "--temperature", "0", "--ctx", "4096", "--pack-budget", "400"]
    first = kcode("run", "What does calc.add do?", "--model", str(_SMALL), "--max-steps", "1", *flags, cwd=calc_repo, env=env, timeout=600)
    assert first.returncode in (0, 3), first.stderr[-3000:]
    header = re.search(r"model llama-server \(kept alive by pid (\d+)\) on 127\.0\.0\.1:(\d+) with 4 parallel slots \(started now\)", first.stderr)
    assert header, first.stderr[:2000]
    assert f"sub-agents: {SLOTS} parallel slots on llama-server:{_SMALL.name}" in first.stderr, first.stderr[:2000]
    (record,) = running_servers()
    assert record.kind == "llama-server" and record.slots == SLOTS and str(record.pid) == header.group(1)
    assert [slot["n_ctx"] for slot in _slots(record.port, record.token)] == [4096] * SLOTS

    # four explore sub-agents on that model, one step each, started by a scripted parent
    items = ["add", "mul", "the tests", "the package"]
    turns = _swarm_turns(items, mode="explore", max_parallel=SLOTS, description="look")
    parent = write_script(tmp_path / "parent.json", [*turns, turns[-1]])  # finish once more, if verification asks
    watch = SlotWatch(record.port, record.token)
    started = time.monotonic()
    try:
        swarm = kcode("run", "Look at four things", "--model", f"scripted:{parent}", *flags, cwd=calc_repo, timeout=900,
                      env={**env, "KCODE_SUBAGENTS": "on", "KCODE_SUBAGENT_MODEL": str(_SMALL), "KCODE_SUBAGENT_STEPS": "1",
                           "KCODE_MAX_PARALLEL": str(SLOTS), "KCODE_AUTO_TEST": "false"})
    finally:
        watch.stop()
    took = time.monotonic() - started
    assert swarm.returncode in (0, 3), swarm.stderr[-3000:]
    print(f"swarm of {len(items)} on {SLOTS} slots: {took:.1f} s; at once: {watch.busy_together}")
    # the server's own word: four requests in four slots at the same moment
    assert watch.peak == SLOTS, (watch.peak, watch.tasks)
    assert len({task for _, task in watch.busy_together}) == SLOTS
    store = SessionStore()
    parent_meta = next(m for m in store.list() if m.task == "Look at four things")
    children = [m for m in store.list() if m.parent_id == parent_meta.session_id]
    assert len(children) == len(items)
    for meta in children:  # each on the one llama-server the first run started, already loaded
        opened = next(e for e in read_event_dicts(store.log_path(meta.session_id)) if e["type"] == "session.started")
        assert opened["serving"].startswith(f"llama-server (kept alive by pid {record.pid}) on 127.0.0.1:{record.port} with 4 parallel slots"), opened
        assert "(already loaded)" in opened["serving"]
    assert [r.pid for r in running_servers()] == [record.pid]  # the one server, still kept alive
    assert f"(pid {record.pid})" in kcode("models", "stop", cwd=calc_repo).stderr
    assert wait_until(lambda: not _with_token(record.token), 15)  # llama-server stopped with its supervisor


def _with_token(token: str) -> list[int]:
    """The processes whose command line holds ``token`` (llama-server's --api-key)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if token in (process.info["cmdline"] or []):
                found.append(process.pid)
        except psutil.Error:
            continue
    return found
