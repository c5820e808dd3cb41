"""Generation speed with the tool-call grammar against free generation, on a real GGUF.

The same short prompts, with kcode's real tool schemas, run through ``LlamaCppModel.stream``
(greedy) in four ways, interleaved (each repeat runs every prompt in every mode, the order
rotated from prompt to prompt so that no mode always comes first):

  free          no grammar (``--no-constrain-tools``)
  opener        the default: free until the tool-call opener, then the grammar
  required      the grammar from the first token (the step after an answer without a tool call)
  grammar-first ``required`` with llama-cpp-python's order: the grammar applied to the whole
                vocabulary before top-k at every token (what kcode did before; for the why)

Tokens/s counts the tokens after the first one over the time after the first one (the prefill
is not part of it); a mode's figure is, per prompt, the best of the repeats (the least disturbed
run on a shared machine), then the median over the prompts. The figure is the ratio required/free (the grammar on every token: the
worst case); target ≥ 0.95.

    python evals/perf/grammar.py [--model PATH] [--repeats 3] [--tokens 96] [--threads N] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from kcode.config import LlamaCppOptions  # noqa: E402
from kcode.llm import ModelOptions, StepEnd, create_model  # noqa: E402
from kcode.tools import default_tools  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference import DEFAULT_MODELS  # noqa: E402  (where the 0.5B GGUF may be)
SYSTEM = "You are a coding agent working in a Python repository. Use the tools to do the task."
PROMPTS = (
    "Read the file src/calc/core.py.",
    "Run the tests of the repository.",
    "Search the repository for the function parse_date.",
    "Create the file notes/todo.md with a short list of three things to check in the parser.",
)
MODES = ("free", "opener", "required", "grammar-first")


def _run(model, mode: str, prompt: str, tools) -> dict:
    model._constrain_tools = mode != "free"
    model.require_tool_call = mode in ("required", "grammar-first")
    model._grammar_first = mode == "grammar-first"
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
    end = None
    for chunk in model.stream(messages, tools):
        if isinstance(chunk, StepEnd):
            end = chunk
    done = time.perf_counter()
    assert end is not None
    step = model.last_step
    tokens = end.usage.output_tokens
    seconds = done - (step.first_token_at or done)
    return {"mode": mode, "prompt": prompt, "tokens": tokens, "seconds": round(seconds, 3),
            "tokens_per_second": round((tokens - 1) / seconds, 2) if tokens > 1 and seconds > 0 else None,
            "resampled": step.resampled_tokens, "calls": [call.name for call in end.tool_calls],
            "valid_calls": sum(call.error is None for call in end.tool_calls)}


def bench(path: str, repeats: int, n_tokens: int, threads: int | None) -> dict:
    tools = default_tools().specs()
    options = ModelOptions(temperature=0.0, max_output_tokens=n_tokens,
                           llamacpp=LlamaCppOptions(ctx=4096, threads=threads, prefix_cache="off"))
    model = create_model(path, options)
    runs = []
    try:
        _run(model, "free", PROMPTS[0], tools)  # warm-up: buffers allocated, pages touched
        turn = 0
        for _ in range(repeats):
            for prompt in PROMPTS:
                for mode in MODES[turn % 4:] + MODES[: turn % 4]:  # each mode in each place in turn
                    runs.append(_run(model, mode, prompt, tools))
                turn += 1
    finally:
        model.close()
    # per prompt the best of the repeats (the least disturbed run), then the median over prompts
    speeds = {mode: statistics.median(max(r["tokens_per_second"] or 0.0 for r in runs if r["mode"] == mode and r["prompt"] == prompt)
                                      for prompt in PROMPTS)
              for mode in MODES}
    return {
        "model": Path(path).name,
        "threads": threads or "physical cores",
        "tokens_per_second": {mode: round(value, 2) for mode, value in speeds.items()},
        "ratio_required_free": round(speeds["required"] / speeds["free"], 3),
        "ratio_opener_free": round(speeds["opener"] / speeds["free"], 3),
        "ratio_grammar_first_free": round(speeds["grammar-first"] / speeds["free"], 3),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=next((m for m in DEFAULT_MODELS if m and Path(m).is_file()), None))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=96, help="output cap per step")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not args.model:
        sys.exit("no model: pass --model PATH.gguf or run `kcode models pull qwen2.5-coder-0.5b`")
    report = bench(args.model, args.repeats, args.tokens, args.threads)
    for mode, value in report["tokens_per_second"].items():
        resampled = sum(r["resampled"] for r in report["runs"] if r["mode"] == mode)
        tokens = sum(r["tokens"] for r in report["runs"] if r["mode"] == mode)
        print(f"{mode:>14}: {value:7.2f} tok/s  resampled {resampled}/{tokens} tokens")
    print(f"figure: grammar/free = {report['ratio_required_free']:.3f} "
          f"(opener/free {report['ratio_opener_free']:.3f}; llama-cpp-python's grammar-first order/free "
          f"{report['ratio_grammar_first_free']:.3f})")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
