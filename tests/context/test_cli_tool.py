"""``kcode pack`` as a subprocess, and the repo_map tool."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from kcode.sandbox.local import LocalSandbox
from kcode.tools.base import SessionState, ToolContext
from kcode.tools.repo_map import RepoMapTool


def run_pack(repo, tmp_path, *args):
    env = dict(os.environ, KCODE_HOME=str(tmp_path / "home"))
    return subprocess.run(
        [sys.executable, "-m", "kcode", "pack", "--repo", str(repo), *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def test_pack_json_statistics(small_repo, tmp_path):
    (small_repo / "image.png").write_bytes(b"\x89PNG\0")
    result = run_pack(small_repo, tmp_path, "--task", "compute_discount", "--budget", "120", "--json")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["budget"] == 120 and 0 < stats["tokens"] <= 120
    assert stats["tokenizer"] == "estimate"
    assert stats["files_skipped"] == {"image.png": "binary"}
    assert "shop/pricing.py" in stats["files_whole"] + stats["files_in_map"]
    assert set(stats["seconds"]) == {"parse", "rank", "pack"}


def test_pack_prints_the_pack(small_repo, tmp_path):
    result = run_pack(small_repo, tmp_path, "--mode", "map", "--budget", "2000")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("<repo_map>\n")
    assert "class ShoppingCart:" in result.stdout and "    def add_item(self, item):" in result.stdout


def test_pack_rejects_unknown_mode(small_repo, tmp_path):
    result = run_pack(small_repo, tmp_path, "--mode", "everything")
    assert result.returncode == 2 and "unknown pack mode" in result.stderr


def test_repo_map_tool(small_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("KCODE_HOME", str(tmp_path / "home"))
    ctx = ToolContext(root=small_repo, sandbox=LocalSandbox(small_repo), state=SessionState())
    tool = RepoMapTool()
    found = tool.run(tool.Params(query="compute_discount"), ctx).output
    assert "shop/pricing.py:1: function" in found
    assert "shop/cart.py:12" in found  # the call in ShoppingCart.total
    method = tool.run(tool.Params(query="ShoppingCart.add_item"), ctx).output
    assert "class ShoppingCart: › def add_item(self, item):" in method
    listing = tool.run(tool.Params(query="shop/inventory.py"), ctx).output
    assert "InventoryLedger" in listing and "reserve_stock" in listing
    assert "No definition" in tool.run(tool.Params(query="no_such_name"), ctx).output
    # a query written as words (small models do): each identifier in it, code-like ones first
    worded = tool.run(tool.Params(query="search where compute_discount is defined"), ctx).output
    assert worded.startswith("Definitions of compute_discount") and "shop/pricing.py:1: function" in worded
    assert "No definition or reference of 'search for no_such_name'" in tool.run(tool.Params(query="search for no_such_name"), ctx).output
    assert "repo_map" == tool.spec().name and "defined" in tool.spec().description
