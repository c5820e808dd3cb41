"""The repair phase's candidates (kcode.agent.repair): each written over the suspect's file,
tested (the failing tests by id, then the suite) and kept or put back; and the line-level
candidates, the model's fills of one line, a new line or a block before one."""

from __future__ import annotations

import ast
import difflib
import shlex
import time
from typing import Any

from kcode.context.localize import Suspect, line_words, lines_to_fill
from kcode.events import RepairTried
from kcode.tools.base import ToolResult
from kcode.tools.testing import is_pytest

__all__ = ["block_of", "check_candidate", "count_tests", "diff_of", "fill_lines"]


def diff_of(path: str, before: str, after: str) -> str:
    return "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True), f"a/{path}", f"b/{path}", n=2))


def count_tests(result: ToolResult) -> tuple[int, int, set[str]]:
    tests = result.data.get("tests") or {}
    return tests.get("passed", 0), tests.get("failed", 0) + tests.get("errors", 0), set(tests.get("failing", []))


def check_candidate(phase: Any, suspect: Suspect, before: str, after: str, failing: set[str], failed: int, command: str, report: Any) -> tuple[int, int, set[str], tuple[Suspect, str, ToolResult]] | None:
    """``after`` written over ``suspect``'s file and tested: the failing tests by id, then the
    suite. Kept when it fixes some failures and breaks none (the new counts), else put back."""
    path = phase.root / suspect.path
    diff = diff_of(suspect.path, before, after)
    phase.tried += 1
    kept = False
    path.write_text(after, encoding="utf-8")
    try:
        quick = None
        ids = sorted(failing)[: phase.policy.quick_ids]
        if is_pytest(command) and ids:
            quick = phase.tests(f"{command} {' '.join(shlex.quote(i) for i in ids)}")
            _, quick_failed, _ = count_tests(quick)
            if phase.stopped:
                return report("failing", "the test run was stopped (too slow)", diff)
            if quick_failed:
                return report("failing", f"{quick_failed} of the failing tests still fail", diff)
        result = phase.tests()
        if phase.stopped:
            return report("failing", "the test run was stopped (too slow)", diff)
        now_passed, now_failed, now_failing = count_tests(result)
        new = now_failing - failing
        if now_passed < phase.passed or (now_failed == 0 and not result.data.get("tests", {}).get("ok")):
            # fewer tests pass than before: the change broke the import or the collection (a run
            # that errors before any test counts no failures, which is not a fix)
            said = [line for line in result.output.splitlines() if "Error" in line] or ["no tests ran"]
            return report("regressed", f"{now_passed} passed (was {phase.passed}): {said[0].strip()[:200]}", diff)
        if new or now_failed >= failed:
            return report("regressed" if new else "failing", f"{now_failed} failing" + (f", {len(new)} new: {', '.join(sorted(new)[:3])}" if new else ""), diff)
        kept = True
        report("fixed" if now_failed == 0 else "partial", f"{now_passed} passed, {now_failed} failing (was {failed})", diff)
        return now_passed, now_failed, now_failing, (suspect, diff, result)
    finally:
        if not kept:
            path.write_text(before, encoding="utf-8")


def fill_lines(phase: Any, suspect: Suspect, failure_text: str, failing: set[str], failed: int, seen: set[str], command: str) -> tuple[int, int, set[str], tuple[Suspect, str, ToolResult]] | None:
    """Each likely line of ``suspect``, one at a time, blanked and filled in again by the model
    from the code around it (fill in the middle: a small coder model writes the usual line
    where it does not see the bug in the whole); then a new line before each (a statement
    left out), then a block of a few lines before the likeliest (a guard with its body).
    Each is tested like a rewrite."""
    agent, policy = phase.agent, phase.policy
    try:
        before = (phase.root / suspect.path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    lines = before.splitlines(keepends=True)
    start, end = suspect.definition.start, suspect.definition.end
    words = line_words(agent.task + "\n" + failure_text)
    tested = 0
    scores = phase.spectrum.scores(suspect.path) if phase.spectrum is not None else None
    chosen = lines_to_fill(lines, start, end, words, policy.lines, scores)
    # each line written again, then (a statement left out) a new line written before each,
    # then a few lines before the likeliest (an `if ...:` with its body left out)
    plan = [(index, "line") for index in chosen] + [(index, "insert") for index in chosen if policy.line_inserts]
    plan += [(index, "block") for index in chosen[: policy.block_lines]]
    for index, mode in plan:
        insert = mode != "line"
        original = lines[index]
        indent = original[: len(original) - len(original.lstrip())]
        prefix = "".join(lines[max(0, start - 31, index - 120) : index]) + indent
        suffix = "".join(lines[index + (0 if insert else 1) : min(len(lines), end + 5, index + 41)])
        counts: dict[str, int] = {}
        same = [original.split()] + ([lines[index - 1].split()] if insert else [])  # not a change (or a copy of a neighbour)
        samples = {"line": policy.line_samples, "insert": policy.line_samples // 2, "block": policy.block_samples}[mode]
        for _ in range(samples):
            if phase.out_of_time():
                return None
            text = phase.fill(prefix, suffix, lines=policy.block_size if mode == "block" else 1)
            if text is None:
                return None
            new = (block_of(text, indent, original) or "") if mode == "block" else indent + text.strip()
            if new.strip() and new.split() not in same:
                counts[new] = counts.get(new, 0) + 1
        for sample, new in enumerate(sorted(counts, key=lambda c: -counts[c]), 1):
            started = time.monotonic()
            key = f"{suspect.path}:{index}:{insert}:{' '.join(new.split())}"
            if key in seen or tested >= policy.line_tests or phase.out_of_time():
                continue
            seen.add(key)
            newline = "\n" if original.endswith("\n") else ""
            after = "".join(lines[:index]) + new + ("\n" if insert else newline) + "".join(lines[index + (0 if insert else 1) :])

            def report(outcome: str, detail: str = "", diff: str = "", sample: int = sample, started: float = started, line: int = index + 1) -> None:
                agent.bus.emit(RepairTried(step=agent.step, path=suspect.path, name=suspect.name, sample=sample, outcome=outcome, detail=detail, diff=diff,
                                           duration_ms=round((time.monotonic() - started) * 1000, 1), line=line))

            try:
                ast.parse(after)
            except SyntaxError as error:
                report("syntax_error", f"line {error.lineno}: {error.msg}")
                continue
            tested += 1  # a test run (a fill that does not parse costs none)
            outcome = check_candidate(phase, suspect, before, after, failing, failed, command, report)
            if outcome is not None:
                return outcome
    return None


def block_of(text: str, indent: str, following: str) -> str | None:
    """The model's lines to insert (at ``indent``, before the line ``following``), as far as
    they stay a block there: up to a blank line, a line indented less, or a copy of the line
    that follows; None for fewer than two (a single line is an insert of its own)."""
    kept = [indent + text.split("\n", 1)[0].strip()]
    for line in text.split("\n")[1:]:
        if not line.strip() or len(line) - len(line.lstrip()) < len(indent) or line.strip() == following.strip():
            break
        kept.append(line.rstrip())
    return "\n".join(kept) if len(kept) >= 2 else None
