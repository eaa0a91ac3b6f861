"""`deepfim.engine.training.train`: the loop end to end on the tiny corpus (CPU, a few steps)."""

from __future__ import annotations

import json
import math
import os
import shutil

import pytest
import torch

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.model.loader import load_model
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.model.transformer import Transformer
from deepfim.engine.training.samples import SampleConfig, TrainingSequences
from deepfim.engine.training.train import TrainConfig, build_optimizers, embedded_model_args, losses, train

pytestmark = pytest.mark.slow
TOKENIZER_PATH = DEFAULT_MODEL_DIR / "tokenizer.json"


def history(out) -> list[dict]:
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]


def first_step_after_resume(checkpoint: dict, cfg: TrainConfig, corpus) -> tuple[float, list]:
    """The loss a resumed run's first step must report, and the optimizers it must start from:
    the checkpoint's model on the first batch of the stream a resume at that step draws."""
    model = Transformer(embedded_model_args(Tokenizer.from_file(TOKENIZER_PATH).vocab_size))
    model.load_state_dict(checkpoint["model"])
    model.train()
    optimizers = build_optimizers(model, cfg)
    for opt, saved in zip(optimizers, checkpoint["optimizers"], strict=True):
        opt.load_state_dict(saved)
    step = checkpoint["step"]
    batch = next(TrainingSequences(corpus, TOKENIZER_PATH, SampleConfig(cfg.seq_len, seed=cfg.seed + step)).batches(1))
    loss, _, _ = losses(model, batch, cfg, step)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    return float(loss.detach()), optimizers


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
    shutil.copy(out / "checkpoint.pt", tmp_path / "step3.pt")

    resumed_cfg = TrainConfig(**{**cfg.__dict__, "steps": 4})
    train(resumed_cfg)  # resumes from the step-3 checkpoint
    rows = history(out)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    step3 = torch.load(tmp_path / "step3.pt", weights_only=False)
    step4 = torch.load(out / "checkpoint.pt", weights_only=False)
    assert step3["step"] == 3 and step4["step"] == 4
    # the model was restored: step 4 trained the step-3 weights (a fresh model has another loss)
    loss, optimizers = first_step_after_resume(step3, resumed_cfg, tiny_corpus)
    assert rows[3]["loss"] == pytest.approx(loss, rel=1e-5)
    # the optimizers were restored: AdamW counts four steps, Muon's momentum is not this step's gradient alone
    muon, adam = step4["optimizers"]
    assert {float(s["step"]) for s in adam["state"].values()} == {4.0}
    first_matrix = optimizers[0].param_groups[0]["params"][0]
    assert not torch.allclose(muon["state"][0]["momentum"], first_matrix.grad)


def test_a_time_budget_sets_the_step_count_and_loader_workers_feed_it(tiny_corpus, tmp_path, monkeypatch):
    out = tmp_path / "run"
    streams = tmp_path / "streams.txt"
    real_stream = TrainingSequences.stream

    def recorded_stream(self, worker=0, num_workers=1):
        # loader workers are forked from this process, so they run this too; the file is shared
        with streams.open("a") as f:
            f.write(f"{os.getpid()} {self.config.seed} {worker}/{num_workers}\n")
        return real_stream(self, worker, num_workers)

    monkeypatch.setattr(TrainingSequences, "stream", recorded_stream)
    cfg = TrainConfig(str(tiny_corpus), str(out), str(TOKENIZER_PATH), steps=100_000, batch_size=1, seq_len=256,
                      eval_every=100_000, threads=1, workers=1, minutes=0.05)  # fmt: skip
    train(cfg, resume=False)
    steps = json.loads((out / "train_config.json").read_text())["steps"]
    assert 25 < steps < 100_000  # fixed after the timed steps 5-25, from their speed
    assert len(history(out)) == steps
    # the training stream (seed 0) was drawn in a loader worker, not in this process
    training_streams = [line.split() for line in streams.read_text().splitlines() if line.split()[1] == "0"]
    assert training_streams and all(int(pid) != os.getpid() for pid, _, _ in training_streams)


def test_a_fine_tune_starts_from_its_init_and_keeps_its_serving_profile(tiny_corpus, tmp_path):
    """`--init DIR`: the first step trains DIR's weights, and the export is served as DIR is."""
    out = tmp_path / "ft"
    cfg = TrainConfig(str(tiny_corpus), str(out), str(TOKENIZER_PATH), steps=1, batch_size=1, seq_len=256,
                      eval_every=1, checkpoint_every=1, threads=1, init_from=str(DEFAULT_MODEL_DIR))  # fmt: skip
    final = train(cfg)
    assert (final / "serving.json").read_bytes() == (DEFAULT_MODEL_DIR / "serving.json").read_bytes()
    start = load_model(DEFAULT_MODEL_DIR).state_dict()
    tuned = torch.load(out / "checkpoint.pt", weights_only=False)["model"]
    close = sum(torch.allclose(start[k].float(), tuned[k].float(), atol=0.05) for k in start if start[k].numel() > 1)
    assert close > 0.9 * sum(1 for k in start if start[k].numel() > 1)  # one small step away from the init
