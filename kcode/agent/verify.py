"""Verification: what kcode checks before it takes the model's word that the work is done.

- **auto-tests:** when the model stops (an answer without a tool call, or ``finish``) after
  changing files without running the tests since, kcode runs them and shows the model the
  result;
- **a finish sent back:** the ``finish`` tool raises :class:`~kcode.errors.Submitted`, and the
  loop hands it here before it ends the run. With no changes on a task that asks for one it
  is sent back once (reproduce the problem, find the code, change it, or say why nothing needs
  to change); the next finish is accepted and the summary says "no changes". One whose changes
  only *add* files (a reproduction script, a new test) while no file that was there is changed
  is sent back once too on a task that reports a problem (``asks_for_fix``), unless the task
  names an added file: the fix of a bug is in existing code. After a failing
  test run (the model's own ``run_tests`` or kcode's) it is sent back up to
  ``FAILING_BLOCKS`` times, then accepted (the failures may be unrelated to the task);
- **answers without a tool call:** each draws a nudge. Small local models often "finish" by
  writing a made-up tool result instead of calling the tool: ``TEXT_ONLY_FINISH`` such
  answers in a row with the work verified (files changed, the last test run passed, nothing
  edited since) hand the work in, the last text as the summary; ``TEXT_ONLY_STOP`` in a row
  otherwise stop the run.

:class:`Verification` holds the state for this, saved with every step (resume goes on from it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kcode.agent.notes import loop_note
from kcode.errors import Submitted
from kcode.tools.base import ToolResult

__all__ = [
    "Verification",
    "StepCheck",
    "WorkTree",
    "TestRun",
    "FinishReview",
    "asks_for_change",
    "asks_for_fix",
    "names_a_file",
    "FAILING_BLOCKS",
    "NO_CHANGES_NOTE",
    "TEXT_ONLY_FINISH",
    "TEXT_ONLY_STOP",
]

FAILING_BLOCKS = 2  # times a finish with failing tests is sent back before it is accepted
NO_CHANGES_NOTE = "(no changes)"
TEXT_ONLY_FINISH = 2  # answers in a row without a tool call that end a verified run
TEXT_ONLY_STOP = 4  # ... that stop an unverified one
FINISH_WITHHELD_STEPS = 3  # steps a local model cannot finish after an empty finish was sent back
LOOKING_TOOLS = frozenset({"read_file", "search", "repo_map", "list_files", "bash", "run_tests"})

# A task that only asks a question ("why does X fail?", "explain the parser") needs no change.
_QUESTION_START = re.compile(
    r"^\s*(what|why|how|where|which|who|when|is|are|does|do|can|could|should i|explain|describe|"
    r"summari[sz]e|review|tell me|show me|list|walk me through|analy[sz]e)\b",
    re.IGNORECASE,
)
_CHANGE_WORDS = re.compile(
    r"\b(fix|add|implement|change|update|remove|delete|rename|refactor|make|support|write|"
    r"create|modify|replace|handle|correct|improve|bump|port|migrate|convert|allow|ensure|edit|"
    r"patch|resolve|optimi[sz]e|speed up|clean up|introduce|drop|move|extract)\b",
    re.IGNORECASE,
)
_QUESTION_CHARS = 400  # a bug report or a feature request is longer; a question to answer is short
# A task that reports a problem: its fix is a change to code that is already there.
_FIX_WORDS = re.compile(
    r"\b(fix(es|ed)?|bugs?|buggy|errors?|fail(s|ed|ing|ure)?|wrong|broken|breaks?|crash(es|ed)?|"
    r"raises?|exceptions?|traceback|incorrect(ly)?|regression|mis(behaves|handles)|"
    r"(does|do|is|are)( not|n't) (work|return|handle|respect|raise))\b",
    re.IGNORECASE,
)


def asks_for_change(task: str) -> bool:
    """Whether ``task`` asks for a change to the repository: anything but a short question
    ("why does X fail?", "explain the parser") with no verb asking for a change."""
    text = task.strip()
    if not text:
        return False
    question = len(text) <= _QUESTION_CHARS and _QUESTION_START.match(text) and not _CHANGE_WORDS.search(text)
    return not question


def asks_for_fix(task: str) -> bool:
    """Whether ``task`` reports a problem to fix (a bug report, a failing test), not a feature
    or a file to write."""
    return asks_for_change(task) and bool(_FIX_WORDS.search(task))


@dataclass(frozen=True)
class TestRun:
    """The outcome of one test run, as the ``run_tests`` tool reports it."""

    __test__ = False  # not a pytest test class

    ok: bool
    passed: int
    failed: int
    errors: int
    failing: tuple[str, ...]  # the failing tests' ids, sorted

    @classmethod
    def from_tool(cls, tests: dict[str, Any]) -> TestRun:
        return cls(bool(tests["ok"]), tests["passed"], tests["failed"], tests["errors"], tuple(sorted(tests["failing"])))

    def saved(self) -> dict[str, Any]:
        return {"ok": self.ok, "passed": self.passed, "failed": self.failed, "errors": self.errors, "failing": list(self.failing)}

    @classmethod
    def restore(cls, saved: dict[str, Any] | list) -> TestRun:
        if isinstance(saved, list):  # sessions saved before: [ok, passed, failed, errors, failing]
            ok, passed, failed, errors, failing = saved
            saved = {"ok": ok, "passed": passed, "failed": failed, "errors": errors, "failing": failing}
        return cls.from_tool(saved)


@dataclass
class FinishReview:
    """What has been sent back so far."""

    empty_sent_back: bool = False
    failing_sent_back: int = 0
    added_only_sent_back: bool = False

    def saved(self) -> dict[str, Any]:
        return {"empty_sent_back": self.empty_sent_back, "failing_sent_back": self.failing_sent_back,
                "added_only_sent_back": self.added_only_sent_back}

    @classmethod
    def restore(cls, saved: dict[str, Any], finish_blocks: int = 0) -> FinishReview:
        """``finish_blocks``: the count of failing send-backs in sessions saved before."""
        return cls(bool(saved.get("empty_sent_back")), int(saved.get("failing_sent_back", finish_blocks)),
                   bool(saved.get("added_only_sent_back")))

    def failing(self, failing_tests: tuple[str, ...]) -> str | None:
        """The note for a finish after a failing test run, or None to accept it."""
        if self.failing_sent_back >= FAILING_BLOCKS:
            return None
        self.failing_sent_back += 1
        shown = ", ".join(failing_tests[:5]) + (" …" if len(failing_tests) > 5 else "")
        return loop_note("finish_failing", failing=shown or "see the last test output")

    def empty(self, task: str) -> str | None:
        """The note for a finish that changed nothing, or None to accept it."""
        if self.empty_sent_back or not asks_for_change(task):
            return None
        self.empty_sent_back = True
        return loop_note("finish_empty")

    def added_only(self, task: str, added: list[str]) -> str | None:
        """The note for a finish whose changes only add files, or None to accept it."""
        if self.added_only_sent_back or not asks_for_fix(task) or names_a_file(task, added):
            return None
        self.added_only_sent_back = True
        return loop_note("finish_added_only", files=", ".join(added[:5]) + (" …" if len(added) > 5 else ""))


def names_a_file(task: str, paths: list[str]) -> bool:
    """Whether ``task`` names one of ``paths`` (by path or file name)."""
    return any(path in task or re.search(rf"(?<![\w.-]){re.escape(path.rsplit('/', 1)[-1])}(?![\w-])", task) for path in paths)


@dataclass(frozen=True)
class WorkTree:
    """What verification may ask of the loop: run the tests as kcode (None: there is no test
    command), commit a checkpoint (True when files had changed), the changes since the
    session's base (``{"path", "kind"}`` with kind add, update or delete; None: no workspace,
    nothing to compare)."""

    run_tests: Callable[[], ToolResult | None]
    checkpoint: Callable[[], bool]
    changes: Callable[[], list[dict[str, str]] | None]

    def changed_paths(self) -> list[str] | None:
        changes = self.changes()
        return None if changes is None else [change["path"] for change in changes]


@dataclass
class StepCheck:
    """What verification made of one step."""

    notes: list[str]  # for the model, in order
    progressed: bool  # files changed or a new test result appeared (the stuck guard counts it)
    submitted: Submitted | None  # the work handed in and accepted: the run ends with this step
    stop: str | None  # the run stops: answers without a tool call, the work unverified


@dataclass
class Verification:
    task: str = ""  # the user's task: is a finish without changes acceptable?
    auto_test: bool = True
    last_tests: TestRun | None = None
    edited_since_tests: bool = False
    text_only: int = 0  # answers in a row without a tool call (not saved: a resumed run nudges again)
    review: FinishReview = field(default_factory=FinishReview)
    looked: bool = False  # the model has read, searched or run something (a call that worked)
    finish_withheld: int = 0  # steps finish stays out of the grammar after an empty send-back (not saved)
    can_change: bool = True  # the run has tools that change files (an explore sub-agent has none)

    def withheld_tools(self) -> set[str]:
        """What a constrained step leaves out of its grammar (a local model's; the prompt is
        unchanged), on a task that asks for a change: ``finish`` and ``write_file`` before
        the model has looked at anything (read, searched or run something: small models
        otherwise "fix" a file they have not seen, or finish at once; a failed edit is not
        looking), and ``finish`` for ``FINISH_WITHHELD_STEPS`` steps after an empty finish was
        sent back, or until files change (its note asks to reproduce, find and change first;
        small models answer it with the same finish). A later finish is free."""
        if not self.can_change or not asks_for_change(self.task):
            return set()
        if not self.looked:
            return {"finish", "write_file"}
        return {"finish"} if self.finish_withheld else set()

    def check_step(self, calls: list[str], results: list[ToolResult], *, malformed: bool, changed: bool, submitted: Submitted | None, last_text: str, work: WorkTree) -> StepCheck:
        """A step has run ``calls`` (their names, in order; ``results`` of all but a finish),
        ``malformed``: the model also made calls that could not be run; ``changed``: files
        changed (a checkpoint was committed); ``submitted``: the finish tool was called."""
        if changed:
            self.edited_since_tests = True
        self.finish_withheld = 0 if changed else max(0, self.finish_withheld - 1)
        ran = [name for name in calls if name != "finish"]
        if changed or any(name in LOOKING_TOOLS and not result.is_error for name, result in zip(ran, results)):
            self.looked = True
        if calls and calls[-1] == "run_tests":
            self.edited_since_tests = False
        new_tests = self._note_tests(results)
        progressed = changed or new_tests
        notes: list[str] = []
        stopped = not calls or submitted is not None
        auto_tested = stopped and self.auto_test and self.edited_since_tests
        if auto_tested:
            notes.append(self._auto_test(work, finishing=submitted is not None))
            progressed = True
        if submitted is not None:
            submitted = self._review_finish(submitted, work, notes)
        elif not calls and not malformed and not auto_tested:
            submitted = self._answer_without_call(last_text, work, notes)
        if calls or malformed:
            self.text_only = 0
        stop = None
        if self.text_only >= TEXT_ONLY_STOP and submitted is None:
            notes.clear()
            stop = f"{TEXT_ONLY_STOP} answers in a row without a tool call"
        return StepCheck([note for note in notes if note], progressed, submitted, stop)

    def failing_files(self) -> list[str]:
        """The files of the tests that failed in the last run."""
        failing = self.last_tests.failing if self.last_tests else ()
        return sorted({test_id.split("::")[0] for test_id in failing})

    def _note_tests(self, results: list[ToolResult]) -> bool:
        """Remember the last test outcome; True when it differs from the previous one. A run
        that ran no test (a command that is not a test runner, a path that does not exist) is
        neither: a small model otherwise "progresses" by running a broken command, which
        clears the loop guard, and its finish is sent back for a failure that says nothing."""
        new = False
        for result in results:
            tests = result.data.get("tests")
            if tests and tests["passed"] + tests["failed"] + tests["errors"] + tests.get("skipped", 0) > 0:
                run = TestRun.from_tool(tests)
                new |= run != self.last_tests
                self.last_tests = run
        return new

    def _auto_test(self, work: WorkTree, *, finishing: bool) -> str:
        """The model stopped after editing without running the tests: run them for it."""
        result = work.run_tests()
        if result is None:  # nothing to run
            self.edited_since_tests = False
            return "" if finishing else loop_note("no_tool_call")
        self._note_tests([result])
        self.edited_since_tests = work.checkpoint()  # the test run itself may change files
        return loop_note("auto_tests", output=result.output)

    def _review_finish(self, submitted: Submitted, work: WorkTree, notes: list[str]) -> Submitted | None:
        """The finish, accepted (its summary says when nothing changed), or None: sent back
        with a note."""
        changes = work.changes()
        changed = changes is None or bool(changes)
        note = None
        if self.last_tests is not None and not self.last_tests.ok:
            note = self.review.failing(self.last_tests.failing)
        elif not changed and self.can_change:  # a read-only run's finish has nothing to change
            note = self.review.empty(self.task)
            self.finish_withheld = FINISH_WITHHELD_STEPS if note is not None else 0
        elif changes and all(change["kind"] == "add" for change in changes):
            note = self.review.added_only(self.task, [change["path"] for change in changes])
        if note:
            notes.append(note)
            return None
        if not changed and self.review.empty_sent_back:
            return Submitted(f"{submitted.summary.rstrip()} {NO_CHANGES_NOTE}".strip())
        return submitted

    def _answer_without_call(self, last_text: str, work: WorkTree, notes: list[str]) -> Submitted | None:
        """A nudge; after TEXT_ONLY_FINISH in a row with the work verified, the work handed in."""
        self.text_only += 1
        tests = self.last_tests
        if self.text_only >= TEXT_ONLY_FINISH and tests is not None and tests.ok and not self.edited_since_tests:
            paths = work.changed_paths()
            if paths:
                summary = last_text.strip() or f"Changed {', '.join(paths)}; {tests.passed} tests pass."
                return Submitted(
                    f"{summary}\n\n(kcode ended the run: the model answered {self.text_only} times "
                    "without calling a tool, after its changes passed the tests.)"
                )
        notes.append(loop_note("no_tool_call"))
        return None

    def saved(self) -> dict[str, Any]:
        return {
            "last_tests": self.last_tests.saved() if self.last_tests else None,
            "edited_since_tests": self.edited_since_tests,
            "finish_review": self.review.saved(),
            "looked": self.looked,
        }

    @classmethod
    def restore(cls, agent_state: dict[str, Any], *, task: str = "", auto_test: bool = True) -> Verification:
        """From the agent state saved with a step. Sessions saved before kept these keys at its
        top level (``last_tests`` as a list, the failing send-backs as ``finish_blocks``)."""
        saved = agent_state.get("verify")
        if saved is None:
            saved = agent_state
        last = saved.get("last_tests")
        return cls(
            task=task,
            auto_test=auto_test,
            last_tests=TestRun.restore(last) if last else None,
            edited_since_tests=bool(saved.get("edited_since_tests")),
            review=FinishReview.restore(saved.get("finish_review") or {}, int(saved.get("finish_blocks", 0))),
            looked=bool(saved.get("looked", bool(saved))),  # saved before the key: as if it had
        )
