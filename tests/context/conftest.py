from __future__ import annotations

from pathlib import Path

import pytest

SMALL_REPO = {
    "shop/cart.py": (
        "from shop.pricing import compute_discount\n\n\n"
        "class ShoppingCart:\n"
        "    def __init__(self):\n        self.items = []\n\n"
        "    def add_item(self, item):\n        self.items.append(item)\n\n"
        "    def total(self):\n        return compute_discount(sum(i.price for i in self.items))\n"
    ),
    "shop/pricing.py": (
        "def compute_discount(amount):\n    if amount > 100:\n        return amount * 0.9\n    return amount\n\n\n"
        "def format_price(amount):\n    return f'{amount:.2f}'\n"
    ),
    "shop/inventory.py": (
        "class InventoryLedger:\n    def reserve_stock(self, sku, count):\n        return count\n\n"
        "    def release_stock(self, sku, count):\n        return -count\n"
    ),
    "shop/views.py": (
        "from shop.cart import ShoppingCart\nfrom shop.pricing import format_price\n\n\n"
        "def checkout_view(request):\n    cart = ShoppingCart()\n    cart.add_item(request)\n"
        "    return format_price(cart.total())\n"
    ),
    "README.md": "# Shop\n\nA tiny shop.\n",
    "web/app.js": "function renderCart(cart) {\n  return cart.items.map(formatLine);\n}\nfunction formatLine(l) { return l; }\n",
}


def write_tree(root: Path, files: dict[str, str], order: list[str] | None = None) -> Path:
    for name in order or list(files):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[name])
    return root


@pytest.fixture
def small_repo(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "repo", SMALL_REPO)


@pytest.fixture
def tree_writer():
    """``write_tree(root, files, order=None)`` for tests that build their own repositories."""
    return write_tree


@pytest.fixture
def small_files() -> dict[str, str]:
    return dict(SMALL_REPO)
