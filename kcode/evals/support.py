"""Which instances of a dataset kcode can run and grade here without Docker, and for the
others why not: no pip-only official spec (a conda environment, system packages), no
interpreter of the Python version the spec asks for, or no local mirror of the repository
(with ``--repos``)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from kcode.errors import KcodeError
from kcode.evals.dataset import Instance

__all__ = ["Support", "check_support", "render_support"]


@dataclass
class Support:
    instance_id: str
    repo: str
    version: str
    supported: bool
    reason: str = ""  # why not
    python: str = ""


def check_support(instances: list[Instance], repos_dir: Path | None = None) -> list[Support]:
    """One verdict per instance (cheap: specs, interpreters and mirrors; nothing is built)."""
    from kcode.evals import envs, swebench_compat
    from kcode.evals.repos import find_mirror

    verdicts = []
    for inst in instances:
        verdict = Support(inst.instance_id, inst.repo, inst.version, False)
        try:
            spec = swebench_compat.repo_spec(inst)
            verdict.python = spec.python
            envs.find_python(spec.python)
            if repos_dir is not None and find_mirror(repos_dir, inst.repo) is None:
                raise KcodeError(f"no mirror of {inst.repo} in {repos_dir}")
            verdict.supported = True
        except KcodeError as error:
            verdict.reason = str(error)
        verdicts.append(verdict)
    return verdicts


def render_support(verdicts: list[Support]) -> str:
    """Per repository: supported/total; then the reasons, most common first."""
    by_repo: dict[str, list[Support]] = defaultdict(list)
    for v in verdicts:
        by_repo[v.repo].append(v)
    lines = [f"{'repository':32} {'supported':>10}  python"]
    for repo, vs in sorted(by_repo.items(), key=lambda kv: -len(kv[1])):
        pythons = ",".join(sorted({v.python for v in vs if v.python}))
        lines.append(f"{repo:32} {sum(v.supported for v in vs):>4}/{len(vs):<5}  {pythons}")
    total = sum(v.supported for v in verdicts)
    lines.append(f"{'all':32} {total:>4}/{len(verdicts):<5}")
    reasons = Counter(v.reason for v in verdicts if not v.supported)
    if reasons:
        lines.append("")
        lines.append("not supported, why:")
        lines.extend(f"  {n:5}  {reason}" for reason, n in reasons.most_common())
    return "\n".join(lines)
