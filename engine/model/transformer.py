"""The DeepSeek-V4 forward pass: one model file for V4-Flash, V4-Pro and the embedded nano model.

Ordered like DeepSeek's `inference/model.py`: linear/norm -> rope -> compressor -> indexer ->
attention -> MoE -> block -> MTP -> transformer. The math is ../shared/design/v4-model.md; the
per-op references (also the CPU compute path) live in `deepfim.kernels.*.ref`.

This is the reference forward (and the path of training, prefill chunks and GPUs); the serving
runner hands CPU calls of a few tokens to the C decode step instead (`decode_step.py`), which
computes the same thing. Beyond the reference, the forward resumes anywhere: every call takes a `ModelState`
(engine/model/state.py) and a chunk of any length, carrying the sliding window, the compressors'
open windows and the CSA overlap halves across chunk boundaries. Without a state the call is a
plain full forward from position 0 (training, parity tests).

Dimension legend: B batch, T tokens in this call, n mHC streams, D hidden, H heads, d head dim,
r rope dims, C compressed entries, HI/dI indexer heads/dim, E experts, K experts per token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from deepfim.engine.model.config import LayerKind, ModelArgs
from deepfim.engine.model.quantized import grouped_linear, linear
from deepfim.engine.model.state import CompressorState, CompressorUndo, LayerCache, ModelState
from deepfim.kernels import moe_gemm, use_triton

# dispatchers: Triton for CUDA tensors under inference, the torch references (C mHC kernels) otherwise
from deepfim.kernels.compressor import pool_windows
from deepfim.kernels.indexer import cpu as index_cpu
from deepfim.kernels.mhc import hc_head, hc_post, hc_pre
from deepfim.kernels.moe import route
from deepfim.kernels.moe.ref import experts_forward, scores_from_logits, swiglu
from deepfim.kernels.quant import fp4_round_trip, fp8_round_trip
from deepfim.kernels.quant.ref import hadamard
from deepfim.kernels.sparse_attn import sparse_attention


@dataclass
class ForwardContext:
    """Training-time extras collected during a forward (inference passes None)."""

    indexer_loss: bool = False  # compute the lightning indexer's KL loss (inputs detached)
    dense_indexer: bool = False  # warm-up: CSA attends to every visible entry
    indexer_losses: list[torch.Tensor] = field(default_factory=list)
    expert_loads: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # (layer, [E] counts)


# linear / norm --------------------------------------------------------------------------------


class Linear(nn.Linear):
    """Bias-free linear; optionally simulates the reference's FP8 activation quantisation."""

    def __init__(self, in_features: int, out_features: int, act_quant: bool = False) -> None:
        super().__init__(in_features, out_features, bias=False)
        self.act_quant = act_quant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act_quant:
            x = fp8_round_trip(x, min(128, x.shape[-1]))
        return linear(self, x)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x.float(), (x.shape[-1],), self.weight, self.eps)


def unweighted_rms_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    return F.rms_norm(x, (x.shape[-1],), None, eps)


# rope -----------------------------------------------------------------------------------------


def rope_inv_freq(rope_dim: int, base: float, args: ModelArgs, yarn: bool) -> torch.Tensor:
    """Inverse frequencies of interleaved RoPE; YaRN rescales them (no attention scale)."""
    pos_freqs = base ** (torch.arange(0, rope_dim, 2, dtype=torch.float32) / rope_dim)
    inv = 1.0 / pos_freqs
    if not yarn or args.rope_factor <= 1.0:
        return inv

    def correction_dim(rotations: float) -> float:
        return rope_dim * math.log(args.original_seq_len / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(correction_dim(args.beta_fast)), 0)
    high = min(math.ceil(correction_dim(args.beta_slow)), rope_dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(rope_dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    extrapolation = 1 - ramp
    return (1.0 / (args.rope_factor * pos_freqs)) * (1 - extrapolation) + inv * extrapolation


class Rotary(nn.Module):
    """Complex rotations for absolute positions, tabulated for the first positions."""

    TABLE = 8192

    def __init__(self, rope_dim: int, base: float, args: ModelArgs, yarn: bool) -> None:
        super().__init__()
        self._spec = (rope_dim, base, args, yarn)
        # built on the meta device (loading), the values come from reset_buffers; computing them
        # there would run arange through torch's Python references, which import dynamo (2 s)
        meta = torch.get_default_device().type == "meta"
        inv = torch.empty(rope_dim // 2) if meta else rope_inv_freq(*self._spec)
        self.register_buffer("inv_freq", inv, persistent=False)
        self._table: torch.Tensor | None = None

    def reset_buffers(self) -> None:
        self.inv_freq = rope_inv_freq(*self._spec).to(self.inv_freq.device)
        self._table = None

    def at(self, positions: torch.Tensor) -> torch.Tensor:
        """[..., r/2] complex rotations for integer positions."""
        angles = positions.to(torch.float32).unsqueeze(-1) * self.inv_freq
        return torch.polar(torch.ones_like(angles), angles)

    def span(self, start: int, length: int) -> torch.Tensor:
        """[length, r/2] rotations for positions start .. start+length-1."""
        if start + length <= self.TABLE:
            if self._table is None or self._table.device != self.inv_freq.device:
                self._table = self.at(torch.arange(self.TABLE, device=self.inv_freq.device))
            return self._table[start : start + length]
        return self.at(torch.arange(start, start + length, device=self.inv_freq.device))


def apply_rope(x: torch.Tensor, cis: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """Rotates the trailing r dims of x (interleaved pairs) by cis (broadcast over leading dims)."""
    r = cis.shape[-1] * 2
    pairs = x[..., -r:].float().unflatten(-1, (r // 2, 2))
    rotated = torch.view_as_real(torch.view_as_complex(pairs.contiguous()) * (cis.conj() if inverse else cis))
    return torch.cat([x[..., :-r], rotated.flatten(-2).to(x.dtype)], -1)


# compressor and indexer -------------------------------------------------------------------------


class Compressor(nn.Module):
    """Pools each closed window of `ratio` tokens into one entry (CSA: overlapping, 2d wide)."""

    def __init__(self, args: ModelArgs, ratio: int, overlap: bool, out_dim: int, rotary: Rotary) -> None:
        super().__init__()
        self.ratio = ratio
        self.overlap = overlap
        self.out_dim = out_dim
        width = (2 if self.overlap else 1) * out_dim
        self.wkv = Linear(args.dim, width)
        self.wgate = Linear(args.dim, width)
        self.ape = nn.Parameter(torch.zeros(ratio, width))
        self.norm = RMSNorm(out_dim, args.norm_eps)
        self.rotary = rotary

    def forward(self, x: torch.Tensor, start_pos: int, state: CompressorState | None) -> torch.Tensor:
        """New entries [B, W, out_dim] of the windows this chunk closes (normed, RoPE'd)."""
        b, t, _ = x.shape
        m = self.ratio
        kv = self.wkv(x)  # [B, T, c]
        gate = self.wgate(x) + self.ape[torch.arange(start_pos, start_pos + t, device=x.device) % m]
        if state is not None:
            state.undo = CompressorUndo(m, self.overlap, state.pending_kv, state.pending_gate, state.prev_kv,
                                        state.prev_gate, state.entries.count, kv, gate)  # fmt: skip
        n_pending = 0
        if state is not None and state.pending_kv is not None and state.pending_kv.shape[1]:
            n_pending = state.pending_kv.shape[1]
            kv = torch.cat([state.pending_kv, kv], 1)
            gate = torch.cat([state.pending_gate, gate], 1)
        if n_pending != start_pos % m:
            raise RuntimeError(f"compressor state holds {n_pending} tokens at position {start_pos} (ratio {m})")
        n_win = kv.shape[1] // m
        usable = n_win * m
        if state is not None:
            state.pending_kv, state.pending_gate = kv[:, usable:], gate[:, usable:]
        if n_win == 0:
            return kv.new_zeros(b, 0, self.out_dim)
        prev_kv = state.prev_kv if state is not None else None
        prev_gate = state.prev_gate if state is not None else None
        entries, last_a_kv, last_a_gate = pool_windows(
            kv[:, :usable].unflatten(1, (n_win, m)), gate[:, :usable].unflatten(1, (n_win, m)),
            prev_kv, prev_gate, self.overlap,
        )  # fmt: skip
        if state is not None and self.overlap:
            state.prev_kv, state.prev_gate = last_a_kv, last_a_gate
        first_window = (start_pos - n_pending) // m
        positions = (torch.arange(n_win, device=x.device) + first_window) * m
        return apply_rope(self.norm(entries), self.rotary.at(positions))


class Indexer(nn.Module):
    """Lightning indexer: scores CSA entries per query and keeps the top-k."""

    def __init__(self, args: ModelArgs, ratio: int, rotary: Rotary) -> None:
        super().__init__()
        self.n_heads, self.head_dim, self.topk = args.index_n_heads, args.index_head_dim, args.index_topk
        self.all_heads = args.index_n_heads  # n_heads is this rank's share under tensor parallelism
        self.reduce = None  # tensor parallel: sums each rank's partial scores in place (parallel.py)
        self.quant_sim = args.quant_sim
        self.wq_b = Linear(args.q_lora_rank, self.n_heads * self.head_dim, act_quant=args.quant_sim)
        self.weights_proj = Linear(args.dim, self.n_heads)
        self.compressor = Compressor(args, ratio, True, self.head_dim, rotary)  # the CSA windows
        if args.quant_sim:
            self.register_buffer("hadamard", hadamard(self.head_dim), persistent=False)

    def reset_buffers(self) -> None:
        if self.quant_sim:
            self.hadamard = hadamard(self.head_dim, self.hadamard.device)

    def _rotate_quant(self, x: torch.Tensor) -> torch.Tensor:
        # the reference rotates by a Hadamard matrix then rounds to FP4; the rotation cancels in
        # q.k, so it only matters together with the rounding
        return fp4_round_trip(x @ self.hadamard, 32) if self.quant_sim else x

    def _scores(self, q: torch.Tensor, keys: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """I[b, t, c] = sum_h w[b, t, h] * relu(q[b, t, h] . k[b, c]) / sqrt(dI)."""
        b, t, h, _ = q.shape
        c = keys.shape[1]
        if torch.is_grad_enabled() or t * h * c <= (1 << 22):
            s = F.relu(q @ keys.unsqueeze(1).transpose(-1, -2)) * self.head_dim**-0.5  # [B, T, HI, C]
            return (s * weights.unsqueeze(-1)).sum(2)
        # long contexts: one head at a time, in place, so no [B, T, HI, C] tensor is ever built
        keys_t = keys.transpose(-1, -2)  # [B, dI, C]
        w = weights * self.head_dim**-0.5  # the scale is positive: it commutes with relu
        total = None
        for head in range(h):
            s = (q[:, :, head] @ keys_t).relu_().mul_(w[:, :, head : head + 1])  # [B, T, C]
            total = s if total is None else total.add_(s)
        return total

    def forward(
        self,
        x: torch.Tensor,
        c_q: torch.Tensor,
        cis: torch.Tensor,
        start_pos: int,
        state: CompressorState | None,
        visible: torch.Tensor,
        need_scores: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns (top-k entry indices [B, T, k] with -1 padding, scores [B, T, C]). Inference
        on the CPU selects in C (kernels/indexer) and returns no scores unless `need_scores`."""
        b, t, _ = x.shape
        new_keys = self._rotate_quant(self.compressor(x, start_pos, state))
        keys = new_keys if state is None else state.entries.append(new_keys)  # [B, C, dI]
        c = keys.shape[1]
        q = self.wq_b(c_q).view(b, t, self.n_heads, self.head_dim)
        q = self._rotate_quant(apply_rope(q, cis.unsqueeze(1)))
        weights = self.weights_proj(x) * self.all_heads**-0.5  # [B, T, HI]
        k = min(self.topk, c)
        if not need_scores and self.reduce is None and index_cpu.handles(q, keys):
            return index_cpu.select(q, weights * self.head_dim**-0.5, keys, visible, k), None
        invisible = torch.arange(c, device=x.device)[None, :] >= visible[:, None]  # [T, C]
        scores = self._scores(q, keys, weights)
        if self.reduce is not None:
            self.reduce(scores)  # the sum over heads, before the top-k
        scores = scores.masked_fill(invisible, float("-inf"))  # [B, T, C]
        idx = scores.topk(k, dim=-1).indices if k else scores.new_zeros(b, t, 0, dtype=torch.long)
        idx = torch.where(idx >= visible[None, :, None], -1, idx)
        return idx, scores


# attention ------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Shared-KV MQA with attention sinks over a sliding window plus compressed entries."""

    def __init__(self, layer_id: int, args: ModelArgs, rotary: Rotary) -> None:
        super().__init__()
        self.args = args
        self.kind, self.ratio = args.layer_kind(layer_id), args.layer_ratio(layer_id)
        self.n_heads, self.head_dim = args.n_heads, args.head_dim  # n_heads, o_groups: this rank's under TP
        self.o_groups = args.o_groups
        self.reduce = None  # tensor parallel: sums the ranks' partial wo_b outputs in place (parallel.py)
        self.window = args.window_size
        fp8 = args.quant_sim
        self.wq_a = Linear(args.dim, args.q_lora_rank, act_quant=fp8)
        self.q_norm = RMSNorm(args.q_lora_rank, args.norm_eps)
        self.wq_b = Linear(args.q_lora_rank, args.n_heads * args.head_dim, act_quant=fp8)
        self.wkv = Linear(args.dim, args.head_dim, act_quant=fp8)
        self.kv_norm = RMSNorm(args.head_dim, args.norm_eps)
        group_in = args.n_heads * args.head_dim // args.o_groups
        self.wo_a = Linear(group_in, args.o_groups * args.o_lora_rank)  # block-diagonal: one [R, in] per group
        self.wo_b = Linear(args.o_groups * args.o_lora_rank, args.dim, act_quant=fp8)
        self.attn_sink = nn.Parameter(torch.zeros(args.n_heads))
        self.rotary = rotary
        csa = self.kind is LayerKind.CSA
        compressed = self.kind is not LayerKind.SLIDING
        self.compressor = Compressor(args, self.ratio, csa, args.head_dim, rotary) if compressed else None
        self.indexer = Indexer(args, self.ratio, rotary) if csa else None

    def _quant_kv(self, kv: torch.Tensor) -> torch.Tensor:
        # the reference stores the non-rope dims of every kv row as FP8 (blocks of 64)
        if not self.args.quant_sim:
            return kv
        nope = self.args.n_nope_dim
        return torch.cat([fp8_round_trip(kv[..., :nope], min(64, nope)), kv[..., nope:]], -1)

    def forward(
        self, x: torch.Tensor, start_pos: int, cache: LayerCache | None, ctx: ForwardContext | None
    ) -> torch.Tensor:
        b, t, _ = x.shape
        cis = self.rotary.span(start_pos, t)  # [T, r/2]
        c_q = self.q_norm(self.wq_a(x))  # [B, T, q_lora]
        q = self.wq_b(c_q).view(b, t, self.n_heads, self.head_dim)
        q = apply_rope(unweighted_rms_norm(q, self.args.norm_eps), cis.unsqueeze(1))  # [B, T, H, d]
        kv = self._quant_kv(apply_rope(self.kv_norm(self.wkv(x)), cis))  # [B, T, d]

        prev = cache.window if cache is not None else None
        n_prev = 0 if prev is None else prev.shape[1]
        raw = kv if n_prev == 0 else torch.cat([prev, kv], 1)
        if cache is not None:
            cache.undo_window = (prev, kv)
            cache.window = raw[:, -(self.window - 1) :] if self.window > 1 else raw[:, :0]

        comp = visible = topk_idx = index_scores = None
        if self.compressor is not None:
            state = cache.comp if cache is not None else None
            new = self._quant_kv(self.compressor(x, start_pos, state))
            comp = new if state is None else state.entries.append(new)  # [B, C, d]
            visible = (torch.arange(start_pos + 1, start_pos + t + 1, device=x.device)) // self.ratio  # [T]
            if self.indexer is not None:
                train_indexer = ctx is not None and ctx.indexer_loss
                ix, cq = (x.detach(), c_q.detach()) if train_indexer else (x, c_q)
                topk_idx, index_scores = self.indexer(
                    ix, cq, cis, start_pos, cache.index if cache is not None else None, visible, train_indexer
                )
                if ctx is not None and ctx.dense_indexer:
                    topk_idx = None  # warm-up: attend to every visible entry
        want_probs = ctx is not None and ctx.indexer_loss and index_scores is not None
        out, comp_probs = sparse_attention(
            q, raw, start_pos - n_prev, start_pos, self.window, comp, visible, topk_idx,
            self.attn_sink, self.head_dim**-0.5, return_comp_probs=want_probs,
        )  # fmt: skip
        if want_probs and comp_probs is not None:
            ctx.indexer_losses.append(_indexer_kl(comp_probs.detach(), index_scores, topk_idx, visible))
        out = apply_rope(out, cis.unsqueeze(1), inverse=True)  # [B, T, H, d]
        g = self.o_groups
        grouped = out.reshape(b, t, g, -1)  # [B, T, G, H/G*d]
        low = grouped_linear(self.wo_a, grouped, g)  # [B, T, G, R]: one [R, H/G*d] block per group
        y = self.wo_b(low.flatten(2))
        if self.reduce is not None:
            self.reduce(y)
        return y


def _indexer_kl(
    target: torch.Tensor, scores: torch.Tensor, topk_idx: torch.Tensor | None, visible: torch.Tensor
) -> torch.Tensor:
    """KL(p || softmax(I)) over the candidate entries (V3.2 indexer training, see v4-model.md §13).

    p is the main attention's probability mass per entry (summed over heads), L1-normalised
    over the candidates: the selected set S_t, or every visible entry in the dense warm-up.
    """
    c = scores.shape[-1]
    if topk_idx is None:
        cand = torch.arange(c, device=scores.device)[None, :] < visible[:, None]  # [T, C]
        cand = cand.unsqueeze(0).expand_as(scores)
    else:
        cand = torch.zeros(*scores.shape[:-1], c + 1, dtype=torch.bool, device=scores.device)
        cand.scatter_(-1, torch.where(topk_idx >= 0, topk_idx, c), True)
        cand = cand[..., :c]
    rows = cand.any(-1)  # queries with at least one candidate
    if not rows.any():
        return scores.sum() * 0.0
    p = target.masked_fill(~cand, 0.0)
    p = p / p.sum(-1, keepdim=True).clamp_min(1e-12)
    log_q = torch.log_softmax(scores.masked_fill(~cand, float("-inf")), -1)
    kl = (p * (torch.log(p.clamp_min(1e-12)) - log_q.masked_fill(~cand, 0.0))).sum(-1)
    return kl[rows].mean()


# MoE ------------------------------------------------------------------------------------------


class Expert(nn.Module):
    """Dense SwiGLU expert (the shared expert)."""

    def __init__(self, dim: int, inter_dim: int, limit: float, act_quant: bool) -> None:
        super().__init__()
        self.w1 = Linear(dim, inter_dim, act_quant)
        self.w2 = Linear(inter_dim, dim, act_quant)
        self.w3 = Linear(dim, inter_dim, act_quant)
        self.limit = limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(swiglu(self.w1(x), self.w3(x), self.limit))


class Gate(nn.Module):
    def __init__(self, layer_id: int, args: ModelArgs) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(args.n_routed_experts, args.dim))
        self.is_hash = args.is_hash_layer(layer_id)
        if self.is_hash:
            self.register_buffer("tid2eid", torch.zeros(args.vocab_size, args.n_activated_experts, dtype=torch.long))
            self.bias = None
        else:
            self.register_buffer("bias", torch.zeros(args.n_routed_experts))


class MoE(nn.Module):
    """Routed experts (stacked [E, ...] weights) plus shared experts.

    The stacked weights are dense parameters, or packed FP4 buffers with `w*_scale` beside them
    (`fp4`, see quantized.py). Under expert parallelism a rank holds the experts
    `expert_offset ..` only and `reduce` sums the ranks' routed outputs (parallel.py).
    """

    fp4 = False
    offload = None  # expert_offload.OffloadedExperts: the experts live in host memory, hot ones cached

    def __init__(self, layer_id: int, args: ModelArgs) -> None:
        super().__init__()
        self.layer_id = layer_id
        self.args = args
        self.expert_offset = 0
        self.reduce = None
        e, inter, dim = args.n_routed_experts, args.moe_inter_dim, args.dim
        self.gate = Gate(layer_id, args)
        self.w1 = nn.Parameter(torch.empty(e, inter, dim))
        self.w2 = nn.Parameter(torch.empty(e, dim, inter))
        self.w3 = nn.Parameter(torch.empty(e, inter, dim))
        self.shared_experts = (
            Expert(dim, inter * args.n_shared_experts, args.swiglu_limit, args.quant_sim)
            if args.n_shared_experts
            else None
        )

    def forward(self, x: torch.Tensor, ids: torch.Tensor, ctx: ForwardContext | None) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])  # [N, D]
        scores = scores_from_logits(linear(self.gate, flat), self.args.score_func)  # [N, E]
        fixed = self.gate.tid2eid[ids.reshape(-1)] if self.gate.is_hash else None
        weights, idx = route(scores, self.args.n_activated_experts, self.args.route_scale, self.gate.bias, fixed)
        if ctx is not None:
            ctx.expert_loads.append(
                (self.layer_id, torch.bincount(idx.reshape(-1), minlength=self.args.n_routed_experts))
            )
        expert_in = fp8_round_trip(flat, min(128, flat.shape[-1])) if self.args.quant_sim else flat
        y = self._routed(expert_in, weights, idx)
        if self.reduce is not None:
            self.reduce(y)
        if self.shared_experts is not None:
            y = y + self.shared_experts(flat)
        return y.view(shape)

    def _routed(self, x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The routed experts' sum [N, D]; under expert parallelism, of this rank's experts only."""
        n_local = self.offload.n_experts if self.offload is not None else self.w1.shape[0]
        if n_local == self.args.n_routed_experts:
            return self._experts(x, weights, idx)
        local = idx - self.expert_offset
        mine = (local >= 0) & (local < n_local)  # [N, K] pairs routed to this rank's experts
        token = torch.arange(idx.shape[0], device=idx.device)[:, None].expand_as(idx)[mine]
        y = torch.zeros_like(x)
        if token.numel():
            y.index_add_(0, token, self._experts(x[token], weights[mine][:, None], local[mine][:, None]))
        return y

    def _experts(self, x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        limit = self.args.swiglu_limit
        if self.offload is not None:
            return self.offload(x, weights, idx, limit)
        if self.fp4:  # dequantized inside the grouped GEMM (the reference: only the experts used)
            experts = moe_gemm.ExpertWeights(self.w1, self.w2, self.w3, self.w1_scale, self.w2_scale, self.w3_scale)
            return moe_gemm.experts_forward(x, weights, idx, experts, limit)
        if use_triton(x, self.w1, self.w2, self.w3):  # dense experts on a GPU: the grouped GEMM too
            return moe_gemm.experts_forward(x, weights, idx, moe_gemm.ExpertWeights(self.w1, self.w2, self.w3), limit)
        return experts_forward(x, weights, idx, self.w1, self.w2, self.w3, limit)  # bf16 weights: products in bf16


# block ----------------------------------------------------------------------------------------


class Block(nn.Module):
    """Attention and MoE sublayers, each wrapped in mHC (4 residual streams)."""

    def __init__(self, layer_id: int, args: ModelArgs, rotaries: dict[LayerKind, Rotary]) -> None:
        super().__init__()
        self.args = args
        n, hc_dim = args.hc_mult, args.hc_mult * args.dim
        mix = (2 + n) * n
        self.attn_norm = RMSNorm(args.dim, args.norm_eps)
        self.attn = Attention(layer_id, args, rotaries[args.layer_kind(layer_id)])
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)
        self.ffn = MoE(layer_id, args)
        self.hc_attn_fn = nn.Parameter(torch.empty(mix, hc_dim))
        self.hc_attn_base = nn.Parameter(torch.zeros(mix))
        self.hc_attn_scale = nn.Parameter(torch.ones(3))
        self.hc_ffn_fn = nn.Parameter(torch.empty(mix, hc_dim))
        self.hc_ffn_base = nn.Parameter(torch.zeros(mix))
        self.hc_ffn_scale = nn.Parameter(torch.ones(3))

    def forward(
        self,
        x: torch.Tensor,
        ids: torch.Tensor,
        start_pos: int,
        cache: LayerCache | None,
        ctx: ForwardContext | None,
    ) -> torch.Tensor:
        return self.ffn_half(self.attn_half(x, start_pos, cache, ctx), ids, ctx)

    def attn_half(self, x: torch.Tensor, start_pos: int, cache: LayerCache | None, ctx) -> torch.Tensor:
        """The mHC-wrapped attention sublayer (reads and advances the state)."""
        a = self.args
        u, post, comb = hc_pre(x, self.hc_attn_fn, self.hc_attn_base, self.hc_attn_scale,
                               a.hc_sinkhorn_iters, a.hc_eps, a.norm_eps)  # fmt: skip
        return hc_post(self.attn(self.attn_norm(u), start_pos, cache, ctx), x, post, comb)

    def ffn_half(self, x: torch.Tensor, ids: torch.Tensor, ctx) -> torch.Tensor:
        """The mHC-wrapped MoE sublayer: no state and no position, so shapes are fixed for a given
        number of tokens (cuda_graph.py captures it for decode)."""
        a = self.args
        u, post, comb = hc_pre(x, self.hc_ffn_fn, self.hc_ffn_base, self.hc_ffn_scale,
                               a.hc_sinkhorn_iters, a.hc_eps, a.norm_eps)  # fmt: skip
        return hc_post(self.ffn(self.ffn_norm(u), ids, ctx), x, post, comb)


class MTPBlock(Block):
    """Multi-token prediction: from the final streams at t and the embedding of token t+1,
    predict token t+2 (a sliding-only block with its own hc head and norm; shares embed/head)."""

    def __init__(self, layer_id: int, args: ModelArgs, rotaries: dict[LayerKind, Rotary]) -> None:
        super().__init__(layer_id, args, rotaries)
        self.e_proj = Linear(args.dim, args.dim, act_quant=args.quant_sim)
        self.h_proj = Linear(args.dim, args.dim, act_quant=args.quant_sim)
        self.enorm = RMSNorm(args.dim, args.norm_eps)
        self.hnorm = RMSNorm(args.dim, args.norm_eps)
        self.norm = RMSNorm(args.dim, args.norm_eps)
        self.hc_head_fn = nn.Parameter(torch.empty(args.hc_mult, args.hc_mult * args.dim))
        self.hc_head_base = nn.Parameter(torch.zeros(args.hc_mult))
        self.hc_head_scale = nn.Parameter(torch.ones(1))

    def forward_mtp(
        self,
        streams: torch.Tensor,
        next_embed: torch.Tensor,
        next_ids: torch.Tensor,
        start_pos: int,
        cache: LayerCache | None,
        ctx: ForwardContext | None,
    ) -> torch.Tensor:
        """streams [B, T, n, D] at positions start_pos.., next_embed [B, T, D] -> hidden [B, T, D]."""
        x = self.e_proj(self.enorm(next_embed)).unsqueeze(2) + self.h_proj(self.hnorm(streams))
        x = super().forward(x, next_ids, start_pos, cache, ctx)
        a = self.args
        return self.norm(hc_head(x, self.hc_head_fn, self.hc_head_base, self.hc_head_scale, a.hc_eps, a.norm_eps))


# transformer ----------------------------------------------------------------------------------


@dataclass
class ForwardOutput:
    logits: torch.Tensor | None  # [B, T, V] (or [B, 1, V] for "last")
    streams: torch.Tensor  # [B, T, n, D] final residual streams (MTP input)


class Transformer(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.args = args
        r = args.rope_head_dim
        # one rotary table per rope kind: sliding-only layers plain, compressed layers (CSA, HCA) YaRN
        plain = Rotary(r, args.rope_theta, args, yarn=False)
        compress = Rotary(r, args.compress_rope_theta, args, yarn=True)
        rotaries = {LayerKind.SLIDING: plain, LayerKind.CSA: compress, LayerKind.HCA: compress}
        self.rotaries = nn.ModuleList([plain, compress])
        # given its (uninitialised) weight, Embedding skips its random init: init_weights or the
        # checkpoint fills it, and on the meta device the init would import dynamo (2 s)
        self.embed = nn.Embedding(args.vocab_size, args.dim, _weight=torch.empty(args.vocab_size, args.dim))
        self.layers = nn.ModuleList([Block(i, args, rotaries) for i in range(args.n_layers)])
        self.norm = RMSNorm(args.dim, args.norm_eps)
        self.head = Linear(args.dim, args.vocab_size)
        self.hc_head_fn = nn.Parameter(torch.empty(args.hc_mult, args.hc_mult * args.dim))
        self.hc_head_base = nn.Parameter(torch.zeros(args.hc_mult))
        self.hc_head_scale = nn.Parameter(torch.ones(1))
        self.mtp = nn.ModuleList([MTPBlock(args.n_layers + i, args, rotaries) for i in range(args.n_mtp_layers)])

    def reset_buffers(self) -> None:
        """Recomputes the non-persistent buffers (after construction on the meta device)."""
        for module in self.modules():
            if isinstance(module, (Rotary, Indexer)):
                module.reset_buffers()

    def new_state(self) -> ModelState:
        return ModelState.empty(self.args.layer_kinds, self.args.n_mtp_layers)

    def forward(
        self,
        ids: torch.Tensor,
        state: ModelState | None = None,
        logits: str = "all",
        ctx: ForwardContext | None = None,
    ) -> ForwardOutput:
        """Runs `ids` [B, T] from `state.pos` (0 without a state); advances the state.

        logits: "all" (every position), "last" (the last position) or "none".
        """
        start = state.pos if state is not None else 0
        b, t = ids.shape
        if start + t > self.args.max_seq_len:
            raise ValueError(f"sequence of {start + t} tokens exceeds max_seq_len={self.args.max_seq_len}")
        x = self.embed(ids).float().unsqueeze(2).expand(b, t, self.args.hc_mult, self.args.dim).contiguous()
        for i, layer in enumerate(self.layers):
            x = layer(x, ids, start, state.layers[i] if state is not None else None, ctx)
        if state is not None:
            state.pos = start + t
        out = None
        if logits != "none":
            streams = x[:, -1:] if logits == "last" else x
            out = self.head(self.norm(self.collapse(streams)))
        return ForwardOutput(out, x)

    def collapse(self, streams: torch.Tensor) -> torch.Tensor:
        a = self.args
        return hc_head(streams, self.hc_head_fn, self.hc_head_base, self.hc_head_scale, a.hc_eps, a.norm_eps)

    def mtp_logits(
        self,
        streams: torch.Tensor,
        next_ids: torch.Tensor,
        start_pos: int,
        state: ModelState | None = None,
        ctx: ForwardContext | None = None,
        depth: int = 0,
        last_only: bool = False,
    ) -> torch.Tensor:
        """Logits for token t+2 from main streams at t and token t+1 (MTP block `depth`)."""
        block = self.mtp[depth]
        cache = state.mtp[depth] if state is not None else None
        hidden = block.forward_mtp(streams, self.embed(next_ids).float(), next_ids, start_pos, cache, ctx)
        return self.head(hidden[:, -1:] if last_only else hidden)


def init_weights(model: Transformer, seed: int = 0, std: float = 0.02) -> Transformer:
    """Random init for training from scratch and for tests (deterministic for a seed)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf.endswith("_base") or leaf in ("ape", "attn_sink") or name.endswith("norm.weight"):
                continue  # zeros / ones as constructed
            if leaf.endswith("_scale") and p.numel() <= 3:
                continue
            p.copy_(torch.randn(p.shape, generator=g) * std)
        for module in model.modules():
            if isinstance(module, Gate) and module.is_hash:
                module.tid2eid.copy_(hash_table(model.args, seed))
    return model


def hash_table(args: ModelArgs, seed: int = 0) -> torch.Tensor:
    """A fixed token->experts table for hash layers: K distinct experts per token."""
    g = torch.Generator().manual_seed(seed + 1)
    return torch.stack(
        [torch.randperm(args.n_routed_experts, generator=g)[: args.n_activated_experts] for _ in range(args.vocab_size)]
    )
