"""Editing traces on a real repository: where a user presses Enter in a file they just opened,
and a stretch of real code (a function body of the repository) removed and typed back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from deepfim.bench.lsp_client import Answer, Editor, gaps_ms, keystrokes


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def enter_offset(text: str, fraction: float) -> tuple[int, str] | None:
    """(offset at the end of a line, the newline + indentation to type there): the first line
    at or after `fraction` of the file that is code inside a block, followed by more code at
    the same indentation (pressing Enter there opens a new statement)."""
    lines = text.split("\n")
    start = int(len(lines) * fraction)
    for i in range(start, len(lines) - 1):
        line, nxt = lines[i], lines[i + 1]
        body = line.strip()
        if (
            _indent(line) >= 4
            and body
            and not body.startswith(("#", "@"))
            and not body.endswith(("\\", ",", "(", "["))
            and nxt.strip()
            and _indent(nxt) == _indent(line)
            and '"""' not in line + nxt
        ):
            offset = sum(len(x) + 1 for x in lines[:i]) + len(line)
            return offset, "\n" + " " * _indent(line)
    return None


def python_files(root: Path, min_lines: int = 40) -> list[Path]:
    """The repository's Python files with room for a trace, in a fixed order."""
    out = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        if text.count("\n") >= min_lines and enter_offset(text, 0.5) is not None:
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


async def open_and_enter(editor: Editor, path: Path, fraction: float = 0.5, invoked: bool = False) -> Answer:
    """Opens the file, presses Enter in the middle of it and asks for a completion: the
    latency runs from the didOpen."""
    text = path.read_text(encoding="utf-8")
    offset, key = enter_offset(text, fraction)
    sent = time.perf_counter()
    uri = editor.open(path, text)
    offset = editor.insert(uri, offset, key)
    return await editor.complete(uri, offset, invoked=invoked, sent=sent)


async def enter_again(editor: Editor, path: Path, fraction: float, invoked: bool = False) -> Answer:
    """In a file already open: Enter at another line, then a completion (latency from the edit)."""
    uri = path.as_uri()
    found = enter_offset(editor.docs[uri][0], fraction)
    if found is None:
        found = enter_offset(editor.docs[uri][0], 0.5)
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
