"""FIM prompt layout shared by the context packer, the engine, training and evaluation.

One layout for every checkpoint (the embedded model is trained on exactly this)::

    BOS
    <｜begin▁of▁repo▁name｜>repo<｜end▁of▁repo▁name｜>                      (optional)
    <｜begin▁of▁file▁name｜>path<｜end▁of▁file▁name｜><｜begin▁of▁file｜>text<｜end▁of▁file｜>   (0..n)
    <｜begin▁of▁file▁name｜>cursor path<｜end▁of▁file▁name｜><｜begin▁of▁file｜>
    PSM: <｜fim▁begin｜>prefix<｜fim▁hole｜>suffix<｜fim▁end｜>          → middle EOS
    SPM: <｜fim▁begin｜><｜fim▁hole｜>suffix<｜fim▁end｜>prefix          → middle EOS

PSM is DeepSeek's documented order. SPM puts the suffix first so that typing at the cursor
only *appends* tokens (the prefix is last): the engine's prefix cache then recomputes only
the keystroke, never the suffix. A checkpoint declares the orders it was trained on in its
config (`fim_orders`); V4 checkpoints are PSM-only.

A context file too big for the budget may appear as its *summary* instead of its text:
the same markers around its import lines and definition signatures with bodies elided
(``def f(x): ...``, ``int f(int x) { ... }``). Its segment kind is "summary" instead of
"file"; the token layout is identical (`file_segment_ids` with the summary's ids).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from deepfim.engine.model.tokenizer import Tokenizer


class FimOrder(StrEnum):
    PSM = "psm"
    SPM = "spm"


@dataclass(frozen=True)
class PromptSegment:
    """A contiguous token range of a prompt and why it is there (shown by `deepfim context`)."""

    kind: str  # "header" | "file" | "summary" | "cursor_file" | "suffix" | "prefix"
    start: int
    end: int
    path: str | None = None
    reason: str = ""

    @property
    def num_tokens(self) -> int:
        return self.end - self.start


@dataclass
class Prompt:
    """Token ids plus the segment boundaries the prefix cache and `deepfim context` use."""

    ids: list[int] = field(default_factory=list)
    segments: list[PromptSegment] = field(default_factory=list)
    order: FimOrder = FimOrder.PSM

    def add(self, kind: str, ids: list[int], path: str | None = None, reason: str = "") -> None:
        start = len(self.ids)
        self.ids.extend(ids)
        self.segments.append(PromptSegment(kind, start, len(self.ids), path, reason))

    def __len__(self) -> int:
        return len(self.ids)


def repo_header_ids(tok: Tokenizer, repo_name: str | None) -> list[int]:
    """BOS plus the repository-name marker when the vocabulary has one."""
    sp = tok.special
    ids = [sp.bos]
    if repo_name and sp.has_repo_markers:
        ids += [sp.repo_name_begin, *tok.encode(repo_name), sp.repo_name_end]
    return ids


def file_header_ids(tok: Tokenizer, path: str) -> list[int]:
    """Opening markers of one file: its name, then the start-of-content marker."""
    sp = tok.special
    if sp.has_file_markers:
        return [sp.file_name_begin, *tok.encode(path), sp.file_name_end, sp.file_begin]
    return tok.encode(f"# file: {path}\n")


def file_segment_ids(tok: Tokenizer, path: str, text_ids: list[int]) -> list[int]:
    """A whole context file: header, content ids (already encoded), end-of-file marker."""
    sp = tok.special
    tail = [sp.file_end] if sp.has_file_markers else tok.encode("\n")
    return [*file_header_ids(tok, path), *text_ids, *tail]


def fim_ids(
    tok: Tokenizer, prefix_ids: list[int], suffix_ids: list[int], order: FimOrder
) -> tuple[list[int], list[int]]:
    """The FIM part after the cursor file's header, as (stable part, volatile part).

    PSM: ([fim_begin, *prefix], [fim_hole, *suffix, fim_end]).
    SPM: ([fim_begin, fim_hole, *suffix, fim_end], [*prefix]) — the prefix is last.
    The split tells the packer which side a keystroke at the cursor changes.
    """
    sp = tok.special
    if order is FimOrder.SPM:
        return [sp.fim_begin, sp.fim_hole, *suffix_ids, sp.fim_end], list(prefix_ids)
    return [sp.fim_begin, *prefix_ids], [sp.fim_hole, *suffix_ids, sp.fim_end]


def build_fim_prompt(
    tok: Tokenizer,
    prefix: str,
    suffix: str,
    order: FimOrder = FimOrder.PSM,
    path: str | None = None,
    context_files: list[tuple[str, str]] = (),
    repo_name: str | None = None,
) -> Prompt:
    """A complete prompt from plain text: for tests, evaluation and the OpenAI-style endpoint.

    The language server uses the context packer instead, which fits files to a token budget.
    """
    prompt = Prompt(order=order)
    prompt.add("header", repo_header_ids(tok, repo_name), reason="BOS and repository name")
    for file_path, text in context_files:
        prompt.add("file", file_segment_ids(tok, file_path, tok.encode(text)), file_path, "given")
    if path is not None:
        prompt.add("cursor_file", file_header_ids(tok, path), path, "file at the cursor")
    stable, volatile = fim_ids(tok, tok.encode(prefix), tok.encode(suffix), order)
    first, second = ("suffix", "prefix") if order is FimOrder.SPM else ("prefix", "suffix")
    prompt.add(first, stable, path, f"text {'after' if first == 'suffix' else 'before'} the cursor")
    prompt.add(second, volatile, path, f"text {'after' if second == 'suffix' else 'before'} the cursor")
    return prompt
