"""`deepfim logits`, `deepfim generate` and `deepfim checksum`: maintainers' views of a checkpoint.

`logits` prints next-token logits at every position (or the last) so a checkpoint can be
checked against another implementation; `generate` runs one FIM completion and streams it;
`checksum` writes (or `--verify`s) the checkpoint's SHA256SUMS manifest (manifest.py), which
loading then verifies.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from deepfim.devices import add_device_arguments


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    if command == "checksum":
        parser.add_argument("directory", type=Path, help="checkpoint directory")
        parser.add_argument("--verify", action="store_true", help="check the manifest instead of writing it")
        return
    parser.add_argument("--checkpoint", type=Path, default=None, help="checkpoint directory (default: embedded model)")
    add_device_arguments(parser)
    if command == "logits":
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--text", help="text to tokenise (special-token strings stay text)")
        source.add_argument("--ids", help="comma-separated token ids")
        parser.add_argument("--last", action="store_true", help="only the last position")
        parser.add_argument("--top", type=int, default=5, help="top-k tokens shown per position (text output)")
        parser.add_argument("--json", action="store_true", help="full logit vectors as JSON")
    else:
        for part, where in (("prefix", "before"), ("suffix", "after")):
            given = parser.add_mutually_exclusive_group()
            given.add_argument(
                f"--{part}", default="", help=f"text {where} the cursor; \\n, \\t, \\r and \\\\ are escapes"
            )
            given.add_argument(
                f"--{part}-file", type=Path, metavar="FILE", help=f"read the text {where} the cursor from FILE as is"
            )
        parser.add_argument("--order", choices=("psm", "spm"), default=None, help="FIM order (default: best supported)")
        parser.add_argument("--max-tokens", type=int, default=64, help="most tokens to generate")
        parser.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (0: greedy)")
        parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling: probability mass kept")
        parser.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
        parser.add_argument("--seed", type=int, default=None, help="seed for reproducible sampling")
        parser.add_argument("--json", action="store_true", help="print one JSON object instead of streaming text")


ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def unescape(text: str) -> str:
    """`\\n`, `\\t`, `\\r` and `\\\\` as a shell user types them in `--prefix`/`--suffix`
    ('def f():\\n    '); any other backslash stays as written."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in ESCAPES:
            out.append(ESCAPES[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def fim_text(args: argparse.Namespace, part: str) -> str:
    """The prefix or suffix: from `--PART-file` verbatim, else `--PART` with escapes."""
    path = getattr(args, f"{part}_file")
    if path is None:
        return unescape(getattr(args, part))
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--{part}-file {path}: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    from deepfim.engine.model.config import ConfigError
    from deepfim.engine.model.loader import CheckpointError
    from deepfim.engine.model.tokenizer import TokenizerError

    try:
        if args.command == "checksum":
            return _checksum(args)
        return _logits(args) if args.command == "logits" else _generate(args)
    except (ConfigError, CheckpointError, TokenizerError, ValueError, OSError) as exc:
        print(f"deepfim {args.command}: {exc}", file=sys.stderr)
        return 2


def _checksum(args: argparse.Namespace) -> int:
    from deepfim.engine.model.manifest import MANIFEST, verify_manifest, write_manifest

    if not args.verify:
        print(f"wrote {write_manifest(args.directory)}")
        return 0
    checked = verify_manifest(args.directory)
    if not checked:
        print(f"deepfim checksum: {args.directory}: no {MANIFEST} to verify", file=sys.stderr)
        return 2
    print(f"{args.directory}: {checked} files match {MANIFEST}")
    return 0


def _load(args: argparse.Namespace):
    from deepfim.engine.serving.generate import load_runner

    return load_runner(args.checkpoint, args.device, args.keep_quantized, args.hot_experts)


def _logits(args: argparse.Namespace) -> int:
    """Needs no tokenizer with --ids (token strings are shown when the checkpoint has one)."""
    import torch

    from deepfim.engine import DEFAULT_MODEL_DIR
    from deepfim.engine.model.device_setup import load_for_device
    from deepfim.engine.model.tokenizer import Tokenizer

    checkpoint = args.checkpoint or DEFAULT_MODEL_DIR
    model = load_for_device(checkpoint, args.device, args.keep_quantized, hot_experts=args.hot_experts)
    has_tokenizer = (Path(checkpoint) / "tokenizer.json").is_file()
    if args.text is not None and not has_tokenizer:
        raise ValueError(f"--text needs {checkpoint}/tokenizer.json; pass token ids with --ids instead")
    tok = Tokenizer.from_file(Path(checkpoint) / "tokenizer.json") if has_tokenizer else None
    if args.ids is not None:
        try:
            ids = [int(x) for x in args.ids.split(",") if x.strip()]
        except ValueError as exc:
            raise ValueError(f"--ids must be comma-separated integers: {exc}") from exc
    else:
        ids = tok.encode(args.text)
    if not ids:
        raise ValueError("no tokens to run")
    vocab = model.args.vocab_size
    if any(not 0 <= i < vocab for i in ids):
        raise ValueError(f"token ids must be in [0, {vocab})")
    with torch.inference_mode():
        tokens = torch.tensor([ids], device=model.embed.weight.device)
        logits = model(tokens, logits="last" if args.last else "all").logits[0].float().cpu()
    positions = range(len(ids) - logits.shape[0], len(ids))
    if args.json:
        json.dump({"ids": ids, "positions": list(positions), "logits": logits.tolist()}, sys.stdout)
        print()
        return 0

    def name(i: int) -> str:
        return repr(tok.id_to_token(i)) if tok is not None else str(i)

    for pos, row in zip(positions, logits, strict=True):
        values, top = row.topk(min(args.top, row.numel()))
        shown = "  ".join(f"{name(int(t))}:{float(v):.4f}" for t, v in zip(top, values, strict=True))
        print(f"{pos:5d} {ids[pos]:6d} {name(ids[pos]):>14} -> {shown}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    import time

    from deepfim.engine.api import SamplingParams
    from deepfim.engine.model.prompt_format import FimOrder, build_fim_prompt
    from deepfim.engine.serving.generate import generate

    prefix, suffix = fim_text(args, "prefix"), fim_text(args, "suffix")  # a bad file fails before the load
    runner = _load(args)
    orders = runner.model.args.fim_orders
    order = FimOrder(args.order or ("spm" if "spm" in orders else "psm"))
    if order.value not in orders:
        raise ValueError(f"--order {order.value}: this checkpoint was trained on {list(orders)}")
    params = SamplingParams(temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens,
                            stop=tuple(args.stop), seed=args.seed)  # fmt: skip
    prompt = build_fim_prompt(runner.tokenizer, prefix, suffix, order)
    t0 = time.perf_counter()
    stream = None if args.json else (lambda _i, text, _mean: print(text, end="", flush=True))
    cand = generate(runner, prompt.ids, params, stream)[0]
    elapsed = (time.perf_counter() - t0) * 1e3
    if args.json:
        print(json.dumps({"completion": cand.text, "tokens": len(cand.token_ids), "finish_reason": cand.finish_reason,
                          "prompt_tokens": len(prompt.ids), "ms": round(elapsed, 1)}))  # fmt: skip
    else:
        print(f"\n[{len(cand.token_ids)} tokens, {cand.finish_reason}, {elapsed:.0f} ms]", file=sys.stderr)
    return 0
