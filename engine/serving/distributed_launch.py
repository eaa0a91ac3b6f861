"""Starting the ranks of a parallel engine: under torchrun, or spawned by `deepfim serve --tp N --ep N`.

Under torchrun every process runs the same command; RANK / WORLD_SIZE / LOCAL_RANK place it
(env.torchrun_ranks) and torch.distributed joins through torchrun's store. Without torchrun,
rank 0 (the command itself) spawns ranks 1 .. N-1 with torch.multiprocessing and they meet on
a free loopback port. Either way rank 0 gets a `Rank0` to load its `DistributedModel` and serve;
every other rank loads its share, `follow`s rank 0's steps until told to stop, and exits.
On CUDA each rank takes `cuda:<local rank>`; the backend is NCCL there, gloo on CPUs.
"""

from __future__ import annotations

import logging
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from deepfim import env
from deepfim.engine.model.parallel import ParallelLayout

log = logging.getLogger(__name__)


@dataclass
class Rank0:
    """Rank 0 of a started group."""

    layout: ParallelLayout
    device: str
    keep_quantized: bool | None
    children: object = None  # torch.multiprocessing ProcessContext of the spawned ranks (None: torchrun's)
    models: list = field(default_factory=list)

    def load(self, checkpoint: str | Path):
        """Rank 0's share of `checkpoint`, wrapped so the other ranks follow its calls."""
        from deepfim.engine.model.device_setup import load_for_device
        from deepfim.engine.serving.distributed import DistributedModel

        model = DistributedModel(load_for_device(checkpoint, self.device, self.keep_quantized, self.layout))
        self.models.append(model)
        return model

    def close(self) -> None:
        """Stops the followers and leaves the group."""
        for model in self.models:
            model.close()
        if self.children is not None:
            self.children.join()
        if dist.is_initialized():
            dist.destroy_process_group()


def _rank_device(device: str, local_rank: int, world: int) -> str:
    if not device.startswith("cuda"):
        return device
    if ":" in device and world > 1:
        raise ValueError(f"--device {device} with several ranks: give --device cuda (rank r takes cuda:<local rank>)")
    return f"cuda:{local_rank}"


def _backend(device: str) -> str:
    return "nccl" if device.startswith("cuda") else "gloo"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawned_rank(index: int, world: int, port: int, tp: int, ep: int, device: str, keep_quantized, checkpoint) -> None:
    """A rank spawned by rank 0 (torch.multiprocessing numbers them from 0: rank = index + 1)."""
    rank = index + 1
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: rank 0 stops the followers
    rank_device = _rank_device(device, rank, world)
    if rank_device.startswith("cuda"):
        torch.cuda.set_device(torch.device(rank_device))
    dist.init_process_group(_backend(device), init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    _follow(ParallelLayout(rank, world, tp, ep), rank_device, keep_quantized, checkpoint)


def _follow(layout: ParallelLayout, device: str, keep_quantized, checkpoint) -> None:
    from deepfim.engine.model.device_setup import load_for_device
    from deepfim.engine.serving.distributed import follow

    try:
        steps = follow(load_for_device(checkpoint, device, keep_quantized, layout))
        log.info("rank %d: rank 0 stopped after %d steps", layout.rank, steps)
    finally:
        dist.destroy_process_group()


def start(tp: int, ep: int, device: str, keep_quantized: bool | None, checkpoint: str | Path) -> Rank0 | None:
    """Joins (or creates) the group. Returns rank 0's handle; other ranks follow and return None."""
    ranks = env.torchrun_ranks()
    if ranks is not None:
        rank, world, local = ranks
        if max(tp, ep) not in (1, world):
            raise ValueError(f"--tp {tp} --ep {ep} under torchrun with {world} processes (use 1 or {world})")
        rank_device = _rank_device(device, local, world)
        if rank_device.startswith("cuda"):
            torch.cuda.set_device(torch.device(rank_device))
        dist.init_process_group(_backend(device))
        layout = ParallelLayout(rank, world, tp, ep)
        if rank:
            _follow(layout, rank_device, keep_quantized, checkpoint)
            return None
        return Rank0(layout, rank_device, keep_quantized)
    import torch.multiprocessing as mp

    world = max(tp, ep)
    layout = ParallelLayout(0, world, tp, ep)  # checks tp / ep before anything starts
    port = _free_port()
    children = mp.start_processes(_spawned_rank, args=(world, port, tp, ep, device, keep_quantized, str(checkpoint)),
                                  nprocs=world - 1, join=False, start_method="spawn")  # fmt: skip
    dist.init_process_group(_backend(device), init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=world)
    return Rank0(layout, _rank_device(device, 0, world), keep_quantized, children)
