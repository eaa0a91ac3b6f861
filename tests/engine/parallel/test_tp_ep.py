"""Tensor-parallel attention and expert-parallel MoE on 2 gloo processes against one process.

Two spawned ranks load their shares of the tiny random V4 checkpoint (every layer kind, hash and
routed MoE) and run the same prefill and decode steps: logits within 1e-5 of the single process
for TP=2, EP=2 and both; then rank 0 serves prompts through the ordinary runner (prefix cache,
speculative drafts) with rank 1 following its steps: the same tokens as one process.
"""

from __future__ import annotations

import socket

import pytest
import torch
import torch.multiprocessing as mp
from parallel_workers import LAYOUTS, prefill_and_decode, rewind_and_continue, run_rank, serve_prompts

from deepfim.engine.model.loader import load_model
from deepfim.engine.model.parallel import ParallelLayout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _follower(index: int, *args) -> None:  # mp numbers processes from 0; rank 0 is the parent's other child
    run_rank(index, *args)


@pytest.fixture(scope="module")
def two_ranks(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("ranks")
    mp.start_processes(_follower, args=(2, _free_port(), str(tiny_checkpoint), str(out)), nprocs=2,
                       start_method="spawn", join=True)  # fmt: skip
    return [torch.load(out / f"rank{r}.pt") for r in range(2)]


@pytest.mark.parametrize("name", [name for name, _, _ in LAYOUTS])
def test_parallel_logits_match_one_process(two_ranks, tiny_checkpoint, name):
    want = prefill_and_decode(load_model(tiny_checkpoint))
    for rank in two_ranks:
        assert rank[name].shape == want.shape
        assert (rank[name] - want).abs().max() <= 1e-5, (name, (rank[name] - want).abs().max())
    tp, ep = next((tp, ep) for n, tp, ep in LAYOUTS if n == name)
    assert two_ranks[0][f"{name} heads"] == 4 // tp and two_ranks[0][f"{name} experts"] == 8 // ep


def test_rank0_driven_runner_serves_what_one_process_serves(two_ranks, tiny_checkpoint):
    model = load_model(tiny_checkpoint)
    assert two_ranks[0]["served"] == serve_prompts(model, tiny_checkpoint)
    want = rewind_and_continue(model)
    assert (two_ranks[0]["rewound"] - want).abs().max() <= 1e-5
    assert two_ranks[1]["followed"] > 2 * 24  # prefill chunks, decode steps, the rewind


def test_layouts_that_do_not_split_are_named():
    with pytest.raises(ValueError, match="--tp 3: must be 1 or the number of ranks"):
        ParallelLayout(0, 2, tp=3)
    from deepfim.engine.model.config import tiny_args

    with pytest.raises(ValueError, match="n_routed_experts=8 is not divisible by ep=3"):
        ParallelLayout(0, 3, ep=3).check(tiny_args())
