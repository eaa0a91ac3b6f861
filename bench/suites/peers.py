"""peers: DeepFIM's engine against transformers' DeepseekV4ForCausalLM, same checkpoint, same
prompts, one process, alternating rounds.

The checkpoint is a random ~20M-parameter V4 (every layer kind: sliding, CSA, HCA; MoE with a
hash layer) made by transformers and saved with `save_pretrained`; DeepFIM loads that very
directory. Prefill: one forward of the prompt (tokens/s). Decode: greedy steps after it, ms
per token, each side with its own cache (our `ModelState`, transformers' `past_key_values`);
ours as the engine serves it: the C decode step on the CPU.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

from deepfim.bench.context import BenchContext
from deepfim.bench.machine import REPO
from deepfim.bench.report import SuiteResult, Table
from deepfim.bench.stats import median_figure


def _args():
    from deepfim.engine.model.config import tiny_args

    return tiny_args(
        vocab_size=8192,
        dim=256,
        n_layers=4,
        n_heads=4,
        head_dim=64,
        rope_head_dim=32,
        q_lora_rank=128,
        o_groups=2,
        o_lora_rank=128,
        compress_ratios=(0, 4, 128, 4),
        n_mtp_layers=0,
        index_n_heads=8,
        index_head_dim=32,
        index_topk=64,
        n_routed_experts=16,
        n_activated_experts=2,
        moe_inter_dim=256,
        n_hash_layers=1,
    )


def time_ours(model, ids: torch.Tensor, n_decode: int) -> tuple[float, float]:
    """As the engine serves (`serving_forward`): the prompt through the modules, each decode
    step through the C step where it applies (the CPU), else the modules."""
    from deepfim.engine.model.decode_step import DecodeStep
    from deepfim.engine.serving.model_runner import serving_forward

    step = DecodeStep.for_model(model)
    with torch.inference_mode():
        state = model.new_state()
        t0 = time.perf_counter()
        token = int(serving_forward(model, step, ids[0].tolist(), state, "last").logits[0, -1].argmax())
        prefill = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(n_decode):
            token = int(serving_forward(model, step, [token], state, "last").logits[0, -1].argmax())
        decode = time.perf_counter() - t0
    return ids.shape[1] / prefill, decode / n_decode * 1e3


def time_hf(model, ids: torch.Tensor, n_decode: int) -> tuple[float, float]:
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        prefill = time.perf_counter() - t0
        pkv, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        t0 = time.perf_counter()
        for _ in range(n_decode):
            out = model(input_ids=token, past_key_values=pkv, use_cache=True)
            pkv, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        decode = time.perf_counter() - t0
    return ids.shape[1] / prefill, decode / n_decode * 1e3


def run(ctx: BenchContext, result: SuiteResult) -> None:
    try:
        import transformers  # noqa: F401
    except ImportError:
        result.status, result.reason = "skipped", "transformers is not installed (pip install 'deepfim[dev]')"
        return
    oracle = REPO / "tests" / "engine"
    if not (oracle / "hf_oracle.py").is_file():
        result.status, result.reason = "skipped", "needs a checkout (tests/engine/hf_oracle.py builds the HF model)"
        return
    sys.path.insert(0, str(oracle))
    from hf_oracle import random_hf_model

    from deepfim.engine.model.loader import load_model

    prompt, n_decode, rounds = ctx.pick(128, 512), ctx.pick(8, 64), ctx.pick(1, 5)
    args = _args()
    hf = random_hf_model(args, seed=ctx.seed)
    hf.save_pretrained(ctx.tmp / "peers-checkpoint")
    ours = load_model(ctx.tmp / "peers-checkpoint")
    params = sum(p.numel() for p in ours.parameters())
    g = torch.Generator().manual_seed(ctx.seed)
    ids = torch.randint(0, args.vocab_size, (1, prompt), generator=g)
    time_ours(ours, ids[:, :64], 4)  # warm-up both (allocator, C kernel build)
    time_hf(hf, ids[:, :64], 4)
    rows = {"DeepFIM": [], "transformers": []}
    for _ in range(rounds):
        rows["DeepFIM"].append(time_ours(ours, ids, n_decode))
        rows["transformers"].append(time_hf(hf, ids, n_decode))
    result.settings = {
        "checkpoint": f"random V4, {params / 1e6:.1f}M parameters (saved by transformers)",
        "prompt tokens": prompt,
        "decode steps": n_decode,
        "rounds": rounds,
        "threads": torch.get_num_threads(),
    }
    how_pre = f"prompt of {prompt} tokens in one forward call / its wall time; alternating rounds"
    how_dec = f"{n_decode} greedy steps after the prompt / their wall time; alternating rounds"
    table = []
    for name, values in rows.items():
        pre, dec = [v[0] for v in values], [v[1] for v in values]
        key = name.lower()
        result.add(median_figure(f"{key}.prefill_tok_s", f"{name} prefill", pre, "tok/s", how_pre))
        result.add(median_figure(f"{key}.decode_ms", f"{name} decode", dec, "ms/token", how_dec))
        table.append([name, statistics.median(pre), statistics.median(dec)])
    ours_pre, ours_dec = table[0][1], table[0][2]
    hf_pre, hf_dec = table[1][1], table[1][2]
    result.add(
        median_figure(
            "ratio.prefill",
            "prefill speed-up (DeepFIM / transformers)",
            [ours_pre / hf_pre],
            "x",
            "ratio of the two medians above",
        )
    )
    result.add(
        median_figure(
            "ratio.decode",
            "decode speed-up (transformers ms / DeepFIM ms)",
            [hf_dec / ours_dec],
            "x",
            "ratio of the two medians above",
        )
    )
    for f in result.figures[-2:]:
        f.method.statistic, f.method.runs, f.method.spread = "ratio of medians", rounds, {}
    result.tables.append(
        Table(
            "Same checkpoint, same prompt",
            ["engine", "prefill tok/s", "decode ms/token"],
            table,
            f"medians of {rounds} rounds",
        )
    )
