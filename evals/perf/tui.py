"""The TUI under load, in a real pseudo-terminal: key-to-frame latency, first frame, memory,
and attaching to a long session.

Each figure is measured in a child process that runs the app with Textual's real terminal
driver on a pty (120x40) whose output this process drains:

- ``live``: a scripted core (a run handle that emits kcode's events, no model) streams
  Markdown at 100 tokens/s while a tool prints 10,000 lines/s (a finished tool call with
  1,000 new lines every 100 ms), a new turn every 2 s. A thread posts key events to the app,
  as the terminal driver does (never Pilot's ``press``, which waits for the app to go idle),
  and a hook on the app's frame output times each key to the first frame that shows its
  effect. First frame: from the child's launch (interpreter start included) to the first
  frame written.
- ``memory``: a long session's events fed fast (turns of streamed text, a tool call with 40
  lines of output, usage; tests and a checkpoint every 5th turn); RSS once 2,000 and once
  20,000 events have been shown.
- ``attach``: a session log of 20,000 events on disk, opened with ``AttachedRunHandle``: the
  time until the app has caught up with the whole log and drawn it, and the latency of a key
  right after.

Targets: latency p50 <= 20 ms, p95 <= 50, p99 <= 100; first frame <= 500 ms; RSS <= 150 MB
after 2,000 events, <= 200 MB after 20,000; attach usable within 1 s.

    python evals/perf/tui.py [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import select
import struct
import subprocess
import sys
import tempfile
import termios
import fcntl
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

TARGETS = {"p50_ms": 20, "p95_ms": 50, "p99_ms": 100, "first_frame_ms": 500, "rss_2000_mb": 150, "rss_20000_mb": 200, "attach_ms": 1000}


def run_in_pty(args: list[str], timeout: float) -> dict:
    """Run this script's child mode in a pty of 120x40, draining its output; its figures."""
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor", "PYTHONPATH": str(ROOT)}
    launched = time.time()
    proc = subprocess.Popen([sys.executable, __file__, "--child", *args, "--out", str(out), "--launched", repr(launched)],
                            stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True, start_new_session=True)  # fmt: skip
    os.close(slave)
    tail = b""
    deadline = time.time() + timeout
    try:
        while proc.poll() is None and time.time() < deadline:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    tail = (tail + os.read(master, 1 << 16))[-4000:]
                except OSError:
                    break
        try:
            proc.wait(max(0.1, deadline - time.time()))  # its terminal closed: it is finishing
        except subprocess.TimeoutExpired:
            pass
        if proc.poll() is None:
            proc.kill()
            raise SystemExit(f"child {args} ran past {timeout}s; its last output:\n{tail.decode(errors='replace')}")
    finally:
        os.close(master)
    text = out.read_text() if out.exists() else ""
    out.unlink(missing_ok=True)
    if not text:
        raise SystemExit(f"child {args} wrote no figures (exit {proc.returncode}); its last output:\n{tail.decode(errors='replace')}")
    figures = json.loads(text)
    if "error" in figures:
        raise SystemExit(f"child {args} failed:\n{figures['error']}")
    if args[0] == "memory" and "rss_20000_mb" not in figures:
        raise SystemExit(f"child {args} ended before 20,000 events were shown (exit {proc.returncode}); its last output:\n{tail.decode(errors='replace')}")
    return figures


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _ms(value: float | None) -> str:
    return "not measured (the key's frame never came)" if value is None else f"{value:.1f} ms"


def report(figures: dict) -> int:
    rows = [
        ("key-to-frame p50", figures["p50_ms"], "ms", "p50_ms"),
        ("key-to-frame p95", figures["p95_ms"], "ms", "p95_ms"),
        ("key-to-frame p99", figures["p99_ms"], "ms", "p99_ms"),
        ("first frame", figures["first_frame_ms"], "ms", "first_frame_ms"),
        ("RSS after 2,000 events", figures["rss_2000_mb"], "MB", "rss_2000_mb"),
        ("RSS after 20,000 events", figures["rss_20000_mb"], "MB", "rss_20000_mb"),
        ("attach to 20,000 events", figures["attach_ms"], "ms", "attach_ms"),
    ]
    failed = 0
    for name, value, unit, key in rows:
        ok = value <= TARGETS[key]
        failed += not ok
        print(f"{name:<26} {value:>8.1f} {unit}   target <= {TARGETS[key]} {unit}   {'ok' if ok else 'MISSED'}")
    print(f"({figures['samples']} key samples over {figures['seconds']:.0f} s of streaming; {figures['tokens']} tokens and "
          f"{figures['lines']:,} tool lines reached the view; attach key latency {_ms(figures['attach_key_ms'])}; load average {figures['load']})")  # fmt: skip
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="streaming time of the latency run")
    parser.add_argument("--child", nargs="?", const="", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--launched", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--session", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.child is not None:
        try:
            return child_main(args.child, Path(args.out), args.launched, args.seconds, args.session)
        except BaseException:
            import traceback

            Path(args.out).write_text(json.dumps({"error": traceback.format_exc()}))
            raise
    only = os.environ.get("KCODE_PERF_TUI_ONLY")
    if only:  # one child's raw figures, for working on one of them
        home = tempfile.mkdtemp()
        os.environ["KCODE_HOME"] = home  # the session is written to a store of its own (never the user's)
        extra = ["--session", str(write_session(Path(home), 20_000))] if only == "attach" else []
        try:
            raw = run_in_pty([only, "--seconds", str(args.seconds), *extra], timeout=args.seconds + 120)
        finally:
            __import__("shutil").rmtree(home, ignore_errors=True)
        latencies = raw.get("latencies_ms") or [0.0]
        raw.update({f"p{q}_ms": round(percentile(latencies, q / 100), 1) for q in (50, 95, 99)} if only == "live" else {})
        print(json.dumps({k: v for k, v in raw.items() if k != "latencies_ms"}))
        return 0
    live = run_in_pty(["live", "--seconds", str(args.seconds)], timeout=args.seconds + 60)
    memory = run_in_pty(["memory"], timeout=180)
    with tempfile.TemporaryDirectory() as home:
        os.environ["KCODE_HOME"] = home
        session_dir = write_session(Path(home), 20_000)
        attach = run_in_pty(["attach", "--session", str(session_dir)], timeout=60)
    latencies = live["latencies_ms"]
    figures = {
        "p50_ms": percentile(latencies, 0.50), "p95_ms": percentile(latencies, 0.95), "p99_ms": percentile(latencies, 0.99),
        "first_frame_ms": live["first_frame_ms"], "rss_2000_mb": memory["rss_2000_mb"], "rss_20000_mb": memory["rss_20000_mb"],
        "attach_ms": attach["attach_ms"], "attach_key_ms": attach.get("key_ms"), "samples": len(latencies), "seconds": live["seconds"],
        "tokens": live["tokens"], "lines": live["lines"], "load": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }  # fmt: skip
    return report(figures)


# -- the child side: the app, a scripted core, the probes ---------------------------------

MARKDOWN = ("Looking at the **parser** first: the `tokenize` step drops the last line. ", "\n\n## The fix\n\n",
            "- keep the trailing newline\n", "- test it with `pytest -q tests/test_parse.py`\n", "\n```python\ndef parse(text):\n    return text\n```\n\n")  # fmt: skip


def _tokens():
    import itertools

    for chunk in itertools.cycle(MARKDOWN):
        for start in range(0, len(chunk), 4):
            yield chunk[start : start + 4]


class ScriptedCore:
    """A run handle whose run is a script of events in real time (no model, no tools)."""

    read_only = False
    session_id = "perf"

    def __init__(self, emit_plan) -> None:
        self.plan = emit_plan
        self.running = True
        self.callbacks = []

    def subscribe(self, callback) -> None:
        import threading

        self.callbacks.append(callback)
        threading.Thread(target=self.plan, args=(self._emit,), daemon=True).start()

    def _emit(self, event) -> None:
        from kcode.events import Event

        assert isinstance(event, Event)
        event.agent_id = event.agent_id or "perf"
        event.ts = event.ts or time.time()
        for callback in self.callbacks:
            callback(event)

    def steer(self, text: str) -> None:
        pass

    def interrupt_step(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def answer(self, request_id: str, decision: str, reason: str = "") -> None:
        pass

    def close(self) -> None:
        self.running = False


def _session_events(emit, step: int):
    from kcode.events import ContextPacked, SessionStarted

    if step == 0:
        emit(SessionStarted(session_id="perf", task="Fix the parser", repo=str(ROOT), workdir=str(ROOT), branch="kcode/perf", base_commit="0" * 40, model="scripted-perf"))
        emit(ContextPacked(mode="auto", tokens=12000, budget=40000, files_whole=20, files_map=200))


def session_turn(step: int, text_events: int, output_lines: int):
    """The events of one ordinary step: streamed text, one tool call, usage."""
    from kcode.events import AssistantMessage, Checkpoint, TestsRun, TextDelta, ToolCallFinished, ToolCallStarted, TurnCompleted, TurnStarted, Usage

    tokens = _tokens()
    events = [TurnStarted(step=step)]
    text = ""
    for _ in range(text_events):
        piece = next(tokens)
        text += piece
        events.append(TextDelta(step=step, text=piece))
    events.append(AssistantMessage(step=step, content=text))
    call = f"c{step}"
    events.append(ToolCallStarted(step=step, call_id=call, name="bash", arguments={"command": f"make test-{step}"}))
    output = "\n".join(f"line {i} of step {step}: ok" for i in range(output_lines))
    events.append(ToolCallFinished(step=step, call_id=call, name="bash", arguments={"command": f"make test-{step}"}, output=output, duration_ms=120.0))
    events.append(Usage(step=step, input_tokens=20000 + step * 50, cached_input_tokens=19000 + step * 50, output_tokens=text_events))
    if step % 5 == 0:
        events.append(TestsRun(step=step, command="pytest -q", ok=step % 10 == 0, passed=40, failed=0 if step % 10 == 0 else 2, failing=[] if step % 10 == 0 else ["tests/test_a.py::test_x", "tests/test_b.py::test_y"]))
        events.append(Checkpoint(step=step, commit=f"{step:040x}", ref="refs/kcode/perf"))
    events.append(TurnCompleted(step=step))
    return events


def write_session(home: Path, count: int) -> Path:
    """A session of ``count`` events in the store under ``home`` (KCODE_HOME), as a run leaves it."""
    from kcode.events import EventBus, SessionFinished
    from kcode.session import SessionLog, SessionMeta, SessionStore

    store = SessionStore()
    meta = SessionMeta(session_id="perf-attach", task="long", repo=str(ROOT), workdir=str(ROOT), branch="kcode/perf", base_commit="0" * 40, model="scripted-perf", mode="worktree", status="finished")
    store.write_meta(meta)
    log = SessionLog(store.log_path(meta.session_id))
    bus = EventBus(agent_id=meta.session_id)
    bus.subscribe(log)
    _session_events(bus.emit, 0)
    written, step = 2, 1
    while written < count - 1:
        for event in session_turn(step, 20, 40)[: count - 1 - written]:
            bus.emit(event)
            written += 1
        step += 1
    bus.emit(SessionFinished(status="finished", summary="done", exit_code=0, steps=step, duration_ms=1.0))
    log.close()
    return store.dir(meta.session_id)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class FrameProbe:
    """Hooks the app's frame output: the first frame, and each posted key to the first frame
    that shows it in the input."""

    def __init__(self, app) -> None:
        self.app = app
        self.first_frame: float | None = None
        self.pending: tuple[float, str] | None = None
        self.latencies: list[float] = []
        self.frames = 0
        self.on_frame = None
        original = app._display

        def display(screen, renderable) -> None:
            original(screen, renderable)
            if renderable is None or app._batch_count:
                return
            now = time.perf_counter()
            self.frames += 1
            if self.first_frame is None:
                self.first_frame = time.time()
            pending = self.pending
            if pending is not None and self._input_text() == pending[1]:
                self.latencies.append((now - pending[0]) * 1000)
                self.pending = None
            if self.on_frame is not None:
                self.on_frame()

        app._display = display

    def _input_text(self) -> str:
        try:
            return self.app.query_one("#input").text
        except Exception:  # noqa: BLE001 - not mounted yet, or a modal on top
            return "?"

    def post_key(self) -> bool:
        """Post one key as the terminal driver would: an x, or a backspace that removes it."""
        from textual import events

        if self.pending is not None:
            return False
        current = self._input_text()
        key, character, expected = ("x", "x", current + "x") if len(current) < 40 else ("backspace", None, current[:-1])
        if current.endswith("x" * 40):
            key, character, expected = "ctrl+u", None, ""
        self.pending = (time.perf_counter(), expected)
        self.app.post_message(events.Key(key, character))
        return True


def _key_thread(probe: FrameProbe, until: float, every: float) -> None:
    import threading

    def run() -> None:
        while time.time() < until:
            time.sleep(every)
            if probe.pending is not None and time.perf_counter() - probe.pending[0] > 2.0:
                probe.pending = None  # lost (a frame that never showed it): counted as a miss below
                probe.latencies.append(2000.0)
            probe.post_key()

    threading.Thread(target=run, daemon=True).start()


def _time_calls(app, figures: dict) -> None:
    from textual.screen import Screen

    times: dict[str, list[float]] = {name: [] for name in ("drain", "layout", "display", "drain_cpu", "layout_cpu", "display_cpu")}
    figures["times_ms"] = times

    def timed(owner, name: str, key: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                times[key].append((time.perf_counter() - start) * 1000)
                times[key + "_cpu"].append((time.thread_time() - cpu) * 1000)

        setattr(owner, name, wrapper)

    timed(app, "drain", "drain")
    timed(Screen, "_refresh_layout", "layout")
    refresh_layout = Screen._refresh_layout
    times["scroll_only"] = []

    def which(screen, size=None, scroll=False):  # a scroll's reflow of what is visible, or a full one
        if scroll and not screen._layout_widgets:
            times["scroll_only"].append(1.0)
        return refresh_layout(screen, size, scroll)

    Screen._refresh_layout = which
    timed(app, "_display", "display")
    causes: dict[str, int] = {}
    figures["layout_causes"] = causes
    on_layout = Screen._on_layout

    async def counted(screen, message) -> None:  # which widgets asked for a layout
        name = type(message.widget).__name__ + "#" + str(message.widget.id or "")
        causes[name] = causes.get(name, 0) + 1
        await on_layout(screen, message)

    Screen._on_layout = counted
    import gc

    pauses: list[list[float]] = []
    figures["gc_ms"] = pauses
    started = [0.0]

    def on_gc(phase: str, info: dict) -> None:  # the collector's pauses, by generation
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append([info["generation"], (time.perf_counter() - started[0]) * 1000])

    gc.callbacks.append(on_gc)


def child_main(mode: str, out: Path, launched: float, seconds: float, session: str | None) -> int:
    from kcode.tui.app import KcodeApp
    from kcode.tui.prompt import History

    figures: dict = {}
    if mode == "attach":
        from kcode.session.control import AttachedRunHandle

        handle = AttachedRunHandle(Path(session))
        total = sum(1 for _ in open(Path(session) / "events.jsonl", encoding="utf-8"))
    else:
        handle = ScriptedCore(None)
    app = KcodeApp(handle, history=History(None), freeze_gc=True)  # as kcode.tui.app.main runs it
    probe = FrameProbe(app)

    if mode == "live":
        def plan(emit) -> None:
            from kcode.events import TextDelta, ToolCallFinished, ToolCallStarted, TurnStarted

            _session_events(emit, 0)
            start = time.time()
            _key_thread(probe, start + seconds, 0.04)
            tokens, lines, step, tick = _tokens(), 0, 0, 0
            count = 0
            while time.time() - start < seconds:
                if tick % 200 == 0:
                    step += 1
                    emit(TurnStarted(step=step))
                emit(TextDelta(step=step, text=next(tokens)))
                count += 1
                if tick % 10 == 0:
                    call = f"t{tick}"
                    emit(ToolCallStarted(step=step, call_id=call, name="bash", arguments={"command": "tail -f build.log"}))
                    output = "\n".join(f"[{lines + i:>8}] compiling module_{(lines + i) % 997}.c ... ok" for i in range(1000))
                    lines += 1000
                    emit(ToolCallFinished(step=step, call_id=call, name="bash", arguments={"command": "tail -f build.log"}, output=output, duration_ms=100.0))
                tick += 1
                time.sleep(max(0.0, start + tick * 0.01 - time.time()))
            figures.update(tokens=count, lines=lines, seconds=time.time() - start)
            time.sleep(0.3)
            app.call_from_thread(app.exit)

        handle.plan = plan
    elif mode == "memory":
        def plan(emit) -> None:
            _session_events(emit, 0)
            fed, step = 2, 1
            for mark in (2000, 20000):
                while fed < mark:
                    for event in session_turn(step, 20, 40)[: mark - fed]:
                        emit(event)
                        fed += 1
                    step += 1
                    if step % 10 == 0:
                        time.sleep(0.01)
                while app.transcript.events < fed or app.inbox:
                    time.sleep(0.05)
                time.sleep(0.5)  # the frames of what came
                figures[f"rss_{mark}_mb"] = rss_mb()
            app.call_from_thread(app.exit)

        handle.plan = plan
    else:
        state = {"done": False}

        def caught_up() -> None:
            if not state["done"] and app.transcript.events >= total and not app.inbox:
                state["done"] = True
                figures["attach_ms"] = (time.time() - launched) * 1000
                figures["mounted_turns"] = len(app.conversation.mounted_turns())
                probe.post_key()
            elif state["done"] and probe.pending is None and probe.latencies and "key_ms" not in figures:
                figures["key_ms"] = probe.latencies[0]
                app.exit()

        probe.on_frame = caught_up

        def give_up() -> None:
            time.sleep(20)
            app.call_from_thread(app.exit)

        __import__("threading").Thread(target=give_up, daemon=True).start()
    if os.environ.get("KCODE_PERF_TUI_TIMES"):  # where the loop's time goes: drains, layouts, frames
        _time_calls(app, figures)
    profile = os.environ.get("KCODE_PERF_TUI_PROFILE")  # a file for cProfile's stats of the child
    if profile:
        import cProfile

        cProfile.runctx("app.run()", globals(), {"app": app}, profile)
    else:
        app.run()
    failure = getattr(app, "_exception", None)
    if failure is not None:  # the app stopped on an exception (its traceback went to the pty)
        import traceback

        figures["error"] = "".join(traceback.format_exception(failure))
    figures["first_frame_ms"] = ((probe.first_frame or time.time()) - launched) * 1000
    figures["latencies_ms"] = probe.latencies
    figures["rss_end_mb"] = rss_mb()
    out.write_text(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
