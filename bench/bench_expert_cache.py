"""Hit rate of the hot-expert cache (engine/model/expert_offload.py) on code prompts: a CPU simulation.

The cache's own code runs (SlotCache, host -> "device" copies, the grouped GEMM over slots), but
on the CPU and with the embedded model's router (8 routed experts, top-2, 4 layers + MTP): the
figures say how often a decode step finds its experts cached for this model on real code, not
what V4-Flash's 256-expert router would give on a GPU. For each cache size it prefills a FIM
prompt cut from a CPython standard-library file, then decodes greedily; prints the decode-phase
hit rate per layer (the prefill fills the cache; the MTP block does not run), against what routing
uniformly at random would give (the cached share), and the host -> device bytes one decode token
would copy at that miss rate for V4-Flash's expert size (13.4 MB of FP4 + scales).

    .venv/bin/python bench/bench_expert_cache.py [--prompts 8] [--prefix 1024] [--tokens 32]
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

from deepfim.bench.corpus import stdlib_files
from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.model.expert_offload import stats
from deepfim.engine.model.loader import load_model
from deepfim.engine.model.prompt_format import FimOrder, build_fim_prompt
from deepfim.engine.model.tokenizer import Tokenizer

FLASH_EXPERT_BYTES = 3 * 2048 * 4096 // 2 + 3 * 2048 * 4096 // 32  # FP4 w1, w2, w3 and their scales


def prompts(tok: Tokenizer, n: int, prefix_tokens: int) -> list[list[int]]:
    """FIM prompts: the first `prefix_tokens` of a file before the hole, the next 256 after it."""
    out = []
    for _name, text in stdlib_files(4 << 20):
        ids = tok.encode(text)
        if len(ids) < prefix_tokens + 300:
            continue
        prefix, suffix = tok.decode(ids[:prefix_tokens]), tok.decode(ids[prefix_tokens + 16 : prefix_tokens + 272])
        out.append(build_fim_prompt(tok, prefix, suffix, FimOrder.PSM).ids)
        if len(out) == n:
            break
    return out


def decode_hit_rates(model, prompt: list[int], tokens: int) -> dict[str, tuple[int, int]]:
    """(hits, misses) per layer during the decode steps after prefilling `prompt`."""
    state = model.new_state()
    with torch.inference_mode():
        for start in range(0, len(prompt), 128):
            logits = model(torch.tensor([prompt[start : start + 128]]), state, logits="last").logits
        before = stats(model)
        token = logits[:, -1].argmax(-1, keepdim=True)
        for _ in range(tokens):
            token = model(token, state, logits="last").logits[:, -1].argmax(-1, keepdim=True)
    after = stats(model)
    return {k: (after[k]["hits"] - before[k]["hits"], after[k]["misses"] - before[k]["misses"]) for k in after}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prompts", type=int, default=8, help="code prompts (CPython standard-library files)")
    p.add_argument("--prefix", type=int, default=1024, help="prompt tokens before the hole")
    p.add_argument("--tokens", type=int, default=32, help="greedy decode steps per prompt")
    a = p.parse_args()
    tok = Tokenizer.from_file(DEFAULT_MODEL_DIR / "tokenizer.json")
    work = prompts(tok, a.prompts, a.prefix)
    n_experts = load_model(DEFAULT_MODEL_DIR).args.n_routed_experts
    print(
        f"CPU simulation: the embedded model ({n_experts} routed experts, top-2), {len(work)} FIM prompts of "
        f"~{a.prefix} tokens from CPython's Lib/, {a.tokens} greedy decode steps each; decode-phase hit rates"
    )
    for capacity in (2, 4, 6):
        model = load_model(DEFAULT_MODEL_DIR, hot_experts=capacity)
        totals: dict[str, list[int]] = {}
        per_prompt = []
        for prompt in work:
            rates = decode_hit_rates(model, prompt, a.tokens)
            for layer, (hits, misses) in rates.items():
                t = totals.setdefault(layer, [0, 0])
                t[0] += hits
                t[1] += misses
            hits, misses = sum(h for h, _ in rates.values()), sum(m for _, m in rates.values())
            per_prompt.append(hits / max(1, hits + misses))
        hits, misses = sum(t[0] for t in totals.values()), sum(t[1] for t in totals.values())
        layers = "  ".join(f"{name.split('.')[1] if name.startswith('layers') else 'mtp'}: "
                           f"{h / max(1, h + m):.0%}" for name, (h, m) in totals.items() if h + m)  # fmt: skip
        misses_per_token = misses / (len(work) * a.tokens)
        rate = hits / max(1, hits + misses)
        print(f"  {capacity}/{n_experts} cached (uniform routing: {capacity / n_experts:.0%}): hit rate {rate:.1%} "
              f"(prompts: median {statistics.median(per_prompt):.1%}, min {min(per_prompt):.1%}); {layers}; "
              f"{misses_per_token:.2f} expert loads per token = {misses_per_token * FLASH_EXPERT_BYTES / 1e6:.0f} MB "
              "per token at V4-Flash's expert size", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
