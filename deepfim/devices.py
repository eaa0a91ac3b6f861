"""`--device cpu|cuda[:N]`, `--keep-quantized` and `--hot-experts`: one definition for every command that loads a model
(`complete`, `generate`, `logits`, `eval`, `lsp`, `serve`, `plan`), and the check that a CUDA device
asked for exists, with an error that says why not ("no CUDA device: ...").

Parsing only checks the spelling (no torch import while argparse runs); `resolve_device` checks
the machine when the model is about to be loaded.
"""

from __future__ import annotations

import argparse
import re

DEVICE_RE = re.compile(r"cpu|cuda(:\d+)?")
DEVICE_SPELLING = "cpu, cuda or cuda:N"


class DeviceError(ValueError):
    """A device that this machine does not have."""


def check_device_spelling(value: str) -> str:
    """`value` if it names a device DeepFIM runs on (cpu, cuda, cuda:N), else ValueError naming it."""
    if not isinstance(value, str) or not DEVICE_RE.fullmatch(value.strip()):
        raise ValueError(f"expected {DEVICE_SPELLING}, got {value!r}")
    return value.strip()


def _argparse_device(value: str) -> str:
    try:
        return check_device_spelling(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_device_arguments(parser: argparse.ArgumentParser, quantized: bool = True) -> None:
    """Adds `--device` (default cpu) and, with `quantized`, `--keep-quantized`."""
    parser.add_argument(
        "--device",
        type=_argparse_device,
        default="cpu",
        metavar="DEVICE",
        help="where the model runs: cpu, cuda or cuda:N (on CUDA FP8/FP4 weights stay quantized and "
        "the other matrices are bf16) (default: %(default)s)",
    )
    if quantized:
        parser.add_argument(
            "--keep-quantized",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="keep FP8 linears and FP4 experts in checkpoint form, dequantized inside the kernels "
            "(default: on CUDA, or on the CPU when only that fits its memory)",
        )
        parser.add_argument(
            "--hot-experts",
            type=int,
            default=None,
            metavar="N",
            help="keep the routed experts in (pinned) host memory and N per MoE layer on the device, the most "
            "recently used (single-GPU V4-Flash: about 200 of 256 fit an H200; `deepfim plan` says)",
        )


def resolve_device(value: str):
    """The torch.device for `value`, after checking that this machine has it (DeviceError otherwise)."""
    import torch

    name = check_device_spelling(value)
    if name == "cpu":
        return torch.device("cpu")
    if torch.version.cuda is None:
        raise DeviceError(f"no CUDA device: this torch {torch.__version__} is built without CUDA (asked for {name})")
    if not torch.cuda.is_available():
        raise DeviceError(f"no CUDA device: torch.cuda.is_available() is False (asked for {name}; check the "
                          "driver and CUDA_VISIBLE_DEVICES)")  # fmt: skip
    count = torch.cuda.device_count()
    index = int(name.split(":")[1]) if ":" in name else 0
    if index >= count:
        raise DeviceError(f"no CUDA device: {name} asked for, {count} visible (cuda:0 .. cuda:{count - 1})")
    return torch.device("cuda", index)
