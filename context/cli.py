"""`deepfim index [DIR]` and `deepfim context FILE:LINE:COL`.

`index` scans a workspace (with a progress bar on stderr), tokenizes every file once so
later prompts are fast, and prints files, definitions and bytes per language, skipped files,
import edges, total tokens and timings. `context` prints the exact prompt the language
server would send for a cursor (its defaults, its code path): every segment's token range,
kind, path and why it is there, then the decoded text of each segment (special tokens shown
as written).

Both read the tokenizer of `--tokenizer FILE`, else `--checkpoint DIR`/tokenizer.json, else
the embedded model's (`deepfim.engine.DEFAULT_MODEL_DIR`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from deepfim.context.render import render_json, render_text
from deepfim.context.settings import ContextSettings


class CliError(Exception):
    """A user error: printed without a traceback, exit status 2."""


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    if command == "index":
        parser.add_argument("dir", nargs="?", default=".", type=Path, help="workspace root (default: .)")
        parser.add_argument("--json", action="store_true", help="print statistics as JSON")
        parser.add_argument("--no-tokens", action="store_true", help="skip tokenizing (no tokenizer needed)")
        parser.add_argument("--rebuild", action="store_true", help="ignore the cached index")
    else:
        parser.add_argument("location", help="FILE:LINE:COL, 1-based (COL counts characters)")
        parser.add_argument(
            "--workspace", "--root", dest="root", type=Path, metavar="DIR",
            help="workspace root, as for `deepfim complete` (default: the enclosing git repository)",
        )  # fmt: skip
        parser.add_argument(
            "--mode", choices=["instant", "expert"], default="instant", help="whose prompt (default: %(default)s)"
        )
        parser.add_argument(
            "--context-budget", type=int, help="tokens besides the repository part (default: the language server's)"
        )
        parser.add_argument(
            "--repository-budget", type=int, help="tokens of the repository part (default: the checkpoint's profile)"
        )
        parser.add_argument(
            "--level", choices=["none", "file", "repository"], default="repository",
            help="the window only, + the cursor file, + the repository (default: %(default)s)",
        )  # fmt: skip
        parser.add_argument("--json", action="store_true", help="print segments, files and texts as JSON")
        parser.add_argument("--segments-only", action="store_true", help="print the segment table, not the text")
    parser.add_argument("--tokenizer", type=Path, help="tokenizer.json to count tokens with")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint directory whose tokenizer.json to use")
    parser.add_argument("--max-file-bytes", type=int, default=ContextSettings.max_file_bytes, help="skip larger files")


def run(args: argparse.Namespace) -> int:
    try:
        return _index(args) if args.command == "index" else _context(args)
    except CliError as exc:
        print(f"deepfim {args.command}: {exc}", file=sys.stderr)
        return 2


def load_tokenizer(tokenizer: Path | None, checkpoint: Path | None):
    """The tokenizer named on the command line, else the embedded model's; CliError if none."""
    from deepfim.engine import DEFAULT_MODEL_DIR
    from deepfim.engine.model.tokenizer import Tokenizer, TokenizerError

    if tokenizer is not None:
        path, what = tokenizer, "--tokenizer"
    elif checkpoint is not None:
        path, what = checkpoint / "tokenizer.json", "--checkpoint"
    else:
        path, what = DEFAULT_MODEL_DIR / "tokenizer.json", "the embedded model"
    if not path.is_file():
        hint = "" if what != "the embedded model" else " (not installed); pass --tokenizer FILE or --checkpoint DIR"
        raise CliError(f"no tokenizer: {path} does not exist ({what}){hint}")
    try:
        return Tokenizer.from_file(path)
    except TokenizerError as exc:
        raise CliError(str(exc)) from exc


def _settings(args) -> ContextSettings:
    try:
        return ContextSettings(max_file_bytes=args.max_file_bytes)
    except ValueError as exc:
        raise CliError(str(exc)) from exc


def _progress(description: str):
    """A rich progress bar on stderr (silent when stderr is not a terminal) and its callback."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=Console(stderr=True), transient=True, disable=not sys.stderr.isatty(),
    )  # fmt: skip
    task = bar.add_task(description, total=None)
    return bar, lambda done, total: bar.update(task, completed=done, total=total)


def _index(args) -> int:
    from deepfim.context.workspace import Workspace

    if not args.dir.is_dir():
        raise CliError(f"{str(args.dir)!r} is not a directory")
    tok = None if args.no_tokens else load_tokenizer(args.tokenizer, args.checkpoint)
    ws = Workspace(args.dir, settings=_settings(args))
    if args.rebuild:
        ws.cache.path.unlink(missing_ok=True)
    bar, callback = _progress("indexing")
    with bar:
        t0 = time.perf_counter()
        stats = ws.scan(progress=callback)
        index_s = time.perf_counter() - t0
    tokens, tokens_s = None, 0.0
    if tok is not None:
        bar, callback = _progress("tokenizing")
        with bar:
            t0 = time.perf_counter()
            tokens = ws.prepare_tokens(tok, progress=callback)
            tokens_s = time.perf_counter() - t0
    report = {
        "root": str(ws.root),
        "cache": str(ws.cache.directory),
        **asdict(stats),
        "tokens": tokens,
        "tokenizer": None if tok is None else tok.source,
        "index_seconds": round(index_s, 3),
        "tokens_seconds": round(tokens_s, 3),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"deepfim index {ws.root}")
    print(f"{'language':<12} {'files':>7} {'definitions':>12} {'bytes':>14}")
    for lang, count in stats.files_by_language.items():
        defs, size = stats.definitions_by_language.get(lang, 0), stats.bytes_by_language.get(lang, 0)
        print(f"{lang:<12} {count:>7,} {defs:>12,} {size:>14,}")
    print(f"{'total':<12} {stats.files:>7,} {stats.definitions:>12,} {stats.bytes:>14,}")
    skipped = ", ".join(f"{reason} {count}" for reason, count in stats.skipped.items()) or "none"
    print(f"skipped: {skipped}")
    print(f"import edges: {stats.imports:,}")
    if tokens is not None:
        print(f"tokens: {tokens:,} (all files whole; {tok.source})")
    print(f"time: index {index_s:.2f} s ({stats.parsed:,} parsed, {stats.reused:,} cached), tokens {tokens_s:.2f} s")
    print(f"cache: {ws.cache.directory}")
    return 0


def parse_location(location: str) -> tuple[Path, int, int]:
    """FILE:LINE:COL -> (file, line, col), 1-based; ValueError names a malformed part."""
    parts = location.rsplit(":", 2)
    if len(parts) != 3:
        raise CliError(f"location {location!r} is not FILE:LINE:COL")
    file, line, col = parts
    if not (line.isdigit() and col.isdigit() and int(line) >= 1 and int(col) >= 1):
        raise CliError(f"location {location!r}: LINE and COL must be positive integers")
    return Path(file), int(line), int(col)


def split_at(text: str, line: int, col: int, file: Path) -> tuple[str, str]:
    """The text before and after 1-based (line, col); col may be one past the line's end."""
    lines = text.split("\n")
    if line > len(lines):
        raise CliError(f"{file}: line {line} is past the end of the file ({len(lines)} lines)")
    if col > len(lines[line - 1]) + 1:
        raise CliError(f"{file}:{line}: column {col} is past the end of the line ({len(lines[line - 1])} characters)")
    offset = sum(len(x) + 1 for x in lines[: line - 1]) + col - 1
    return text[:offset], text[offset:]


def _find_root(file: Path) -> Path:
    for parent in file.resolve().parents:
        if (parent / ".git").exists():
            return parent
    cwd = Path.cwd().resolve()
    return cwd if cwd in file.resolve().parents else file.resolve().parent


def _context(args) -> int:
    """The prompt the language server would send at the location (same defaults, same code)."""
    from deepfim.context.prompt_builder import ContextLevel, PromptSpec
    from deepfim.engine import DEFAULT_MODEL_DIR
    from deepfim.engine.model.config import ConfigError, ModelArgs
    from deepfim.engine.model.serving_profile import ServingProfile
    from deepfim.lsp_server.context_source import ContextSource, PrivateFile
    from deepfim.lsp_server.editor_settings import Settings
    from deepfim.lsp_server.modes import preset_for

    file, line, col = parse_location(args.location)
    if not file.is_file():
        raise CliError(f"{str(file)!r} is not a file")
    root = (args.root or _find_root(file)).resolve()
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {file}: {exc}") from exc
    prefix, suffix = split_at(text, line, col, file)
    tok = load_tokenizer(args.tokenizer, args.checkpoint)
    checkpoint = args.checkpoint or DEFAULT_MODEL_DIR
    try:
        profile = ServingProfile.for_checkpoint(checkpoint, ModelArgs.from_file(checkpoint).fim_orders)
        defaults = Settings()
        preset = preset_for(args.mode, defaults)
        spec = PromptSpec.for_profile(
            profile, args.context_budget or preset.context_budget,
            args.repository_budget if args.repository_budget is not None else preset.repository_budget,
            preset.scale, ContextLevel(args.level),
        )  # fmt: skip
    except (ConfigError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    source = ContextSource(root)
    bar, callback = _progress("indexing")
    with bar:
        source.scan(callback)
    try:
        source.served = source.repository_part(tok, spec.budget.repository)
        packed = source.pack(tok, file.resolve(), prefix, suffix, spec)
    except (PrivateFile, ValueError) as exc:
        raise CliError(str(exc)) from exc
    finally:
        source.close()
    if args.json:
        print(render_json(packed.built, tok, args.location))
    else:
        print(render_text(packed.built, tok, args.location, args.segments_only))
    return 0
