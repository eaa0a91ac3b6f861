"""state: attention state bytes per token for the real V4-Flash and V4-Pro configurations.

DeepFIM's own layout (bench/state_layout.py mirrors engine/model/state.py; the suite first
checks it byte for byte against `ModelState.nbytes()` after real forwards of the embedded
model) against DeepSeek-V3.2's MLA + DSA indexer cache and a dense GQA model with the same
layer count, at 8K, 128K and 1M tokens. Bytes per token = the whole state / tokens, so the
fixed windows weigh on short contexts.
"""

from __future__ import annotations

import torch

from deepfim.bench import plots
from deepfim.bench.context import BenchContext
from deepfim.bench.report import SuiteResult, Table
from deepfim.bench.state_layout import FLASH, PRO, gqa_state_bytes, v4_fp8_state_bytes, v4_state_bytes, v32_state_bytes
from deepfim.bench.stats import single

LENGTHS = (8192, 131072, 1048576)


def _check_layout(ctx: BenchContext, result: SuiteResult):
    """The layout function against the engine's own state after real forwards."""
    from deepfim.engine import DEFAULT_MODEL_DIR
    from deepfim.engine.model.loader import load_model

    model = load_model(ctx.checkpoint or DEFAULT_MODEL_DIR)
    g = torch.Generator().manual_seed(ctx.seed)
    checks = []
    for chunks in ((1,), (100,), (130, 7), (ctx.pick(300, 1500), 45)):
        state = model.new_state()
        with torch.inference_mode():
            for n in chunks:
                model(torch.randint(0, model.args.vocab_size, (1, n), generator=g), state, logits="last")
        tokens = sum(chunks)
        checks.append((tokens, state.nbytes(), sum(v4_state_bytes(model.args, tokens).values())))
    exact = sum(measured == predicted for _, measured, predicted in checks)
    result.add(
        single(
            "layout_check",
            "layout function == engine's ModelState.nbytes()",
            exact,
            f"of {len(checks)}",
            "prompts of " + ", ".join(str(t) for t, _, _ in checks) + " tokens through the model in "
            "chunks; state bytes measured vs computed from config.json alone",
            runs=len(checks),
            statistic="exact count",
        )
    )
    if exact != len(checks):
        raise AssertionError(f"state layout function disagrees with the engine: {checks}")
    return model.args


def run(ctx: BenchContext, result: SuiteResult) -> None:
    embedded = _check_layout(ctx, result)
    rows, per_token = [], {}

    def row(name: str, fn) -> None:
        values = [fn(t) / t for t in LENGTHS]
        per_token[name] = values
        rows.append([name, *values, fn(LENGTHS[-1]) / 2**30])

    for rel, v32_layers in (("V4-Flash", FLASH), ("V4-Pro", PRO)):
        args = v32_layers
        row(f"{rel}, DeepFIM layout fp32 (CPU)", lambda t, a=args: sum(v4_state_bytes(a, t).values()))
        row(f"{rel}, DeepFIM layout bf16", lambda t, a=args: sum(v4_state_bytes(a, t, 2).values()))
        row(f"{rel}, production FP8 entries", lambda t, a=args: v4_fp8_state_bytes(a, t))
        row(
            f"dense GQA, {args.n_layers} layers, 8 KV heads x 128, bf16",
            lambda t, a=args: gqa_state_bytes(a.n_layers, t),
        )
    row("V3.2 MLA + DSA indexer, 61 layers, FP8", lambda t: v32_state_bytes(61, t))
    row("V3.2 MLA + DSA indexer, 61 layers, bf16", lambda t: v32_state_bytes(61, t, fp8=False))
    row("embedded model (DeepFIM, fp32)", lambda t: sum(v4_state_bytes(embedded, t).values()))
    v32 = per_token["V3.2 MLA + DSA indexer, 61 layers, FP8"][-1]
    for r in rows:
        r.append(f"{100 * r[3] / v32:.1f} %")
    result.tables.append(
        Table(
            "State bytes per token (the issue-14 table)",
            ["model, layout", "B/token at 8K", "B/token at 128K", "B/token at 1M", "GiB at 1M", "vs V3.2 FP8 at 1M"],
            rows,
            "computed exactly from each configuration (v4-model.md §1; V3.2: FlashMLA's 656 B entry + 132 B "
            "indexer key); whole state / tokens, so fixed windows count at short lengths",
        )
    )
    for rel, args in (("flash", FLASH), ("pro", PRO)):
        name = "V4-Flash" if rel == "flash" else "V4-Pro"
        for layout, fn in (
            ("fp8", lambda t, a=args: v4_fp8_state_bytes(a, t)),
            ("fp32", lambda t, a=args: sum(v4_state_bytes(a, t).values())),
        ):
            result.add(
                single(
                    f"{rel}.{layout}.bytes_per_token_1m",
                    f"{name} {layout} state at 1M tokens",
                    fn(LENGTHS[-1]) / LENGTHS[-1],
                    "B/token",
                    "whole state after 1,048,576 tokens / tokens, from the release's configuration",
                    statistic="exact",
                )
            )
        ratio = 100 * v4_fp8_state_bytes(args, LENGTHS[-1]) / v32_state_bytes(61, LENGTHS[-1])
        result.add(
            single(
                f"{rel}.fp8_vs_v32_1m",
                f"{name} FP8 state / V3.2 FP8 state at 1M",
                ratio,
                "%",
                "both FP8 production layouts, same token count (the seed claims about 10 %)",
                statistic="exact",
            )
        )
    series = {k: v for k, v in per_token.items() if "bf16" not in k or "GQA" in k}
    result.plots.append(
        plots.lines(
            ctx.out / "state_bytes.png",
            list(LENGTHS),
            series,
            "attention state per token (whole state / tokens)",
            "context (tokens)",
            "bytes per token",
            logy=True,
        )
    )
