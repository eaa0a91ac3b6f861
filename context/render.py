"""How `deepfim context` shows a packed prompt: a segment table, then each segment's text.

The text is the prompt decoded segment by segment with special tokens written out, so what
is printed is exactly what the model reads; segment boundaries are the token offsets the
engine's prefix cache works with. The JSON form also carries the token ids.
"""

from __future__ import annotations

import json

from deepfim.context.prompt_builder import BuiltPrompt
from deepfim.engine.model.tokenizer import Tokenizer


def render_text(built: BuiltPrompt, tok: Tokenizer, location: str, segments_only: bool = False) -> str:
    prompt = built.prompt
    lines = [
        f"deepfim context {location}: {len(prompt):,} tokens, {prompt.order.value.upper()}, "
        f"{len(built.repository.files)} repository files, {len(built.evidence)} evidence, "
        f"built in {built.elapsed_ms:.1f} ms",
        f"shared by every cursor file: the first {built.shared_tokens:,} tokens",
        "",
        f"{'#':>3} {'start':>9} {'end':>9} {'tokens':>8}  {'kind':<12} {'path':<40} why",
    ]
    for i, seg in enumerate(prompt.segments):
        span = f"{i:>3} {seg.start:>9,} {seg.end:>9,} {seg.num_tokens:>8,}"
        lines.append(f"{span}  {seg.kind:<12} {seg.path or '-':<40} {seg.reason}")
    if not segments_only:
        for i, seg in enumerate(prompt.segments):
            title = f" segment {i}: {seg.kind} {seg.path or ''} [{seg.start:,}, {seg.end:,}) "
            lines += ["", f"{title:─^100}", tok.decode(prompt.ids[seg.start : seg.end])]
    return "\n".join(lines)


def render_json(built: BuiltPrompt, tok: Tokenizer, location: str) -> str:
    prompt = built.prompt
    return json.dumps(
        {
            "location": location,
            "tokens": len(prompt),
            "order": prompt.order.value,
            "elapsed_ms": round(built.elapsed_ms, 3),
            "shared_tokens": built.shared_tokens,
            "repository_files": [{"path": f.rel, "form": f.form} for f in built.repository.files],
            "evidence": [{"kind": e.kind, "path": e.path, "reason": e.reason} for e in built.evidence],
            "hints": {"receiver": built.hints.receiver, "members": list(built.hints.members)},
            "ids": prompt.ids,
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
        },
        indent=2,
        ensure_ascii=False,
    )
