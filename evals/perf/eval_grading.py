"""Grading without Docker: throughput, environment cache reuse, and agreement with the
official decisions on gold, empty and perturbed patches.

Prints: a cold gold pass (environments built), gold throughput (instances/min) at each
worker count on the warm cache (every environment reused), and for each perturbation how
many decisions agree with the official one: gold resolves; empty, dropped hunk, syntax
error, reverted fix, tampered test file, exit-code spoof and conftest spoof do not; a patch
that does not apply is an error. Target: >= 8 instances/min at 2 workers on light repos.

    python evals/perf/eval_grading.py                          # the built-in suite (evals/suites/pypi-bugs.jsonl)
    python evals/perf/eval_grading.py --dataset ../shared/swebench/SWE-bench_Verified_test.parquet \
        --repo pytest-dev/pytest --repos /work/.mirror --limit 8
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from kcode.evals.dataset import load_dataset  # noqa: E402
from kcode.evals.grade import grade  # noqa: E402


def blocks(patch: str) -> list[str]:
    return [b for b in re.split(r"(?m)^(?=diff --git )", patch) if b.startswith("diff --git ")]


def hunks(block: str) -> tuple[str, list[str]]:
    parts = re.split(r"(?m)^(?=@@ )", block)
    return parts[0], parts[1:]


def dropped_hunk(patch: str) -> str | None:
    """The gold patch without its last hunk (None when it has only one)."""
    files = [hunks(b) for b in blocks(patch)]
    if sum(len(h) for _, h in files) < 2:
        return None
    head, last = files[-1]
    files[-1] = (head, last[:-1])
    return "".join(h + "".join(hs) for h, hs in files if hs)


def not_applying(patch: str) -> str:
    """The gold patch against a file the repository does not have: no command of the chain
    can apply it (a changed line alone is not enough: ``patch --fuzz=5`` finds a place)."""
    path = re.match(r"diff --git a/(\S+)", patch).group(1)
    return patch.replace(f"a/{path}", f"a/{path}.orig").replace(f"b/{path}", f"b/{path}.orig")


def syntax_error(patch: str) -> str:
    """The gold patch with a line that does not parse after its first added line (the hunk's
    line counts grow by one)."""
    head, hs = hunks(blocks(patch)[0])
    first = hs[0]
    match = re.match(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@", first)
    new_count = int(match.group(4) or 1) + 1
    first = first.replace(match.group(0), f"@@ -{match.group(1)},{match.group(2) or 1} +{match.group(3)},{new_count} @@", 1)
    body = first.splitlines(keepends=True)
    for n, line in enumerate(body):
        if line.startswith("+"):
            body.insert(n + 1, "+)(\n")
            break
    return "".join([head, "".join(body), *hs[1:], *blocks(patch)[1:]])


def comment_only(patch: str, text: str) -> str:
    """A patch that adds ``text`` as the first lines of the gold patch's first file (the fix
    itself left out)."""
    path = re.match(r"diff --git a/(\S+)", blocks(patch)[0]).group(1)
    added = "".join(f"+{line}\n" for line in text.splitlines())
    n = len(text.splitlines())
    return f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -0,0 +1,{n} @@\n{added}"


def test_file(inst) -> str:
    files = inst.overrides.get("test_files") or re.findall(r"diff --git a/\S+ b/(\S+)", inst.test_patch)
    return files[0]


def perturbations(inst) -> dict[str, str | None]:
    gold = inst.patch
    f2p = "".join(f"PASSED {t}\\n" for t in inst.fail_to_pass)
    tests_dir = str(Path(test_file(inst)).parent)
    conftest = "" if tests_dir == "." else tests_dir + "/"
    tamper_target = test_file(inst)
    return {
        "gold": gold,
        "empty": "",
        "dropped hunk": dropped_hunk(gold),
        "non-applying": not_applying(gold),
        "syntax error": syntax_error(gold),
        "reverted fix": comment_only(gold, "# the fix, reverted"),
        "tampered test file": f"diff --git a/{tamper_target} b/{tamper_target}\n--- a/{tamper_target}\n+++ b/{tamper_target}\n@@ -0,0 +1,1 @@\n+import sys; sys.exit(0)\n",
        "exit-code spoof": comment_only(gold, f"import os\nos.write(1, b'{f2p}>>>>> End Test Output\\n')\nos._exit(0)"),
        "conftest spoof": (
            f"diff --git a/{conftest}conftest.py b/{conftest}conftest.py\nnew file mode 100644\n--- /dev/null\n+++ b/{conftest}conftest.py\n"
            "@@ -0,0 +1,6 @@\n+import pytest\n+\n+@pytest.hookimpl(hookwrapper=True)\n+def pytest_runtest_makereport(item, call):\n"
            "+    outcome = yield\n+    outcome.get_result().outcome = 'passed'\n"
        ),
    }


EXPECTED = {"gold": "resolved", "non-applying": "error"}  # everything else: not resolved


def decision(summary: dict, iid: str) -> str:
    if iid in summary["resolved_ids"]:
        return "resolved"
    if iid in summary["error_ids"]:
        return "error"
    return "unresolved"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=str(ROOT / "evals" / "suites" / "pypi-bugs.jsonl"))
    parser.add_argument("--repo", help="only this repository's instances")
    parser.add_argument("--repos", help="mirrors (default: the suite's build folder)")
    parser.add_argument("--cache", default=None, help="kcode's cache (environments); default: the user cache")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--instances", default="", help="comma-separated instance ids")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--out", default="/tmp/kcode-eval-grading")
    parser.add_argument("--skip-agreement", action="store_true")
    args = parser.parse_args()
    instances = load_dataset(Path(args.dataset))
    if args.repo:
        instances = [i for i in instances if i.repo == args.repo]
    if args.instances:
        wanted = set(args.instances.split(","))
        instances = [i for i in instances if i.instance_id in wanted]
    if args.limit:
        instances = instances[: args.limit]
    cache = Path(args.cache) if args.cache else None
    repos = Path(args.repos) if args.repos else None
    out = Path(args.out)
    figures: dict = {"instances": len(instances), "dataset": args.dataset}

    cold = grade(instances, "gold", out / "cold", workers=2, cache_dir=cache, repos_dir=repos)
    figures["cold"] = {"seconds": cold["kcode"]["seconds"], "env_cache": cold["kcode"]["env_cache"], "resolved": cold["resolved_instances"]}
    print(f"cold gold pass (-w 2): {cold['resolved_instances']}/{len(instances)} resolved in {cold['kcode']['seconds']:.1f}s; "
          f"environments built {cold['kcode']['env_cache']['built']}, reused {cold['kcode']['env_cache']['reused']}")
    for reason in {**cold["kcode"]["errors"], **cold["kcode"]["reasons"]}.items():
        print("   ", *reason)
    for workers in [int(w) for w in args.workers.split(",")]:
        started = time.monotonic()
        warm = grade(instances, "gold", out / f"warm-w{workers}", workers=workers, cache_dir=cache, repos_dir=repos)
        seconds = time.monotonic() - started
        rate = len(instances) / seconds * 60
        figures[f"w{workers}"] = {"seconds": round(seconds, 1), "per_min": round(rate, 1), "env_cache": warm["kcode"]["env_cache"],
                                  "resolved": warm["resolved_instances"]}
        print(f"gold -w {workers}: {len(instances)} in {seconds:.1f}s = {rate:.1f} instances/min; resolved {warm['resolved_instances']}; "
              f"environments built {warm['kcode']['env_cache']['built']}, reused {warm['kcode']['env_cache']['reused']}")
    if not args.skip_agreement:
        agreement: dict[str, dict] = {}
        table = {inst.instance_id: perturbations(inst) for inst in instances}
        for kind in next(iter(table.values())):
            preds = {iid: p[kind] for iid, p in table.items() if p[kind] is not None}
            if not preds:
                continue
            summary = grade([i for i in instances if i.instance_id in preds], preds, out / kind.replace(" ", "-"), workers=2, cache_dir=cache, repos_dir=repos)
            expected = EXPECTED.get(kind, "unresolved")
            got = {iid: decision(summary, iid) for iid in preds}
            wrong = {iid: d for iid, d in got.items() if not (d == expected or (expected == "unresolved" and d == "error"))}
            agreement[kind] = {"agree": len(got) - len(wrong), "of": len(got), "expected": expected, "disagree": wrong}
            print(f"{kind:20} {len(got) - len(wrong)}/{len(got)} agree (official: {expected})" + (f"  disagree: {wrong}" if wrong else ""))
        figures["agreement"] = agreement
    (out / "figures.json").write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
