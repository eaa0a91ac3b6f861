"""What each rank of the 2-process gloo tests runs (a module of its own: spawned processes import it).

`run_rank` joins the group, then for each layout (TP=2, EP=2, both) loads this rank's share of the
checkpoint and records the logits of a prefill and greedy decode steps; then, with TP and EP,
rank 0 serves two prompts through a ModelRunner with a prefix cache and speculative decoding over
a `DistributedModel` while rank 1 `follow`s, and takes back drafted tokens (`keep_first`) and
resumes a snapshot. Everything rank 0 saw is saved for the test to compare
with one process.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist

LAYOUTS = (("tp", 2, 1), ("ep", 1, 2), ("tp+ep", 2, 2))
IDS = list(range(7, 7 + 37))  # 37 tokens: several CSA windows, an open one left over
PREFIX = [(i * 37) % 8000 + 3 for i in range(160)]
PROMPTS = (PREFIX + [5, 6, 7] * 30, PREFIX + [11, 12, 13, 14] * 12)  # share 128 tokens: a cached snapshot


def prefill_and_decode(model, ids: list[int] = IDS, steps: int = 4) -> torch.Tensor:
    """Logits of a prefill and of `steps` greedy decode steps through one state."""
    state, outs = model.new_state(), []
    with torch.inference_mode():
        logits = model(torch.tensor([ids]), state, logits="all").logits
        outs.append(logits[0])
        for _ in range(steps):
            logits = model(logits[:, -1].argmax(-1, keepdim=True), state, logits="last").logits
            outs.append(logits[0])
    return torch.cat(outs)


def serve_prompts(model, tokenizer_dir: Path) -> list[list[int]]:
    """Greedy completions of PROMPTS through a runner with a prefix cache and n-gram drafts."""
    from deepfim.engine.api import SamplingParams
    from deepfim.engine.model.tokenizer import Tokenizer
    from deepfim.engine.serving.generate import generate
    from deepfim.engine.serving.model_runner import ModelRunner
    from deepfim.engine.serving.prefix_cache import PrefixCache

    runner = ModelRunner(model, Tokenizer.from_file(tokenizer_dir / "tokenizer.json"), PrefixCache(), decode_step=False)
    params = SamplingParams(max_tokens=24, stop_loops=False)
    return [generate(runner, list(p), params)[0].token_ids for p in PROMPTS]


def rewind_and_continue(model, window: int = 128) -> torch.Tensor:
    """A speculative rejection: 5 drafted tokens fed at once, 2 kept (`keep_first`), then decoding
    on; the logits of every call."""
    state, outs = model.new_state(), []
    with torch.inference_mode():
        outs.append(model(torch.tensor([IDS]), state, logits="last").logits[0])
        outs.append(model(torch.tensor([[3, 1, 4, 1, 5]]), state, logits="all").logits[0])
        state.keep_first(2, len(IDS), window)
        snap = state.snapshot()  # a cached copy, resumed below after the live state moved on
        for token in (9, 2, 6):
            outs.append(model(torch.tensor([[token]]), state, logits="last").logits[0])
        outs.append(model(torch.tensor([[8, 8]]), snap, logits="all").logits[0])
    return torch.cat(outs)


def run_rank(rank: int, world: int, port: int, checkpoint: str, out_dir: str) -> None:
    from deepfim.engine.model.loader import load_model
    from deepfim.engine.model.parallel import ParallelLayout
    from deepfim.engine.serving.distributed import DistributedModel, follow

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        results: dict = {}
        for name, tp, ep in LAYOUTS:
            model = load_model(checkpoint, layout=ParallelLayout(rank, world, tp, ep))
            results[name] = prefill_and_decode(model)
            results[f"{name} heads"] = model.layers[1].attn.n_heads
            results[f"{name} experts"] = model.layers[1].ffn.w1.shape[0]
        model = load_model(checkpoint, layout=ParallelLayout(rank, world, 2, 2))
        if rank == 0:
            distributed = DistributedModel(model)
            try:
                results["served"] = serve_prompts(distributed, Path(checkpoint))
                results["rewound"] = rewind_and_continue(distributed)
            finally:
                distributed.close()
        else:
            results["followed"] = follow(model)
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()
