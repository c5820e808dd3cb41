"""Test-driven repair: before the loop's first step, run the tests; when tests fail and the
task speaks of what they test, have the model rewrite the definitions the failures point at,
one at a time, and keep a rewrite only when the tests say it fixes them.

This is the Agentless recipe (localize, rewrite, validate by tests) in front of the agent
loop, with one step of AlphaRepair's before the rewrites: for the two likeliest definitions,
each likely line is blanked and written again by the model's fill-in-the-middle mode (a
model without one skips it), which finds the usual line where the whole-function rewrite
copies the bug. A small local model that cannot drive the loop to a fix (it repeats a no-op edit, it
edits the docstring) can still write a corrected function when shown exactly one, and the
tests pick the rewrite that works; a strong model gets there in a few seconds. Whatever the
phase does not fix goes to the loop, with the failing tests and the suspects as its head start.

Every rewrite is written to the file, tested, and put back unless accepted (put back also when
the run is cut short); each one is a ``repair.tried`` event with its diff. An accepted one is
checkpointed like any step's change, and the run finishes when no test fails any more.
Python definitions only (the rewrite is parsed to find the definition in the model's answer).
"""

from __future__ import annotations

import ast
import re
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kcode.agent.notes import repair_note
from kcode.agent.repair_check import check_candidate, count_tests, fill_lines
from kcode.config import Config
from kcode.context import get_packer
from kcode.context.localize import Suspect, rank_suspects, words_of
from kcode.context.spectrum import TRACER, Spectrum, read_spectrum, traced_command
from kcode.cancel import CancelToken
from kcode.errors import Interrupted, ModelRequestError, Submitted, TransientModelError, UsageError
from kcode.events import ErrorEvent, RepairTried, Usage
from kcode.llm.base import StepEnd, TextChunk, TokenUsage, ToolCall
from kcode.tools.base import ToolResult
from kcode.tools.testing import detect_test_command, is_pytest

__all__ = ["RepairPolicy", "repair", "repair_policy", "failures_of", "extract_definition", "task_relates", "asks_for_fix"]

_BLOCK = re.compile(r"```[\w+-]*[ \t]*\n(.*?)```", re.S)
_FAILURE = re.compile(r"^--- (\S.*)$", re.M)
_FAILURE_CHARS = 1000
_COMMON = {"the", "and", "for", "with", "that", "this", "from", "not", "but", "are", "was", "get", "set", "all", "any", "one", "two"}


@dataclass(frozen=True)
class RepairPolicy:
    share: float = 0.5  # of the run's time budget, at most
    suspects: int = 4  # definitions rewritten
    samples: int = 3  # rewrites of each (the model samples: different answers)
    quick_ids: int = 20  # failing tests re-run by id before the whole suite (pytest only)
    test_seconds: float = 90.0  # a test run that takes longer is stopped, and the phase with it
    line_suspects: int = 3  # definitions whose lines are filled in again one by one (models with a fill-in-the-middle mode)
    lines: int = 16  # lines of each, the likeliest first
    line_samples: int = 4  # fills of each line
    line_tests: int = 16  # distinct filled-in lines tested, per definition
    line_inserts: bool = True  # also a new line before each (half the samples): a statement left out
    block_lines: int = 3  # and before the likeliest few, a block of lines (a guard with its body)
    block_size: int = 6  # lines in a block, at most (a raise with its arguments on their own lines)
    block_samples: int = 2
    spectrum_seconds: float = 45.0  # the failing tests' files run once under a line tracer (pytest), at most


def repair_policy(config: Config, model: Any) -> RepairPolicy | None:
    """The test-driven repair phase's policy, or None: off. "auto" is on for every model but
    the scripted one (its script is written for the loop's steps; "on" makes it answer the
    phase's rewrite requests too)."""
    if config.repair not in ("auto", "on", "off"):
        raise UsageError(f"unknown repair setting {config.repair!r} (use auto, on or off)")
    if not 0.0 < config.repair_share <= 1.0:
        raise UsageError(f"repair_share must be in (0, 1], not {config.repair_share}")
    scripted = getattr(model, "name", "").startswith("scripted")
    on = config.repair == "on" or (config.repair == "auto" and not scripted)
    return RepairPolicy(share=config.repair_share) if on else None


def failures_of(result: ToolResult) -> list[tuple[str, str]]:
    """(test id, failure text) of each failure a ``run_tests`` result shows."""
    output = result.output
    marks = list(_FAILURE.finditer(output))
    shown = [(m[1].strip(), output[m.end() : marks[i + 1].start() if i + 1 < len(marks) else len(output)].strip()) for i, m in enumerate(marks)]
    known = {test_id for test_id, _ in shown}
    rest = [(test_id, "") for test_id in result.data.get("tests", {}).get("failing", []) if test_id not in known]
    return shown + rest


# a task that asks for a fix or reports a bug (a question, a feature request or a refactoring
# with tests failing for their own reasons is not repaired)
_ASKS_FOR_FIX = re.compile(
    r"\b(fix(es|ed|ing)?|bugs?|broken|wrong|incorrect(ly)?|fail(s|ed|ing|ure)?|errors?|crash(es|ed)?|exceptions?"
    r"|raises?|expected|instead|should|regression|doesn'?t|does not|isn'?t|not work(ing)?|misbehav\w*"
    r"|skips?|drops?|ignores?|loses|missing|make (the )?tests? pass)\b", re.I)


def asks_for_fix(task: str) -> bool:
    """Whether ``task`` reports a bug or asks for a fix (not a question or a new feature)."""
    return _ASKS_FOR_FIX.search(task) is not None


def task_relates(task: str, failing: list[str], suspects: list[Suspect]) -> bool:
    """Whether the task speaks of what fails: a word of it in a failing test's name, a
    suspect's name or its module's name (a package's ``__init__.py``: the package's); a failing
    test the task says nothing of is left alone."""
    said = {word for name in re.findall(r"[A-Za-z_]\w+", task) for word in words_of(name)} - _COMMON
    seen: set[str] = set()
    for test_id in failing:
        seen |= words_of(test_id.split("::")[-1].split("[")[0])
    for found in suspects:  # those the tests point at (the task's own names prove nothing here)
        if any(not reason.startswith("named in the task") for reason in found.why):
            path = Path(found.path)
            seen |= words_of(found.name) | words_of(path.parent.name if path.stem == "__init__" else path.stem)  # a package's module: its name
    return bool(said & (seen - {"test", "tests"}))


def extract_definition(answer: str, name: str) -> str | None:
    """The source of the definition ``name`` in a model's answer (its last fenced block that
    defines it, parsed as Python; decorators kept), dedented; None when there is none."""
    for block in reversed(_BLOCK.findall(answer) or [answer]):
        try:
            tree = ast.parse(textwrap.dedent(block))
        except SyntaxError:
            continue
        lines = textwrap.dedent(block).splitlines()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                return textwrap.dedent("\n".join(lines[start - 1 : node.end_lineno]))
    return None


def _indent(code: str, like: str) -> str:
    pad = like[: len(like) - len(like.lstrip())]
    return "\n".join(pad + line if line.strip() else line for line in code.splitlines())


class _Phase:
    def __init__(self, agent: Any, policy: RepairPolicy) -> None:
        self.agent, self.policy = agent, policy
        self.root = Path(agent.ctx.root)
        self.deadline = agent.budget.max_time * policy.share
        self.tried = 0
        self.runs = 0
        self.stopped = False  # a test run was stopped: no more
        self.no_infill = False  # the model has no fill-in-the-middle mode
        self.passed = 0  # tests passing now (the baseline's, then after a kept partial fix)
        self.packer: Any = None  # the repository index (kcode.context.get_packer)
        self.spectrum: Spectrum | None = None  # the lines the failing tests ran (kcode.context.spectrum)

    def out_of_time(self) -> bool:
        return self.stopped or self.agent._elapsed() >= self.deadline or self.agent.ctx.cancel.cancelled

    def _limited(self, seconds: float) -> tuple[CancelToken, threading.Timer]:
        """A fresh step token for one test run or model call, cancelled after ``seconds`` or
        at the phase's deadline, whichever comes first."""
        agent = self.agent
        token = agent._step_cancel = agent.ctx.cancel.child()
        timer = threading.Timer(min(seconds, max(0.0, self.deadline - agent._elapsed())), token.cancel)
        timer.daemon = True
        timer.start()
        return token, timer

    def tests(self, command: str | None = None, seconds: float | None = None, stops: bool = True) -> ToolResult:
        """A test run, stopped after ``test_seconds`` (or ``seconds``) or at the phase's
        deadline (a suite too slow to run again and again is not one to repair by): then the
        phase ends, unless not ``stops``."""
        self.runs += 1
        arguments = {"command": command} if command else {}
        token, timer = self._limited(self.policy.test_seconds if seconds is None else seconds)
        try:
            result = self.agent._run_tool(ToolCall(f"repair_tests_{self.runs}", "run_tests", arguments), record=False)
        finally:
            timer.cancel()
        if token.cancelled and (stops or self.agent._elapsed() >= self.deadline):
            self.stopped = True
        return result

    def trace(self, command: str, failing: set[str]) -> Spectrum | None:
        """The failing tests' files run again under the line tracer (kcode.context.spectrum):
        which lines the failing tests ran and the passing ones did not. None for a command
        that is not ``PYTHON -m pytest``, without a scratch directory, or when it fails."""
        scratch = getattr(self.agent.ctx, "scratch_dir", None)
        files = sorted({test_id.split("::")[0] for test_id in failing if (self.root / test_id.split("::")[0]).is_file()})[:5]
        seconds = min(self.policy.spectrum_seconds, max(5.0, (self.deadline - self.agent._elapsed()) * 0.25))
        if scratch is None or not files or self.out_of_time():
            return None
        out, script = Path(scratch) / f"spectrum-{self.runs + 1}.json", Path(scratch) / "kcode_spectrum.py"
        traced = traced_command(command, script, out, seconds, files)
        if traced is None:
            return None
        try:
            script.write_text(TRACER, encoding="utf-8")
            out.unlink(missing_ok=True)
        except OSError:
            return None
        self.tests(traced, seconds=seconds + 30, stops=False)
        spectrum = read_spectrum(out)
        out.unlink(missing_ok=True)
        return spectrum

    def fill(self, prefix: str, suffix: str, lines: int = 1) -> str | None:
        """The model's line between ``prefix`` and ``suffix`` (fill in the middle); None when
        it has no such mode (the phase stops asking), "" when this one was lost."""
        agent = self.agent
        infill = getattr(agent.model, "infill", None)
        if infill is None or self.no_infill:
            self.no_infill = True
            return None
        token, timer = self._limited(float("inf"))
        try:
            got = infill(prefix, suffix, cancel=token, lines=lines)
        except Interrupted:
            if agent.ctx.cancel.cancelled:
                raise
            self.stopped = agent._elapsed() >= self.deadline
            return ""
        except (TransientModelError, ModelRequestError) as error:  # this fill is lost, not the phase
            agent.bus.emit(ErrorEvent(message=f"repair: {error}", kind="model_retry", step=agent.step))
            return ""
        finally:
            timer.cancel()
        if got is None:
            self.no_infill = True
            return None
        text, usage = got
        agent.usage.add(usage)
        agent.bus.emit(Usage(step=agent.step, **usage.as_dict()))
        return text

    def ask(self, suspect: Suspect, code: str, failures: str, outline: str) -> str:
        """The model's answer to a rewrite request. It is cut as soon as it holds a complete
        code block defining the name (what follows is talk), or when it grows far past the
        definition's size, or at the deadline."""
        agent = self.agent
        request = repair_note("request", task=agent.task.strip(), failures=failures, definition=suspect.name, path=suspect.path,
                              start=suspect.definition.start, end=suspect.definition.end, language="python", code=code)
        if outline:  # a method: what else its class has (a helper it should call, say)
            request = repair_note("outline", outline=outline) + "\n\n" + request
        messages = [{"role": "system", "content": repair_note("system")}, {"role": "user", "content": request}]
        limit = 3 * len(code) + 1500
        token, timer = self._limited(float("inf"))
        text, usage = "", None
        try:
            for chunk in agent.model.stream(messages, [], cancel=token):
                if isinstance(chunk, StepEnd):
                    usage, text = chunk.usage, chunk.content
                elif isinstance(chunk, TextChunk):
                    text += chunk.text
                    done = "`" in chunk.text and _BLOCK.search(text) and extract_definition(text, suspect.name) is not None
                    if (done or len(text) > limit) and not token.cancelled:
                        token.cancel()  # the stream stops at its next token
        except Interrupted:
            if agent.ctx.cancel.cancelled:
                raise
        except TransientModelError as error:  # a hiccup: this sample is lost, not the phase
            agent.bus.emit(ErrorEvent(message=f"repair: {error}", kind="model_retry", step=agent.step))
            text = ""
        finally:
            timer.cancel()
        if usage is None:  # cut: the output counted by the tokenizer, the request's size unknown
            usage = TokenUsage(output_tokens=agent.model.count_tokens(text))
        agent.usage.add(usage)
        agent.bus.emit(Usage(step=agent.step, **usage.as_dict()))
        if token.cancelled and not text.strip():
            self.stopped = agent._elapsed() >= self.deadline
        return text


def _suspects(packer: Any, failures: list[tuple[str, str]], task: str, policy: RepairPolicy, spectrum: Spectrum | None = None) -> list[Suspect]:
    ranked = rank_suspects(packer.index.files, failures, task, limit=policy.suspects * 2, spectrum=spectrum)
    return [found for found in ranked if found.path.endswith(".py")][: policy.suspects]


def _outline(tags: Any, suspect: Suspect) -> str:
    """A method's class, as its header and the signature lines of its members (one line
    each); empty for a top-level definition."""
    definition = suspect.definition
    if not definition.scopes:
        return ""
    headers = tags.headers
    owner = definition.scopes[-1]
    lines = [headers[owner][1].strip()]
    members = [d for d in tags.definitions if d.scopes and d.scopes[-1] == owner]
    for member in members[:40]:
        text = headers[member.header][1].rstrip()
        lines.append("    " + text.strip() + (" ...  # this one" if member.start == definition.start else " ..."))
    return "\n".join(lines)


def _failure_text(failures: list[tuple[str, str]], count: int) -> str:
    shown = next((text for _, text in failures if text), "")[:_FAILURE_CHARS]
    ids = ", ".join(test_id for test_id, _ in failures[:6]) + (" ..." if count > 6 else "")
    return f"{shown}\n\n({count} failing: {ids})".strip()


def repair(agent: Any, policy: RepairPolicy) -> None:
    """The repair phase for ``agent`` (a :class:`kcode.agent.loop.Agent` before its first
    step). Raises Submitted when the tests pass after it; otherwise leaves the work tree as it
    was and, when tests failed, a note for the loop."""
    ctx = agent.ctx
    command = ctx.test_command or detect_test_command(ctx.root)
    if not command or "run_tests" not in agent.tools.names or not agent.verify.can_change or not asks_for_fix(agent.task):
        return
    phase = _Phase(agent, policy)
    phase.packer = packer = get_packer(ctx.root)
    baseline = phase.tests()
    passed, failed, failing = count_tests(baseline)
    phase.passed = passed
    if phase.stopped or baseline.data.get("tests", {}).get("ok", True) or failed == 0:
        return
    failures = failures_of(baseline)
    packer.refresh()
    suspects = _suspects(packer, failures, agent.task, policy)
    if not suspects or not task_relates(agent.task, sorted(failing), suspects):
        return
    if is_pytest(command):  # ranked again by what the failing tests ran
        phase.spectrum = phase.trace(command, failing)
        suspects = _suspects(packer, failures, agent.task, policy, phase.spectrum) if phase.spectrum is not None else suspects
    agent.verify._note_tests([baseline])  # the task's failing tests: a finish before they pass is sent back
    failure_text = _failure_text(failures, failed)
    seen: set[str] = set()
    filled: set[str] = set()  # definitions whose lines were filled in
    fixed = None
    sample = 1
    while sample <= policy.samples and fixed is None and not phase.out_of_time():
        # The first round fills in the lines of the likeliest few suspects before any whole
        # rewrite: a fill costs a few tokens and a test run, a rewrite a whole definition's
        # worth of output, and the first suspect is often only the caller of the broken one.
        steps = [(suspect, False) for suspect in suspects]
        if sample == 1:
            steps = [(suspect, True) for suspect in suspects[: policy.line_suspects]] + steps
        for suspect, by_lines in steps:
            if phase.out_of_time():
                break
            where = f"{suspect.path}:{suspect.definition.start}"
            if by_lines:
                if where in filled:
                    continue
                filled.add(where)
                outcome = fill_lines(phase, suspect, failure_text, failing, failed, seen, command)
            else:
                outcome = _try(phase, suspect, sample, failure_text, failing, failed, seen, command)
            if outcome is None:
                continue
            passed, failed, failing, accepted = outcome
            phase.passed = passed
            if failed == 0:
                fixed = accepted
                break
            # some failures fixed, none broken: kept; the rest are localized again (lines moved)
            failures = failures_of(accepted[2])
            packer.refresh([accepted[0].path])
            phase.spectrum = None  # its lines are the old file's
            suspects = _suspects(packer, failures, agent.task, policy) or suspects
            failure_text = _failure_text(failures, failed)
            sample = 0
            break
        sample += 1
    if fixed is not None:
        suspect, diff, _ = fixed
        agent._checkpoint()
        before = count_tests(baseline)[1]
        agent._add({"role": "user", "content": repair_note("fixed", failed_before=before, definition=suspect.name, path=suspect.path, passed=passed, diff=diff)})
        tests = "the failing test passes" if before == 1 else f"the {before} failing tests pass"
        raise Submitted(f"Fixed `{suspect.name}` in {suspect.path}: {tests} now ({passed} passed). Found and checked by kcode's test-driven repair.")
    named = ", ".join(f"`{s.name}` ({s.path}:{s.definition.start})" for s in suspects)
    agent._add({"role": "user", "content": repair_note("not_fixed", failed=failed, failing=", ".join(sorted(failing)[:6]), suspects=named, tried=phase.tried, failure=next((t for _, t in failures if t), "")[:_FAILURE_CHARS])})


def _try(phase: _Phase, suspect: Suspect, sample: int, failure_text: str, failing: set[str], failed: int, seen: set[str], command: str) -> tuple[int, int, set[str], tuple[Suspect, str, ToolResult]] | None:
    """One rewrite of ``suspect``, written, tested and kept or put back: the new counts and
    what was kept when it fixed some failures without breaking anything, else None."""
    agent, started = phase.agent, time.monotonic()
    path = phase.root / suspect.path
    try:
        before = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    lines = before.splitlines(keepends=True)
    start, end = suspect.definition.start, suspect.definition.end
    original = "".join(lines[start - 1 : end]).rstrip("\n")
    code = textwrap.dedent(original)

    def report(outcome: str, detail: str = "", diff: str = "") -> None:
        agent.bus.emit(RepairTried(step=agent.step, path=suspect.path, name=suspect.name, sample=sample, outcome=outcome, detail=detail, diff=diff, duration_ms=round((time.monotonic() - started) * 1000, 1)))

    indexed = phase.packer.index.files.get(suspect.path)
    answer = phase.ask(suspect, code, failure_text, _outline(indexed.tags, suspect) if indexed is not None else "")
    rewritten = extract_definition(answer, suspect.name)
    if rewritten is None:
        return report("no_code")
    if rewritten.strip() == code.strip():
        return report("unchanged")
    if rewritten in seen:
        return report("duplicate")
    seen.add(rewritten)
    trailing = "\n" if lines[end - 1 : end] and lines[end - 1].endswith("\n") else ""
    after = "".join(lines[: start - 1]) + _indent(rewritten, lines[start - 1]) + trailing + "".join(lines[end:])
    try:
        ast.parse(after)
    except SyntaxError as error:
        return report("syntax_error", f"line {error.lineno}: {error.msg}")
    return check_candidate(phase, suspect, before, after, failing, failed, command, report)
