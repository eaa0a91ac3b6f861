"""Routed experts offloaded to host memory with a cache of hot experts on the device (here: the CPU
plays both): the cache's LRU bookkeeping, logits equal to the resident model's, and the planner's
device / host split."""

from __future__ import annotations

import pytest
import torch
from engine_fixtures import randomize

from deepfim.engine.model import memory_plan
from deepfim.engine.model.checkpoint_formats import read_headers
from deepfim.engine.model.config import tiny_args
from deepfim.engine.model.decode_step import DecodeStep
from deepfim.engine.model.expert_offload import SlotCache, host_tensors, stats
from deepfim.engine.model.loader import load_model, save_checkpoint, shard_files
from deepfim.engine.model.quantized import resident_bytes
from deepfim.engine.model.transformer import Transformer


def test_slot_cache_keeps_the_most_recently_used():
    cache = SlotCache(3)
    assert cache.assign([5, 1]) == ({5: 0, 1: 1}, [(5, 0), (1, 1)])
    assert cache.assign([1, 7]) == ({1: 1, 7: 2}, [(7, 2)])  # 1 was cached
    slots, loads = cache.assign([2, 5])  # full: the least recently used is 5, but this call needs it: 1 goes
    assert slots[5] == 0 and loads == [(2, 1)]
    assert list(cache.slot_of) == [7, 2, 5]  # least recently used first
    assert (cache.hits, cache.misses) == (2, 4) and cache.hit_rate == pytest.approx(2 / 6)
    with pytest.raises(ValueError, match="4 experts asked at once, the cache holds 3"):
        cache.assign([1, 2, 3, 4])
    with pytest.raises(ValueError, match="at least one slot"):
        SlotCache(0)


@pytest.fixture(scope="module")
def fp4_checkpoint(tmp_path_factory):
    args = tiny_args(vocab_size=512, dim=128, moe_inter_dim=64, q_lora_rank=128, head_dim=64, rope_head_dim=16,
                     index_head_dim=64, o_lora_rank=128, n_hash_layers=1)  # fmt: skip
    out = tmp_path_factory.mktemp("fp4")
    save_checkpoint(randomize(Transformer(args), seed=5).eval(), out, weight_format="fp8", expert_format="fp4")
    return out


def _logits(model, ids, steps=6):
    state, outs = model.new_state(), []
    with torch.inference_mode():
        outs.append(model(ids, state, logits="last").logits)
        for _ in range(steps):
            outs.append(model(outs[-1][:, -1].argmax(-1, keepdim=True), state, logits="last").logits)
    return torch.cat(outs, 1)


@pytest.mark.parametrize("keep", [True, False])
def test_offloaded_experts_give_the_resident_models_logits(fp4_checkpoint, keep):
    resident = load_model(fp4_checkpoint, keep_quantized=keep)
    offloaded = load_model(fp4_checkpoint, keep_quantized=keep, hot_experts=3)  # 3 of 8 slots per layer
    assert DecodeStep.for_model(offloaded) is None  # the C step reads resident experts
    ids = torch.randint(0, 512, (1, 40), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(_logits(offloaded, ids), _logits(resident, ids), rtol=1e-5, atol=1e-5)
    layers = stats(offloaded)
    assert len(layers) == 5  # 4 layers and the MTP block
    used = layers["layers.1.ffn"]
    assert used["misses"] >= 3 and used["hits"] > 0  # the prefill filled the slots, decode steps reused some
    host = sum(t.numel() * t.element_size() for t in host_tensors(offloaded).values())
    headers = read_headers(shard_files(fp4_checkpoint))
    plan = memory_plan.plan_weights(offloaded.args, headers, torch.float32, keep, hot_experts=3)
    slots = sum(t.numel() * t.element_size() for m in offloaded.modules() if getattr(m, "offload", None)
                for t in m.offload.slots.values())  # fmt: skip
    assert abs(resident_bytes(offloaded) + slots - plan.weight_bytes) <= 0.01 * plan.weight_bytes
    assert sum(plan.host.values()) == host


def test_the_planner_checks_the_host_too():
    plan = memory_plan.MemoryPlan("cuda:0", {"fp4": 10 << 30}, host={"offloaded experts: fp4": 140 << 30})
    memory_plan.check_fits(plan, torch.device("cuda:0"), available=20 << 30, host_available=160 << 30)
    with pytest.raises(memory_plan.MemoryPlanError, match=r"offloaded experts need 140\.00 GiB of host memory"):
        memory_plan.check_fits(plan, torch.device("cuda:0"), available=20 << 30, host_available=128 << 30)
