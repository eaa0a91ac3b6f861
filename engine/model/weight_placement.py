"""Putting one checkpoint tensor into the model: its rank's slice, dense or in checkpoint form.

The loader (loader.py) reads and checks each tensor; `Placement.put` then copies it into its
parameter or buffer:

* dense weights arrive dequantized and are cast to the parameter's dtype;
* kept weights (FP8 `QuantLinear`s, packed FP4 experts, see quantized.py) arrive as stored
  bytes plus their block scale, which goes into the scale buffer beside the weight;
* under tensor / expert parallelism (parallel.py) only this rank's rows or columns, or its
  contiguous range of experts, are copied; a kept FP8 weight is cut at whole 128 x 128 scale blocks.
"""

from __future__ import annotations

import torch

from deepfim.engine.model.checkpoint_names import Target
from deepfim.engine.model.quantized import FP8_BLOCK

EXPERT_PARAMS = (".ffn.w1", ".ffn.w2", ".ffn.w3")


def is_kept(param: torch.Tensor) -> bool:
    """A buffer that holds a weight in checkpoint form (FP8 e4m3 bytes or packed FP4)."""
    return param.dtype in (torch.float8_e4m3fn, torch.int8)


def scale_name(t: Target) -> str:
    """The buffer holding the block scale of a kept weight."""
    if t.name.endswith(".weight"):
        return t.name[: -len("weight")] + "scale"
    return f"{t.name}_scale"


def stored_form(key: str, raw: torch.Tensor, scale: torch.Tensor, scale_dtype: torch.dtype) -> torch.Tensor:
    """The kept bytes of a weight, after checking them for NaN codes (what dequantizing would find)."""
    if raw.dtype == torch.float8_e4m3fn:
        nan = int(((raw.view(torch.uint8) & 0x7F) == 0x7F).sum())
        if nan:
            raise ValueError(f"{key}: {nan} NaN codes in the FP8 weight: corrupt weights")
    elif raw.dtype in (torch.uint8, torch.float4_e2m1fn_x2):
        raw = raw.view(torch.int8)
    if scale.dtype in (torch.float8_e8m0fnu, torch.uint8) and int((scale.view(torch.uint8) == 255).sum()):
        raise ValueError(f"{key}: NaN/Inf block scales (byte 255): corrupt weights")
    if scale.dtype in (torch.float8_e8m0fnu, torch.uint8) and scale_dtype in (torch.float8_e8m0fnu, torch.uint8):
        return raw  # same bytes, either name
    if scale.dtype != scale_dtype:
        raise ValueError(f"{key}: scale stored as {scale.dtype}, unlike the other scales of its layer ({scale_dtype})")
    return raw


class Placement:
    """Copies checkpoint tensors into `params`, recording what was filled and what did not fit."""

    def __init__(self, params: dict[str, torch.Tensor], layout=None) -> None:
        self.params = params
        self.layout = layout  # parallel.ParallelLayout or None (one process holds everything)
        self.filled: dict[str, set[int] | bool] = {}
        self.problems: list[str] = []

    def wanted(self, t: Target) -> bool:
        """False for another rank's expert (not even read)."""
        if self.layout is None or t.expert is None:
            return True
        offset, count = self.layout.expert_range(self.params[t.name].shape[0] * self.layout.ep)
        return offset <= t.expert < offset + count

    def _check(self, key: str, dst: torch.Tensor, src: torch.Tensor) -> bool:
        if tuple(src.shape) != tuple(dst.shape):
            self.problems.append(f"{key}: checkpoint shape {tuple(src.shape)}, model expects {tuple(dst.shape)}")
            return False
        return True

    def _slice(self, key: str, t: Target, value: torch.Tensor, scale: torch.Tensor | None):
        """This rank's part of a tensor that tensor parallelism splits (else the tensor itself)."""
        cut = self.layout.split(t.name) if self.layout is not None else None
        if cut is None:
            return value, scale
        dim, rank, parts = cut
        size = value.shape[dim] // parts
        if value.shape[dim] % parts:
            raise ValueError(f"{key}: dim {dim} of size {value.shape[dim]} does not split into {parts} ranks")
        if scale is None:
            return value.narrow(dim, rank * size, size), None
        if size % FP8_BLOCK:
            raise ValueError(f"{key}: a {parts}-way split of dim {dim} ({size} rows each) cuts its {FP8_BLOCK}-wide "
                             "FP8 scale blocks; load it dequantized (without --keep-quantized)")  # fmt: skip
        blocks = size // FP8_BLOCK
        return value.narrow(dim, rank * size, size), scale.narrow(dim, rank * blocks, blocks)

    def put(self, key: str, t: Target, value: torch.Tensor, scale: torch.Tensor | None = None) -> None:
        """`value` dense (dequantized) or, for a kept weight, its stored bytes with `scale`."""
        params, param = self.params, self.params[t.name]
        with torch.no_grad():
            if t.kind == "gate_up":  # transformers packs w1 and w3 as [E, 2I, D]
                w3 = params[t.name[:-2] + "w3"]
                value = self._local_experts(value, param.shape[0])
                half = value.shape[1] // 2 if value.dim() == 3 else 0
                if value.dim() != 3 or not (self._check(key, param, value[:, :half]) and
                                            self._check(key, w3, value[:, half:])):  # fmt: skip
                    return
                param.copy_(value[:, :half])
                w3.copy_(value[:, half:])
                self.filled[t.name] = self.filled[t.name[:-2] + "w3"] = set(range(param.shape[0]))
            elif t.expert is not None:
                self._put_expert(key, t, param, value, scale)
            else:
                if t.name.endswith(EXPERT_PARAMS):  # transformers' packed down projections [E, D, I]
                    value = self._local_experts(value, param.shape[0])
                value, scale = self._slice(key, t, value, scale)
                if self._check(key, param, value):
                    param.copy_(value if is_kept(param) else value.to(param.dtype))
                    if scale is not None:
                        dst = params[scale_name(t)]
                        if self._check(key.replace("weight", "scale"), dst, scale):
                            dst.copy_(scale.view(dst.dtype) if scale.element_size() == 1 else scale)
                            self.filled[scale_name(t)] = True
                    self.filled[t.name] = set(range(param.shape[0])) if t.name.endswith(EXPERT_PARAMS) else True

    def _local_experts(self, stacked: torch.Tensor, n_local: int) -> torch.Tensor:
        if self.layout is None or self.layout.ep == 1 or stacked.dim() != 3:
            return stacked
        offset, count = self.layout.expert_range(n_local * self.layout.ep)
        return stacked[offset : offset + count]

    def _put_expert(self, key: str, t: Target, param, value, scale) -> None:
        offset = self.layout.expert_range(param.shape[0] * self.layout.ep)[0] if self.layout is not None else 0
        local = t.expert - offset
        if not 0 <= local < param.shape[0]:
            self.problems.append(f"{key}: expert {t.expert}, but the model has {param.shape[0]} experts")
            return
        if not self._check(key, param[local], value):
            return
        param[local].copy_(value)
        self.filled.setdefault(t.name, set()).add(local)
        if scale is not None:
            dst = self.params[scale_name(t)]
            if self._check(key.replace("weight", "scale"), dst[local], scale):
                dst[local].copy_(scale.view(dst.dtype) if scale.element_size() == 1 else scale)
                self.filled.setdefault(scale_name(t), set()).add(local)
