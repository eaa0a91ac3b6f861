"""Tensor-parallel attention and expert-parallel MoE over torch.distributed (gloo on CPUs, NCCL on GPUs).

Which tensor is split how follows DeepSeek's `inference/convert.py` (v4-model.md §8.3):

* tensor parallel (TP): along dim 0 the query up-projection `wq_b` (heads), the grouped output
  projection `wo_a` (groups), the sinks `attn_sink`, the indexer's `wq_b` and `weights_proj`
  (indexer heads); along dim 1 `wo_b`. Each rank attends with its heads; the ranks' partial
  `wo_b` outputs, and the indexer's partial scores (a sum over heads) before its top-k, are
  all-reduced. Everything else (wq_a, wkv, norms, compressors, mHC, router, shared expert,
  embedding and head) is replicated, so every rank holds the same residual streams and the
  same V4 state (the shared K=V rows and the compressors are computed from replicated weights).
* expert parallel (EP): each rank holds a contiguous range of every MoE layer's routed experts
  and computes the (token, expert) pairs routed to them; the ranks' sums are all-reduced, then
  the (replicated) shared expert is added.

TP and EP each span either one rank or the whole world (the reference's layout: its model
parallel group shards heads and experts alike), so `--tp 2 --ep 2` on two ranks splits both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

_DIM0 = re.compile(r"\.attn\.(wq_b|wo_a)\.weight$|\.attn\.attn_sink$|\.attn\.indexer\.(wq_b|weights_proj)\.weight$")
_DIM1 = re.compile(r"\.attn\.wo_b\.weight$")


@dataclass(frozen=True)
class ParallelLayout:
    """This rank's place: `tp`, `ep` are 1 (replicated) or `world` (split over every rank)."""

    rank: int = 0
    world: int = 1
    tp: int = 1
    ep: int = 1
    group: object = None  # the process group of the collectives (None: the default group)

    def __post_init__(self) -> None:
        for name in ("tp", "ep"):
            if getattr(self, name) not in (1, self.world):
                raise ValueError(f"--{name} {getattr(self, name)}: must be 1 or the number of ranks ({self.world})")
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} outside a world of {self.world}")

    def split(self, name: str) -> tuple[int, int, int] | None:
        """(dim, rank, parts) for a tensor tensor parallelism splits, by its parameter name; else None."""
        if self.tp == 1:
            return None
        if _DIM0.search(name):
            return 0, self.rank, self.tp
        if _DIM1.search(name):
            return 1, self.rank, self.tp
        return None

    def expert_range(self, n_experts: int) -> tuple[int, int]:
        """(first expert, count) this rank holds of a layer's `n_experts`."""
        count = n_experts // self.ep
        return (self.rank * count if self.ep > 1 else 0), count

    def all_reduce(self, t: torch.Tensor) -> None:
        """Sums `t` over the ranks, in place."""
        dist.all_reduce(t, group=self.group)

    def check(self, args) -> None:
        """ValueError naming the shape that this layout cannot split."""
        problems = []
        if self.tp > 1:
            for field in ("n_heads", "o_groups", "index_n_heads"):
                if getattr(args, field) % self.tp:
                    problems.append(f"{field}={getattr(args, field)} is not divisible by tp={self.tp}")
        if self.ep > 1 and args.n_routed_experts % self.ep:
            problems.append(f"n_routed_experts={args.n_routed_experts} is not divisible by ep={self.ep}")
        if problems:
            raise ValueError("; ".join(problems))

    def shard_model(self, model: nn.Module) -> None:
        """Shrinks the split modules of a model on the meta device to this rank's share and sets
        their `reduce` hooks (the loader then fills only that share)."""
        from deepfim.engine.model.transformer import Attention, Linear, MoE

        self.check(model.args)
        for module in model.modules():
            if isinstance(module, Attention) and self.tp > 1:
                a, tp = module.args, self.tp
                module.n_heads, module.o_groups = a.n_heads // tp, a.o_groups // tp
                module.wq_b = Linear(a.q_lora_rank, module.n_heads * a.head_dim, act_quant=a.quant_sim)
                module.attn_sink = nn.Parameter(torch.zeros(module.n_heads))
                group_in = a.n_heads * a.head_dim // a.o_groups
                module.wo_a = Linear(group_in, module.o_groups * a.o_lora_rank)
                module.wo_b = Linear(module.o_groups * a.o_lora_rank, a.dim, act_quant=a.quant_sim)
                module.reduce = self.all_reduce
                if module.indexer is not None:
                    ix = module.indexer
                    ix.n_heads = a.index_n_heads // tp
                    ix.wq_b = Linear(a.q_lora_rank, ix.n_heads * ix.head_dim, act_quant=a.quant_sim)
                    ix.weights_proj = Linear(a.dim, ix.n_heads)
                    ix.reduce = self.all_reduce
            elif isinstance(module, MoE) and self.ep > 1:
                offset, count = self.expert_range(module.args.n_routed_experts)
                module.expert_offset = offset
                for w in ("w1", "w2", "w3"):
                    full = getattr(module, w)
                    setattr(module, w, nn.Parameter(torch.empty(count, *full.shape[1:])))
                module.reduce = self.all_reduce


def init_process_group(device: str) -> ParallelLayout:
    """Joins the group torchrun (or `deepfim serve --tp/--ep`) describes in the environment:
    NCCL for CUDA devices, gloo otherwise. Returns a one-rank layout (tp = ep = 1) to refine."""
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return ParallelLayout(dist.get_rank(), dist.get_world_size())
