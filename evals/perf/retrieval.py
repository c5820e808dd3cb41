"""Retrieval of the pack at 3K, 8K and 32K tokens: is the code a fix must change in the pack?

    python evals/perf/retrieval.py swebench INSTANCES --checkouts DIR [--repos DIR] [--out F]
    python evals/perf/retrieval.py heldout [SUITE.jsonl] --src DIR [--out F]
    python evals/perf/retrieval.py stability REPO [--task TEXT] [--commits N]

Options for all: ``--budgets 3072,8192,32768``, ``--tag-cache F`` (a tag cache kept between
runs; default a fresh one), ``--tokenizer qwen|estimate`` (default
``qwen``: the default model's tokenizer, Qwen2.5-Coder-1.5B's GGUF vocabulary, loaded with
``vocab_only``; ``estimate`` is 4 characters per token), ``--no-bm25``, ``--limit N``.

It uses only ``Packer(...).pack(...)`` and the pack's text and ``files_whole``, so the same
script measures another checkout of kcode: ``PYTHONPATH=/tmp/kcode-base python
evals/perf/retrieval.py ...`` gives the figures of the code at that commit.

**swebench**: SWE-bench-format instances (``.parquet`` or ``.jsonl``; e.g. the pytest,
requests and sphinx instances of SWE-bench Verified), each packed in ``DIR/<instance_id>``,
a checkout at its ``base_commit`` (made with ``git worktree add`` from ``--repos
DIR/<owner>+<name>`` when missing), with the problem statement as the task. The measure:
the lines the gold patch removes (``-`` lines, stripped, blank ones left out) are present
in the pack, inside the text the pack shows of that same file (whole, or an excerpt; the
map's signature lines do not count). A file the patch only adds to is judged by its hunks'
context lines instead (the code around the insertion point). Reported per budget:
``all_lines`` (share of instances with every such line present), ``line_share`` (mean
share of lines present), and ``anywhere`` (every line found anywhere in the pack text,
map included: the laxer reading); and ``composition``: the mean share of the pack's
characters that the map takes, and test files' blocks.

**heldout**: the held-out set (``evals/swebench/heldout_suite.jsonl``; ``--src`` holds the
extracted django and sympy sdists it was written against). Strict measure: the gold
definition's body (the innermost function or class around each insertion point, from
Python's ``ast``; at module level, the hunk's old lines) is in the pack text verbatim.

BM25 (SWE-bench's retrieval baseline) ranks the same files by BM25 over their full text
and packs whole files, best first, while they fit.

**stability**: the pack is a prompt prefix whose KV state is cached. In a git repository,
for each of the last ``--commits`` commits that changed exactly one ``.py`` file, pack at
its parent and at the commit (same task) and report the share of the pack text's prefix
that is byte-identical before and after. ``--edit-first-shown`` instead edits the first
file the pack shows (what ``first_step.py`` does: the worst case for a prefix) in a clone,
commits, and packs again.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(1, str(Path(__file__).resolve().parent))  # after PYTHONPATH: kcode stays the chosen one

from repomap import BM25, _terms  # noqa: E402

BUDGETS = (3072, 8192, 32768)
_QWEN = "qwen2.5-coder-1.5b"
_FILE_BLOCK = re.compile(r'<file path="([^"]+)"[^>]*>\n(.*?)</file>\n', re.S)


def token_counter(kind: str):
    if kind == "estimate":
        from kcode.llm.base import estimate_tokens

        return estimate_tokens, "estimate"
    from llama_cpp import Llama

    from kcode.llm.models import model_path

    vocab = Llama(str(model_path(_QWEN)), vocab_only=True, verbose=False)
    return (lambda text: len(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False))), _QWEN


def load_instances(path: Path, repos: set[str] | None = None) -> list[dict]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    else:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if repos is None or r["repo"] in repos]
    return sorted(rows, key=lambda r: r["instance_id"])


def patch_targets(patch: str) -> dict[str, list[str]]:
    """Per file the patch changes: its removed lines, or (adding only) its hunks' context lines."""
    removed: dict[str, list[str]] = {}
    context: dict[str, list[str]] = {}
    path = None
    for line in patch.splitlines():
        if line.startswith("diff --git"):
            path = None
        elif line.startswith("--- "):
            path = line[6:] if line.startswith("--- a/") else None
            if path is not None:
                removed.setdefault(path, [])
                context.setdefault(path, [])
        elif line.startswith("+++ ") or line.startswith("@@") or path is None:
            continue
        elif line.startswith("-") and line[1:].strip():
            removed[path].append(line[1:].strip())
        elif line.startswith(" ") and line[1:].strip():
            context[path].append(line[1:].strip())
    return {p: (removed[p] or context[p]) for p in removed if removed[p] or context[p]}


def shown_lines(text: str) -> dict[str, set[str]]:
    """The stripped lines of each file's blocks in a pack (whole files and excerpts)."""
    shown: dict[str, set[str]] = {}
    for path, body in _FILE_BLOCK.findall(text):
        shown.setdefault(path, set()).update(line.strip() for line in body.splitlines())
    return shown


_MAP_BLOCK = re.compile(r"<repo_map>\n.*?</repo_map>\n", re.S)
_TEST_FILE = re.compile(r"(^|/)(tests?|testing)/|(^|/)(test_[^/]*|[^/]*_tests?\.py|conftest\.py)$")


def composition(text: str) -> dict:
    """Shares of the pack's characters: the map, and test files' blocks (whole or excerpts)."""
    total = max(len(text), 1)
    tests = sum(len(m.group(0)) for m in re.finditer(r'<file path="([^"]+)"[^>]*>\n.*?</file>\n', text, re.S)
                if _TEST_FILE.search(m.group(1)))  # fmt: skip
    return {"map_share": round(sum(len(m) for m in _MAP_BLOCK.findall(text)) / total, 3), "test_share": round(tests / total, 3)}


def line_scores(text: str, targets: dict[str, list[str]]) -> dict:
    shown = shown_lines(text)
    anywhere = {line.strip() for line in text.splitlines()}
    wanted = [(p, line) for p, lines in targets.items() for line in lines]
    present = [line in shown.get(p, ()) for p, line in wanted]
    return {
        "all_lines": all(present),
        "line_share": sum(present) / len(present) if present else 1.0,
        "anywhere": all(line in anywhere for _, line in wanted),
    }


def bm25_pack(root: Path, files: list[str], task: str, count, budget: int, cache: dict) -> str:
    """SWE-bench's BM25 retrieval: whole files by BM25 rank over their full text while they fit."""
    key = str(root)
    if key not in cache:
        texts = {p: (root / p).read_text("utf-8", "replace") for p in files}
        blocks = {p: f'<file path="{p}">\n{t}{"" if t.endswith(chr(10)) or not t else chr(10)}</file>\n' for p, t in texts.items()}
        cache.clear()
        cache[key] = (BM25({p: _terms(p + "\n" + t) for p, t in texts.items()}), blocks, {})
    index, blocks, sizes = cache[key]
    used, chosen = 0, []
    for path in index.rank(task):
        if path not in sizes:
            sizes[path] = count(blocks[path])
        if used + sizes[path] <= budget:
            chosen.append(path)
            used += sizes[path]
        if budget - used < 50:
            break
    return "".join(blocks[p] for p in sorted(chosen))


def checkout(instance: dict, checkouts: Path, repos: Path | None) -> Path | None:
    root = checkouts / instance["instance_id"]
    if not root.exists() and repos is not None:
        clone = repos / instance["repo"].replace("/", "+")
        subprocess.run(["git", "-C", str(clone), "worktree", "add", "-q", "--detach", str(root), instance["base_commit"]], check=True)
    return root if root.exists() else None


def summarise(rows: list[dict], methods: list[str], budgets, measures) -> dict:
    out: dict = {"n": len(rows)}
    for method in methods:
        out[method] = {
            str(b): {m: round(statistics.mean(float(r[method][str(b)][m]) for r in rows), 3) for m in measures}
            for b in budgets
        }
    return out


def run_swebench(args, count, tokenizer: str) -> dict:
    from kcode.context.pack import Packer

    instances = load_instances(args.instances, {"pytest-dev/pytest", "psf/requests", "sphinx-doc/sphinx"} if args.three else None)
    instances = instances[: args.limit] if args.limit else instances
    cache_path = args.tag_cache or Path(tempfile.mkdtemp()) / "tags.sqlite"
    methods = ["kcode"] + ([] if args.no_bm25 else ["bm25"])
    rows, bm25_cache = [], {}
    started = time.perf_counter()
    for instance in instances:
        root = checkout(instance, args.checkouts, args.repos)
        if root is None:
            print(f"skip {instance['instance_id']}: no checkout", file=sys.stderr)
            continue
        targets = patch_targets(instance["patch"])
        packer = Packer(root, cache_path=cache_path)
        row: dict = {"instance_id": instance["instance_id"], "kcode": {}, "bm25": {}}
        task = instance["problem_statement"]
        for budget in args.budgets:
            pack = packer.pack(task=task, count_tokens=count, budget=budget, tokenizer=tokenizer)
            row["kcode"][str(budget)] = {**line_scores(pack.text, targets), **composition(pack.text), "tokens": pack.stats["tokens"]}
            if "bm25" in methods:
                text = bm25_pack(root, list(packer.index.files), task, count, budget, bm25_cache)
                row["bm25"][str(budget)] = line_scores(text, targets)
        packer.index.close()
        rows.append(row)
        brief = " ".join(f"{b}:{row['kcode'][str(b)]['line_share']:.2f}" for b in args.budgets)
        print(f"{instance['instance_id']:<40} {brief}", file=sys.stderr, flush=True)
    result = summarise(rows, methods, args.budgets, ("all_lines", "line_share", "anywhere"))
    result["composition"] = summarise(rows, ["kcode"], args.budgets, ("map_share", "test_share"))["kcode"]
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["instances"] = rows
    return result


def gold_bodies(root: Path, patch: str) -> list[tuple[str, str]]:
    """(path, source of the innermost def or class around each insertion) of a held-out patch."""
    found = []
    for path, hunk_start, hunk in re.findall(r"^--- a/(\S+)\n\+\+\+ \S+\n@@ -(\d+),\d+ [^\n]*\n((?:[ +-][^\n]*\n?)*)", patch, re.M):
        lines = (root / path).read_text("utf-8").splitlines()
        offset = 0
        for line in hunk.splitlines():
            if line.startswith("+"):
                break
            offset += 1
        anchor = int(hunk_start) + offset - 1  # the last old line before the insertion
        best = None
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.lineno <= anchor <= node.end_lineno:
                if best is None or node.lineno >= best.lineno:
                    best = node
        if best is not None:
            found.append((path, "\n".join(lines[best.lineno - 1 : best.end_lineno])))
        else:  # at module level: the hunk's own old lines
            found.append((path, "\n".join(line[1:] for line in hunk.splitlines() if not line.startswith("+"))))
    return found


def run_heldout(args, count, tokenizer: str) -> dict:
    from kcode.context.pack import Packer

    instances = load_instances(args.suite)
    instances = instances[: args.limit] if args.limit else instances
    roots = {name: next(args.src.glob(f"{name}-*")) for name in ("django", "sympy")}
    for root in roots.values():
        if not (root / ".git").exists():
            subprocess.run(["git", "init", "-q", str(root)], check=True)
            subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
            subprocess.run(["git", "-C", str(root), "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "sdist"], check=True)
    cache_path = args.tag_cache or Path(tempfile.mkdtemp()) / "tags.sqlite"
    packers = {name: Packer(root, cache_path=cache_path) for name, root in roots.items()}
    methods = ["kcode"] + ([] if args.no_bm25 else ["bm25"])
    rows, bm25_cache = [], {}
    for instance in instances:
        name = instance["repo"].split("/")[1]
        root, packer = roots[name], packers[name]
        bodies = gold_bodies(root, instance["patch"])
        row: dict = {"instance_id": instance["instance_id"], "gold": [p for p, _ in bodies], "kcode": {}, "bm25": {}}
        task = instance["problem_statement"]
        for budget in args.budgets:
            pack = packer.pack(task=task, count_tokens=count, budget=budget, tokenizer=tokenizer)
            whole = set(pack.stats["files_whole"])
            row["kcode"][str(budget)] = {
                "body": all(body in pack.text for _, body in bodies),
                "whole": all(p in whole for p, _ in bodies),
                "tokens": pack.stats["tokens"],
            }
            if "bm25" in methods:
                text = bm25_pack(root, list(packer.index.files), task, count, budget, bm25_cache)
                row["bm25"][str(budget)] = {"body": all(b in text for _, b in bodies), "whole": all(f'<file path="{p}">' in text for p, _ in bodies)}
        ranked = packer.rank(task).files
        row["rank"] = max((ranked.index(p) + 1 if p in ranked else 10**6) for p in {p for p, _ in bodies} or {""})
        rows.append(row)
        print(f"{instance['instance_id']:<28} " + " ".join(f"{b}:{int(row['kcode'][str(b)]['body'])}" for b in args.budgets), file=sys.stderr, flush=True)
    result = summarise(rows, methods, args.budgets, ("body", "whole"))
    # Every gold file among the first k of kcode's ranking (the figure docs/context.md gives).
    result["top_k"] = {str(k): round(sum(r["rank"] <= k for r in rows) / max(len(rows), 1), 3) for k in (1, 5, 20)}
    result["instances"] = rows
    return result


def common_prefix(a: str, b: str) -> int:
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:  # binary search on slices: fast for long texts
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def run_edit_first(args, count, tokenizer: str) -> dict:
    """What first_step.py does: edit the first file the pack shows (a line near its top) in
    a clone, commit, and pack again with the same task."""
    from kcode.context.pack import Packer

    work = Path(tempfile.mkdtemp()) / "clone"
    subprocess.run(["git", "clone", "-q", str(args.repo.resolve()), str(work)], check=True)
    cache_path = work.parent / "tags.sqlite"
    rows = {}
    for budget in args.budgets:
        subprocess.run(["git", "-C", str(work), "reset", "-q", "--hard", "origin/HEAD"], check=True)
        before = Packer(work, cache_path=cache_path).pack(task=args.task, count_tokens=count, budget=budget).text
        shown = re.findall(r'<file path="([^"]+)"', before)
        if not shown:
            continue
        target = work / shown[0]
        lines = target.read_text(encoding="utf-8").splitlines(keepends=True)
        target.write_text("".join(lines[:1] + ["# edited by the benchmark\n"] + lines[1:]), encoding="utf-8")
        subprocess.run(["git", "-C", str(work), "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qam", "edit"], check=True)
        after = Packer(work, cache_path=cache_path).pack(task=args.task, count_tokens=count, budget=budget).text
        rows[str(budget)] = {"file": shown[0], "prefix_unchanged": round(common_prefix(before, after) / max(len(before), 1), 3),
                             "first_block_at": round(before.index("<file path=") / len(before), 3)}  # fmt: skip
    return {"edit_first_shown": rows}


def run_stability(args, count, tokenizer: str) -> dict:
    from kcode.context.pack import Packer

    if args.edit_first_shown:
        return run_edit_first(args, count, tokenizer)
    repo = args.repo.resolve()
    log = subprocess.run(["git", "-C", str(repo), "log", "--format=%H", "--no-merges", "-n", "400", "--", "*.py"],
                         capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    work = Path(tempfile.mkdtemp()) / "tree"
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "-q", "--detach", str(work), log[0]], check=True)
    cache_path = work.parent / "tags.sqlite"
    rows = []
    try:
        for commit in log:
            if len(rows) >= args.commits:
                break
            names = subprocess.run(["git", "-C", str(repo), "diff-tree", "--no-commit-id", "--name-only", "-r", commit],
                                   capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
            if len(names) != 1 or not names[0].endswith(".py"):
                continue
            texts = {}
            for label, rev in (("before", commit + "^"), ("after", commit)):
                subprocess.run(["git", "-C", str(work), "checkout", "-q", "--detach", rev], check=True)
                packer = Packer(work, cache_path=cache_path)
                texts[label] = {b: packer.pack(task=args.task, count_tokens=count, budget=b).text for b in args.budgets}
                where = packer.pack(task=args.task, count_tokens=count, budget=args.budgets[-1]).stats
                packer.index.close()
            row = {"commit": commit[:12], "file": names[0]}
            for b in args.budgets:
                before, after = texts["before"][b], texts["after"][b]
                row[str(b)] = round(common_prefix(before, after) / max(len(before), 1), 3)
            row["in_pack"] = "whole" if names[0] in where["files_whole"] else "excerpt" if names[0] in where.get("files_excerpted", {}) else "map" if names[0] in where["files_in_map"] else "out"
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(work)], check=False)
    summary = {str(b): {"mean": round(statistics.mean(r[str(b)] for r in rows), 3), "min": min(r[str(b)] for r in rows)} for b in args.budgets} if rows else {}
    return {"n": len(rows), "prefix_unchanged": summary, "commits": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", type=lambda text: [int(b) for b in text.split(",")], default=list(BUDGETS),
                        help="comma-separated, e.g. 3072,8192,32768")
    parser.add_argument("--tokenizer", choices=("qwen", "estimate"), default="qwen")
    parser.add_argument("--no-bm25", action="store_true")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--tag-cache", type=Path, help="tag cache file, kept between runs (default: a fresh one)")
    sub = parser.add_subparsers(dest="what", required=True)
    swe = sub.add_parser("swebench")
    swe.add_argument("instances", type=Path)
    swe.add_argument("--checkouts", type=Path, required=True)
    swe.add_argument("--repos", type=Path)
    swe.add_argument("--all-repos", dest="three", action="store_false", help="not only pytest, requests, sphinx")
    held = sub.add_parser("heldout")
    held.add_argument("suite", type=Path, nargs="?", default=Path(__file__).resolve().parents[1] / "swebench/heldout_suite.jsonl")
    held.add_argument("--src", type=Path, required=True)
    stab = sub.add_parser("stability")
    stab.add_argument("repo", type=Path)
    stab.add_argument("--task", default="")
    stab.add_argument("--commits", type=int, default=8)
    stab.add_argument("--edit-first-shown", action="store_true", help="edit and commit the first file the pack shows")
    args = parser.parse_args()
    count, tokenizer = token_counter(args.tokenizer)
    import kcode

    run = {"swebench": run_swebench, "heldout": run_heldout, "stability": run_stability}[args.what]
    result = {"kcode": str(Path(kcode.__file__).parent), "tokenizer": tokenizer, **run(args, count, tokenizer)}
    print(json.dumps({k: v for k, v in result.items() if k not in ("instances", "commits")}, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
