"""``run_tests``: run the project's tests and report counts and the failing tests.

The command is the one given, else the configured one, else a detected one (pytest,
``npm test``, ``go test ./...``, ``cargo test``). pytest writes JUnit XML into the session's
scratch directory; other runners are parsed from their summary lines.
"""

from __future__ import annotations

import json
import re
import shlex
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field

from kcode.errors import ToolError
from kcode.tools.base import Params, Tool, ToolContext, ToolResult

__all__ = ["RunTestsTool", "TestReport", "detect_test_command", "parse_junit", "parse_summary", "is_pytest"]

_MAX_FAILURES_SHOWN = 10
_FAILURE_CHARS = 1500


@dataclass
class TestReport:
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (test id, trimmed output)

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.errors + self.skipped


def detect_test_command(root: Path) -> str | None:
    python = next((f"{v}/bin/python" for v in (".venv", "venv") if (root / v / "bin" / "python").exists()), "python3")
    if any((root / name).exists() for name in ("pytest.ini", "conftest.py", "tox.ini", "setup.cfg", "pyproject.toml", "setup.py")) or (root / "tests").is_dir() or any(root.glob("test_*.py")):
        return f"{python} -m pytest"
    package = root / "package.json"
    if package.exists():
        try:
            if json.loads(package.read_text(encoding="utf-8")).get("scripts", {}).get("test"):
                return "npm test"
        except (json.JSONDecodeError, AttributeError):
            pass
    if (root / "go.mod").exists():
        return "go test ./..."
    if (root / "Cargo.toml").exists():
        return "cargo test"
    return None


def _trim(text: str, limit: int = _FAILURE_CHARS) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    return text[: limit // 3] + "\n[...]\n" + text[-(2 * limit) // 3 :]


def _junit_id(classname: str, name: str, root: Path | None) -> str:
    """pytest's id of a JUnit test case: ``pkg.tests.test_x.TestY`` + ``test_z`` is
    ``pkg/tests/test_x.py::TestY::test_z``. The module is the longest dotted prefix that is a
    file under ``root``; without one, the parts up to the first capitalized one (a class)."""
    parts = classname.split(".")
    split = None
    if root is not None:
        split = next((n for n in range(len(parts), 0, -1) if (root / ("/".join(parts[:n]) + ".py")).is_file()), None)
    if split is None:
        split = next((n for n, part in enumerate(parts) if part[:1].isupper()), len(parts)) or len(parts)
    return "::".join([f"{'/'.join(parts[:split])}.py", *parts[split:], name])


def parse_junit(xml_text: str, root: Path | None = None) -> TestReport:
    report = TestReport()
    tree = ElementTree.fromstring(xml_text)
    for case in tree.iter("testcase"):
        classname = case.get("classname", "")
        name = case.get("name", "")
        file_attr = case.get("file")
        if file_attr:
            test_id = f"{file_attr}::{name}"
        elif classname:
            test_id = _junit_id(classname, name, root)
        else:
            test_id = name
        outcome = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        if outcome is None:
            report.passed += 1
        elif outcome.tag == "skipped":
            report.skipped += 1
        else:
            if outcome.tag == "failure":
                report.failed += 1
            else:
                report.errors += 1
            detail = (outcome.text or "") or outcome.get("message", "")
            report.failures.append((test_id, _trim(detail)))
    return report


_COUNT_PATTERNS = {
    "passed": re.compile(r"(\d+) (?:passed|passing)"),
    "failed": re.compile(r"(\d+) (?:failed|failing)"),
    "errors": re.compile(r"(\d+) errors?\b"),
    "skipped": re.compile(r"(\d+) (?:skipped|pending|ignored)"),
}
_FAILING_IDS = [
    re.compile(r"^FAILED (\S+)", re.M),  # pytest -rf
    re.compile(r"^ERROR (\S+)", re.M),
    re.compile(r"^--- FAIL: (\S+)", re.M),  # go test
    re.compile(r"^test (\S+) \.\.\. FAILED", re.M),  # cargo test
]


_UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in [\d.]+s$", re.M)
_UNITTEST_VERDICT = re.compile(r"^(OK|FAILED)(?: \(([^)]*)\))?$", re.M)
_UNITTEST_FAILING = re.compile(r"^(?:FAIL|ERROR): (\S+) \(([\w.]+?)(?:\.\1)?\)", re.M)


def _parse_unittest(output: str) -> TestReport | None:
    """unittest's "Ran N tests" and "OK" / "FAILED (failures=1, errors=2, skipped=3)"."""
    ran = _UNITTEST_RAN.findall(output)
    verdict = _UNITTEST_VERDICT.findall(output)
    if not ran or not verdict:
        return None
    counts = dict(re.findall(r"(\w+)=(\d+)", verdict[-1][1]))
    report = TestReport(failed=int(counts.get("failures", 0)), errors=int(counts.get("errors", 0)),
                        skipped=int(counts.get("skipped", 0)) + int(counts.get("expected failures", 0)))
    report.passed = max(0, int(ran[-1]) - report.failed - report.errors - report.skipped)
    for name, where in _UNITTEST_FAILING.findall(output):
        report.failures.append((f"{where}.{name}", ""))
    return report


def parse_summary(output: str) -> TestReport:
    """Counts from a runner's summary lines (the last line that mentions each count wins);
    unittest's summary is read as unittest prints it."""
    unittest = _parse_unittest(output)
    if unittest is not None:
        return unittest
    report = TestReport()
    for name, pattern in _COUNT_PATTERNS.items():
        found = pattern.findall(output)
        if found:
            setattr(report, name, int(found[-1]))
    if not report.failed and not report.passed:  # go test prints per-test lines only
        report.passed = len(re.findall(r"^--- PASS: ", output, re.M))
        report.failed = len(re.findall(r"^--- FAIL: ", output, re.M))
    seen: set[str] = set()
    for pattern in _FAILING_IDS:
        for test_id in pattern.findall(output):
            if test_id not in seen:
                seen.add(test_id)
                report.failures.append((test_id, ""))
    return report


class RunTestsParams(Params):
    command: str | None = Field(default=None, description="Test command to run instead of the configured/detected one, e.g. 'python3 -m pytest tests/test_x.py -x'.")


def is_pytest(command: str) -> bool:
    """Whether ``command`` runs pytest (so test ids and pytest's options may be added to it)."""
    return _is_pytest(command)


def _is_pytest(command: str) -> bool:
    try:
        words = shlex.split(command)
    except ValueError:
        return False
    return "pytest" in words or any(word.endswith("/pytest") for word in words) or (
        "-m" in words and words[words.index("-m") + 1 : words.index("-m") + 2] == ["pytest"]
    )


class RunTestsTool(Tool):
    name = "run_tests"
    Params = RunTestsParams
    may_change_files = True  # tests may write files (snapshots, caches)

    def __init__(self, timeout: float = 1800.0) -> None:
        self.timeout = timeout

    def run(self, params: RunTestsParams, ctx: ToolContext) -> ToolResult:
        command = params.command or ctx.test_command or detect_test_command(ctx.root)
        if not command:
            raise ToolError(
                "no test command configured or detected (looked for pytest, package.json, go.mod, Cargo.toml); "
                "pass command='...' or set test_command in .kcode/config.toml"
            )
        junit: Path | None = None
        full_command = command
        if _is_pytest(command) and ctx.scratch_dir is not None:
            ctx.scratch_dir.mkdir(parents=True, exist_ok=True)
            junit = ctx.scratch_dir / f"junit-step{ctx.step}.xml"
            junit.unlink(missing_ok=True)
            full_command = f"{command} -rfE --junitxml={shlex.quote(str(junit))}"
        result = ctx.sandbox.run(full_command, cwd=ctx.root, timeout=self.timeout, cancel=ctx.cancel)
        report = None
        if junit is not None and junit.exists():
            try:
                report = parse_junit(junit.read_text(encoding="utf-8", errors="replace"), ctx.root)
            except ElementTree.ParseError:
                report = None
            junit.unlink(missing_ok=True)
        if report is None:
            report = parse_summary(result.output)
        ok = result.exit_code == 0 and not result.timed_out and report.failed == 0 and report.errors == 0
        # pytest's JUnit file or unittest's "Ran 0 tests" says so; 126/127: the command could not run
        nothing_ran = report.total == 0 and (junit is not None or _UNITTEST_RAN.search(result.output) is not None
                                             or result.exit_code in (126, 127))
        ok = ok and not nothing_ran
        rendered = _render(command, ok, report, result.describe())
        if nothing_ran:
            detected = ctx.test_command or detect_test_command(ctx.root)
            rendered += "\nNo tests ran: this command found no tests" + (
                f"; the project's test command is `{detected}` (call run_tests without `command` to run it, "
                "or pass a test file or test id to it)" if detected and detected != command else "") + "."
        return ToolResult(
            rendered,
            is_error=not ok,
            data={
                "tests": {
                    "command": command,
                    "ok": ok,
                    "passed": report.passed,
                    "failed": report.failed,
                    "errors": report.errors,
                    "skipped": report.skipped,
                    "failing": [test_id for test_id, _ in report.failures],
                    "exit_code": result.exit_code,
                }
            },
        )


def _render(command: str, ok: bool, report: TestReport, raw_output: str) -> str:
    counts = f"{report.passed} passed, {report.failed} failed, {report.errors} errors, {report.skipped} skipped"
    lines = [f"$ {command}", f"{'PASSED' if ok else 'FAILED'}: {counts}"]
    detailed = [(test_id, text) for test_id, text in report.failures if text]
    for test_id, text in detailed[:_MAX_FAILURES_SHOWN]:
        lines.append(f"\n--- {test_id}\n{text}")
    if len(report.failures) > len(detailed[:_MAX_FAILURES_SHOWN]):
        lines.append("\nfailing: " + ", ".join(test_id for test_id, _ in report.failures[:50]))
    if not ok and not detailed:
        lines.append("\n" + _trim(raw_output, 4000))
    return "\n".join(lines)
