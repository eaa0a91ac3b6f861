"""Training the embedded default model: a small model with V4-Flash's structure.

Recipe (the model card quotes it):
* data: `samples.TrainingSequences` (FIM PSM + SPM, left-to-right, repository-level samples);
* loss: next-token cross entropy + `mtp_weight` x the MTP block's t+2 cross entropy
  + the lightning indexers' KL loss (their inputs are detached: they learn only from it);
* indexer schedule: `indexer_warmup_steps` dense steps (CSA attends to every visible entry),
  then sparse top-k attention with the KL restricted to the selected entries (V3.2 recipe);
* optimizers: Muon for matrices (attention, experts, compressors, indexer), AdamW for
  embeddings, head, norms, mHC parameters, `ape` and sinks; warm-up then cosine decay;
* MoE balance: auxiliary-loss-free bias update after each step, bias += gamma * sign(mean - load);
* fixed seeds; a checkpoint (model, optimizers, step) every `checkpoint_every` steps; resume.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from deepfim.engine.model.config import ModelArgs
from deepfim.engine.model.loader import save_checkpoint
from deepfim.engine.model.manifest import write_manifest
from deepfim.engine.model.serving_profile import FILE_NAME as SERVING_FILE
from deepfim.engine.model.transformer import ForwardContext, Gate, Transformer, init_weights
from deepfim.engine.training.muon import Muon
from deepfim.engine.training.samples import IGNORE, SampleConfig, TrainingSequences
from deepfim.kernels import references_only

log = logging.getLogger(__name__)


def embedded_model_args(vocab_size: int) -> ModelArgs:
    """The embedded default model: V4's structure, scaled for two CPU cores.

    Layers: sliding-only, CSA, HCA, CSA (window 128, ratios 4 / 128) + one MTP block; the first
    layer routes by token hash; 8 routed experts (2 active) + 1 shared expert per layer.
    """
    return ModelArgs(
        vocab_size=vocab_size, dim=256, n_layers=4, n_heads=4, head_dim=64, rope_head_dim=32,
        q_lora_rank=128, o_groups=2, o_lora_rank=128, compress_ratios=(0, 4, 128, 4), n_mtp_layers=1,
        window_size=128, index_n_heads=8, index_head_dim=32, index_topk=64,
        n_routed_experts=8, n_activated_experts=2, n_shared_experts=1, moe_inter_dim=256,
        n_hash_layers=1, route_scale=1.5, swiglu_limit=10.0, rope_factor=16.0, original_seq_len=65536,
        max_seq_len=1048576, bos_token_id=0, eos_token_id=1, fim_orders=("psm", "spm"),
    )  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    corpus_dir: str
    out_dir: str
    tokenizer: str
    steps: int = 1200
    batch_size: int = 8
    seq_len: int = 1024
    muon_lr: float = 0.02
    adam_lr: float = 3e-3
    warmup_steps: int = 60
    final_lr_fraction: float = 0.1
    mtp_weight: float = 0.3
    indexer_weight: float = 1.0
    indexer_warmup_steps: int = 100
    bias_gamma: float = 0.003
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 100
    eval_every: int = 200
    threads: int = 2
    device: str = "cpu"  # "cuda": one GPU (TF32 matmuls; batches from `workers` loader processes)
    workers: int = 0  # data loader processes building samples (0: in the training process)
    minutes: float = 0.0  # > 0: train for this wall-clock budget; `steps` is then set from the first steps' speed
    init_from: str | None = None  # start from this checkpoint's weights (fine-tuning), not a random init


def lr_factor(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.final_lr_fraction + (1 - cfg.final_lr_fraction) * cosine


def build_optimizers(model: Transformer, cfg: TrainConfig) -> list[torch.optim.Optimizer]:
    """Muon for matrices inside blocks; AdamW for the rest (see module docstring)."""
    muon, adam = [], []
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        is_matrix = p.dim() >= 2 and not name.startswith(("embed.", "head.")) and leaf not in ("ape",)
        if is_matrix and not leaf.startswith("hc_"):
            muon.append(p)
        else:
            adam.append(p)
    return [
        Muon(muon, lr=cfg.muon_lr),
        torch.optim.AdamW(adam, lr=cfg.adam_lr, betas=(0.9, 0.95), weight_decay=0.0),
    ]


def scaled_init(model: Transformer, seed: int) -> Transformer:
    """Random init; projections that write into the residual streams are scaled down."""
    init_weights(model, seed)
    n_blocks = model.args.n_layers + model.args.n_mtp_layers
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("wo_b.weight", ".w2", "shared_experts.w2.weight")):
                p.mul_(1 / math.sqrt(2 * n_blocks))
    return model


def update_expert_bias(model: Transformer, ctx: ForwardContext, gamma: float) -> None:
    """Auxiliary-loss-free balancing (DeepSeek-V3): push each expert's load toward the mean."""
    loads: dict[int, torch.Tensor] = {}
    for layer_id, counts in ctx.expert_loads:
        loads[layer_id] = loads.get(layer_id, 0) + counts.float()
    blocks = list(model.layers) + list(model.mtp)
    with torch.no_grad():
        for layer_id, load in loads.items():
            gate: Gate = blocks[layer_id].ffn.gate
            if gate.bias is not None:
                gate.bias.add_(gamma * torch.sign(load.mean() - load))


def losses(model: Transformer, batch: dict, cfg: TrainConfig, step: int) -> tuple[torch.Tensor, dict, ForwardContext]:
    ids = torch.as_tensor(batch["input_ids"]).to(cfg.device, non_blocking=True)
    labels = torch.as_tensor(batch["labels"]).to(cfg.device, non_blocking=True)
    ctx = ForwardContext(indexer_loss=True, dense_indexer=step < cfg.indexer_warmup_steps)
    out = model(ids, ctx=ctx)
    lm = F.cross_entropy(out.logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE)
    parts = {"lm": lm.detach()}
    total = lm
    if model.args.n_mtp_layers and cfg.mtp_weight:
        mtp_logits = model.mtp_logits(out.streams[:, :-1], ids[:, 1:], 0, ctx=ctx)
        mtp = F.cross_entropy(mtp_logits.flatten(0, 1), labels[:, 1:].flatten(), ignore_index=IGNORE)
        total = total + cfg.mtp_weight * mtp
        parts["mtp"] = mtp.detach()
    if ctx.indexer_losses:
        idx = torch.stack(ctx.indexer_losses).mean()
        total = total + cfg.indexer_weight * idx
        parts["indexer"] = idx.detach()
    return total, parts, ctx


@torch.no_grad()
def evaluate(model: Transformer, batches: list[dict]) -> float:
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for batch in batches:
        labels = torch.as_tensor(batch["labels"]).to(device)
        with references_only():  # the training steps' math, also on a GPU
            logits = model(torch.as_tensor(batch["input_ids"]).to(device)).logits
        total += F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="sum").item()
        count += int((labels != IGNORE).sum())
    model.train()
    return total / max(1, count)


def train(cfg: TrainConfig, resume: bool = True) -> Path:
    """Trains (or resumes) and exports the model to `out_dir/final`; returns that directory."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    from deepfim.engine.model.tokenizer import Tokenizer

    vocab = Tokenizer.from_file(cfg.tokenizer).vocab_size
    args = embedded_model_args(vocab)
    if cfg.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model = scaled_init(Transformer(args), cfg.seed)
    if cfg.init_from:
        from deepfim.engine.model.loader import load_model

        start = load_model(cfg.init_from)
        if dataclasses.replace(start.args, weight_dtype=args.weight_dtype) != args:
            raise ValueError(f"{cfg.init_from} has another shape than the embedded model: {start.args} vs {args}")
        model.load_state_dict(start.state_dict())
        log.info("starting from the weights of %s", cfg.init_from)
    model = model.to(cfg.device).train()
    optimizers = build_optimizers(model, cfg)
    step, elapsed = 0, 0.0
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=False, map_location=cfg.device)
        model.load_state_dict(state["model"])
        for opt, s in zip(optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(s)
        step, elapsed = state["step"], state["elapsed"]
        log.info("resumed from %s at step %d", ckpt_path, step)
    (out / "train_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
    # each resume continues with a fresh deterministic stream (seeded by the step)
    samples = SampleConfig(seq_len=cfg.seq_len, seed=cfg.seed + step)
    stream = _batches(TrainingSequences(cfg.corpus_dir, cfg.tokenizer, samples), cfg)
    heldout = TrainingSequences(cfg.corpus_dir, cfg.tokenizer, dataclasses.replace(samples, seed=12345), "heldout")
    eval_batches = [next(heldout.batches(cfg.batch_size)) for _ in range(2)]
    base_lrs = [cfg.muon_lr, cfg.adam_lr]
    progress = _Progress(cfg.steps, step)
    history_path = out / "history.jsonl"
    budget_start = time.perf_counter()
    first_step, timed_from = step, None
    while step < cfg.steps:
        if cfg.minutes > 0 and step == first_step + 5:
            timed_from = time.perf_counter()  # after start-up (compilation, allocator, loader workers)
        if cfg.minutes > 0 and step == first_step + 25:
            # the schedule's length from the speed of steps 5-25 (in warm-up, which does not depend on it)
            per_step = (time.perf_counter() - timed_from) / 20
            left = cfg.minutes * 60 - (time.perf_counter() - budget_start)
            cfg = dataclasses.replace(cfg, steps=max(step + 1, step + int(left / per_step)))
            log.info("time budget %.1f min: %d steps at %.3f s/step", cfg.minutes, cfg.steps, per_step)
            progress.set_total(cfg.steps)
            (out / "train_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
        t0 = time.perf_counter()
        for opt, base in zip(optimizers, base_lrs, strict=True):
            for group in opt.param_groups:
                group["lr"] = base * lr_factor(step, cfg)
        loss, parts, ctx = losses(model, next(stream), cfg, step)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
        update_expert_bias(model, ctx, cfg.bias_gamma)
        step += 1
        dt = time.perf_counter() - t0
        elapsed += dt
        record = {
            "step": step,
            "loss": float(loss.detach()),
            **{k: float(v) for k, v in parts.items()},
            "grad_norm": float(grad_norm),
            "tok_s": cfg.batch_size * cfg.seq_len / dt,
            "elapsed_s": elapsed,
        }
        if step % cfg.eval_every == 0 or step == cfg.steps:
            record["heldout_loss"] = evaluate(model, eval_batches)
        with history_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        progress.update(record)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            tmp = ckpt_path.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "optimizers": [o.state_dict() for o in optimizers],
                        "step": step, "elapsed": elapsed, "config": dataclasses.asdict(cfg)}, tmp)  # fmt: skip
            tmp.replace(ckpt_path)
    progress.close()
    final = out / "final"
    export_model(model.cpu(), final, cfg.tokenizer)
    profile = Path(cfg.init_from or "") / SERVING_FILE
    if cfg.init_from and profile.is_file():  # a fine-tune is served as its starting point was
        shutil.copyfile(profile, final / SERVING_FILE)
    return final


class _Iterable(torch.utils.data.IterableDataset):
    """TrainingSequences as torch's loader wants it (each worker draws its own stream)."""

    def __init__(self, sequences: TrainingSequences) -> None:
        self.sequences = sequences

    def __iter__(self):
        return iter(self.sequences)


def _batches(sequences: TrainingSequences, cfg: TrainConfig):
    """Stacked batches, built in the training process or by `cfg.workers` loader processes."""
    if cfg.workers <= 0:
        return sequences.batches(cfg.batch_size)
    loader = torch.utils.data.DataLoader(
        _Iterable(sequences), batch_size=cfg.batch_size, num_workers=cfg.workers, persistent_workers=True,
        prefetch_factor=4, pin_memory=cfg.device.startswith("cuda"),
    )  # fmt: skip
    return iter(loader)


def export_model(model: Transformer, out_dir: Path, tokenizer: str | Path) -> None:
    """Writes the shippable checkpoint: config.json, tokenizer.json, bf16 model.safetensors, and
    the SHA256SUMS manifest loading verifies (manifest.py)."""
    save_checkpoint(model.eval(), out_dir, weight_format="bf16")
    shutil.copyfile(tokenizer, Path(out_dir) / "tokenizer.json")
    write_manifest(out_dir)


class _Progress:
    """A rich progress bar on a terminal; a log line every 10 steps otherwise."""

    def __init__(self, total: int, start: int) -> None:
        self.tty = sys.stderr.isatty()
        self.total = total
        if self.tty:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("step {task.completed}/{task.total}"), BarColumn(),
                                TextColumn("{task.fields[info]}"), TimeRemainingColumn())  # fmt: skip
            self.bar.start()
            self.task = self.bar.add_task("train", total=total, completed=start, info="")

    def set_total(self, total: int) -> None:
        self.total = total
        if self.tty:
            self.bar.update(self.task, total=total)

    def update(self, r: dict) -> None:
        info = f"loss {r['loss']:.3f} lm {r['lm']:.3f} {r['tok_s']:.0f} tok/s"
        if "heldout_loss" in r:
            info += f" heldout {r['heldout_loss']:.3f}"
        if self.tty:
            self.bar.update(self.task, completed=r["step"], info=info)
        elif r["step"] % 10 == 0 or "heldout_loss" in r:
            print(f"step {r['step']}/{self.total} {info}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            self.bar.stop()
