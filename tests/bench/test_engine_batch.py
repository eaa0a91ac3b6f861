"""bench/engine_batch.py: every sequence of a batch decodes in each step, and the figures count
what was generated."""

from __future__ import annotations

from deepfim.bench.engine_batch import run_decode_rows


def test_batched_decode_rows_count_every_sequence_and_step():
    rows = run_decode_rows([1, 3], prompt_tokens=64, new_tokens=5)
    assert [r["batch"] for r in rows] == [1, 3]
    for r in rows:
        # the first token comes with the prefill; then one step per token, all sequences in it
        assert r["steps"] == 4 and r["generated"] == 5 * r["batch"]
        assert r["tok_per_s"] > 0 and abs(r["ms_per_token"] * r["generated"] - r["ms_per_step"] * r["steps"]) < 1e-6
