"""The pack's order: files that change least first, so a cached prefix survives a commit."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from kcode.context.history import commit_times, read_head
from kcode.context.layout import quantize
from kcode.context.pack import Packer
from kcode.llm.base import estimate_tokens


def git(root: Path, *args: str, when: int | None = None) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    if when is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"@{when} +0000"
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True, env=env).stdout


def _module(name: str, n: int) -> str:
    return "".join(f"def {name}_step_{i}(order):\n    return order.total * {i} + shipping_fee(order)\n\n\n" for i in range(n))


@pytest.fixture
def history_repo(tmp_path: Path) -> Path:
    """Four modules committed at different times; pricing.py last."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    files = {
        "shop/fees.py": "def shipping_fee(order):\n    return 5\n",
        "shop/refunds.py": _module("refund", 30),
        "shop/pricing.py": _module("price", 30),
        "shop/taxes.py": _module("tax", 30),
    }
    for when, path in enumerate(["shop/fees.py", "shop/taxes.py", "shop/refunds.py", "shop/pricing.py"], 1):
        (root / path).parent.mkdir(exist_ok=True)
        (root / path).write_text(files[path])
        git(root, "add", path)
        git(root, "commit", "-qm", path, when=1_000_000 * when)
    return root


TASK = "refund_step_3 and price_step_3 and tax_step_3 add the shipping_fee twice"


def _blocks(text: str) -> list[str]:
    return re.findall(r'<file path="([^"]+)"', text)


def test_source_blocks_come_oldest_commit_first_after_the_map(history_repo, tmp_path):
    pack = Packer(history_repo, cache_path=tmp_path / "t.sqlite").pack(task=TASK, count_tokens=estimate_tokens, budget=1500)
    shown = _blocks(pack.text)
    assert {"shop/refunds.py", "shop/pricing.py", "shop/taxes.py"} <= set(shown)
    times = {"shop/fees.py": 1, "shop/taxes.py": 2, "shop/refunds.py": 3, "shop/pricing.py": 4}
    assert shown == sorted(shown, key=times.__getitem__)
    assert pack.text.index("<repo_map>") < pack.text.index("<file path=")


def test_after_a_one_file_commit_the_text_before_that_file_is_unchanged(history_repo, tmp_path):
    cache = tmp_path / "t.sqlite"
    before = Packer(history_repo, cache_path=cache).pack(task=TASK, count_tokens=estimate_tokens, budget=1500).text
    target = history_repo / "shop/refunds.py"
    target.write_text(target.read_text().replace("order.total * 7 ", "order.total * 8 "))
    git(history_repo, "commit", "-qam", "refunds: fix", when=9_000_000)
    after = Packer(history_repo, cache_path=cache).pack(task=TASK, count_tokens=estimate_tokens, budget=1500).text
    assert _blocks(after)[-1] == "shop/refunds.py"  # now the newest: last
    old_start = before.index('<file path="shop/refunds.py"')
    assert after[:old_start] == before[:old_start]
    # and the packs are deterministic
    again = Packer(history_repo, cache_path=tmp_path / "other.sqlite").pack(task=TASK, count_tokens=estimate_tokens, budget=1500)
    assert again.text == after


def test_commit_times_are_read_once_and_updated_from_the_new_commits(history_repo):
    head = read_head(history_repo)
    assert head == git(history_repo, "rev-parse", "HEAD").strip()
    times = commit_times(history_repo, head)
    assert times == {"shop/fees.py": 1_000_000, "shop/taxes.py": 2_000_000, "shop/refunds.py": 3_000_000,
                     "shop/pricing.py": 4_000_000}  # fmt: skip
    (history_repo / "shop/fees.py").write_text("def shipping_fee(order):\n    return 6\n")
    git(history_repo, "commit", "-qam", "fees", when=5_000_000)
    git(history_repo, "pack-refs", "--all")  # HEAD's branch now lives in packed-refs only
    new_head = read_head(history_repo)
    assert new_head == git(history_repo, "rev-parse", "HEAD").strip() != head
    assert commit_times(history_repo, new_head, (head, times)) == {**times, "shop/fees.py": 5_000_000}
    git(history_repo, "checkout", "-q", "--detach", head)
    assert read_head(history_repo) == head


def test_a_long_history_is_read_up_to_a_bound(history_repo, monkeypatch):
    from kcode.context import history

    monkeypatch.setattr(history, "MAX_COMMITS", 2)
    times = commit_times(history_repo, read_head(history_repo))
    assert times == {"shop/pricing.py": 4_000_000, "shop/refunds.py": 3_000_000, history.TRUNCATED: 1}


def test_outside_git_there_is_no_head(tmp_path):
    assert read_head(tmp_path) is None


def test_quantize_rounds_up_to_coarse_steps():
    steps = [quantize(t) for t in range(1, 5000)]
    assert all(q >= t for t, q in zip(range(1, 5000), steps))
    assert steps == sorted(steps) and len(set(steps)) < 40
    assert quantize(1000) == quantize(1001) and quantize(1000) <= 1.2 * 1000
