"""Editing traces on a real repository: where a user presses Enter in a file they just opened,
and a stretch of real code (a function body of the repository) removed and typed back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from deepfim.bench.corpus import copy_eval_repo, copy_package
from deepfim.bench.lsp_client import Answer, Editor, gaps_ms, keystrokes


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _enter_here(lines: list[str], i: int) -> bool:
    """Line i is code inside a block, followed by more code at the same indentation (pressing
    Enter at its end opens a new statement)."""
    line, nxt = lines[i], lines[i + 1]
    body = line.strip()
    return (_indent(line) >= 4 and bool(body) and not body.startswith(("#", "@"))
            and not body.endswith(("\\", ",", "(", "[")) and bool(nxt.strip()) and _indent(nxt) == _indent(line)
            and '"""' not in line + nxt)  # fmt: skip


def enter_offset(text: str, fraction: float) -> tuple[int, str] | None:
    """(offset at the end of a line, the newline + indentation to type there) for the first
    line at or after `fraction` of the file where Enter opens a new statement."""
    lines = text.split("\n")
    for i in range(int(len(lines) * fraction), len(lines) - 1):
        if _enter_here(lines, i):
            offset = sum(len(x) + 1 for x in lines[:i]) + len(lines[i])
            return offset, "\n" + " " * _indent(lines[i])
    return None


OUTSIDE_REPO = "boltons"  # 61 Python files, 1.1 MB: some twenty times the repository part


def replay_workspace(ctx, tag: str, **options) -> tuple[str, Path, list[Path], dict]:
    """(what it is, root, usable files, server options) of the workspace the traces replay: in a
    full run a private copy of a real repository outside the embedded model's training corpus
    (`OUTSIDE_REPO`, fetched from PyPI once), in a quick one (CI size, no download, figures not
    claims) CPython's `importlib`, with small budgets."""
    if ctx.quick:
        root, what = copy_package("importlib", ctx.tmp / f"{tag}-ws"), "CPython Lib/importlib (quick)"
    else:
        root = copy_eval_repo(OUTSIDE_REPO, ctx.tmp / f"{tag}-ws")
        what = f"{OUTSIDE_REPO} (PyPI sdist, outside the training corpus)"
    options = {"mode": "instant", **options}
    if ctx.quick:
        options.update(repositoryBudget=2048, contextBudget=1024, maxTokens=16)
    if ctx.checkpoint:
        options["checkpoint"] = str(ctx.checkpoint)
    return what, root, python_files(root), options


def python_files(root: Path, min_lines: int = 40) -> list[Path]:
    """The repository's Python files with room for a trace, in a fixed order."""
    out = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        lines = text.split("\n")
        places = sum(_enter_here(lines, i) for i in range(len(lines) // 2, len(lines) - 1))
        if len(lines) >= min_lines and places >= 4:  # the traces press Enter up to three times past the middle
            out.append(path)
    return out


def body_to_type(text: str, chars: int) -> tuple[str, int, str]:
    """(document without the typed code, cursor offset, the code to type): the body of the
    first function past the middle of the file whose first `chars` characters are whole lines."""
    lines = text.split("\n")
    for i in range(len(lines) // 2, len(lines) - 2):
        if lines[i].lstrip().startswith("def ") and lines[i].rstrip().endswith(":"):
            body, j = [], i + 1
            while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > _indent(lines[i])):
                body.append(lines[j])
                if sum(len(b) + 1 for b in body) >= chars:
                    break
                j += 1
            typed = "\n" + "\n".join(body)
            if len(typed.strip()) < 8:
                continue
            cut = sum(len(x) + 1 for x in lines[: i + 1]) - 1  # end of the def line
            return text[:cut] + text[cut + len(typed) :], cut, typed
    raise ValueError("no function body to type in this file")


async def open_and_enter(
    editor: Editor, path: Path, fraction: float = 0.5, invoked: bool = False, pause_s: float = 0.0
) -> Answer:
    """Opens the file, presses Enter in the middle of it and asks for a completion: the
    latency runs from the didOpen; with `pause_s` (the user reads first), from the Enter."""
    text = path.read_text(encoding="utf-8")
    offset, key = enter_offset(text, fraction)
    sent = time.perf_counter()
    uri = editor.open(path, text)
    if pause_s:
        await asyncio.sleep(pause_s)
        sent = time.perf_counter()
    offset = editor.insert(uri, offset, key)
    return await editor.complete(uri, offset, invoked=invoked, sent=sent)


async def open_rest_and_type(
    editor: Editor, path: Path, pause_s: float, key: str | None = None, fraction: float = 0.5
) -> Answer:
    """Opens the file, puts the cursor at the end of a line in the middle of it (the client
    reports where it rests: `deepfim/cursor`), pauses `pause_s` as a user reading, then presses
    Enter there (or types `key`) and asks; the latency runs from the key."""
    text = path.read_text(encoding="utf-8")
    offset, enter = enter_offset(text, fraction)
    uri = editor.open(path, text)
    editor.rest_cursor(uri, offset)
    await asyncio.sleep(pause_s)
    sent = time.perf_counter()
    offset = editor.insert(uri, offset, enter if key is None else key)
    return await editor.complete(uri, offset, sent=sent)


async def enter_again(editor: Editor, path: Path, fraction: float, invoked: bool = False) -> Answer:
    """In a file already open: Enter at another line, then a completion (latency from the edit)."""
    uri = path.as_uri()
    text = editor.docs[uri][0]
    found = next((f for f in (enter_offset(text, x) for x in (fraction, 0.5, 0.25, 0.0)) if f is not None), None)
    if found is None:
        raise ValueError(f"{path}: no line left to press Enter at")
    sent = time.perf_counter()
    offset = editor.insert(uri, *found)
    return await editor.complete(uri, offset, invoked=invoked, sent=sent)


async def type_code(editor: Editor, path: Path, chars: int, median_gap_ms: float, seed: int) -> list[Answer]:
    """Removes a function body from the file, opens it, and types the body back key by key:
    each key is a didChange and an automatic completion; a key that arrives before the previous
    answer cancels that request (`$/cancelRequest`), as editors do."""
    doc, offset, typed = body_to_type(path.read_text(encoding="utf-8"), chars)
    uri = editor.open(path, doc)
    await editor.complete(uri, offset)  # the open itself (timed by the file-open trace, not here)
    keys = keystrokes(typed)
    answers: list[Answer] = []
    pending = None
    for key, gap in zip(keys, gaps_ms(keys, median_gap_ms, seed), strict=True):
        if pending is not None and not pending[2].done():
            editor.cancel(pending[0])
        sent = time.perf_counter()
        offset = editor.insert(uri, offset, key)
        pending = editor.request(uri, offset, sent=sent)
        answers.append(pending[1])
        await asyncio.sleep(gap / 1000)
    if pending is not None:
        await asyncio.gather(pending[2], return_exceptions=True)
    return answers
