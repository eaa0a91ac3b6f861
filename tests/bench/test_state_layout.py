"""bench/state_layout.py computes DeepFIM's V4 state size from a configuration alone; it must agree
byte for byte with the engine's own `ModelState.nbytes()` after real forwards."""

from __future__ import annotations

import pytest
import torch

from deepfim.bench.state_layout import FLASH, PRO, v4_fp8_state_bytes, v4_state_bytes, v32_state_bytes
from deepfim.engine.model.config import tiny_args
from deepfim.engine.model.transformer import Transformer, init_weights


@pytest.mark.parametrize("chunks", [(1,), (3,), (127,), (128, 1), (130, 7, 1), (257, 16, 3)])
def test_layout_matches_the_engine_state(chunks):
    args = tiny_args(compress_ratios=(0, 4, 8, 4), window_size=16)  # sliding, CSA, HCA of ratio 8, CSA
    model = init_weights(Transformer(args), 0).eval()
    state = model.new_state()
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for n in chunks:
            model(torch.randint(0, args.vocab_size, (1, n), generator=g), state, logits="last")
    assert sum(v4_state_bytes(args, sum(chunks)).values()) == state.nbytes()


def test_release_configs_match_the_design_figures():
    # v4-model.md §3.6: FP8 main + FP8 indexer ~3.85 KB/token (Flash), ~5.51 KB/token (Pro);
    # V3.2 ~48.1 KB/token
    t = 1 << 20
    assert FLASH.n_layers == 43 and PRO.n_layers == 61
    assert abs(v4_fp8_state_bytes(FLASH, t) / t - 3850) < 20
    assert abs(v4_fp8_state_bytes(PRO, t) / t - 5510) < 20
    assert abs(v32_state_bytes(61, t) / t - 48068) < 1
