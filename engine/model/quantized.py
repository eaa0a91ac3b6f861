"""Weights kept in checkpoint form: FP8 linears and FP4 routed experts that stay quantized in memory.

A V4 checkpoint stores the attention, shared-expert and MTP projections as FP8 e4m3 with one
ue8m0 scale per 128 x 128 block, and the routed experts as packed FP4 e2m1 with one ue8m0 scale
per 1 x 32 (v4-model.md §7-8). `keep_quantized` turns the matching modules of a model built on
the meta device into their quantized form before the loader fills them:

* `nn.Linear` -> `QuantLinear` (buffers `weight` e4m3 [N, K] and `scale` [ceil(N/128), ceil(K/128)]);
  its forward dequantizes inside `kernels.fp8_gemm.fp8_linear` (Triton on CUDA, the fp32 torch
  reference elsewhere);
* a MoE layer's stacked `w1`, `w2`, `w3` parameters -> packed buffers of the same names
  ([E, I, D/2], [E, D, I/2]) with `w1_scale`, `w2_scale`, `w3_scale`; the layer then runs
  `kernels.moe_gemm.experts_forward` (the grouped GEMM on CUDA; the reference dequantizes only
  the experts a call uses).

Everything else keeps the loader's dense dtype (`materialize`): the matrices in it (bf16 on GPUs),
the vectors (norms, mHC mixing, sinks, biases, positional biases) in fp32. Matmuls take their
input in the weight's dtype and give their output back in the activation's (fp32), so the
residual streams, norms and softmaxes stay fp32 whatever the weights are.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from deepfim.kernels.fp8_gemm import fp8_linear
from deepfim.kernels.quant import fp8_round_trip
from deepfim.kernels.quant.ref import dequant_fp8_blocks

FP8_BLOCK = 128  # the 128 x 128 weight blocks of V4's FP8 linears
FP4_BLOCK = 32  # elements per ue8m0 scale of V4's FP4 experts, along K
EXPERT_WEIGHTS = ("w1", "w2", "w3")
QUANTIZED_DTYPES = (torch.float8_e4m3fn, torch.int8, torch.uint8)


class QuantLinear(nn.Module):
    """Bias-free linear over an FP8 e4m3 weight with 128 x 128 block scales (the checkpoint's bytes).

    `act_quant` simulates the reference's FP8 activation rounding, as `transformer.Linear` does.
    `compute_dtype` is the dtype the GEMM reads its input in (bf16: the Triton kernel's MMA path;
    fp32: exact products); the output comes back in the input's dtype.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        act_quant: bool,
        scale_dtype: torch.dtype = torch.float8_e8m0fnu,
        compute_dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.act_quant = act_quant
        self.compute_dtype = compute_dtype
        scale_shape = (math.ceil(out_features / FP8_BLOCK), math.ceil(in_features / FP8_BLOCK))
        self.register_buffer("weight", torch.empty(out_features, in_features, dtype=torch.float8_e4m3fn))
        self.register_buffer("scale", torch.empty(scale_shape, dtype=scale_dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act_quant:
            x = fp8_round_trip(x, min(128, x.shape[-1]))
        return fp8_linear(x.to(self.compute_dtype), self.weight, self.scale, FP8_BLOCK, out_dtype=x.dtype)

    def dequantized(self) -> torch.Tensor:
        """The fp32 weight (for the rare callers that need the matrix itself)."""
        return dequant_fp8_blocks(self.weight, self.scale, FP8_BLOCK)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, fp8 e4m3 128x128"


def linear(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """x @ W^T for a dense `nn.Linear`-like layer whose weight may be another dtype than x
    (bf16 matrices, fp32 activations): the product runs in the weight's dtype, the result in x's."""
    w = layer.weight
    if w.dtype == x.dtype:
        return F.linear(x, w)
    return F.linear(x.to(w.dtype), w).to(x.dtype)


def grouped_linear(layer: nn.Module, x: torch.Tensor, groups: int) -> torch.Tensor:
    """V4's grouped output projection `wo_a`: x [B, T, G, in] times one [R, in] block per group
    (the layer's weight is [G * R, in]) -> [B, T, G, R].

    An FP8 weight whose group rows fill whole 128-row scale blocks (V4: R = 1024) runs one FP8
    GEMM per group on its own rows and scales; otherwise the weight is dequantized for the call.
    """
    if isinstance(layer, QuantLinear):
        rows = layer.out_features // groups
        if rows % FP8_BLOCK == 0:
            step = rows // FP8_BLOCK
            outs = [
                fp8_linear(x[:, :, g].to(layer.compute_dtype), layer.weight[g * rows : (g + 1) * rows],
                           layer.scale[g * step : (g + 1) * step], FP8_BLOCK, out_dtype=x.dtype)
                for g in range(groups)
            ]  # fmt: skip
            return torch.stack(outs, 2)
        w = layer.dequantized()
    else:
        w = layer.weight
    w = w.view(groups, -1, x.shape[-1])  # [G, R, in]
    return torch.einsum("btgi,gri->btgr", x.to(w.dtype), w).to(x.dtype)


def keep_quantized(model: nn.Module, fp8_linears: dict[str, torch.dtype], fp4_experts: dict[str, torch.dtype],
                   compute_dtype: torch.dtype) -> None:  # fmt: skip
    """Replaces, in a model on the meta device, the linears named in `fp8_linears` (module name ->
    scale dtype) by `QuantLinear`s and the MoE layers named in `fp4_experts` (module name -> scale
    dtype) by their packed-FP4 form."""
    modules = dict(model.named_modules())
    for name, scale_dtype in fp8_linears.items():
        old = modules[name]
        parent, _, leaf = name.rpartition(".")
        new = QuantLinear(old.in_features, old.out_features, getattr(old, "act_quant", False), scale_dtype,
                          compute_dtype)  # fmt: skip
        setattr(modules[parent] if parent else model, leaf, new)
    for name, scale_dtype in fp4_experts.items():
        pack_experts(modules[name], scale_dtype)


def pack_experts(moe: nn.Module, scale_dtype: torch.dtype) -> None:
    """Turns a MoE layer's stacked expert parameters into packed-FP4 buffers plus their scales."""
    for w in EXPERT_WEIGHTS:
        e, rows, cols = getattr(moe, w).shape
        if cols % FP4_BLOCK:
            raise ValueError(f"FP4 experts need rows of a multiple of {FP4_BLOCK} values, {w} has {cols}")
        delattr(moe, w)
        moe.register_buffer(w, torch.empty(e, rows, cols // 2, dtype=torch.int8))
        moe.register_buffer(f"{w}_scale", torch.empty(e, rows, cols // FP4_BLOCK, dtype=scale_dtype))
    moe.fp4 = True


def materialize(model: nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """Gives every meta parameter and buffer uninitialised storage on `device`: matrices (linears,
    embedding, gate, dense experts) in `dtype`, vectors in fp32, quantized weights, their block
    scales and integer tables as they are; shared tensors stay shared. On the CPU the vocabulary
    head and the router gates stay fp32 whatever `dtype` is: a bf16 product rounds its output,
    which moves the log-probabilities the confidence gate reads and flips near-tied expert
    choices away from the C decode step's (fp32 sums); they are a small share of the weights.
    Not `Module.to_empty`: its `empty_like` on meta tensors runs through torch's Python
    references, which import sympy (0.6 s of a cold start)."""
    made: dict[int, torch.Tensor] = {}
    precise = {id(m) for name, m in model.named_modules() if name == "head" or type(m).__name__ == "Gate"}
    for module in model.modules():
        held = torch.float32 if device.type == "cpu" and id(module) in precise else dtype
        for store in (module._parameters, module._buffers):
            for key, t in list(store.items()):
                if t is None:
                    continue
                if id(t) not in made:
                    made[id(t)] = torch.empty(t.shape, dtype=_held_dtype(module, key, t, held), device=device)
                new = made[id(t)]
                store[key] = nn.Parameter(new, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else new


def _held_dtype(module: nn.Module, key: str, t: torch.Tensor, dtype: torch.dtype) -> torch.dtype:
    if not t.is_floating_point() or t.dtype in _KEPT or _is_block_scale(module, key):
        return t.dtype
    return dtype if _is_matrix(module, key) else torch.float32


_KEPT = (torch.float8_e4m3fn, torch.float8_e8m0fnu)


def _is_block_scale(module: nn.Module, key: str) -> bool:
    return (isinstance(module, QuantLinear) and key == "scale") or (getattr(module, "fp4", False) and
                                                                   key.endswith("_scale"))  # fmt: skip


def _is_matrix(module: nn.Module, key: str) -> bool:
    """Weights that multiply activations (not the mHC mixing functions, positional biases, tables)."""
    if key in EXPERT_WEIGHTS:
        return True
    return key == "weight" and (isinstance(module, (nn.Linear, nn.Embedding)) or type(module).__name__ == "Gate")


def is_quantized(model: nn.Module) -> bool:
    """Whether any weight of `model` is held in checkpoint (FP8/FP4) form."""
    return any(isinstance(m, QuantLinear) or getattr(m, "fp4", False) for m in model.modules())


def resident_bytes(model: nn.Module) -> int:
    """Bytes of every tensor the model holds (parameters and buffers, each storage counted once)."""
    seen: set[int] = set()
    total = 0
    for t in [*model.parameters(), *model.buffers()]:
        key = t.untyped_storage().data_ptr()
        if key in seen:
            continue
        seen.add(key)
        total += t.untyped_storage().nbytes()
    return total
