"""How `deepfim context` shows a packed prompt: a segment table, then each segment's text.

The text is the prompt decoded segment by segment with special tokens written out, so what
is printed is exactly what the model reads; segment boundaries are the token offsets the
engine's prefix cache works with.
"""

from __future__ import annotations

import json

from deepfim.context.packer import PackResult
from deepfim.engine.model.tokenizer import Tokenizer


def render_text(result: PackResult, tok: Tokenizer, location: str, segments_only: bool = False) -> str:
    prompt = result.prompt
    tiers = {inc.start: inc for inc in result.included}
    lines = [
        f"deepfim context {location}: {len(prompt):,} of {result.budget:,} tokens, {prompt.order.value.upper()}, "
        f"{len(result.included)} context files, packed in {result.elapsed_ms:.1f} ms",
        f"stable prefix: {result.stable_tokens:,} tokens survive a cursor move within this file",
        "",
        f"{'#':>3} {'start':>9} {'end':>9} {'tokens':>8}  {'kind':<11} {'tier':<10} {'path':<40} why",
    ]
    for i, seg in enumerate(prompt.segments):
        inc = tiers.get(seg.start)
        tier = inc.tier if inc is not None and seg.kind in ("file", "summary") else ""
        lines.append(
            f"{i:>3} {seg.start:>9,} {seg.end:>9,} {seg.num_tokens:>8,}  {seg.kind:<11} {tier:<10} "
            f"{seg.path or '-':<40} {seg.reason}"
        )
    if not segments_only:
        for i, seg in enumerate(prompt.segments):
            title = f" segment {i}: {seg.kind} {seg.path or ''} [{seg.start:,}, {seg.end:,}) "
            lines += ["", f"{title:─^100}", tok.decode(prompt.ids[seg.start : seg.end])]
    return "\n".join(lines)


def render_json(result: PackResult, tok: Tokenizer, location: str) -> str:
    prompt = result.prompt
    return json.dumps(
        {
            "location": location,
            "budget": result.budget,
            "tokens": len(prompt),
            "order": prompt.order.value,
            "elapsed_ms": round(result.elapsed_ms, 3),
            "stable_tokens": result.stable_tokens,
            "prefix_truncated": result.prefix_truncated,
            "suffix_truncated": result.suffix_truncated,
            "segments": [
                {
                    "kind": seg.kind,
                    "start": seg.start,
                    "end": seg.end,
                    "path": seg.path,
                    "reason": seg.reason,
                    "text": tok.decode(prompt.ids[seg.start : seg.end]),
                }
                for seg in prompt.segments
            ],
            "included": [
                {
                    "path": inc.path,
                    "form": inc.form,
                    "tokens": inc.tokens,
                    "score": inc.score,
                    "tier": inc.tier,
                    "reasons": inc.reasons,
                }
                for inc in result.included
            ],
        },
        indent=2,
        ensure_ascii=False,
    )
