"""Definition-level packing: a top-ranked file too big to fit whole is shown as excerpts."""

from __future__ import annotations

import re

from kcode.context.content import CANDIDATES
from kcode.context.pack import Packer
from kcode.llm.base import estimate_tokens

_BODY = (
    "    def compute_refund_total(self, order, reason):\n"
    '        """The amount refunded for ``order``."""\n'
    "        total = 0\n"
    "        for line in order.lines:\n"
    "            total += line.price * line.quantity\n"
    "        if reason == 'damaged':\n"
    "            total += order.shipping\n"
    "        return round(total, 2)\n"
)


def _engine() -> str:
    """A module far bigger than the budget, with the named method in the middle of a class."""
    parts = ["import math\nfrom decimal import Decimal\n\nfrom shop.models import Order\n\n\n"]
    parts += [f"def helper_{i}(value):\n    return math.floor(value * {i}) + Decimal({i})\n\n\n" for i in range(60)]
    parts.append("class RefundEngine(BaseEngine):\n    currency = 'EUR'\n\n")
    parts += [f"    def step_{i}(self, order):\n        return helper_{i}(order.total) + {i}\n\n" for i in range(40)]
    parts.append(_BODY)
    parts += [f"\n    def after_{i}(self, order):\n        return helper_{i}(order.total) - {i}\n" for i in range(40)]
    return "".join(parts)


def _repo(tmp_path, tree_writer, extra=None):
    files = {"shop/engine.py": _engine(), "shop/models.py": "class Order:\n    lines = []\n    shipping = 0\n"}
    files.update(extra or {})
    return tree_writer(tmp_path / "repo", files)


def _chunks(block: str) -> list[tuple[int, int, str]]:
    """(first, last, text) of each chunk of an excerpt block."""
    found = []
    pieces = re.split(r"^⋮ lines? (\d+)(?:-(\d+))?\n", block, flags=re.M)
    for i in range(1, len(pieces) - 1, 3):
        first = int(pieces[i])
        last = int(pieces[i + 1] or first)
        text = pieces[i + 2]
        text = text.split("⋮\n")[0].split("</file>")[0]
        found.append((first, last, text))
    return found


def test_the_named_method_is_in_the_pack_whole_when_its_file_is_not(tmp_path, tree_writer):
    root = _repo(tmp_path, tree_writer)
    engine = (root / "shop/engine.py").read_text()
    budget = 800
    assert estimate_tokens(engine) > 3 * budget  # the file cannot be whole
    pack = Packer(root, cache_path=tmp_path / "t.sqlite").pack(
        task="RefundEngine.compute_refund_total adds the shipping twice for damaged orders",
        count_tokens=estimate_tokens,
        budget=budget,
    )
    assert pack.stats["tokens"] <= budget
    assert "shop/engine.py" not in pack.stats["files_whole"]
    assert "shop/engine.py" in pack.stats["files_excerpted"]
    assert _BODY in pack.text  # the full body, verbatim
    block = re.search(r'<file path="shop/engine.py" excerpt="lines ([^"]+) of (\d+)">\n(.*?)</file>\n', pack.text, re.S)
    assert block is not None and int(block.group(2)) == len(engine.splitlines())
    assert block.group(1) == pack.stats["files_excerpted"]["shop/engine.py"]
    body = block.group(3)
    # With its enclosing class line and the file's imports, each chunk at its real line numbers.
    assert "class RefundEngine(BaseEngine):\n" in body and "import math\nfrom decimal import Decimal\n" in body
    lines = engine.splitlines()
    for first, last, text in _chunks(body):
        assert text == "".join(line + "\n" for line in lines[first - 1 : last])
    assert body.index("class RefundEngine") < body.index("def compute_refund_total")


def test_excerpts_come_before_lower_ranked_whole_files(tmp_path, tree_writer):
    # Small files that mention nothing of the task, and a budget they could all fit in.
    extra = {f"misc/util_{i:02d}.py": f"def unrelated_{i}():\n    return {i}\n" for i in range(80)}
    root = _repo(tmp_path, tree_writer, extra)
    packer = Packer(root, cache_path=tmp_path / "t.sqlite")
    task = "RefundEngine.compute_refund_total adds the shipping twice for damaged orders"
    pack = packer.pack(task=task, count_tokens=estimate_tokens, budget=1500)
    assert _BODY in pack.text
    ranked = packer.rank(task).files
    assert ranked[0] == "shop/engine.py"
    # Whole files come only from the top of the ranking: leftover room goes to the map.
    assert set(pack.stats["files_whole"]) <= set(ranked[:CANDIDATES])
    assert len(pack.stats["files_whole"]) < CANDIDATES
    assert pack.stats["files_in_map"]


def test_a_file_that_fits_is_whole_and_the_stats_add_up(small_repo, tmp_path):
    pack = Packer(small_repo, cache_path=tmp_path / "t.sqlite").pack(
        task="compute_discount", count_tokens=estimate_tokens, budget=100_000
    )
    assert pack.stats["files_excerpted"] == {}
    assert pack.stats["files_left_out"] == 0


def test_excerpts_are_byte_identical_whatever_the_hash_seed(tmp_path, tree_writer):
    import os
    import subprocess
    import sys

    root = _repo(tmp_path, tree_writer)
    script = (
        "import sys; from pathlib import Path; from kcode.context.pack import Packer; "
        "from kcode.llm.base import estimate_tokens; "
        "p = Packer(Path(sys.argv[1]), persist=False); "
        "sys.stdout.write(p.pack(task='refund total: shipping added twice for damaged orders', "
        "count_tokens=estimate_tokens, budget=800).text)"
    )
    texts = {
        subprocess.run([sys.executable, "-c", script, str(root)], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout  # fmt: skip
        for seed in ("1", "2")
    }
    assert len(texts) == 1 and "excerpt=" in texts.pop()


def test_source_comes_before_a_test_file_that_ranks_close():
    from kcode.context.content import source_first

    ranked = ["tests/test_validate.py", "src/marshmallow/validate.py", "tests/conftest.py", "src/marshmallow/fields.py",
              "docs/conf.py", "src/pkg/spec_helpers.py", "web/app.spec.ts", "lib/parser_test.go"]  # fmt: skip
    # a test file's rank counts three times: 1 -> 3 (after the source at 2, before the one at 4);
    # so does the documentation's code (docs/conf.py: 5 -> 15)
    assert source_first(ranked) == ["src/marshmallow/validate.py", "tests/test_validate.py", "src/marshmallow/fields.py",
                                    "src/pkg/spec_helpers.py", "tests/conftest.py", "docs/conf.py", "web/app.spec.ts",
                                    "lib/parser_test.go"]  # fmt: skip


_CHECK = (
    "def balance_ok(left, right):\n"
    '    """Both sides agree."""\n'
    "    if sum(left.values()) != sum(right.values()):\n"
    '        raise AuditFailure("ledger total mismatch between reserved and shipped quantities")\n'
    "    return True\n"
)
_SETTLE_TASK = (
    "OrderBook.settle fails on a partially shipped order\n\n"
    "Settling an order that shipped in two parcels stops with: ledger total mismatch between "
    "reserved and shipped quantities. The totals are right; the check adds the reserved side twice."
)


def _settle_repo(tmp_path, tree_writer):
    """The task names ``OrderBook.settle`` (a big class) and quotes, as plain words, an error
    message that only a string in one function of another big module holds; files about
    settling orders rank between the two."""
    audit = ["from shop.errors import AuditFailure\n\n\n"]
    audit += [f"def audit_step_{i}(entry):\n    return entry.amount * {i}\n\n\n" for i in range(30)]
    audit.append(_CHECK + "\n\n")
    audit += [f"def audit_after_{i}(entry):\n    return entry.amount - {i}\n\n\n" for i in range(30)]
    book = ["class OrderBook:\n"]
    book += [f"    def settle_part_{i}(self, order):\n        return order.total + {i}\n\n" for i in range(40)]
    book.append("    def settle(self, order):\n        return [self.settle_part_0(order)]\n")
    files = {"shop/audit.py": "".join(audit), "shop/book.py": "".join(book),
             "shop/errors.py": "class AuditFailure(Exception):\n    pass\n"}  # fmt: skip
    for i in range(6):
        files[f"shop/orders/settle_{i:02d}.py"] = (
            f"from shop.book import OrderBook\n\n\ndef settle_order_{i}(order, parcels):\n"
            f"    return OrderBook().settle(order) + [parcels, {i}]\n"
        )
        files[f"shop/views_{i:02d}.py"] = (
            f"from shop.book import OrderBook\n\n\ndef view_{i}(order):\n    return OrderBook().settle(order)\n"
        )
    return tree_writer(tmp_path / "repo", files)


def test_the_function_a_report_describes_is_found_by_its_words_across_files(tmp_path, tree_writer):
    # Definition-level retrieval: the definitions of the top files compete by their own text
    # (BM25 over every definition's lines, strings included), not file after file. Here the
    # file ranking puts the module with the error message low (its names say nothing of the
    # task) and its function is one of 61; file-then-definition would spend the room on the
    # named class's 41 methods and the settle modules first.
    root = _settle_repo(tmp_path, tree_writer)
    packer = Packer(root, cache_path=tmp_path / "t.sqlite")
    audit = (root / "shop/audit.py").read_text()
    for budget in (600, 800):
        pack = packer.pack(task=_SETTLE_TASK, count_tokens=estimate_tokens, budget=budget)
        ranked = packer.rank(_SETTLE_TASK).files
        assert ranked.index("shop/audit.py") >= 5  # not near the top of the file ranking
        assert estimate_tokens(audit) > budget  # its file cannot be whole
        assert pack.stats["tokens"] <= budget
        assert _CHECK in pack.text, budget  # the whole body, verbatim
        assert "shop/audit.py" in pack.stats["files_excerpted"]
        block = re.search(r'<file path="shop/audit.py" excerpt="[^"]+">\n(.*?)</file>\n', pack.text, re.S).group(1)
        assert "from shop.errors import AuditFailure\n" in block  # with the file's imports
        assert "def audit_step_0" not in block and "def audit_after_29" not in block  # not the whole file
        # Whole files shown beside it all rank above it (none fills room from further down).
        assert all(ranked.index(p) < ranked.index("shop/audit.py") for p in pack.stats["files_whole"])
