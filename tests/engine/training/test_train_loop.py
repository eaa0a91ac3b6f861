"""`deepfim.engine.training.train`: the loop end to end on the tiny corpus (CPU, a few steps)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.model.loader import load_model
from deepfim.engine.training.train import TrainConfig, train

pytestmark = pytest.mark.slow
TOKENIZER_PATH = DEFAULT_MODEL_DIR / "tokenizer.json"


def history(out) -> list[dict]:
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]


def test_training_exports_a_loadable_model_and_resumes(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(str(tiny_corpus), str(out), str(TOKENIZER_PATH), steps=3, batch_size=1, seq_len=256,
                      eval_every=2, checkpoint_every=2, threads=1)  # fmt: skip
    final = train(cfg)
    rows = history(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in rows)
    assert "heldout_loss" in rows[1] and "heldout_loss" in rows[2]
    model = load_model(final)  # bf16 safetensors + config + tokenizer, the shipped form
    with torch.no_grad():
        assert torch.isfinite(model(torch.tensor([[0, 5, 9]])).logits).all()
    train(TrainConfig(**{**cfg.__dict__, "steps": 4}))  # resumes from the step-3 checkpoint
    assert [r["step"] for r in history(out)] == [1, 2, 3, 4]


def test_a_time_budget_sets_the_step_count_and_loader_workers_feed_it(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(str(tiny_corpus), str(out), str(TOKENIZER_PATH), steps=100_000, batch_size=1, seq_len=256,
                      eval_every=100_000, threads=1, workers=1, minutes=0.05)  # fmt: skip
    train(cfg, resume=False)
    steps = json.loads((out / "train_config.json").read_text())["steps"]
    assert 25 < steps < 100_000  # fixed after the timed steps 5-25, from their speed
    assert len(history(out)) == steps
