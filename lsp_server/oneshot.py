"""`deepfim complete FILE:LINE:COL`: the language server's pipeline without an editor.

Loads the engine, indexes the workspace, completes once at the cursor and reports the
completion with its timings (as text, or one JSON object).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from deepfim.engine.api import Mode
from deepfim.engine.backends import BackendFactory, make_backend
from deepfim.lsp_server.backend_session import BackendSession, spec_for
from deepfim.lsp_server.context_source import ContextSource
from deepfim.lsp_server.editor_settings import Settings
from deepfim.lsp_server.modes import preset_for
from deepfim.lsp_server.pipeline import CompletionInput, CompletionPipeline


@dataclass(frozen=True)
class Location:
    path: Path
    line: int  # 1-based
    column: int  # 1-based, in characters


def parse_location(text: str) -> Location:
    """Parse FILE:LINE:COL (1-based); raises ValueError naming the bad part."""
    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not parts[0]:
        raise ValueError(f"expected FILE:LINE:COL, got {text!r}")
    path, line, column = parts
    if not line.isdigit() or int(line) < 1:
        raise ValueError(f"line must be a positive integer, got {line!r} in {text!r}")
    if not column.isdigit() or int(column) < 1:
        raise ValueError(f"column must be a positive integer, got {column!r} in {text!r}")
    return Location(Path(path), int(line), int(column))


def cursor_offset(text: str, line: int, column: int) -> int:
    """String offset of a 1-based line and column; the column may be one past the line end."""
    lines = text.split("\n")
    if line > len(lines):
        raise ValueError(f"line {line} is past the end of the file ({len(lines)} lines)")
    content = lines[line - 1].removesuffix("\r")
    if column > len(content) + 1:
        raise ValueError(f"column {column} is past the end of line {line} ({len(content)} characters)")
    return sum(len(ln) + 1 for ln in lines[: line - 1]) + column - 1


def complete_location(
    location: Location,
    workspace: str | Path | None,
    settings: Settings,
    mode: str,
    factory: BackendFactory = make_backend,
) -> dict:
    """Complete at `location`; returns the report printed by `deepfim complete`."""
    path = location.path.resolve()
    text = path.read_text(encoding="utf-8")
    offset = cursor_offset(text, location.line, location.column)
    root = Path(workspace).resolve() if workspace else Path.cwd().resolve()
    if not path.is_relative_to(root):
        root = path.parent

    started = time.perf_counter()
    session = BackendSession.load(spec_for(settings), factory)
    load_ms = (time.perf_counter() - started) * 1000
    try:
        source = ContextSource(root)
        started = time.perf_counter()
        index = source.scan()
        index_ms = (time.perf_counter() - started) * 1000
        preset = preset_for(mode, settings)
        # asked for on the command line: an explicit request, never hidden by the confidence gate
        inp = CompletionInput(path, "", text[:offset], text[offset:], invoked=True)
        pipeline = CompletionPipeline()
        try:
            outcome = asyncio.run(pipeline.complete(inp, preset, session, source))
        finally:
            pipeline.executor.shutdown(wait=False)
            source.close()
    finally:
        session.close()
    return {
        "location": {"file": str(location.path), "line": location.line, "column": location.column},
        "completion": outcome.items[0] if outcome.items else "",
        "candidates": outcome.items,
        "mode": mode,
        "extent": outcome.extent,
        "finish_reason": outcome.finish_reason,
        "model": session.spec.describe(Mode(mode)),
        "context": {"source": outcome.context_source, "files": outcome.context_files, "index": index},
        "timings": outcome.timings.as_dict(),
        "load_ms": round(load_ms, 1),
        "index_ms": round(index_ms, 1),
    }


def format_report(report: dict) -> str:
    t = report["timings"]
    loc = report["location"]
    summary = (
        f"-- {loc['file']}:{loc['line']}:{loc['column']} · {report['mode']} · {report['extent']}-line · "
        f"{t['total_ms']:.1f} ms (context {t['context_ms']:.1f}, prefill {t['prefill_ms']:.1f}, "
        f"decode {t['decode_ms']:.1f}, post {t['post_ms']:.1f}) · prompt {t['prompt_tokens']} tokens, "
        f"{len(report['context']['files'])} context files · model load {report['load_ms']:.0f} ms"
    )
    return f"{report['completion'] or '(no completion)'}\n{summary}"
