"""Why files are chosen for a cursor: each ranking signal and where its files are placed."""

from __future__ import annotations

import pytest
from ctx_fixtures import write_tree

REPO = {
    "app/__init__.py": "",
    "app/core.py": (
        "from app import models\n\n\n"
        "def checkout(cart):\n"
        "    subtotal = models.subtotal(cart)\n"
        "    # CURSOR_A\n"
        "    return subtotal\n\n\n" + "# (far from CURSOR_A)\n" * 20 + "\n\n"
        "def refund(order):\n"
        "    amount = compute_shipping_tax(order.weight, order.region)\n"
        "    # CURSOR_B\n"
        "    return amount\n"
    ),
    "app/models.py": "from app import db\n\n\ndef subtotal(cart):\n    return sum(cart)\n",
    "app/db.py": "def connect():\n    return None\n",
    "app/views.py": "from app import core\n\n\ndef page():\n    return core.checkout([])\n",
    "lib/tax.py": "def compute_shipping_tax(weight, region):\n    return weight * 0.1\n",
    "lib/similar.py": (
        "def refund_amount(order):\n    weight = order.weight\n    region = order.region\n"
        "    amount = weight * 2\n    return amount\n"
    ),
    "lib/unrelated.py": "def nothing_here():\n    return 0\n",
}


@pytest.fixture
def ws(tmp_path, make_workspace):
    return make_workspace(write_tree(tmp_path / "repo", REPO))


def _pack(ws, tok, marker, budget=8192):
    text = (ws.root / "app/core.py").read_text()
    at = text.index(marker)
    return ws.pack(tok, ws.root / "app/core.py", text[:at], text[at:], budget)


def _reasons(result):
    return {inc.path: " | ".join(inc.reasons) for inc in result.included}


def test_structural_signals(ws, tok):
    reasons = _reasons(_pack(ws, tok, "# CURSOR_A"))
    assert "imported by the cursor file" in reasons["app/models.py"]
    assert "imported at depth 2" in reasons["app/db.py"]
    assert "imports the cursor file" in reasons["app/views.py"]
    assert "same directory" in reasons["app/db.py"]


def test_cursor_signals_follow_the_cursor(ws, tok):
    near_b = _reasons(_pack(ws, tok, "# CURSOR_B"))
    assert "defines compute_shipping_tax (used near the cursor)" in near_b["lib/tax.py"]
    assert "similar to the code at the cursor" in near_b["lib/similar.py"]
    near_a = _reasons(_pack(ws, tok, "# CURSOR_A"))
    assert "compute_shipping_tax" not in near_a.get("lib/tax.py", "")


@pytest.fixture
def crowded(tmp_path, make_workspace):
    """The repository plus enough unrelated code that a small budget cannot take every file."""
    filler = {
        f"lib/filler_{i:02d}.py": f"def filler_{i}(v):\n" + "    v = v + 1\n" * 30 + "    return v\n" for i in range(20)
    }
    return make_workspace(write_tree(tmp_path / "big", {**REPO, **filler}))


def test_cursor_driven_files_come_after_the_stable_part(crowded, tok):
    ws = crowded
    a, b = _pack(ws, tok, "# CURSOR_A", 2048), _pack(ws, tok, "# CURSOR_B", 2048)
    tiers = [inc.tier for inc in b.included]
    assert tiers == sorted(tiers, key=["repository", "open", "edited", "cursor"].index)
    tax = next(inc for inc in b.included if inc.path == "lib/tax.py")
    assert tax.tier == "cursor"
    # moving the cursor changed which cursor-driven files are in, never the part before them
    assert a.stable_tokens == b.stable_tokens
    assert a.prompt.ids[: a.stable_tokens] == b.prompt.ids[: b.stable_tokens]


def test_recently_edited_and_open_files_rank_and_sit_late(ws, tok):
    ws.note_opened(ws.root / "lib/unrelated.py")
    ws.note_edited(ws.root / "app/db.py")
    result = _pack(ws, tok, "# CURSOR_A")
    by_path = {inc.path: inc for inc in result.included}
    assert by_path["lib/unrelated.py"].tier == "open" and "open in the editor" in by_path["lib/unrelated.py"].reasons
    assert by_path["app/db.py"].tier == "edited" and "recently edited" in by_path["app/db.py"].reasons
    order = [inc.path for inc in result.included]
    assert order.index("app/models.py") < order.index("lib/unrelated.py") < order.index("app/db.py")


def test_a_small_budget_keeps_the_best_ranked_files(crowded, tok):
    result = _pack(crowded, tok, "# CURSOR_A", budget=600)
    assert len(result.prompt) <= 600
    paths = {inc.path for inc in result.included}
    assert {"app/models.py", "app/views.py", "app/db.py"} <= paths  # related files first ...
    assert sum(p.startswith("lib/filler_") for p in paths) < 20  # ... and not everything fits


def test_definitions_in_other_languages_or_with_generic_names_are_not_evidence(tmp_path, make_workspace, tok):
    root = write_tree(
        tmp_path / "r",
        {
            "main.py": "def go(items):\n    for inc in items:\n        render_invoice(inc)\n",
            "invoice.lua": "function render_invoice(x)\n  return x\nend\n",
            "metrics.py": "def inc(x):\n    return x + 1\n",
            "billing.py": "def render_invoice(x):\n    return str(x)\n",
        },
    )
    ws = make_workspace(root)
    text = (root / "main.py").read_text()
    reasons = _reasons(ws.pack(tok, root / "main.py", text, "", 8192))
    assert "defines render_invoice" in reasons["billing.py"]
    assert "defines" not in reasons.get("invoice.lua", "") and "defines" not in reasons.get("metrics.py", "")
