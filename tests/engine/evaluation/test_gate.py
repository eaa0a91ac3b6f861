"""The confidence gate's table and its calibration on hand-made results."""

from __future__ import annotations

from deepfim.engine.evaluation.gate import calibrate, gate_rows, gate_table
from deepfim.engine.evaluation.harness import TaskResult


def _result(score: float | None, exact: bool, prediction: str = "x = 1") -> TaskResult:
    return TaskResult("model/repository", "model", "t", "heldout", "r", "python", "line", "repository", 10,
                      prediction, exact, 1.0 if exact else 0.25, score, 5.0)  # fmt: skip


RESULTS = [
    _result(-0.1, True), _result(-0.2, True), _result(-0.3, False), _result(-0.6, True),
    _result(-0.9, False), _result(-1.8, False), _result(None, False), _result(-0.4, False, prediction=""),
]  # fmt: skip


def test_rows_count_what_each_threshold_shows_and_how_often_it_is_right():
    rows = {r["threshold"]: r for r in gate_rows(RESULTS, (None, -1.0, -0.5, -0.25))}
    assert rows[None]["n"] == 7 and rows[None]["shown"] == 6  # unscored left out; empty never shown
    assert (rows[-1.0]["shown"], rows[-1.0]["right_as_is"]) == (5, 3 / 5)
    assert (rows[-0.5]["shown"], rows[-0.5]["right_as_is"], rows[-0.5]["right_hidden"]) == (3, 2 / 3, 1)
    assert (rows[-0.25]["shown"], rows[-0.25]["right_as_is"]) == (2, 1.0)
    assert rows[-0.25]["edit_similarity"] == 1.0


def test_calibration_takes_the_lowest_threshold_that_reaches_the_target():
    thresholds = (-1.0, -0.5, -0.25)
    assert calibrate(RESULTS, 0.6, thresholds) == -1.0
    assert calibrate(RESULTS, 0.65, thresholds) == -0.5
    assert calibrate(RESULTS, 0.9, thresholds) == -0.25
    assert calibrate(RESULTS, 1.01, thresholds) is None


def test_the_table_has_a_row_per_threshold():
    table = gate_table(gate_rows(RESULTS, (None, -0.5)))
    assert table.splitlines()[2].startswith("| none | 6/7 |") and "| -0.50 | 3/7 | 42.9 | 66.7 |" in table
