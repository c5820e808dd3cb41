"""Ranking by the task, the budget, and byte-identical packs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kcode.context.pack import Packer
from kcode.llm.base import estimate_tokens



def packer(root: Path, tmp_path: Path) -> Packer:
    return Packer(root, cache_path=tmp_path / "cache" / "tags.sqlite")


def words(text: str) -> int:
    """A stricter tokenizer than the estimate: one token per whitespace-separated piece."""
    return len(text.split()) + text.count("\n")


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("compute_discount gives the wrong total for large carts", "shop/pricing.py"),
        ("InventoryLedger.reserve_stock should refuse negative counts", "shop/inventory.py"),
        ("the ShoppingCart loses items", "shop/cart.py"),
    ],
)
def test_files_defining_task_identifiers_rank_first(small_repo, tmp_path, task, expected):
    p = packer(small_repo, tmp_path)
    p.index.refresh()
    assert p.rank(task).files[0] == expected


def test_traceback_and_focus_files_are_seeds(small_repo, tmp_path):
    p = packer(small_repo, tmp_path)
    p.index.refresh()
    trace = 'Traceback (most recent call last):\n  File "/ci/build/shop/views.py", line 7, in checkout_view\n'
    assert p.rank(trace).files[0] == "shop/views.py"
    assert p.rank("", focus_files=[str(small_repo / "web/app.js")]).files[0] == "web/app.js"


@pytest.mark.parametrize("mode", ["auto", "map", "full"])
@pytest.mark.parametrize("budget", [40, 90, 150, 300, 5000])
@pytest.mark.parametrize("count", [estimate_tokens, words])
def test_budget_is_never_exceeded(small_repo, tmp_path, mode, budget, count):
    pack = packer(small_repo, tmp_path).pack(task="compute_discount", count_tokens=count, budget=budget, mode=mode)
    assert pack.stats["tokens"] == (count(pack.text) if pack.text else 0)
    assert pack.stats["tokens"] <= budget


def test_whole_repo_when_it_fits(small_repo, tmp_path, small_files):
    pack = packer(small_repo, tmp_path).pack(task="", count_tokens=estimate_tokens, budget=100_000)
    assert pack.stats["mode_used"] == "full"
    assert pack.stats["files_whole"] == sorted(small_files)
    for text in small_files.values():
        assert text in pack.text


def test_map_plus_top_file_fills_the_budget(tmp_path, tree_writer):
    # A repository too big to fit: the map and the best files fill 98-100 % of the budget.
    files = {f"pkg/mod{i:03d}.py": "".join(
        f"def function_{i}_{j}(argument_{j}, other):\n    return helper_{(i + j) % 50}(argument_{j})\n\n"
        for j in range(12)) for i in range(60)}
    files.update({"pkg/helpers.py": "".join(f"def helper_{k}(x):\n    return x\n\n" for k in range(50))})
    root = tree_writer(tmp_path / "big", files)
    budget = 3000
    pack = packer(root, tmp_path).pack(task="helper_7 is slow", count_tokens=estimate_tokens, budget=budget)
    assert pack.stats["mode_used"] == "auto"
    assert 0.98 * budget <= pack.stats["tokens"] <= budget
    assert "pkg/helpers.py" in pack.stats["files_whole"]
    assert "def helper_7(x):" in pack.text
    assert pack.stats["files_in_map"]


def test_pack_is_byte_identical_across_runs_and_locations(tmp_path, tree_writer, small_files):
    first = tree_writer(tmp_path / "one" / "repo", small_files)
    order = sorted(small_files, reverse=True)
    second = tree_writer(tmp_path / "elsewhere" / "deeper" / "repo", small_files, order=order)
    subprocess.run(["git", "init", "-q", str(second)], check=True)  # git listing vs directory walk
    texts = set()
    for root, cache in ((first, "a"), (first, "b"), (second, "c")):
        for _ in range(2):
            p = Packer(root, cache_path=tmp_path / cache / "tags.sqlite")
            texts.add(p.pack(task="format_price rounding", count_tokens=estimate_tokens, budget=150).text)
    assert len(texts) == 1
    assert str(tmp_path) not in texts.pop()


def test_pack_none_is_empty(small_repo, tmp_path):
    pack = packer(small_repo, tmp_path).pack(task="", count_tokens=estimate_tokens, budget=1000, mode="none")
    assert pack.text == "" and pack.stats["tokens"] == 0


def test_a_report_in_plain_words_finds_the_file_by_its_names(tmp_path, tree_writer):
    """No identifier of the task is defined anywhere, so the walk alone ranks the hub first;
    the lexical ranking (the subwords of the names each file defines and references) finds
    the file the report describes, and the fused order puts it first."""
    files = {"core/models.py": "class Model:\n    def save(self):\n        pass\n\n\ndef register(model):\n    return model\n"}
    for i in range(8):
        files[f"app{i}/things.py"] = f"from core.models import Model, register\n\n\nclass Thing{i}(Model):\n    pass\n\n\nregister(Thing{i})\n"
    files["billing/refunds.py"] = (
        "from core.models import Model\n\n\n"
        "class RefundRequest(Model):\n"
        "    def partial_refund(self, split_payment):\n"
        "        return self.refund_amount(split_payment.amount)\n\n"
        "    def refund_amount(self, amount):\n        return amount\n"
    )
    root = tree_writer(tmp_path / "repo", files)
    p = packer(root, tmp_path)
    p.index.refresh()
    assert p.rank("").files[0] == "core/models.py"
    ranking = p.rank("A partial refund fails when the payment was split in two; the refund amount is wrong.")
    assert ranking.files[0] == "billing/refunds.py"
    assert ranking.file_scores["billing/refunds.py"] > ranking.file_scores["core/models.py"]


def test_subwords_split_identifiers_like_the_task_text():
    from kcode.context.rank import subwords

    assert subwords("ModelChoiceField UUIDField order_by get_db_prep_value x HTTP2Server") == [
        "model", "choice", "field", "uuid", "field", "order", "by", "get", "db", "prep", "value", "http", "server"
    ]  # fmt: skip


def test_the_lexical_scores_are_bm25_over_each_files_words(small_repo, tmp_path):
    """The vectorised scores (postings through the identifiers) against BM25 written out
    plainly over each file's words: path parts ×3, defined names ×2, references by count."""
    import math
    import re

    from kcode.context.rank import BM25_B, BM25_K1, subwords

    p = packer(small_repo, tmp_path)
    p.index.refresh()
    task = "ShoppingCart total: the discount is computed on the item price, format it as a price"
    files = p.index.files
    docs = {}
    for path, indexed in files.items():
        words: dict[str, float] = {}
        for word in [w for part in re.split(r"[/._-]", path) for w in subwords(part)]:
            words[word] = words.get(word, 0) + 3
        for name in indexed.tags.defined_names:
            for word in subwords(name):
                words[word] = words.get(word, 0) + 2
        for name, count in indexed.tags.reference_counts.items():
            for word in subwords(name):
                words[word] = words.get(word, 0) + count
        docs[path] = words
    query = set(subwords(task))
    average = sum(sum(d.values()) for d in docs.values()) / len(docs)
    expected = {}
    for path, words in docs.items():
        norm = BM25_K1 * (1 - BM25_B + BM25_B * sum(words.values()) / average)
        total = 0.0
        for word in query & set(words):
            df = sum(word in d for d in docs.values())
            idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
            total += idf * words[word] * (BM25_K1 + 1) / (words[word] + norm)
        expected[path] = total
    p.rank(task)  # builds the graph
    graph = p.ranker._graph(files, p.index.version)
    scores = p.ranker._lexical(graph, sorted(query))
    assert dict(zip(graph.paths, scores.tolist())) == pytest.approx(expected, abs=1e-8)
    assert sum(v > 0 for v in expected.values()) >= 4


def test_a_code_span_the_report_quotes_finds_the_file_that_holds_it(tmp_path, tree_writer):
    """The task quotes code that no name of the tags carries (a keyword argument inside a
    call); the file holding that span verbatim comes first, which neither the walk nor the
    lexical order put there. A span that many files hold counts for nothing."""
    files = {"core/walk.py": "import os\n\n\ndef scan(path):\n    return [e for e in os.scandir(path)]\n"}
    for i in range(6):
        files[f"pkg/mod{i}.py"] = f"from core.walk import scan\n\n\ndef collect{i}(path):\n    return scan(path)\n"
    files["pkg/visit.py"] = (
        "import os\n\n\ndef visit(path, recurse):\n"
        "    for entry in os.scandir(path):\n"
        "        if entry.is_dir(follow_symlinks=False) and recurse(entry):\n"
        "            yield from recurse(entry)\n"
        "        yield entry\n"
    )
    files["pkg/links.py"] = "def skipped_symlinked_directories(collected):\n    return [d for d in collected if d.is_symlink()]\n"
    root = tree_writer(tmp_path / "repo", files)
    p = packer(root, tmp_path)
    p.index.refresh()
    task = "Symlinked directories are skipped. Since I added `is_dir(follow_symlinks=False)` to each `(path)` nothing is collected."
    ranking = p.rank(task)
    assert ranking.seeds.quoted == {"pkg/visit.py": pytest.approx(2.1972, abs=1e-3)}  # log(9 / 1); the other span is in 8 of 9 files
    assert ranking.files[0] == "pkg/visit.py"
    plain = p.rank(task.replace("`", ""))  # the same words unquoted: no span, another order
    assert plain.seeds.quoted == {} and plain.files[0] != "pkg/visit.py"


def test_quoted_matches_weighs_rare_spans_and_ignores_common_ones():
    from kcode.context.seeds import quoted_matches, quoted_spans

    assert quoted_spans("use `a`, `  foo(x=1) `, `foo(x=1)` and ```") == ["foo(x=1)"]
    texts = [(f"f{i}.py", "common()\n" + ("rare()\n" if i == 0 else "")) for i in range(200)]
    scores = quoted_matches(["common()", "rare()", "absent()"], texts)
    assert list(scores) == ["f0.py"] and scores["f0.py"] == pytest.approx(5.2983, abs=1e-3)  # log(200)


def test_an_identifier_spelling_a_package_and_module_names_that_module():
    from kcode.context.seeds import PathIndex

    index = PathIndex(["sphinx/ext/autodoc/typehints.py", "sphinx/ext/autodoc/__init__.py", "sphinx/pycode/ast.py",
                       "sphinx/__init__.py", "tests/test_typehints.py"])  # fmt: skip
    assert index.named_by("autodoc_typehints_description_target") == ["sphinx/ext/autodoc/typehints.py"]
    assert index.named_by("test_pycode_ast") == ["sphinx/pycode/ast.py"]
    assert index.named_by("typehints") == [] and index.named_by("description_target") == []
    # a package counts by its directory: ext/autodoc/__init__.py is "ext autodoc"
    assert index.named_by("sphinx_ext_autodoc") == ["sphinx/ext/autodoc/__init__.py"]


def test_a_config_value_named_after_a_module_ranks_that_module(tmp_path, tree_writer):
    """``autodoc_typehints`` is no definition's name (a config value, read as an attribute),
    and the module is one of many sharing its words; its name spells ``autodoc/typehints.py``."""
    files = {"docs/ext/autodoc/__init__.py": "def setup(app):\n    app.add_config_value('autodoc_typehints', 'signature')\n"}
    files["docs/ext/autodoc/typehints.py"] = (
        "def merge_typehints(app, domain, objtype, contentnode):\n"
        "    if app.config.autodoc_typehints not in ('both', 'description'):\n        return\n"
    )
    for i in range(6):
        files[f"docs/ext/other{i}.py"] = f"def describe{i}(app, description, option):\n    return app.config.option{i}, description\n"
    root = tree_writer(tmp_path / "repo", files)
    p = packer(root, tmp_path)
    p.index.refresh()
    task = "With `autodoc_typehints = 'description'` the option adds a return type to a class description"
    assert p.rank(task).files[0] == "docs/ext/autodoc/typehints.py"
