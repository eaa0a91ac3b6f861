"""The evaluation harness (engine/evaluation/harness.py) on a repository written into tmp_path:
context reaches the prompt, and no prompt shows the answer of its own hole — not through the
repository part (the hole files are marked edited before it is built) and not through the index
(the cursor file's entry is parsed from the buffer, not from the file on disk). The copy
baseline can only copy text its prompt holds, so a name that occurs nowhere but in a hole's
answer, copied, proves a leak. And the rows the results aggregate into."""

from __future__ import annotations

import pytest

from deepfim.engine.evaluation.configs import MAIN, make_session
from deepfim.engine.evaluation.harness import Evaluator, TaskResult, aggregate, markdown_table
from deepfim.engine.evaluation.suites import EvalRepo
from deepfim.engine.evaluation.tasks import FimTask

CONFIGS = {c.name: c for c in MAIN}
# big enough that the cursor file's copy is its summary (imports and signatures from the index)
LEDGER = "".join(f"def rate_{i:03d}(a, b):\n    return a * {i} + b\n\n\n" for i in range(260)) + (
    "class Ledger:\n    def compute_inventory_worth(self, catalogue, discount):\n        return self.total\n"
)
QUOTE = """from helper import format_quote
from ledger import rate_001


def quote(sku):
    return format_quote(sku, margin=0.25)


def lookup(sku):
    return pricing_table_lookup(sku, zone_surcharge_table)
"""
HELPER = '''def sample(sku):
    """Shows how a quote is formatted."""
    return format_quote(sku, margin=0.25)
'''
ONLY_IN_THE_HOLE = {"answer-only-on-disk": "zone_surcharge_table", "signature-only-on-disk": "catalogue"}


def _hole(path: str, text: str, start: str, name: str) -> FimTask:
    """A midline hole from `start` to the end of its line."""
    a = text.index(start)
    b = text.index("\n", a)
    return FimTask(name, "heldout", "python", "midline", text[:a], text[a:b], text[b:], path, "shop")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval") / "shop"
    root.mkdir()
    for rel, text in (("ledger.py", LEDGER), ("quote.py", QUOTE), ("helper.py", HELPER)):
        (root / rel).write_text(text)
    tasks = [
        _hole("quote.py", QUOTE, "(sku, margin=0.25)", "answered-by-helper"),
        _hole("quote.py", QUOTE, "(sku, zone_surcharge_table)", "answer-only-on-disk"),
        _hole("ledger.py", LEDGER, "(self, catalogue, discount):", "signature-only-on-disk"),
    ]
    for t in tasks:  # the names of the last two answers occur nowhere but in their holes
        if t.task_id in ONLY_IN_THE_HOLE:
            assert sum(text.count(ONLY_IN_THE_HOLE[t.task_id]) for text in (LEDGER, QUOTE, HELPER)) == 1
            assert ONLY_IN_THE_HOLE[t.task_id] in t.middle
    session = make_session(None, CONFIGS["copy/repository"])
    evaluator = Evaluator(session)
    repo = EvalRepo("shop", "heldout", root)
    try:
        yield {name: {r.task_id: r for r in evaluator.run_repo(repo, tasks, CONFIGS[name])}
               for name in ("copy/none", "copy/repository")}  # fmt: skip
    finally:
        evaluator.close()
        session.close()


def test_the_repository_level_prompt_holds_the_other_files(results):
    found = results["copy/repository"]["answered-by-helper"]
    assert found.prediction == "(sku, margin=0.25)" and found.exact and found.edit_sim == 1.0
    assert found.level == "repository" and found.kind == "midline" and found.repo == "shop"
    alone = results["copy/none"]["answered-by-helper"]
    assert not alone.exact and alone.prompt_tokens < found.prompt_tokens


@pytest.mark.parametrize("task", sorted(ONLY_IN_THE_HOLE))
def test_no_prompt_shows_the_answer_of_its_own_hole(results, task):
    answer = ONLY_IN_THE_HOLE[task]
    for level in ("copy/none", "copy/repository"):
        r = results[level][task]
        assert answer not in r.prediction, (level, r.prediction)
        assert not r.exact


def _result(config: str, suite: str, kind: str, exact: bool, ms: float, passed=None) -> TaskResult:
    return TaskResult(config, "copy", f"{suite}/{kind}/{ms}", suite, "r", "python", kind, "file", 100 + int(ms),
                      "x", exact, 1.0 if exact else 0.5, None, ms, passed)  # fmt: skip


def test_rows_aggregate_per_config_suite_and_kind():
    results = [
        _result("a", "heldout", "line", True, 10), _result("a", "heldout", "line", False, 30),
        _result("a", "heldout", "block", False, 20),
        _result("a", "humaneval", "single", True, 5, passed=True), _result("a", "humaneval", "single", False, 7, False),
        _result("a", "humaneval", "single", False, 9, passed=False),
    ]  # fmt: skip
    rows = {(r["suite"], r["hole"]): r for r in aggregate(results)}
    assert list(rows) == [("heldout", "block"), ("heldout", "line"), ("heldout", "all"), ("humaneval", "single")]
    line, every, he = rows[("heldout", "line")], rows[("heldout", "all")], rows[("humaneval", "single")]
    assert (line["n"], line["exact_match"], line["edit_similarity"], line["median_ms"]) == (2, 0.5, 0.75, 30)
    assert (every["n"], every["exact_match"], every["pass_at_1"]) == (3, pytest.approx(1 / 3), None)
    assert he["pass_at_1"] == pytest.approx(1 / 3) and he["prompt_tokens"] == 107
    table = markdown_table(aggregate(results)).splitlines()
    assert len(table) == 2 + len(rows) and table[-1] == "| humaneval | single | a | 3 | 33.3 | 66.7 | 33.3 | 7 | 107 |"
