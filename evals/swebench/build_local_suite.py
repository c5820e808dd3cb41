"""Build ``local_suite.jsonl``: SWE-bench-format instances over the django and sympy sdists.

Each instance pairs a hand-written, realistic problem statement with a gold patch made here
against the real source (a small edit after an anchor line), so the files the patch touches
are the files a solver must find. Run: ``python evals/swebench/build_local_suite.py SRC_DIR``
where SRC_DIR holds the extracted ``django-*`` and ``sympy-*`` sdists (evals/perf/repomap.py
downloads them).
"""

from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path

# (instance_id, repo, problem statement, [(path, anchor line, inserted line)])
INSTANCES = [
    ("django__local-0001", "django/django",
     "slugify() leaves leading and trailing dashes when the input starts with punctuation, e.g. "
     "slugify('--Hello World!--') returns '--hello-world--' instead of 'hello-world'. Strip dashes "
     "and underscores from both ends of the result.",
     [("django/utils/text.py", "def slugify(value, allow_unicode=False):", "    # strip leading/trailing dashes and underscores")]),
    ("django__local-0002", "django/django",
     "parse_duration() does not accept ISO 8601 durations with a comma as decimal separator, "
     "such as 'P1DT1,5S'. The standard allows both ',' and '.'.",
     [("django/utils/dateparse.py", "def parse_duration(value):", "    value = value.replace(',', '.') if isinstance(value, str) else value")]),
    ("django__local-0003", "django/django",
     "get_object_or_404 raises a confusing AttributeError when given a manager of an abstract "
     "model. It should raise a ValueError explaining that klass must be a Model, Manager or "
     "QuerySet, like _get_queryset does for other types.",
     [("django/shortcuts.py", "def _get_queryset(klass):", "    # abstract models have no default manager")]),
    ("django__local-0004", "django/django",
     "The migration autodetector generates an AlterUniqueTogether operation for a model that is "
     "being deleted in the same migration, so makemigrations produces a migration that fails "
     "with 'No model named ...'. generate_altered_unique_together should skip deleted models.",
     [("django/db/migrations/autodetector.py", "    def generate_altered_unique_together(self):", "        # models deleted in this migration are skipped below")]),
    ("django__local-0005", "django/django",
     "Paginator.page() raises TypeError instead of PageNotAnInteger when the page number is "
     "None (e.g. ?page= with no value). validate_number should treat None as invalid input.",
     [("django/core/paginator.py", "    def page(self, number):", "        # None is not an integer page number")]),
    ("django__local-0006", "django/django",
     "timesince() returns '0\xa0minutes' for dates in the future when reversed=False and depth=1, "
     "but the docs say it should return the same as for equal dates. Make timesince handle a "
     "negative delta consistently for every depth.",
     [("django/utils/timesince.py", "def timesince(d, now=None, reversed=False, time_strings=None, depth=2):", "    # negative deltas are clamped for every depth")]),
    ("django__local-0007", "django/django",
     "UniqueConstraint.deconstruct() drops the violation_error_code argument, so a migration "
     "written for a constraint with a custom violation_error_code loses it and "
     "makemigrations detects changes forever.",
     [("django/db/models/constraints.py", "    def deconstruct(self):", "        # include violation_error_code when it is set")]),
    ("sympy__local-0001", "sympy/sympy",
     "latex() of a Piecewise with a single (expr, True) piece prints an empty cases environment "
     "row. `latex(Piecewise((x, True)))` should print just `x`.",
     [("sympy/printing/latex.py", "    def _print_Piecewise(self, expr):", "        # a single otherwise-branch prints as its expression")]),
    ("sympy__local-0002", "sympy/sympy",
     "pycode() / lambdify with the 'math' module turns Piecewise without a default branch into "
     "code that returns None silently; PythonCodePrinter._print_Piecewise should raise or emit "
     "a nan default like the numpy printer.",
     [("sympy/printing/pycode.py", "    def _print_Piecewise(self, expr):", "        # add an explicit default branch")]),
    ("sympy__local-0003", "sympy/sympy",
     "nsimplify(0.1, rational=True, tolerance=0.01) ignores the tolerance and returns 1/10 "
     "exactly even when a simpler rational is within tolerance; nsimplify should honour "
     "tolerance when rational=True.",
     [("sympy/simplify/simplify.py", "def nsimplify(expr, constants=(), tolerance=None, full=False, rational=None,", "# tolerance applies to rational=True as well")]),
    ("sympy__local-0004", "sympy/sympy",
     "trigsimp(sin(x)**2 + cos(x)**2 + sinh(y)**2 - cosh(y)**2) returns an unsimplified "
     "expression with method='fu'; mixed trigonometric and hyperbolic terms should both be "
     "simplified.",
     [("sympy/simplify/trigsimp.py", "def trigsimp(expr, inverse=False, **opts):", "    # hyperbolic terms are simplified by the same pass")]),
    ("sympy__local-0005", "sympy/sympy",
     "Abs(x).is_zero returns None for a nonzero complex symbol x = Symbol('x', zero=False, "
     "complex=True); Abs._eval_is_zero should use the argument's is_zero.",
     [("sympy/functions/elementary/complexes.py", "    def _eval_is_zero(self):", "        # delegate to the argument's assumptions")]),
]  # fmt: skip


def make_patch(root: Path, edits: list[tuple[str, str, str]]) -> str:
    chunks = []
    for path, anchor, inserted in edits:
        old = (root / path).read_text(encoding="utf-8").splitlines(keepends=True)
        at = next(i for i, line in enumerate(old) if line.rstrip("\n") == anchor)
        new = old[: at + 1] + [inserted + "\n"] + old[at + 1 :]
        diff = difflib.unified_diff(old, new, f"a/{path}", f"b/{path}", n=3)
        chunks.append(f"diff --git a/{path} b/{path}\n" + "".join(diff))
    return "".join(chunks)


def main(src: Path, out: Path) -> None:
    roots = {name: next(src.glob(f"{name}-*")) for name in ("django", "sympy")}
    with out.open("w", encoding="utf-8") as handle:
        for instance_id, repo, problem, edits in INSTANCES:
            root = roots[repo.split("/")[1]]
            record = {
                "instance_id": instance_id,
                "repo": repo,
                "base_commit": root.name,  # the sdist version stands in for a commit
                "problem_statement": problem,
                "patch": make_patch(root, edits),
                "test_patch": "",
                "FAIL_TO_PASS": [],
                "PASS_TO_PASS": [],
            }
            handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).with_name("local_suite.jsonl"))
