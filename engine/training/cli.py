"""`deepfim train`: train (or resume) the embedded default model and export it.

The full recipe, from a fresh checkout:

    python -m deepfim.engine.training.corpus --out data/corpus          # ~20 s
    python -m deepfim.engine.training.tokenizer_train --corpus data/corpus   # the shipped tokenizer.json
    deepfim train --corpus data/corpus --out runs/embedded --install     # ~2 h on 2 cores
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path

from deepfim.engine import DEFAULT_MODEL_DIR


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    from deepfim.engine.training.train import TrainConfig

    d = TrainConfig("", "", "")
    parser.add_argument("--corpus", type=Path, default=Path("data/corpus"), help="built corpus directory")
    parser.add_argument("--out", type=Path, default=Path("runs/embedded"), help="run directory (checkpoints, logs)")
    parser.add_argument("--tokenizer", type=Path, default=DEFAULT_MODEL_DIR / "tokenizer.json",
                        help="tokenizer.json the model is trained with (default: the embedded model's, "
                        "engine/default_model/tokenizer.json)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=d.steps, help="optimizer steps (the schedule's length)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="sequences per step")
    parser.add_argument("--seq-len", type=int, default=d.seq_len, help="tokens per training sequence")
    parser.add_argument("--threads", type=int, default=d.threads, help="CPU threads of the training process")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed of the init and the sample stream")
    parser.add_argument("--device", default=d.device, help="cpu, or cuda for one GPU")
    parser.add_argument("--workers", type=int, default=d.workers, help="data loader processes (0: none)")
    parser.add_argument("--minutes", type=float, default=d.minutes,
                        help="train for this wall-clock budget instead of --steps (the schedule adapts)")  # fmt: skip
    parser.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                        help="steps between checkpoints (a run resumes from the last)")  # fmt: skip
    parser.add_argument("--init", type=Path, default=None,
                        help="start from this checkpoint's weights (fine-tuning; e.g. the embedded model)")  # fmt: skip
    parser.add_argument("--lr-scale", type=float, default=1.0,
                        help="multiply both learning rates (fine-tuning the embedded model: 0.05)")  # fmt: skip
    parser.add_argument("--warmup-steps", type=int, default=d.warmup_steps, help="steps of linear LR warm-up")
    parser.add_argument("--indexer-warmup-steps", type=int, default=d.indexer_warmup_steps,
                        help="dense-attention steps while the indexer learns (0 when fine-tuning)")  # fmt: skip
    parser.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")
    parser.add_argument("--install", action="store_true", help=f"copy the final model into {DEFAULT_MODEL_DIR}")


def run(args: argparse.Namespace) -> int:
    from deepfim.engine.training.train import TrainConfig, train

    if not (args.corpus / "train.jsonl").exists():
        print(f"deepfim train: no corpus at {args.corpus}; build it with\n"
              f"  python -m deepfim.engine.training.corpus --out {args.corpus}", file=sys.stderr)  # fmt: skip
        return 2
    if not args.tokenizer.exists():
        print(f"deepfim train: tokenizer {args.tokenizer} not found", file=sys.stderr)
        return 2
    for name in ("steps", "batch_size", "seq_len", "threads"):
        if getattr(args, name) < 1:
            print(f"deepfim train: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    cfg = dataclasses.replace(
        TrainConfig(str(args.corpus), str(args.out), str(args.tokenizer)),
        steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len, threads=args.threads, seed=args.seed,
        device=args.device, workers=args.workers, minutes=args.minutes, checkpoint_every=args.checkpoint_every,
        init_from=str(args.init) if args.init else None, muon_lr=TrainConfig.muon_lr * args.lr_scale,
        adam_lr=TrainConfig.adam_lr * args.lr_scale, warmup_steps=args.warmup_steps,
        indexer_warmup_steps=args.indexer_warmup_steps,
    )  # fmt: skip
    final = train(cfg, resume=not args.no_resume)
    print(f"model written to {final}")
    if args.install:
        for name in ("config.json", "model.safetensors"):
            shutil.copyfile(final / name, DEFAULT_MODEL_DIR / name)
        print(f"installed into {DEFAULT_MODEL_DIR}")
    return 0
