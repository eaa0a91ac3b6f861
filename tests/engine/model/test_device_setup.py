"""engine/model/device_setup.py on the CPU: the dense dtype follows the CPU and the checkpoint
(bf16 only where it multiplies bf16 natively and no matrix loses a bit), and a bf16 model keeps
its vocabulary head and router gates in fp32, runs its products in bf16, and is served by the C
decode step reading its bf16 matrices as they are."""

from __future__ import annotations

import pytest
import torch

from deepfim.engine.model import device_setup, memory_plan
from deepfim.engine.model.checkpoint_formats import read_headers
from deepfim.engine.model.checkpoint_writer import save_checkpoint
from deepfim.engine.model.decode_step import DecodeStep
from deepfim.engine.model.loader import load_model, shard_files
from deepfim.engine.model.quantized import resident_bytes


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tiny_model):
    """The tiny model stored as fp32, bf16, and FP8 matrices with FP4 experts (E8M0 scales)."""
    out = {}
    for name, weights, experts in (("fp32", "fp32", None), ("bf16", "bf16", None), ("fp8", "fp8", "fp4")):
        out[name] = tmp_path_factory.mktemp(f"ckpt_{name}")
        save_checkpoint(tiny_model, out[name], weights, experts)
    return out


@pytest.mark.parametrize(("stored", "native", "want"), [
    ("bf16", True, torch.bfloat16), ("fp8", True, torch.bfloat16),  # every matrix a bf16 value
    ("fp32", True, torch.float32),  # bf16 would round the weights
    ("bf16", False, torch.float32),  # without bf16 instructions torch's bf16 matmul is the slow one
])  # fmt: skip
def test_the_cpu_dense_dtype_loses_nothing_and_is_the_fast_one(checkpoints, monkeypatch, stored, native, want):
    monkeypatch.setattr(device_setup, "cpu_multiplies_bf16", lambda: native)
    assert device_setup.cpu_dense_dtype(checkpoints[stored]) == want
    assert device_setup.load_options(checkpoints[stored], "cpu").dtype == want


def test_fp8_with_float32_scales_is_not_exact_in_bf16(checkpoints, tmp_path, monkeypatch):
    """An FP8 block scale that is not a power of two (V3's fp32 `scale_inv`) makes dequantized
    values that bf16 cannot hold."""
    from safetensors.torch import load_file, save_file

    monkeypatch.setattr(device_setup, "cpu_multiplies_bf16", lambda: True)
    for f in checkpoints["fp8"].iterdir():
        if f.suffix == ".safetensors":
            tensors = load_file(f)
            scales = [k for k, t in tensors.items() if k.endswith(".scale") and t.dtype == torch.float8_e8m0fnu]
            tensors[scales[0]] = tensors[scales[0]].float() * 1.5
            save_file(tensors, tmp_path / f.name)
        else:
            (tmp_path / f.name).write_bytes(f.read_bytes())
    assert device_setup.cpu_dense_dtype(tmp_path) == torch.float32


def test_a_bf16_cpu_model_keeps_head_and_gates_in_fp32_and_the_c_step_reads_it_as_it_is(checkpoints, tiny_model):
    model = load_model(checkpoints["bf16"], "cpu", torch.bfloat16)
    assert model.head.weight.dtype == torch.float32
    assert all(b.ffn.gate.weight.dtype == torch.float32 for b in model.layers)
    bf16 = (model.embed.weight, model.layers[0].attn.wq_a.weight, model.layers[0].ffn.w1)
    assert all(t.dtype == torch.bfloat16 for t in bf16)
    plan = memory_plan.plan_weights(model.args, read_headers(shard_files(checkpoints["bf16"])), torch.bfloat16)
    assert plan.weight_bytes == pytest.approx(resident_bytes(model), rel=0.01)

    step = DecodeStep.for_model(model)
    assert isinstance(step, DecodeStep) and step.bf16
    gates = [b.ffn.gate.weight for b in model.layers]
    # copies of the head and gates in bf16 and of the embedding in fp32: nothing else
    assert set(step._copies) == {id(t) for t in (model.head.weight, model.embed.weight, *gates)}

    ids = torch.randint(0, model.args.vocab_size, (1, 40), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        ours, reference = model.new_state(), tiny_model.new_state()
        model(ids[:, :30], ours, logits="none")
        theirs = ours.kept()
        tiny_model(ids[:, :30], reference, logits="none")
        modules = model(ids[:, 30:], ours, logits="all").logits[0]
        c_step = step.batch([(ids[0, 30:].tolist(), theirs, "all")])[0][0][0]
        fp32 = tiny_model(ids[:, 30:], reference, logits="all").logits[0]
    # the modules round activations to bf16 at each product, the C step sums in fp32: close, and
    # both near the fp32 model (whose weights the bf16 checkpoint rounded)
    torch.testing.assert_close(c_step, modules, atol=0.1, rtol=0.05)
    assert (c_step - fp32).abs().max() < 0.25 and (modules - fp32).abs().max() < 0.25
