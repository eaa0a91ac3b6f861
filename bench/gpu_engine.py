"""The engine on a GPU (Triton kernels) against the same engine on the CPU (torch references).

Loads one checkpoint (default: the embedded model) on both devices, prefills the same random
prompt and decodes greedily; prints the max |logits difference| of the prefill and of each decode
step, whether the greedy tokens agree, and GPU prefill tok/s and decode ms/token (medians).
A GPU-only numerical problem in the kernels, as the engine combines them, shows up here. Three
GPU variants: the fp32 model moved to the GPU; what `--device cuda` loads (device_setup.py: bf16
matrices, FP8/FP4 kept quantized); and that with decode through CUDA graphs (cuda_graph.py).

    .venv/bin/python -m deepfim.bench.gpu_engine [--checkpoint DIR] [--prompt 600] [--decode 32]

Without CUDA it prints a message and exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.model.cuda_graph import GraphedDecode
from deepfim.engine.model.device_setup import load_for_device
from deepfim.engine.model.loader import load_model


def run(model, ids: torch.Tensor, n_decode: int, sync, step=None) -> tuple[torch.Tensor, list, float, list[float]]:
    """`step(token, state) -> logits` decodes (default: the model's forward)."""
    step = step or (lambda token, state: model(token, state, logits="last").logits)
    state = model.new_state()
    with torch.inference_mode():
        sync()
        t0 = time.perf_counter()
        prefill = model(ids, state, logits="last").logits[0, -1].float().cpu()
        sync()
        prefill_s = time.perf_counter() - t0
        token, steps, times = prefill.argmax().view(1, 1), [], []
        for _ in range(n_decode):
            t0 = time.perf_counter()
            logits = step(token.to(ids.device), state)[0, -1].float()
            sync()
            times.append(time.perf_counter() - t0)
            steps.append(logits.cpu())
            token = logits.argmax().view(1, 1)
    return prefill, steps, prefill_s, times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(DEFAULT_MODEL_DIR))
    p.add_argument("--prompt", type=int, default=600)
    p.add_argument("--decode", type=int, default=32)
    a = p.parse_args()
    if not torch.cuda.is_available():
        print("gpu_engine: no CUDA device here")
        return 0
    cpu_model = load_model(a.checkpoint)
    ids = torch.randint(0, cpu_model.args.vocab_size, (1, a.prompt), generator=torch.Generator().manual_seed(0))
    ref_prefill, ref_steps, _, _ = run(cpu_model, ids, a.decode, lambda: None)
    print(f"{torch.cuda.get_device_name()}: {a.checkpoint}, prompt {a.prompt} tokens, {a.decode} greedy steps")
    device_model = load_for_device(a.checkpoint, "cuda")
    graphed = GraphedDecode(device_model)
    variants = (
        ("fp32 model on the GPU", load_model(a.checkpoint).cuda(), None),
        ("--device cuda", device_model, None),
        ("--device cuda, CUDA graphs", device_model, lambda token, state: graphed(token, state, "last")[0]),
    )
    for label, gpu_model, step in variants:
        run(gpu_model, ids.cuda(), 4, torch.cuda.synchronize, step)  # compile the kernels for these shapes
        gpu_prefill, gpu_steps, prefill_s, times = run(gpu_model, ids.cuda(), a.decode, torch.cuda.synchronize, step)
        step_err = [(g - r).abs().max().item() for g, r in zip(gpu_steps, ref_steps, strict=True)]
        agree = sum(int(g.argmax() == r.argmax()) for g, r in zip(gpu_steps, ref_steps, strict=True))
        print(f"[{label}] prefill logits max |gpu - cpu| {(gpu_prefill - ref_prefill).abs().max().item():.2e}; "
              f"decode max {max(step_err):.2e} (median {statistics.median(step_err):.2e}); greedy tokens agree "
              f"{agree}/{a.decode}; prefill {a.prompt / prefill_s:.0f} tok/s, decode "
              f"{statistics.median(times) * 1e3:.2f} ms/token median", flush=True)  # fmt: skip
    print(f"CUDA graph capture: {graphed.failed or 'ok'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
