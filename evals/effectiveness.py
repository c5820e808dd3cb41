"""Effectiveness: kcode, mini-swe-agent and Aider on the same instances, with the same local
model and the same caps; resolve rates per tier and per agent, with tokens and wall time.

    python evals/effectiveness.py --dataset evals/suites/pypi-bugs.jsonl [--tier easy] \\
        [--agents kcode,mini,aider] [--model GGUF] [--max-steps 30] [--max-time 600] [--out DIR]

One llama-cpp-python server (``python -m llama_cpp.server``) serves the GGUF on 127.0.0.1
(default: the catalog's qwen2.5-coder-1.5b) for all three, through its OpenAI-compatible API;
it is stopped at the end. One agent at a time, one instance at a time.

- kcode: ``kcode eval run --model GGUF`` (this checkout's kcode, the model in process as a user
  runs it; ``--kcode-backend server``: ``--model llama-server:NAME --base-url ...``, the peers' server),
  ``--max-steps`` and ``--max-time``, one instance per process, killed at the wall cap like
  the peers (kcode checks its budget between steps); its tokens are its own ``result.json``
  and its model calls the ``usage`` events of its trajectory (one per call, the repair
  phase's included; when it was killed, those of its session's event log so far).
- mini-swe-agent (pinned, in a throwaway venv under ``<cache>/evals/peers/``): its
  ``DefaultAgent`` with ``mini.yaml``, ``step_limit`` = the step cap, the wall cap kills it.
- Aider (pinned, likewise): ``aider --message TASK`` in the checkout; no step cap of its own,
  so the wall cap bounds it.
- Peers' tokens and model calls: a loopback proxy in front of the server sums the ``usage``
  of every response of the run (``effectiveness_peers.UsageProxy``).

Each peer works in a fresh checkout (``kcode.evals.repos.checkout``); its patch is
``git add -A; git diff --cached BASE``. Output: ``OUT/<agent>/preds.jsonl`` (official
schema), ``OUT/<agent>/runs.jsonl`` (wall time, tokens, calls, status per instance),
``OUT/<agent>/grade/`` (``kcode.evals.grade``), ``OUT/summary.json`` and the printed table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from effectiveness_peers import AgentRun, LlamaServer, UsageProxy, ensure_peer, run_aider, run_mini, run_process, take_patch  # noqa: E402

from kcode.evals.dataset import Instance, instance_to_row, load_dataset, select  # noqa: E402

__all__ = ["AGENTS", "load_runs", "main", "parse_args", "ratio", "render_table", "summarize", "write_preds", "write_runs"]

AGENTS = ("kcode", "mini", "aider")
MODEL_ALIAS = "local"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="evals/effectiveness.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=ROOT / "evals" / "suites" / "pypi-bugs.jsonl")
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--instances", help="comma-separated instance ids")
    chosen.add_argument("--tier", choices=("easy", "medium", "hard"))
    parser.add_argument("--limit", type=int, help="the first N of the selection")
    parser.add_argument("--agents", default=",".join(AGENTS), help="comma-separated, of: " + ", ".join(AGENTS))
    parser.add_argument("--model", help="a GGUF path or a catalog name (default qwen2.5-coder-1.5b)")
    parser.add_argument("--max-steps", type=int, default=30, help="steps per instance (kcode, mini)")
    parser.add_argument("--max-time", type=float, default=600.0, help="wall seconds per instance (every agent)")
    parser.add_argument("--n-ctx", type=int, default=16384, help="the server's context window")
    parser.add_argument("--max-output-tokens", type=int, default=2048, help="per model call (kcode, mini)")
    parser.add_argument("--kcode-backend", choices=("in-process", "server"), default="in-process",
                        help="kcode's model: the GGUF in process (its default, as a user runs it) or the shared server")
    parser.add_argument("--mini-mode", choices=("text", "tools"), default="text",
                        help="mini-swe-agent's action format: text (mini_textbased.yaml; works with a server that returns tool calls as text) "
                             "or tools (mini.yaml; needs structured tool_calls)")
    parser.add_argument("--out", type=Path, default=Path("effectiveness-out"))
    parser.add_argument("--repos", type=Path, help="local mirrors (see kcode eval run --repos)")
    parser.add_argument("--peers-dir", type=Path, help="where the peers' venvs live (default <cache>/evals/peers)")
    parser.add_argument("--grade-workers", type=int, default=1)
    parser.add_argument("--redo", action="store_true", help="run instances already done again")
    args = parser.parse_args(argv)
    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    unknown = sorted(set(agents) - set(AGENTS))
    if unknown or not agents:
        parser.error(f"--agents: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(AGENTS)}")
    if args.max_steps < 1 or args.max_time <= 0 or (args.limit is not None and args.limit < 1):
        parser.error("--max-steps, --max-time and --limit must be positive")
    args.agents = agents
    return args


def choose(instances: list[Instance], args: argparse.Namespace) -> list[Instance]:
    ids = args.instances.split(",") if args.instances else None
    chosen = select(instances, ids=ids)
    if args.tier:
        chosen = [i for i in chosen if i.tier == args.tier]
    if args.limit:
        chosen = chosen[: args.limit]
    if not chosen:
        raise SystemExit("effectiveness: no instance selected")
    return chosen


def resolve_model(spec: str | None) -> Path:
    """A GGUF file: a path, or a catalog model's file (pulled on first use)."""
    if spec and spec.endswith(".gguf"):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise SystemExit(f"effectiveness: no GGUF at {path}")
        return path
    from kcode.llm.models import ensure_model

    return Path(ensure_model(spec or "qwen2.5-coder-1.5b"))


# --- output files (pure) ----------------------------------------------------------------


def write_preds(path: Path, runs: Sequence[AgentRun], model_name: str) -> Path:
    """The official ``preds.jsonl``: instance_id, model_name_or_path, model_patch."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"instance_id": r.instance_id, "model_name_or_path": model_name, "model_patch": r.patch}) for r in runs]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def write_runs(path: Path, runs: Sequence[AgentRun]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({k: v for k, v in asdict(r).items() if k != "patch"}) + "\n" for r in runs), encoding="utf-8")


def load_runs(agent_dir: Path) -> dict[str, AgentRun]:
    """The runs already done for an agent (patches from its preds.jsonl)."""
    runs: dict[str, AgentRun] = {}
    runs_file, preds_file = agent_dir / "runs.jsonl", agent_dir / "preds.jsonl"
    if not runs_file.exists():
        return runs
    patches = {}
    if preds_file.exists():
        for line in preds_file.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            patches[row["instance_id"]] = row.get("model_patch") or ""
    for line in runs_file.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        runs[row["instance_id"]] = AgentRun(**row, patch=patches.get(row["instance_id"], ""))
    return runs


# --- the agents -------------------------------------------------------------------------


def trajectory_usage(trajectory: Path) -> tuple[int, int]:
    """(model calls, input + output tokens) of a kcode event log: its ``usage`` events, one
    per model call; (0, 0) when it is missing."""
    try:
        lines = trajectory.read_text(encoding="utf-8").splitlines()
    except OSError:
        return 0, 0
    calls = tokens = 0
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a torn last line of a killed run
        if isinstance(event, dict) and event.get("type") == "usage":
            calls += 1
            tokens += int(event.get("input_tokens") or 0) + int(event.get("output_tokens") or 0)
    return calls, tokens


def run_kcode(inst: Instance, args: argparse.Namespace, proxy: UsageProxy, out: Path) -> AgentRun:
    """``kcode eval run`` on one instance (this checkout's kcode), its own ``--max-steps`` and
    ``--max-time`` (which also ends a step in flight). As a safety the process group is killed
    20 s after the cap (time to write the patch), and the patch is then taken from the
    checkout it keeps (``--keep-checkouts``)."""
    dataset = out / "datasets" / f"{inst.instance_id}.jsonl"
    dataset.parent.mkdir(parents=True, exist_ok=True)
    dataset.write_text(json.dumps(instance_to_row(inst)) + "\n", encoding="utf-8")
    run_dir = out / "runs" / inst.instance_id  # a kcode eval run of its own: its trajectory stays
    shutil.rmtree(run_dir, ignore_errors=True)
    served = args.kcode_backend == "server"
    model = ["--model", f"llama-server:{MODEL_ALIAS}", "--base-url", proxy.url] if served else ["--model", str(args.gguf)]
    cmd = [
        sys.executable, "-m", "kcode", "eval", "run", "--dataset", str(dataset), *model,
        "--max-steps", str(args.max_steps), "--max-time", f"{int(args.max_time)}s", "--out", str(run_dir),
        "--keep-checkouts",
    ]  # fmt: skip
    if args.repos:
        cmd += ["--repos", str(args.repos)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KCODE_MAX_OUTPUT_TOKENS": str(args.max_output_tokens), "NO_COLOR": "1",
           **({"KCODE_CONTEXT_WINDOW": str(args.n_ctx)} if served else {"KCODE_CTX": str(args.n_ctx)})}  # fmt: skip
    proxy.reset()
    code, wall = run_process(cmd, ROOT, timeout=args.max_time + 20, log_path=out / "logs" / f"{inst.instance_id}.log", env=env)
    tally = proxy.reset()
    instance_dir = run_dir / "instances" / inst.instance_id
    checkout_dir = run_dir / "work" / inst.instance_id / "repo"
    result_file = instance_dir / "result.json"
    run = AgentRun(inst.instance_id, wall_s=wall, extra={"exit_code": code, "proxy": tally})
    try:
        if code is not None and result_file.exists():
            result = json.loads(result_file.read_text(encoding="utf-8"))
            tokens = result.get("tokens") or {}
            patch_file = instance_dir / "patch.diff"
            run.patch = patch_file.read_text(encoding="utf-8") if patch_file.exists() else ""
            run.status = "error" if result.get("status") == "error" else "done"
            run.error, run.wall_s = result.get("error"), float(result.get("wall_s") or wall)
            run.tokens = int(tokens.get("input_tokens", 0)) + int(tokens.get("output_tokens", 0))
            # Model calls, as the proxy counts the peers': one ``usage`` event per call (the
            # loop's steps leave out the repair phase's calls).
            run.calls = trajectory_usage(instance_dir / "trajectory.jsonl")[0] or int(result.get("steps") or 0)
            run.extra.update(kcode_status=result.get("status"), tokens=tokens)
        else:
            # killed at the cap (or died): what it had changed so far; tokens as the proxy saw them
            run.status = "timeout" if code is None else "error"
            run.error = None if code is None else f"kcode eval run exited {code} with no result"
            run.patch = take_patch(checkout_dir, inst.base_commit) if checkout_dir.exists() else ""
            run.tokens, run.calls = tally["prompt_tokens"] + tally["completion_tokens"], tally["calls"]
            if not served:  # the model was in kcode's process: its own event log counts
                logs = sorted((instance_dir / "session").glob("*/events.jsonl"))
                run.calls, run.tokens = trajectory_usage(logs[-1]) if logs else (0, 0)
    finally:
        shutil.rmtree(run_dir / "work" / inst.instance_id, ignore_errors=True)
    return run


def run_peer(agent: str, inst: Instance, args: argparse.Namespace, bin_dir: Path, proxy: UsageProxy, out: Path) -> AgentRun:
    from kcode.evals.repos import checkout
    from kcode.evals.run import task_text

    work = out / "work" / inst.instance_id
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    run = AgentRun(inst.instance_id)
    try:
        repo = checkout(inst, work / "repo", args.repos)
        proxy.reset()
        if agent == "mini":
            code, run.wall_s = run_mini(bin_dir, repo, task_text(inst), model=MODEL_ALIAS, api_base=proxy.url,
                                        max_steps=args.max_steps, max_time=args.max_time, work=work,
                                        max_output_tokens=args.max_output_tokens, mode=args.mini_mode)
        else:
            code, run.wall_s = run_aider(bin_dir, repo, task_text(inst), model=MODEL_ALIAS, api_base=proxy.url,
                                         max_time=args.max_time, work=work, max_output_tokens=args.max_output_tokens)
        tally = proxy.reset()
        run.tokens, run.calls = tally["prompt_tokens"] + tally["completion_tokens"], tally["calls"]
        run.extra = {"exit_code": code, **tally}
        run.status = "timeout" if code is None else "done"
        run.patch = take_patch(repo, inst.base_commit)
        log_path = work / "agent.log"
        shutil.copyfile(log_path, out / "logs" / f"{inst.instance_id}.log") if log_path.exists() else None
    except Exception as exc:  # the instance's failure, not the benchmark's
        run.status, run.error = "error", f"{type(exc).__name__}: {exc}"
    finally:
        shutil.rmtree(work / "repo", ignore_errors=True)
    return run


# --- grading and the table --------------------------------------------------------------


def grade_agent(instances: list[Instance], runs: Sequence[AgentRun], out: Path, workers: int, repos: Path | None) -> dict[str, bool] | None:
    """{instance_id: resolved} from kcode.evals.grade, or None when grading is not available."""
    try:
        from kcode.evals.grade import grade
    except ImportError as exc:
        print(f"effectiveness: could not grade ({exc}); predictions are in {out}", file=sys.stderr)
        return None
    import inspect

    kwargs: dict[str, Any] = {"workers": workers, "run_id": out.name}
    if repos is not None and "repos_dir" in inspect.signature(grade).parameters:
        kwargs["repos_dir"] = repos
    summary = grade(instances, {r.instance_id: r.patch for r in runs}, out / "grade", **kwargs)
    resolved = set(summary.get("resolved_ids") or [])
    return {r.instance_id: r.instance_id in resolved for r in runs}


def summarize(instances: list[Instance], runs: dict[str, dict[str, AgentRun]], resolved: dict[str, dict[str, bool] | None]) -> dict[str, Any]:
    """Per agent, per tier (and "all"): resolved, total, mean wall s, mean tokens, mean calls."""
    tiers = {i.instance_id: i.tier or "-" for i in instances}
    table: dict[str, Any] = {}
    for agent, by_id in runs.items():
        grades = resolved.get(agent)
        rows: dict[str, Any] = {}
        for tier in [*sorted({tiers[i] for i in by_id}), "all"]:
            picked = [r for i, r in by_id.items() if tier in ("all", tiers[i])]
            n = len(picked)
            rows[tier] = {
                "total": n,
                "resolved": None if grades is None else sum(1 for r in picked if grades.get(r.instance_id)),
                "wall_s": round(sum(r.wall_s for r in picked) / n, 1) if n else 0.0,
                "tokens": round(sum(r.tokens for r in picked) / n) if n else 0,
                "calls": round(sum(r.calls for r in picked) / n, 1) if n else 0.0,
                "empty_patches": sum(1 for r in picked if not r.patch.strip()),
                "timeouts": sum(1 for r in picked if r.status == "timeout"),
                "errors": sum(1 for r in picked if r.status == "error"),
            }
        table[agent] = rows
    return table


def ratio(table: dict[str, Any]) -> str:
    """kcode's resolve rate over the best peer's: a number, "inf" (peers 0, kcode > 0), or "n/a"."""
    def rate(agent: str) -> float | None:
        row = table.get(agent, {}).get("all")
        if not row or row["resolved"] is None or not row["total"]:
            return None
        return row["resolved"] / row["total"]

    mine, peers = rate("kcode"), [r for r in (rate(a) for a in table if a != "kcode") if r is not None]
    if mine is None or not peers:
        return "n/a"
    best = max(peers)
    if best == 0:
        return "inf" if mine > 0 else "n/a (all 0)"
    return f"{mine / best:.2f}"


def render_table(table: dict[str, Any]) -> str:
    lines = [f"{'agent':<8} {'tier':<8} {'resolved':>10} {'rate':>6} {'wall s':>8} {'tokens':>8} {'calls':>6} {'empty':>6} {'t/o':>4} {'err':>4}"]
    for agent, rows in table.items():
        for tier, row in rows.items():
            solved = "-" if row["resolved"] is None else f"{row['resolved']}/{row['total']}"
            rate = "-" if row["resolved"] is None or not row["total"] else f"{row['resolved'] / row['total']:.0%}"
            lines.append(f"{agent:<8} {tier:<8} {solved:>10} {rate:>6} {row['wall_s']:>8.1f} {row['tokens']:>8} {row['calls']:>6} "
                         f"{row['empty_patches']:>6} {row['timeouts']:>4} {row['errors']:>4}")
    lines.append(f"kcode resolve rate / best peer's: {ratio(table)}")
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from kcode.paths import cache_dir

    instances = choose(load_dataset(args.dataset), args)
    gguf = args.gguf = resolve_model(args.model)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    peers_dir = args.peers_dir or cache_dir() / "evals" / "peers"
    bins = {agent: ensure_peer(agent, peers_dir) for agent in args.agents if agent != "kcode"}  # installs before the clock starts
    model_name = f"{gguf.stem}"
    print(f"effectiveness: {len(instances)} instances, agents {', '.join(args.agents)}, model {gguf.name}, "
          f"caps {args.max_steps} steps / {args.max_time:.0f} s, out {out}", file=sys.stderr)
    runs: dict[str, dict[str, AgentRun]] = {}
    started = time.monotonic()
    with LlamaServer(gguf, alias=MODEL_ALIAS, n_ctx=args.n_ctx, log_path=out / "llama-server.log") as server, UsageProxy(server.url) as proxy:
        for agent in args.agents:
            agent_dir = out / agent
            (agent_dir / "logs").mkdir(parents=True, exist_ok=True)
            done = {} if args.redo else load_runs(agent_dir)
            todo = [i for i in instances if i.instance_id not in done]
            for inst in todo:
                if agent == "kcode":
                    done[inst.instance_id] = run_kcode(inst, args, proxy, agent_dir)
                else:
                    done[inst.instance_id] = run_peer(agent, inst, args, bins[agent], proxy, agent_dir)
                if done[inst.instance_id].status == "timeout":
                    server.restart()
                ordered = [done[i.instance_id] for i in instances if i.instance_id in done]
                write_runs(agent_dir / "runs.jsonl", ordered)
                write_preds(agent_dir / "preds.jsonl", ordered, f"{agent}/{model_name}")
                r = done[inst.instance_id]
                print(f"[{agent}] {inst.instance_id}: {r.status}, {len(r.patch.splitlines())} patch lines, {r.wall_s:.0f} s, "
                      f"{r.tokens} tokens, {r.calls} calls", file=sys.stderr)
            ordered = [done[i.instance_id] for i in instances if i.instance_id in done]
            write_runs(agent_dir / "runs.jsonl", ordered)
            write_preds(agent_dir / "preds.jsonl", ordered, f"{agent}/{model_name}")
            runs[agent] = {r.instance_id: r for r in ordered}
    resolved = {agent: grade_agent(instances, list(by_id.values()), out / agent, args.grade_workers, args.repos)
                for agent, by_id in runs.items()}
    table = summarize(instances, runs, resolved)
    summary = {"model": gguf.name, "kcode_backend": args.kcode_backend, "instances": [i.instance_id for i in instances], "max_steps": args.max_steps,
               "max_time": args.max_time, "n_ctx": args.n_ctx, "table": table, "ratio": ratio(table),
               "peers": {a: "==".join(v) for a, v in __import__("effectiveness_peers").PEER_VERSIONS.items() if a in args.agents},
               "tokens_source": {"kcode": "its result.json", "peers": "usage proxy"}, "wall_s": round(time.monotonic() - started, 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(render_table(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
