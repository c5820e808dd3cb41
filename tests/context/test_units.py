"""The pack's content units: definitions on one scale across the top files, a class by its own
lines, and no lower-ranked whole file or earlier unit crowding out the definition the task is about."""

from __future__ import annotations

import re

from kcode.context.content import CONTENT_SHARE, choose_content, content_units
from kcode.context.excerpt import own_ranges
from kcode.context.pack import Packer
from kcode.llm.base import estimate_tokens


def _steps(prefix: str, count: int, indent: str = "") -> list[str]:
    return [f"{indent}def {prefix}_{i}(value):\n{indent}    return value * {i} + {i}\n\n\n" for i in range(count)]


def _body(name: str, lines: int) -> str:
    """A function of ``lines`` lines whose words are all its own (a long, distinctive body)."""
    parts = [f"def {name}(request, attempts):\n", f'    """Retry {name} while the gateway answers busy."""\n']
    parts += [f"    attempts = attempts + {i}  # backoff step {i} of the gateway retry\n" for i in range(lines)]
    parts.append("    return attempts\n")
    return "".join(parts)


def test_a_class_unit_is_its_own_lines_not_its_methods(tmp_path, tree_writer):
    # The task's words are in a big class's docstring and in one of its 60 methods: the pack
    # shows the class's header, docstring and attributes and that method, not every method.
    doc = ('    """Imports ledger rows.\n\n    Reads the rows of each sheet in order.\n'
           '    Duplicated rows are merged by invoice number.\n    """\n')
    cls = ["class LedgerImporter:\n", doc, "\n", '    encoding = "utf-8"\n\n']
    cls += _steps("parse_column", 60, indent="    ")
    method = "    def merge_duplicates(self, rows):\n        return {row.invoice: row for row in rows}\n"
    cls.append(method)
    root = tree_writer(tmp_path / "repo", {"books/importer.py": "".join(cls), "books/other.py": "def other():\n    return 1\n"})
    packer = Packer(root, cache_path=tmp_path / "t.sqlite")
    pack = packer.pack(task="LedgerImporter: duplicated rows are not merged by invoice number", count_tokens=estimate_tokens, budget=300)
    source = (root / "books/importer.py").read_text()
    assert estimate_tokens(source) > 3 * 300
    block = re.search(r'<file path="books/importer.py" excerpt="[^"]+">\n(.*?)</file>\n', pack.text, re.S).group(1)
    assert "class LedgerImporter:\n" + doc in block  # the whole docstring, not the header line only
    assert method in block
    assert "def parse_column_30" not in block  # the class's methods are not shown with it
    # own_ranges: the class's own non-blank lines; a function (and a method) is whole (None).
    indexed = packer.index.files["books/importer.py"]
    own = own_ranges(indexed, source.split("\n")[:-1])
    names = [d.name for d in indexed.tags.definitions]
    assert own[names.index("LedgerImporter")] == ((1, 2), (4, 6))  # the attribute is a definition of its own
    assert own[names.index("merge_duplicates")] is None


def test_a_second_big_definition_is_not_passed_over_for_the_room_the_first_took(tmp_path, tree_writer):
    # The task names two functions in two big modules, each of them about 40 % of the room for
    # content. The second must not be dropped because the first left less than twice its size.
    files = {
        "net/alpha.py": "".join(_steps("alpha_step", 90)) + _body("alpha_handler", 50),
        "net/beta.py": "".join(_steps("beta_step", 90)) + _body("beta_handler", 56),
    }
    root = tree_writer(tmp_path / "repo", files)
    packer = Packer(root, cache_path=tmp_path / "t.sqlite")
    task = "alpha_handler and beta_handler both lose the gateway retry attempts"
    budget = 3000
    pack = packer.pack(task=task, count_tokens=estimate_tokens, budget=budget)
    assert pack.stats["tokens"] <= budget
    for name in ("alpha_handler", "beta_handler"):
        body = _body(name, 50 if name == "alpha_handler" else 56)
        assert 0.3 * CONTENT_SHARE * budget < estimate_tokens(body) < 0.5 * CONTENT_SHARE * budget
        assert body in pack.text, name
    assert pack.stats["files_whole"] == []


def test_a_small_lower_ranked_file_is_not_whole_ahead_of_the_top_files_definition(tmp_path, tree_writer):
    # A named function deep in a big module (rank 1), and beside it a small module that uses
    # the same words (rank 2): at a small budget the function comes first, and the small
    # module is not shown whole at the cost of a third of the room.
    helper = "".join(
        f"def report_gateway_{i}(request):\n    # gateway retry attempts for report {i}\n    return retry_gateway(request, {i})\n\n\n"
        for i in range(14)
    )  # fmt: skip
    files = {"net/retry.py": "".join(_steps("retry_step", 80)) + _body("retry_gateway", 30), "net/report.py": helper}
    root = tree_writer(tmp_path / "repo", files)
    packer = Packer(root, cache_path=tmp_path / "t.sqlite")
    task = "retry_gateway loses the retry attempts when the gateway answers busy"
    budget = 1800
    packer.refresh()
    ranking = packer.rank(task)
    assert ranking.files[:2] == ["net/retry.py", "net/report.py"]
    report_cost = estimate_tokens(files["net/report.py"])
    body_cost = estimate_tokens(_body("retry_gateway", 30))
    # Cheap enough to be whole in the room the function leaves (at most 60 % of it), but not
    # for a file ranked second: it may take at most 60 % / 2.
    assert 0.6 * (CONTENT_SHARE * budget - body_cost) / 2 < report_cost < 0.6 * (CONTENT_SHARE * budget - body_cost) * 0.9
    pack = packer.pack(task=task, count_tokens=estimate_tokens, budget=budget)
    assert _body("retry_gateway", 30) in pack.text
    assert "net/report.py" not in pack.stats["files_whole"]
    # The units: the named function first, on one scale across both files.
    files_ = packer.index.files
    units, _, _ = content_units(ranking, files_, packer.index.read_text, packer.ranker.definers(files_, packer.index.version))
    first = units[0]
    assert first[0] == "net/retry.py" and files_[first[0]].tags.definitions[first[2]].name == "retry_gateway"
    content = choose_content(ranking, files_, CONTENT_SHARE * budget, 1.0, packer.index.read_text,
                             lambda p: packer.index.read_text(p), lambda chars: chars / 4.0,
                             packer.ranker.definers(files_, packer.index.version))  # fmt: skip
    assert "net/retry.py" in content.excerpts and "net/report.py" not in content.whole


def test_the_file_prior_is_steeper_where_few_units_fit(tmp_path, tree_writer):
    # The task names cart.py, whose apply_discount shares one of its words; reports.py, ranked
    # third, has a function that shares more, but not the most (ledger.py's does). Where a
    # handful of units fit, the top file's comes before it (rank^-1 for a middling match);
    # with room for hundreds, the better match does (rank^-0.5). The pool's best match keeps
    # the flat prior at any room (the audit test above: an error message in a low file).
    from kcode.context.content import FILE_DECAY_LARGE, FILE_DECAY_SMALL, LARGE_ROOM, SMALL_ROOM, file_decay

    files = {
        "shop/cart.py": "def apply_discount(basket):\n    # the discount\n    return basket.discount\n\n\n"
        + "".join(f"def cart_step_{i}(value):\n    return value * {i}\n\n\n" for i in range(30)),
        "shop/reports.py": "from shop.cart import apply_discount\n\n\ndef discount_report(basket):\n"
        "    # checkout discount of the basket total, twice twice\n    total = apply_discount(basket)\n    return total\n",
        "shop/ledger.py": "def ledger_entry(basket):\n"
        "    # the checkout discount is applied twice to the basket total: applied twice, twice\n    return basket\n",
    }
    root = tree_writer(tmp_path / "repo", files)
    packer = Packer(root, cache_path=tmp_path / "t.sqlite")
    packer.index.refresh(None)
    ranking = packer.rank("shop/cart.py: the checkout discount is applied twice to the basket total")
    assert ranking.files == ["shop/cart.py", "shop/ledger.py", "shop/reports.py"]
    indexed = packer.index.files

    def order(room: float) -> list[str]:
        units, _, _ = content_units(ranking, indexed, packer.index.read_text, None, {}, room)
        return [indexed[path].tags.definitions[j].name for path, _, j in units[:3]]

    assert order(1000) == ["ledger_entry", "apply_discount", "discount_report"]
    assert order(30000) == ["ledger_entry", "discount_report", "apply_discount"]
    assert file_decay(SMALL_ROOM) == FILE_DECAY_SMALL and file_decay(LARGE_ROOM) == file_decay(None) == FILE_DECAY_LARGE
    assert FILE_DECAY_LARGE < file_decay(8000) < FILE_DECAY_SMALL
