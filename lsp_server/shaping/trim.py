"""Text-level clean-ups of a completion: overlap with the text around the cursor, and
indentation.

- `trim_suffix_overlap`: a completion that re-types what follows the cursor — the rest of
  the line (`)` / `):`) or the next line of code — loses the repeated part.
- `trim_prefix_repeat`: a completion that starts by repeating the cursor's line loses it.
- `fix_indentation`: a first line indented on top of the indentation already typed is
  brought back to the expected level; trailing whitespace and blank tail lines go.
"""

from __future__ import annotations

from deepfim.lsp_server.shaping.extent import CLOSING_CHARS, indent_width

MIN_REPEAT_CHARS = 4


def first_code_line(lines: list[str]) -> str:
    return next((line for line in lines if line.strip()), "")


def trim_suffix_overlap(completion: str, line_prefix: str, line_suffix: str, next_line: str) -> str:
    """Drop what the completion repeats of the text after the cursor.

    Args:
        completion: the completion (newlines normalised to "\\n").
        line_prefix: the cursor's line up to the cursor.
        line_suffix: the cursor's line after the cursor.
        next_line: the first non-blank line after the cursor's line.
    """
    target = (line_suffix if line_suffix.strip() else next_line).strip()
    lines = completion.split("\n")
    if target:
        start_at = 0 if not line_prefix.strip() else 1
        offset = 0
        for k, line in enumerate(lines):
            if k >= start_at and line.strip() == target:
                completion = completion[: max(offset - 1, 0)]
                break
            offset += len(line) + 1
    rest = line_suffix.rstrip()
    if not rest or not completion:
        return completion
    last_start = completion.rfind("\n") + 1
    last = completion[last_start:]
    for k in range(min(len(rest), len(last)), 0, -1):
        overlap = rest[:k]
        if last.endswith(overlap) and (k == len(rest) or all(ch in CLOSING_CHARS for ch in overlap)):
            return completion[: len(completion) - k]
    return completion


def trim_prefix_repeat(completion: str, line_prefix: str) -> str:
    """Remove a restatement of the cursor's line at the start of the completion."""
    typed = line_prefix.strip()
    if len(typed) >= MIN_REPEAT_CHARS and completion.lstrip().startswith(typed):
        rest = completion.lstrip()[len(typed) :]
        return rest.lstrip(" \t") if line_prefix[-1:].isspace() else rest
    return completion


def expected_indent(prefix: str, block_openers: tuple[str, ...]) -> int:
    """Indentation a statement on a fresh line at the end of `prefix` should have."""
    lines = prefix.split("\n")[:-1]
    for line in reversed(lines[-50:]):
        if line.strip():
            width = indent_width(line)
            if line.rstrip().endswith(block_openers):
                return width + _indent_unit(lines)
            return width
    return 0


def _indent_unit(lines: list[str]) -> int:
    widths = sorted({indent_width(line) for line in lines[-200:] if line.strip()} - {0})
    steps = [b - a for a, b in zip([0, *widths], widths, strict=False) if b > a]
    return min(steps) if steps else 4


def fix_indentation(completion: str, line_prefix: str, expected: int, multi_line: bool) -> str:
    """Keep the completion's indentation consistent with what is already typed.

    Args:
        completion: the completion.
        line_prefix: the cursor's line up to the cursor.
        expected: indentation the cursor's statement should have (`expected_indent`).
        multi_line: strip trailing whitespace per line and trailing blank lines.
    """
    if line_prefix and not line_prefix.strip():
        lead = len(completion) - len(completion.lstrip(" \t"))
        typed = indent_width(line_prefix)
        if lead and typed <= expected < typed + indent_width(completion[:lead]):
            completion = completion[lead:]
            completion = " " * (expected - typed) + completion if "\t" not in line_prefix else completion
    if multi_line:
        completion = "\n".join(line.rstrip() for line in completion.split("\n")).rstrip()
    return completion
