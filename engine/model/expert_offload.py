"""Routed experts offloaded to (pinned) host memory with a cache of hot experts on the device.

V4-Flash's weights are 148.6 GiB, of which the routed experts are 140 GiB (132 FP4 + 8 of
scales), and one H200 has about 139 GiB: keeping every attention, shared-expert and dense weight
on the GPU plus `capacity` experts per MoE layer, the rest in host memory, makes it fit. Each
call looks up the experts its tokens were routed to (this reads the routing back on the host:
one sync per layer), copies the missing ones host -> device into free slots or over the least
recently used expert not needed by this call, and runs the grouped GEMM over the slots.

`prepare(model, capacity)` (on the meta device, before `to_empty`) takes a MoE layer's stacked
expert tensors out of the module, so they are never allocated on the device; `allocate` (after
`to_empty`) gives them host storage (pinned when CUDA is present) for the loader to fill, and
the device slot pool. The cache's bookkeeping is `SlotCache`, device-free and unit-tested.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from deepfim.kernels import moe_gemm

NAMES = ("w1", "w2", "w3", "w1_scale", "w2_scale", "w3_scale")


class SlotCache:
    """Which expert sits in which of `capacity` slots; least recently used out first."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"an expert cache needs at least one slot, got {capacity}")
        self.capacity = capacity
        self.slot_of: OrderedDict[int, int] = OrderedDict()  # expert -> slot, least recently used first
        self.hits = self.misses = 0

    def assign(self, experts: list[int]) -> tuple[dict[int, int], list[tuple[int, int]]]:
        """Slots for `experts` (distinct, at most `capacity`), and the (expert, slot) loads it needs.

        An expert already cached is a hit (and becomes the most recently used); a missing one takes
        a free slot or the least recently used expert's that this call does not need.
        """
        if len(experts) > self.capacity:
            raise ValueError(f"{len(experts)} experts asked at once, the cache holds {self.capacity}")
        wanted = set(experts)
        loads = []
        for e in experts:
            if e in self.slot_of:
                self.hits += 1
                self.slot_of.move_to_end(e)
                continue
            self.misses += 1
            if len(self.slot_of) < self.capacity:
                slot = len(self.slot_of)
            else:
                victim = next(v for v in self.slot_of if v not in wanted)
                slot = self.slot_of.pop(victim)
            self.slot_of[e] = slot
            loads.append((e, slot))
        return {e: self.slot_of[e] for e in experts}, loads

    @property
    def hit_rate(self) -> float:
        asked = self.hits + self.misses
        return self.hits / asked if asked else 0.0


class OffloadedExperts:
    """One MoE layer's routed experts in host memory, `capacity` of them cached on the device."""

    def __init__(self, shapes: dict[str, tuple[torch.Size, torch.dtype]], capacity: int) -> None:
        self.shapes = shapes  # name -> (shape [E, ...], dtype) of the stacked tensors
        self.n_experts = next(iter(shapes.values()))[0][0]
        self.cache = SlotCache(min(capacity, self.n_experts))
        self.host: dict[str, torch.Tensor] = {}
        self.slots: dict[str, torch.Tensor] = {}

    def allocate(self, device: torch.device) -> None:
        pin = torch.cuda.is_available()
        for name, (shape, dtype) in self.shapes.items():
            self.host[name] = torch.empty(shape, dtype=dtype, pin_memory=pin)
            self.slots[name] = torch.empty((self.cache.capacity, *shape[1:]), dtype=dtype, device=device)

    def _weights(self) -> moe_gemm.ExpertWeights:
        s = self.slots
        return moe_gemm.ExpertWeights(s["w1"], s["w2"], s["w3"], s.get("w1_scale"), s.get("w2_scale"),
                                      s.get("w3_scale"))  # fmt: skip

    def __call__(self, x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor, limit: float) -> torch.Tensor:
        """The routed experts' sum [N, D] for expert ids `idx` [N, K] (this layer's numbering)."""
        used = torch.unique(idx).tolist()  # the one host read: which experts must be on the device
        if len(used) <= self.cache.capacity:  # the usual case: every pair in one grouped GEMM
            return moe_gemm.experts_forward(x, weights, self._load(used, idx), self._weights(), limit)
        out = torch.zeros_like(x)  # more experts than slots (long prefill chunks): a chunk of experts at a time
        token = torch.arange(idx.shape[0], device=idx.device)[:, None].expand_as(idx)
        for start in range(0, len(used), self.cache.capacity):
            local = self._load(used[start : start + self.cache.capacity], idx)
            mine = local >= 0
            rows = token[mine]
            part = moe_gemm.experts_forward(x[rows], weights[mine][:, None], local[mine][:, None], self._weights(),
                                            limit)  # fmt: skip
            out.index_add_(0, rows, part)
        return out

    def _load(self, experts: list[int], idx: torch.Tensor) -> torch.Tensor:
        """Brings `experts` into slots; `idx` in slot numbers (-1 for the experts not among them)."""
        slot_of, loads = self.cache.assign(experts)
        for expert, slot in loads:
            for name, host in self.host.items():
                self.slots[name][slot].copy_(host[expert], non_blocking=True)
        table = torch.full((self.n_experts,), -1, dtype=torch.long)
        table[experts] = torch.tensor([slot_of[e] for e in experts])
        return table.to(idx.device)[idx]


def prepare(model: nn.Module, capacity: int) -> dict[str, OffloadedExperts]:
    """Takes every MoE layer's stacked experts out of `model` (on the meta device) into an
    `OffloadedExperts` with `capacity` device slots; returns them by module name."""
    from deepfim.engine.model.transformer import MoE

    out = {}
    for name, module in model.named_modules():
        if not isinstance(module, MoE):
            continue
        shapes = {}
        for key in NAMES:
            store = module._parameters if key in module._parameters else module._buffers
            if key in store:
                t = store.pop(key)
                shapes[key] = (t.shape, t.dtype)
        module.offload = OffloadedExperts(shapes, capacity)
        out[name] = module.offload
    return out


def host_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The host tensors the loader fills, by the parameter names the experts had."""
    return {f"{name}.{key}": t for name, m in model.named_modules() if getattr(m, "offload", None) is not None
            for key, t in m.offload.host.items()}  # fmt: skip


def stats(model: nn.Module) -> dict[str, dict[str, float]]:
    """Hits, misses and hit rate of every layer's cache."""
    return {name: {"hits": m.offload.cache.hits, "misses": m.offload.cache.misses,
                   "hit_rate": m.offload.cache.hit_rate}
            for name, m in model.named_modules() if getattr(m, "offload", None) is not None}  # fmt: skip
