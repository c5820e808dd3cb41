"""``kcode eval report``: what a run (or two, side by side) resolved, by repository and tier,
with tokens, steps, wall time and the reasons instances failed; as a terminal table or a
self-contained HTML page with a bar chart (inline SVG, no scripts, no network)."""

from __future__ import annotations

import html
import io
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kcode.errors import UsageError

__all__ = ["Run", "group_rows", "load_run", "render_html", "render_text"]


@dataclass
class Run:
    name: str
    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)


def load_run(path: Path) -> Run:
    """A run folder of ``kcode eval run`` (its manifest and instance results)."""
    from kcode.evals.run import load_results

    path = Path(path)
    manifest_file = path / "manifest.json"
    if not manifest_file.exists():
        raise UsageError(f"{path}: not a kcode eval run folder (no manifest.json)")
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    results = load_results(path)
    order = manifest.get("instances") or sorted(results)
    rows = [results[i] for i in order if i in results]
    return Run(name=f"{path.name} ({manifest.get('model', '?')})", path=path, manifest=manifest, results=rows)


def _reason(result: dict[str, Any]) -> str | None:
    """Why an instance did not resolve, in a few words (grouped in the report)."""
    if result.get("error"):
        text = str(result["error"])
        return text.split(":", 1)[0][:40] if ":" in text[:40] else text[:40]
    if result.get("grade_error"):
        return "grading: " + str(result["grade_error"])[:30]
    if not result.get("patch_lines"):
        return f"no change ({result.get('status')})"
    if result.get("resolved") is False:
        return f"unresolved ({result.get('status')})"
    return None


def group_rows(run: Run, key: str) -> dict[str, dict[str, float]]:
    """Per group (``repo`` or ``tier``, plus "all"): n, resolved, graded, mean tokens, steps, wall."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in run.results:
        groups[str(r.get(key) or "-")].append(r)
        groups["all"].append(r)
    table = {}
    for name, rs in groups.items():
        graded = [r for r in rs if r.get("resolved") is not None]
        table[name] = {
            "n": len(rs),
            "graded": len(graded),
            "resolved": sum(1 for r in graded if r["resolved"]),
            "tokens": sum(sum((r.get("tokens") or {}).get(k, 0) for k in ("input_tokens", "output_tokens")) for r in rs) / len(rs),
            "steps": sum(r.get("steps", 0) for r in rs) / len(rs),
            "wall_s": sum(r.get("wall_s", 0.0) for r in rs) / len(rs),
        }
    return table


def _cell(g: dict[str, float] | None) -> str:
    if not g:
        return "-"
    rate = f"{g['resolved']}/{g['graded']} ({100 * g['resolved'] / g['graded']:.0f}%)" if g["graded"] else f"{int(g['n'])} ungraded"
    return f"{rate}  {g['tokens'] / 1000:.1f}K tok  {g['steps']:.1f} steps  {g['wall_s']:.0f} s"


def render_text(runs: list[Run]) -> str:
    from rich.console import Console
    from rich.table import Table

    console = Console(record=True, width=160, file=io.StringIO())  # recorded, exported as text below
    for key, title in (("repo", "by repository"), ("tier", "by tier")):
        tables = [group_rows(run, key) for run in runs]
        names = sorted({n for t in tables for n in t if n != "all"}) + ["all"]
        table = Table(title=f"resolved {title}")
        table.add_column(key)
        for run in runs:
            table.add_column(run.name)
        for name in names:
            table.add_row(name, *[_cell(t.get(name)) for t in tables])
        console.print(table)
    reasons = Table(title="why instances did not resolve")
    reasons.add_column("reason")
    counted = [Counter(filter(None, (_reason(r) for r in run.results))) for run in runs]
    for run in runs:
        reasons.add_column(run.name)
    for reason in sorted({k for c in counted for k in c}, key=lambda k: -sum(c[k] for c in counted)):
        reasons.add_row(reason, *[str(c.get(reason, 0)) for c in counted])
    console.print(reasons)
    if len(runs) == 2:
        a, b = ({r["instance_id"]: r for r in run.results} for run in runs)
        gained = sorted(i for i in a.keys() & b.keys() if not a[i].get("resolved") and b[i].get("resolved"))
        lost = sorted(i for i in a.keys() & b.keys() if a[i].get("resolved") and not b[i].get("resolved"))
        console.print(f"resolved only by {runs[1].name}: {', '.join(gained) or 'none'}")
        console.print(f"resolved only by {runs[0].name}: {', '.join(lost) or 'none'}")
    return console.export_text()


def _chart(runs: list[Run], key: str) -> str:
    """A grouped horizontal bar chart of resolve rates (inline SVG)."""
    tables = [group_rows(run, key) for run in runs]
    names = sorted({n for t in tables for n in t if n != "all"}) + ["all"]
    colors = ["#3b7dd8", "#e07b39"]
    bar, gap, left, width = 14, 10, 180, 360
    height = len(names) * (bar * len(runs) + gap) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 80}" height="{height}" role="img">']
    y = 10
    for name in names:
        parts.append(f'<text x="{left - 8}" y="{y + bar * len(runs) / 2 + 4}" text-anchor="end" font-size="12">{html.escape(name)}</text>')
        for i, t in enumerate(tables):
            g = t.get(name)
            rate = g["resolved"] / g["graded"] if g and g["graded"] else 0.0
            parts.append(f'<rect x="{left}" y="{y}" width="{rate * width:.1f}" height="{bar - 2}" fill="{colors[i % 2]}"/>')
            parts.append(f'<text x="{left + rate * width + 4:.1f}" y="{y + bar - 4}" font-size="11">{100 * rate:.0f}%</text>')
            y += bar
        y += gap
    parts.append("</svg>")
    return "".join(parts)


def render_html(runs: list[Run]) -> str:
    """One self-contained page: the charts, the tables, every instance's row."""
    legend = " vs ".join(f'<span style="color:{c}">&#9632;</span> {html.escape(r.name)}' for r, c in zip(runs, ["#3b7dd8", "#e07b39"]))
    body = [f"<h1>kcode eval report</h1><p>{legend}</p>"]
    for key in ("repo", "tier"):
        body.append(f"<h2>Resolved by {key}</h2>{_chart(runs, key)}")
    for run in runs:
        body.append(f"<h2>{html.escape(run.name)}: instances</h2><table><tr><th>instance</th><th>tier</th><th>status</th><th>resolved</th>"
                    "<th>patch lines</th><th>steps</th><th>tokens</th><th>wall s</th><th>why not</th></tr>")
        for r in run.results:
            tokens = sum((r.get("tokens") or {}).get(k, 0) for k in ("input_tokens", "output_tokens"))
            cells = [r.get("instance_id"), r.get("tier") or "", r.get("status"), {True: "yes", False: "no", None: "-"}[r.get("resolved")],
                     r.get("patch_lines", 0), r.get("steps", 0), tokens, f"{r.get('wall_s', 0):.0f}", _reason(r) or ""]
            body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
        body.append("</table>")
    style = "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>kcode eval report</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"
