"""Decode steps on CUDA with CUDA graphs (one token, one sequence): written for GPUs, not yet run on one.

A V4 decode step launches a few hundred small kernels; on a GPU their launch cost, not the
arithmetic, can dominate. What a graph can hold is what has the same shapes at every position:
per block, the mHC-wrapped MoE sublayer (`Block.ffn_half`: mixing, router, grouped expert GEMM,
shared expert; the Triton kernels were written not to read counts back on the host), and the
head (collapse, norm, vocabulary projection). The attention sublayer stays eager: its window,
compressed entries and top-k grow with the position and its state tensors are replaced, not
written in place (engine/model/state.py).

So a step is: embed; per block, attention eagerly, then copy the streams into the static input
and replay the block's graph; then the head's graph. Capture happens once per model on the
first use; if anything in it cannot be captured (a kernel that syncs, the references path), the
step logs why and runs the same functions eagerly instead. `capture=False` runs that eager
decomposition anywhere (the CPU tests check it against `Transformer.forward`).
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


class GraphedDecode:
    """The decode step of `ModelRunner.forward` for a model on a CUDA device (see the module docstring)."""

    max_tokens = 1  # tokens per sequence of a call
    max_rows = 1  # sequences of a call: one (each sequence's state has its own shapes)

    @classmethod
    def for_model(cls, model) -> GraphedDecode | None:
        """A graphed step for a single-process model on CUDA; None anywhere else (the CPU keeps its
        C decode step or the module path, unchanged)."""
        from deepfim.engine.model.transformer import Transformer

        if not isinstance(model, Transformer) or model.embed.weight.device.type != "cuda":
            return None
        if any(getattr(m, "reduce", None) is not None for m in model.modules()):
            return None  # a tensor / expert parallel share: rank 0's steps are mirrored call by call
        if any(getattr(m, "offload", None) is not None for m in model.modules()):
            return None  # offloaded experts read the routing back on the host at every layer
        return cls(model)

    def __init__(self, model, capture: bool = True) -> None:
        self.model = model
        a = model.args
        device = model.embed.weight.device
        self.x = torch.zeros(1, 1, a.hc_mult, a.dim, device=device)  # static streams fed to each graph
        self.ids = torch.zeros(1, 1, dtype=torch.long, device=device)  # static token (hash-routed layers)
        self.capture = capture
        self.graphs: list | None = None  # [(graph, output)] per block, then the head's
        self.failed: str | None = None

    # the captured functions -------------------------------------------------------------
    def _ffn(self, i: int) -> torch.Tensor:
        return self.model.layers[i].ffn_half(self.x, self.ids, None)

    def _head(self) -> torch.Tensor:
        m = self.model
        return m.head(m.norm(m.collapse(self.x)))

    def _functions(self) -> list:
        return [lambda i=i: self._ffn(i) for i in range(len(self.model.layers))] + [self._head]

    def _capture(self) -> None:
        """Warms up on a side stream, then records one graph per function into a shared pool."""
        functions = self._functions()
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):  # Triton compiles and cuBLAS picks its kernels outside the capture
                    for f in functions:
                        f()
            torch.cuda.current_stream().wait_stream(side)
            pool = torch.cuda.graph_pool_handle()
            graphs = []
            for f in functions:
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool):
                    out = f()
                graphs.append((graph, out))
            self.graphs = graphs
        except Exception as exc:  # noqa: BLE001 - any capture failure falls back to the eager step
            self.failed = f"{type(exc).__name__}: {exc}"
            self.capture = False
            log.warning("CUDA graph capture of the decode step failed, decoding eagerly: %s", self.failed)

    def _run(self, index: int) -> torch.Tensor:
        if self.capture:
            graph, out = self.graphs[index]
            graph.replay()
            return out
        return self._functions()[index]()

    # the step ---------------------------------------------------------------------------
    def batch(self, calls: list[tuple[list[int], object, str]]) -> list[tuple[torch.Tensor | None, torch.Tensor]]:
        """The runner's batched interface (decode_step.DecodeStep.batch): one call at a time here."""
        device = self.ids.device
        return [self(torch.tensor([ids], device=device), state, logits) for ids, state, logits in calls]

    def __call__(self, ids: torch.Tensor, state, logits: str = "last") -> tuple[torch.Tensor | None, torch.Tensor]:
        """ids [1, 1] at `state.pos` -> (logits [1, 1, V] or None, final streams [1, 1, n, D]); advances the state."""
        m = self.model
        a = m.args
        if tuple(ids.shape) != (1, 1):
            raise ValueError(f"the graphed decode step takes one token of one sequence, got ids {tuple(ids.shape)}")
        start = state.pos
        if start + 1 > a.max_seq_len:
            raise ValueError(f"sequence of {start + 1} tokens exceeds max_seq_len={a.max_seq_len}")
        if self.capture and self.graphs is None:
            self._capture()
        self.ids.copy_(ids)
        x = m.embed(ids).float().unsqueeze(2).expand(1, 1, a.hc_mult, a.dim).contiguous()
        for i, layer in enumerate(m.layers):
            self.x.copy_(layer.attn_half(x, start, state.layers[i], None))
            x = self._run(i)
        state.pos = start + 1
        streams = x.clone()  # the graphs' outputs are overwritten by the next step
        if logits == "none":
            return None, streams
        self.x.copy_(x)
        return self._run(len(m.layers)).clone(), streams
