"""CPU inference calls of a few tokens (decode steps, speculative verification, the short tail
of a prefill; float32, no autograd) as one C call through the whole model, for one sequence or
for a batch of sequences at once (continuous batching: each weight slice is read once per step).

The serving runner (`engine/serving/model_runner.py`) builds one `DecodeStep` for its model
(`DecodeStep.for_model`) and hands it the calls of up to `max_tokens` tokens per sequence (`batch`
for all the sequences of a scheduler step); everything else
(longer prefill chunks, training, CUDA) runs `Transformer.forward`. The C side (kernels/decode_step/step.c)
computes what the modules compute; this side translates the `ModelState` into pointers and back,
following the state's rules (engine/model/state.py): window and open-window tensors are replaced, never
written in place, and compressed entries are appended to the view's buffer as its tip, so
snapshots sharing the old tensors stay valid.

Why: a decode step of the embedded model is ~600 torch ops; their dispatch cost, not the
arithmetic, was most of its time (`deepfim bench peers` has the figures).
"""

from __future__ import annotations

import ctypes
import threading

import torch

from deepfim.engine.model.config import LayerKind
from deepfim.engine.model.state import CompressorState, CompressorUndo, ModelState
from deepfim.kernels.decode_step import cpu

_FLOAT = 4  # bytes
BF16_COPY_LIMIT = 4 << 30  # bytes of bf16 weight copies a model may add (beyond: float32 reads)


class DecodeStep:
    """The C decode step bound to one model's weights (their pointers are taken once: the model's
    weights must not move or change afterwards — serving models do not)."""

    @classmethod
    def for_model(cls, model):
        """The model's decode step: this C step where step.c applies; on CUDA the CUDA-graph step
        (cuda_graph.py); else None (no C compiler, shapes or formats neither handles)."""
        if cls.supports(model):
            return cls(model)
        from deepfim.engine.model.cuda_graph import GraphedDecode

        return GraphedDecode.for_model(model)

    def __init__(self, model) -> None:
        self.model = model
        a = model.args
        self.args = a
        self.lib = cpu.library()
        self.limits = cpu.limits(self.lib)
        self.max_tokens = self.limits.max_tokens  # per sequence: longer calls (prefill chunks) take the modules
        self.max_rows = self.limits.max_rows  # tokens of all the sequences of one batched call
        self._lock = threading.Lock()
        self._scratch = torch.empty(0)
        self._empty: dict[int, torch.Tensor] = {}
        self._tables = []  # RoPE tables whose addresses C holds
        # Checkpoints stored in bf16 (the embedded model) hold only bfloat16 values: then the
        # matrices are read in bf16 (the model's own where it holds them so, else copies), half
        # the bytes per token for the same float32 arithmetic (decode is bound by reading weights).
        matrices = _matrices(model)
        copied = sum(m.numel() for m in matrices if m.dtype != torch.bfloat16) * 2
        self.bf16 = copied <= BF16_COPY_LIMIT and all(map(_is_bf16, matrices))
        # a model held in bf16 multiplies in bf16 on the module path (activations rounded at each
        # product): then step.c does too where the CPU has bf16 dot products (step.c `linear`)
        self.bf16_products = self.bf16 and any(m.dtype == torch.bfloat16 for m in matrices)
        self._copies: dict[int, torch.Tensor] = {}
        self._layers = (cpu.LayerWeights * a.n_layers)()
        self._steps = (cpu.LayerStep * a.n_layers)()  # [sequences, layers], grown for bigger batches
        for i, block in enumerate(model.layers):
            lw = self._layer_weights(block)
            rotary = block.attn.rotary
            rotary.span(0, 1)  # builds its table
            table = torch.view_as_real(rotary._table).contiguous()
            self._tables += (table, rotary.inv_freq)
            lw.cis_table, lw.inv_freq, lw.table_rows = table.data_ptr(), _ptr(rotary.inv_freq), table.shape[0]
            self._layers[i] = lw
        self.weights = cpu.ModelWeights(
            dim=a.dim, n_hc=a.hc_mult, n_heads=a.n_heads, head_dim=a.head_dim, rope_dim=a.rope_head_dim,
            q_lora=a.q_lora_rank, o_groups=a.o_groups, o_lora=a.o_lora_rank, window=a.window_size,
            index_heads=a.index_n_heads, index_dim=a.index_head_dim, index_topk=a.index_topk,
            n_experts=a.n_routed_experts, n_active=a.n_activated_experts, inter=a.moe_inter_dim,
            shared_inter=a.moe_inter_dim * a.n_shared_experts, vocab=a.vocab_size, n_layers=a.n_layers,
            sinkhorn_iters=a.hc_sinkhorn_iters, score_func=cpu.SCORE_FUNCS[a.score_func], hc_eps=a.hc_eps,
            norm_eps=a.norm_eps, route_scale=a.route_scale, swiglu_limit=a.swiglu_limit,
            bf16=2 if self.bf16_products else int(self.bf16),
            embed=self._floats(model.embed.weight), hc_head_fn=_ptr(model.hc_head_fn),
            hc_head_base=_ptr(model.hc_head_base), hc_head_scale=_ptr(model.hc_head_scale),
            norm=_ptr(model.norm.weight), head=self._mat(model.head.weight), layers=self._layers,
        )  # fmt: skip

    @staticmethod
    def supports(model) -> bool:
        """Whether this model's shapes and weights are what step.c handles."""
        from deepfim.engine.model.quantized import is_quantized
        from deepfim.engine.model.transformer import Transformer

        if not isinstance(model, Transformer) or is_quantized(model):
            return False  # step.c reads one local model's fp32 (or bf16-valued) matrices
        if any(getattr(m, "reduce", None) is not None or getattr(m, "offload", None) is not None
               for m in model.modules()):  # fmt: skip
            return False  # a tensor / expert parallel share (its sums need the other ranks), offloaded experts
        a = model.args
        lib = cpu.library()
        if lib is None:
            return False
        limits = cpu.limits(lib)
        tensors = _bound_tensors(model)
        floats = [t for t in tensors if t.is_floating_point()]
        bf16_ok = {id(t) for t in (*_matrices(model), model.embed.weight)}  # read as bf16 (the embedding: copied)
        return (
            not a.quant_sim
            and a.hc_mult <= limits.max_streams
            and a.head_dim <= limits.max_head_dim
            and a.n_activated_experts <= limits.max_active_experts
            and a.rope_head_dim <= min(a.head_dim, a.index_head_dim)
            and a.index_n_heads <= limits.max_index_heads
            and a.index_head_dim <= limits.max_index_dim
            and a.score_func in cpu.SCORE_FUNCS
            and all(t.device.type == "cpu" and t.is_contiguous() for t in tensors)
            and all(t.dtype == torch.float32 or (t.dtype == torch.bfloat16 and id(t) in bf16_ok) for t in floats)
            and all(b.ffn.gate.tid2eid.dtype == torch.int64 for b in model.layers if b.ffn.gate.is_hash)
        )

    # weights ------------------------------------------------------------------------------
    def _mat(self, t: torch.Tensor | None) -> int | None:
        """Address of a matrix as step.c reads it: the parameter, or its bf16 (or fp32) copy."""
        want = torch.bfloat16 if self.bf16 else torch.float32
        if t is None or t.dtype == want:
            return _ptr(t)
        return self._copy(t, want)

    def _floats(self, t: torch.Tensor) -> int:
        """Address of a tensor step.c reads as float32 (the embedding): the parameter, or a copy."""
        return _ptr(t) if t.dtype == torch.float32 else self._copy(t, torch.float32)

    def _copy(self, t: torch.Tensor, dtype: torch.dtype) -> int:
        if id(t) not in self._copies:
            self._copies[id(t)] = t.detach().to(dtype).contiguous()
        return self._copies[id(t)].data_ptr()

    def _layer_weights(self, block) -> cpu.LayerWeights:
        attn, ffn = block.attn, block.ffn
        shared = ffn.shared_experts
        mat = self._mat
        lw = cpu.LayerWeights(
            ratio=attn.ratio, csa=attn.kind is LayerKind.CSA, hc_attn_fn=_ptr(block.hc_attn_fn),
            hc_attn_base=_ptr(block.hc_attn_base), hc_attn_scale=_ptr(block.hc_attn_scale),
            hc_ffn_fn=_ptr(block.hc_ffn_fn), hc_ffn_base=_ptr(block.hc_ffn_base), hc_ffn_scale=_ptr(block.hc_ffn_scale),
            attn_norm=_ptr(block.attn_norm.weight), ffn_norm=_ptr(block.ffn_norm.weight),
            wq_a=mat(attn.wq_a.weight), wq_b=mat(attn.wq_b.weight), wkv=mat(attn.wkv.weight),
            wo_a=mat(attn.wo_a.weight), wo_b=mat(attn.wo_b.weight), q_norm=_ptr(attn.q_norm.weight),
            kv_norm=_ptr(attn.kv_norm.weight), attn_sink=_ptr(attn.attn_sink),
            gate=mat(ffn.gate.weight), gate_bias=_ptr(ffn.gate.bias),
            tid2eid=_ptr(ffn.gate.tid2eid) if ffn.gate.is_hash else None,
            w1=mat(ffn.w1), w2=mat(ffn.w2), w3=mat(ffn.w3),
            sw1=mat(shared.w1.weight) if shared else None, sw2=mat(shared.w2.weight) if shared else None,
            sw3=mat(shared.w3.weight) if shared else None,
        )  # fmt: skip
        for field, c in (("comp", attn.compressor), ("index_comp", attn.indexer and attn.indexer.compressor)):
            if c is not None:
                setattr(lw, field, cpu.CompressorWeights(
                    wkv=mat(c.wkv.weight), wgate=mat(c.wgate.weight), ape=_ptr(c.ape), norm=_ptr(c.norm.weight),
                    ratio=c.ratio, width=c.wkv.weight.shape[0], out_dim=c.out_dim, overlap=c.overlap,
                ))  # fmt: skip
        if attn.indexer is not None:
            lw.index_wq_b = mat(attn.indexer.wq_b.weight)
            lw.index_weights_proj = mat(attn.indexer.weights_proj.weight)
        return lw

    # one call ------------------------------------------------------------------------------
    def __call__(self, ids: torch.Tensor, state: ModelState, logits: str) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Runs ids [1, T] from state.pos; returns (logits as `Transformer.forward` would give them,
        streams [1, T, n, D]). Calls of more than one token leave the undo records
        `ModelState.keep_first` needs (speculative verification)."""
        return self.batch([(ids[0].tolist(), state, logits)])[0]

    def batch(self, calls: list[tuple[list[int], ModelState, str]]) -> list[tuple[torch.Tensor | None, torch.Tensor]]:
        """Several sequences in one C call: (token ids, state, logits mode) each, at most
        `max_tokens` ids per sequence and `max_rows` in all (distinct states). Every matrix is read
        once for all of them; each sequence gets what a call of its own would give, bit for bit."""
        if not calls:
            return []
        rows = sum(len(ids) for ids, _, _ in calls)
        if rows > self.max_rows or any(not 1 <= len(ids) <= self.max_tokens for ids, _, _ in calls):
            raise ValueError(f"a C call takes 1-{self.max_tokens} tokens per sequence and {self.max_rows} in all")
        if len({id(state) for _, state, _ in calls}) != len(calls):
            raise ValueError("a state may appear only once in a batch")
        with self._lock:  # the step structs and the scratch buffer are this model's
            return self._run(calls, rows)

    def _run(self, calls: list[tuple[list[int], ModelState, str]], rows: int) -> list:
        a, n_layers, b_count = self.args, self.args.n_layers, len(calls)
        if len(self._steps) < b_count * n_layers:
            self._steps = (cpu.LayerStep * (b_count * n_layers))()
        ids = torch.tensor([t for call_ids, _, _ in calls for t in call_ids], dtype=torch.int64)
        meta = torch.tensor([[s.pos, len(i), cpu.LOGITS_MODES[m]] for i, s, m in calls], dtype=torch.int64)
        meta = meta.t().contiguous()  # pos, count, logits mode: one row each
        alive = [ids, meta]  # tensors C reads or writes during this call
        commits, max_keys = [], 0
        for b, (call_ids, state, _) in enumerate(calls):
            max_keys = max(max_keys, self._prepare_sequence(b * n_layers, state, len(call_ids), alive, commits))
        x = torch.empty(rows, a.hc_mult, a.dim)
        logit_rows = sum(0 if m == "none" else len(i) if m == "all" else 1 for i, _, m in calls)
        out = torch.empty(logit_rows, a.vocab_size) if logit_rows else None
        self.weights.threads = torch.get_num_threads()
        size = self.lib.v4_step_scratch(ctypes.byref(self.weights), rows, max_keys)
        if size > self._scratch.numel():
            self._scratch = torch.empty(max(size, int(self._scratch.numel() * 1.5)))
        rc = self.lib.v4_decode_batch(
            ctypes.byref(self.weights), self._steps, b_count, meta[0].data_ptr(), meta[1].data_ptr(), ids.data_ptr(),
            x.data_ptr(), meta[2].data_ptr(), None if out is None else out.data_ptr(), self._scratch.data_ptr(),
        )  # fmt: skip
        if rc:
            where = ", ".join(str(state.pos) for _, state, _ in calls)
            raise RuntimeError(f"v4_decode_batch failed ({rc}) at positions {where}: a state does not match it")
        for target, what, value, undo in commits:
            if what == "window":
                target.window = value[0]
                target.undo_window = value[1] if undo else None
            else:
                self._commit(target, *value)
        results, row, logit_row = [], 0, 0
        for call_ids, state, mode in calls:
            t = len(call_ids)
            state.pos += t
            n_logits = 0 if mode == "none" else t if mode == "all" else 1
            logits = None if out is None or not n_logits else out[logit_row : logit_row + n_logits][None]
            results.append((logits, x[row : row + t][None]))
            row, logit_row = row + t, logit_row + n_logits
        return results

    def _prepare_sequence(self, first: int, state: ModelState, t: int, alive: list, commits: list) -> int:
        """Points the step structs of one sequence (from `first`) at its state and at fresh tensors
        for its next state; returns the indexer keys it may have (0: no CSA layer)."""
        a = self.args
        undo = t > 1
        max_keys = 0
        for i, cache in enumerate(state.layers):
            st = self._steps[first + i]
            window = cache.window
            n_window = 0 if window is None else window.shape[1]
            next_window = torch.empty(1, min(n_window + t, max(a.window_size - 1, 0)), a.head_dim)
            chunk_kv = torch.empty(1, t, a.head_dim) if undo else None
            if n_window:
                window = window.contiguous()
                alive.append(window)
            st.window = window.data_ptr() if n_window else None
            st.n_window = n_window
            st.next_window = next_window.data_ptr()
            st.chunk_kv = None if chunk_kv is None else chunk_kv.data_ptr()
            commits.append((cache, "window", (next_window, (window if n_window else None, chunk_kv)), undo))
            layer = self._layers[i]
            if layer.ratio:
                self._prepare(st.comp, cache.comp, layer.comp, t, undo, alive, commits)
                if layer.csa:
                    self._prepare(st.index_comp, cache.index, layer.index_comp, t, undo, alive, commits)
                    max_keys = max(max_keys, cache.index.entries.count + t)
        return max_keys

    def _prepare(self, cs: cpu.CompressorStep, comp: CompressorState, cw: cpu.CompressorWeights, t: int,
                 undo: bool, alive: list, commits: list) -> None:  # fmt: skip
        """Points `cs` at this compressor's state and at fresh tensors for its next state."""
        m, width, d, overlap = cw.ratio, cw.width, cw.out_dim, bool(cw.overlap)
        pending, pending_gate, prev, prev_gate = comp.pending_kv, comp.pending_gate, comp.prev_kv, comp.prev_gate
        n_pending = 0 if pending is None else pending.shape[1]
        cs.n_pending = n_pending
        if n_pending:
            kv, gate = pending.contiguous(), pending_gate.contiguous()
            alive += (kv, gate)
            cs.pending_kv, cs.pending_gate = kv.data_ptr(), gate.data_ptr()
        else:
            cs.pending_kv = cs.pending_gate = None
        closed, rest = divmod(n_pending + t, m)
        nxt = torch.empty(2, 1, rest, width) if rest else None
        cs.next_pending_kv = None if nxt is None else nxt.data_ptr()
        cs.next_pending_gate = None if nxt is None else nxt.data_ptr() + rest * width * _FLOAT
        rows = torch.empty(2, 1, t, width) if undo else None
        cs.chunk_kv = None if rows is None else rows.data_ptr()
        cs.chunk_gate = None if rows is None else rows.data_ptr() + t * width * _FLOAT
        next_prev = None
        if overlap:
            if prev is not None:
                pk, pg = prev.contiguous(), prev_gate.contiguous()
                alive += (pk, pg)
                cs.prev_kv, cs.prev_gate = pk.data_ptr(), pg.data_ptr()
            else:
                cs.prev_kv = cs.prev_gate = None
            if closed:
                next_prev = torch.empty(2, 1, m, d)
            cs.next_prev_kv = None if next_prev is None else next_prev.data_ptr()
            cs.next_prev_gate = None if next_prev is None else next_prev.data_ptr() + m * d * _FLOAT
        view = comp.entries
        before = view.count
        if closed:
            cs.entries = view.reserve(closed, self._empty_rows(d)).data_ptr()
        else:
            cs.entries = None if view.buf is None else view.buf.data.data_ptr()
        cs.n_entries = before
        record = None
        if undo:
            record = CompressorUndo(m, overlap, pending, pending_gate, prev, prev_gate, before, rows[0], rows[1])
        commits.append((comp, "comp", (width, nxt, next_prev, closed, record), undo))

    def _commit(self, comp: CompressorState, width: int, nxt, next_prev, closed: int, record) -> None:
        if nxt is None:
            comp.pending_kv = comp.pending_gate = self._empty_rows(width)
        else:
            comp.pending_kv, comp.pending_gate = nxt[0], nxt[1]
        if next_prev is not None:
            comp.prev_kv, comp.prev_gate = next_prev[0], next_prev[1]
        if closed:
            comp.entries.grow(closed)
        comp.undo = record

    def _empty_rows(self, width: int) -> torch.Tensor:
        if width not in self._empty:
            self._empty[width] = torch.empty(1, 0, width)
        return self._empty[width]


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _is_bf16(t: torch.Tensor) -> bool:
    return t.dtype == torch.bfloat16 or torch.equal(t.detach().to(torch.bfloat16).to(t.dtype), t.detach())


def _matrices(model) -> list[torch.Tensor]:
    """The matrices step.c multiplies by (`linear`): what a bf16 copy would replace."""
    out = [model.head.weight]
    for block in model.layers:
        attn, ffn = block.attn, block.ffn
        out += [attn.wq_a.weight, attn.wq_b.weight, attn.wkv.weight, attn.wo_a.weight, attn.wo_b.weight,
                ffn.gate.weight, ffn.w1, ffn.w2, ffn.w3]  # fmt: skip
        if ffn.shared_experts is not None:
            out += [ffn.shared_experts.w1.weight, ffn.shared_experts.w2.weight, ffn.shared_experts.w3.weight]
        for c in (attn.compressor, attn.indexer and attn.indexer.compressor):
            if c is not None:
                out += [c.wkv.weight, c.wgate.weight]
        if attn.indexer is not None:
            out += [attn.indexer.wq_b.weight, attn.indexer.weights_proj.weight]
    return out


def _bound_tensors(model) -> list[torch.Tensor]:
    """Every tensor step.c reads: the matrices and the vectors (norms, mHC, sinks, biases, tables)."""
    out = [*_matrices(model), model.embed.weight, model.hc_head_fn, model.hc_head_base, model.hc_head_scale,
           model.norm.weight]  # fmt: skip
    for block in model.layers:
        attn, gate = block.attn, block.ffn.gate
        out += [block.hc_attn_fn, block.hc_attn_base, block.hc_attn_scale, block.hc_ffn_fn, block.hc_ffn_base,
                block.hc_ffn_scale, block.attn_norm.weight, block.ffn_norm.weight, attn.q_norm.weight,
                attn.kv_norm.weight, attn.attn_sink, gate.bias if gate.bias is not None else gate.tid2eid]  # fmt: skip
        for c in (attn.compressor, attn.indexer and attn.indexer.compressor):
            if c is not None:
                out += [c.ape, c.norm.weight]
    return out
