"""The CUDA-graph decode step (engine/model/cuda_graph.py) off CUDA: never chosen there, and its
eager decomposition (embed, attention halves, static-buffer MoE halves, head) computes exactly what
`Transformer.forward` computes. Capture itself needs a GPU: bench/gpu_check.sh runs it."""

from __future__ import annotations

import torch

from deepfim.engine.model.cuda_graph import GraphedDecode
from deepfim.engine.model.decode_step import DecodeStep
from deepfim.engine.model.loader import load_model


def test_the_cpu_keeps_its_decode_paths(tiny_model, tiny_checkpoint):
    assert GraphedDecode.for_model(tiny_model) is None
    assert isinstance(DecodeStep.for_model(tiny_model), DecodeStep)  # the C step, as before
    assert DecodeStep.for_model(load_model(tiny_checkpoint, keep_quantized=True)) is not None  # no FP8 stored
    # bf16 matrices (a CPU that multiplies bf16): the C step too, reading them as they are
    assert isinstance(DecodeStep.for_model(load_model(tiny_checkpoint, dtype=torch.bfloat16)), DecodeStep)


def test_the_graphed_steps_decomposition_is_the_models_forward(tiny_model):
    step = GraphedDecode(tiny_model, capture=False)
    ids = torch.randint(0, tiny_model.args.vocab_size, (1, 30), generator=torch.Generator().manual_seed(2))
    ours, theirs = tiny_model.new_state(), tiny_model.new_state()
    with torch.inference_mode():
        tiny_model(ids, ours, logits="none")
        tiny_model(ids, theirs, logits="none")
        token = ids[:, -1:]
        for _ in range(8):  # crosses CSA windows of 4: compressed entries are emitted in between
            logits, streams = step(token, ours, "last")
            want = tiny_model(token, theirs, logits="last")
            assert torch.equal(logits, want.logits) and torch.equal(streams, want.streams)
            token = logits[:, -1].argmax(-1, keepdim=True)
        assert ours.pos == theirs.pos == 38
        assert step(token, ours, "none")[0] is None
