"""`deepfim plan`: the memory a checkpoint needs on one device, before loading it.

    deepfim plan --checkpoint DIR --context 65536 --batch 4 --device cuda
    deepfim plan --model v4-flash --device cuda --memory-gib 139      # a shape, without its weights
    deepfim plan --model v4-pro --device cuda --tp 8 --ep 8           # per device of 8
    deepfim plan --model v4-flash --device cuda --hot-experts 192     # experts offloaded to host memory

Prints weights by format, the V4 state for the context and batch, the workspace estimate and the
total (engine/model/memory_plan.py), and exits 3 with the figures when they do not fit the
device's free memory (or `--memory-gib`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from deepfim.devices import add_device_arguments

NOT_FIT = 3


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="checkpoint directory (its config and safetensors headers)")
    source.add_argument("--model", choices=("v4-flash", "v4-pro"), help="a released shape, official FP8/FP4 layout")
    source.add_argument("--config", type=Path, help="a config.json, official FP8/FP4 layout")
    parser.add_argument("--context", type=int, default=16384, help="tokens per sequence")
    parser.add_argument("--batch", type=int, default=1, help="sequences decoded together")
    add_device_arguments(parser)
    parser.add_argument("--tp", type=int, default=1, help="tensor-parallel ranks (1 or the number of ranks)")
    parser.add_argument("--ep", type=int, default=1, help="expert-parallel ranks (1 or the number of ranks)")
    parser.add_argument("--memory-gib", type=float, default=None, help="check against this much memory instead")
    parser.add_argument("--host-memory-gib", type=float, default=None,
                        help="with --hot-experts: check the host against this much memory instead")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")


def run(args: argparse.Namespace) -> int:
    from deepfim.engine.model.config import ConfigError
    from deepfim.engine.model.loader import CheckpointError

    try:
        return _plan(args)
    except (ConfigError, CheckpointError, ValueError, OSError) as exc:
        print(f"deepfim plan: {exc}", file=sys.stderr)
        return 2


def _plan(args: argparse.Namespace) -> int:
    import torch

    from deepfim.devices import DeviceError, resolve_device
    from deepfim.engine.model import memory_plan
    from deepfim.engine.model.checkpoint_formats import official_layout, read_headers
    from deepfim.engine.model.config import ModelArgs
    from deepfim.engine.model.loader import shard_files
    from deepfim.engine.model.parallel import ParallelLayout
    from deepfim.engine.model.v4_configs import known_args

    if args.context < 1 or args.batch < 1:
        raise ValueError(f"--context and --batch must be positive, got {args.context} and {args.batch}")
    if args.checkpoint is not None:
        model_args = ModelArgs.from_file(args.checkpoint)
    else:
        model_args = known_args(args.model) if args.model else ModelArgs.from_file(args.config)
    world = max(args.tp, args.ep)
    layout = ParallelLayout(0, world, args.tp, args.ep) if world > 1 else None
    if layout is not None:
        layout.check(model_args)
    headers = read_headers(shard_files(args.checkpoint)) if args.checkpoint else official_layout(model_args)
    cuda = args.device.startswith("cuda")
    keep = cuda if args.keep_quantized is None else args.keep_quantized
    dtype = torch.bfloat16 if cuda else torch.float32
    plan = memory_plan.plan(model_args, headers, args.device, dtype, keep, args.context, args.batch, layout,
                            args.hot_experts)  # fmt: skip
    if layout is not None:
        plan.device += f" (one of {world}: tp {args.tp}, ep {args.ep})"
    print(json.dumps(plan.as_dict()) if args.json else plan.table())
    available = None if args.memory_gib is None else int(args.memory_gib * memory_plan.GiB)
    try:
        device = resolve_device(args.device)
    except DeviceError as exc:
        if available is None:
            print(f"deepfim plan: {exc}; not checked against device memory (--memory-gib checks a size)",
                  file=sys.stderr)  # fmt: skip
            return 0
        device = torch.device(args.device)
    try:
        host = None if args.host_memory_gib is None else int(args.host_memory_gib * memory_plan.GiB)
        memory_plan.check_fits(plan, device, available, host)
    except memory_plan.MemoryPlanError as exc:
        print(f"deepfim plan: {exc}", file=sys.stderr)
        return NOT_FIT
    return 0
