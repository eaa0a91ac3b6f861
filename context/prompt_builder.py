"""The one prompt builder: every prompt DeepFIM sends (language server, `deepfim complete` and
`deepfim context`, evaluation, training samples) is assembled here.

Layouts (token markers from `engine/model/prompt_format.py`; a checkpoint's `serving.json`
names its layout):

*window* (the embedded model is trained on it; SPM)::

    BOS [repo]  repository part  [cursor file copy]  <cursor file header>
    <fim_begin><fim_hole> suffix <fim_end> far-prefix  evidence*  near-prefix   -> middle

  Exact tokens are visible to a V4 model only inside its 128-token sliding window; farther
  back it sees pooled entries. So the evidence a completion needs most (the members of the
  receiver being typed, signatures of names used nearby, similar code) is put between the
  far and the near prefix: its last tokens fall inside the window, together with the lines
  just before the cursor. Most useful evidence last (nearest).

*files* (DeepSeek's repository-level FIM, for checkpoints trained on nothing else)::

    BOS [repo]  repository part  evidence-as-files*  <cursor file header>
    PSM: <fim_begin> prefix <fim_hole> suffix <fim_end>     SPM: ... suffix <fim_end> prefix

Caching: the repository part is the same for every cursor file (`repository_part.py`); the
copy of the cursor file (when it is not in that part: edited this session, or beyond the
budget) does not depend on the cursor position; then comes the cursor window, cut so that
typing on a line only appends tokens (`window.py`). The engine's prefix cache therefore
recomputes, per keystroke, the typed tokens; per new line, the evidence and near prefix; per
newly opened file, its window (its copy the language server prefills in the background and
leaves out of prompts until then: `lsp_server/copy_prefill.py`). The window's head (header,
suffix, far prefix) does not depend on the evidence: `build_prompt` hands it over (`on_head`)
before gathering the evidence, so the engine prefills it meanwhile, and its end is an anchor.

Context levels (the evaluation's "no context / current file / packed repository"): NONE is
the window alone, FILE adds the cursor file's copy and evidence found in it, REPOSITORY adds
the repository part and evidence from the whole workspace.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from deepfim.context.evidence import CursorText, Evidence, EvidenceOptions, RepoView, gather
from deepfim.context.repository_part import EMPTY, RepositoryPart
from deepfim.context.secrets import redact, redact_split
from deepfim.context.settings import PromptBudget
from deepfim.context.tokens import TokenStore
from deepfim.context.window import CursorWindow, cut_window
from deepfim.engine.api import NameHints
from deepfim.engine.model.prompt_format import FimOrder, Prompt, PromptSegment, fim_ids, repo_header_ids
from deepfim.engine.model.serving_profile import ServingProfile


class Layout(enum.StrEnum):
    WINDOW = "window"
    FILES = "files"


class ContextLevel(enum.StrEnum):
    NONE = "none"
    FILE = "file"
    REPOSITORY = "repository"


@dataclass(frozen=True)
class PromptSpec:
    """What one request's prompt looks like (from the checkpoint's profile and the mode)."""

    layout: Layout = Layout.WINDOW
    order: FimOrder = FimOrder.SPM
    budget: PromptBudget = field(default_factory=PromptBudget)
    level: ContextLevel = ContextLevel.REPOSITORY
    evidence: EvidenceOptions = field(default_factory=EvidenceOptions)
    quantum_lines: int = 16

    def __post_init__(self) -> None:
        if self.layout is Layout.WINDOW and self.order is not FimOrder.SPM:
            raise ValueError("the window layout needs the SPM order (the prefix is last)")

    @classmethod
    def for_profile(
        cls, profile: ServingProfile, context_tokens: int, repository_tokens: int | None = None, scale: int = 1,
        level: ContextLevel = ContextLevel.REPOSITORY,
    ) -> PromptSpec:  # fmt: skip
        """The spec for a checkpoint's profile: `context_tokens` for everything but the repository
        part (`PromptBudget.for_context`), the repository part from the profile unless given, the
        cursor parts `scale` times larger (expert mode)."""
        repository = profile.repository_tokens if repository_tokens is None else repository_tokens
        budget = PromptBudget.for_context(context_tokens, repository)
        if scale > 1:
            budget = budget.scaled(scale)
        return cls(Layout(profile.prompt_layout), FimOrder(profile.fim_order), budget, level)


@dataclass
class CursorFile:
    """The file at the cursor, as the editor holds it."""

    path: str  # as shown in the prompt (workspace-relative)
    prefix: str
    suffix: str
    copy: str | None = None  # the text its copy shows (a snapshot; None: the buffer as it is)
    summary: str = ""  # its imports and signatures, for a copy too big to go whole
    in_repository: bool = False  # the repository part shows it as it is: no copy needed


@dataclass
class BuiltPrompt:
    prompt: Prompt
    hints: NameHints
    evidence: list[Evidence]
    repository: RepositoryPart
    window: CursorWindow
    cursor_path: str = ""
    elapsed_ms: float = 0.0
    copy_text: str | None = None  # the text of the cursor file's copy (redacted), whether shown or left out
    head_end: int | None = None  # window layout: where the far prefix ends (the head, `on_head`)

    def own_ranges(self) -> tuple[tuple[int, int], ...]:
        """Where the prompt shows the cursor file itself (its repository segment or its copy):
        what follows the cursor there is the suffix, so copy drafts never copy from it."""
        return tuple(
            (s.start, s.end) for s in self.prompt.segments
            if s.path == self.cursor_path and s.kind in ("file", "summary", "cursor_copy")
        )  # fmt: skip

    def anchors(self) -> tuple[int, ...]:
        """Where a later prompt resumes: after the part every cursor file shares, after the
        cursor file's copy (the engine keeps its state there), and after the head."""
        return _anchors(self.prompt, self.head_end)

    def copy_end(self) -> int | None:
        """Where the copy of the cursor file ends (None: the prompt has none)."""
        return next((s.end for s in self.prompt.segments if s.kind == "cursor_copy"), None)

    def without_copy(self) -> BuiltPrompt:
        """The same prompt without the cursor file's copy: what the language server sends while
        the engine does not hold that copy yet, as it sends no repository part before it holds
        one (`lsp_server/copy_prefill.py`). Training meets this shape too: a sample whose room
        leaves no copy budget (`engine/training/repo_samples.py`)."""
        copy = next((s for s in self.prompt.segments if s.kind == "cursor_copy"), None)
        if copy is None:
            return self
        n = copy.end - copy.start
        prompt = Prompt(self.prompt.ids[: copy.start] + self.prompt.ids[copy.end :], order=self.prompt.order)
        prompt.segments = [
            s if s.end <= copy.start else replace(s, start=s.start - n, end=s.end - n)
            for s in self.prompt.segments if s is not copy
        ]  # fmt: skip
        return replace(self, prompt=prompt, head_end=None if self.head_end is None else self.head_end - n)

    @property
    def shared_tokens(self) -> int:
        """Tokens before the cursor file's copy or window: shared by every cursor file."""
        return _shared_tokens(self.prompt)


def _shared_tokens(prompt: Prompt) -> int:
    for seg in prompt.segments:
        if seg.kind in ("cursor_copy", "cursor_file"):
            return seg.start
    return len(prompt)


def _anchors(prompt: Prompt, head_end: int | None) -> tuple[int, ...]:
    out = [_shared_tokens(prompt), head_end or 0]
    out += [s.end for s in prompt.segments if s.kind == "cursor_copy"]
    return tuple(sorted(set(a for a in out if 0 < a < len(prompt))))


def build_prompt(
    store: TokenStore,
    spec: PromptSpec,
    cursor: CursorFile,
    repo_name: str | None = None,
    repository: RepositoryPart | None = None,
    repo: RepoView | None = None,
    copy_wanted: Callable[[str], bool] | None = None,
    on_head: Callable[[list[int], tuple[int, ...], bool], None] | None = None,
) -> BuiltPrompt:
    """The prompt for `cursor` (its text is redacted here; every other text arrives redacted).

    `copy_wanted(text)`: whether to put in the cursor file's copy of `text`; the prompt is then
    what `without_copy` makes of the whole one. The language server leaves out a copy the
    engine does not hold yet, and tokenizing a newly opened file's copy for nothing was a third
    of its first prompt's context stage (~30 ms on a 2-core machine).

    `on_head(ids, anchors, has_copy)` (window layout): called with the prompt's head (everything
    up to the far prefix, which does not depend on the evidence) before the evidence is
    gathered, so the engine can prefill it meanwhile; the whole prompt then resumes at its end
    (`head_end`, one of its anchors). `ids` is the prompt's own list, growing after the call:
    a callee that keeps it copies it.
    """
    t0 = time.perf_counter()
    tok, budget = store.tok, spec.budget
    prefix, suffix = redact_split(cursor.prefix, cursor.suffix)
    window = cut_window(store.blocks, prefix, suffix, budget, spec.quantum_lines)
    prompt = Prompt(order=spec.order)
    prompt.add("header", repo_header_ids(tok, repo_name), reason="BOS and repository name")
    part = repository if repository is not None and spec.level is ContextLevel.REPOSITORY else EMPTY
    _add_repository(prompt, part)
    shown_whole = not window.far_cut and not window.suffix_cut  # the window holds the whole file
    in_part = cursor.in_repository and part.contains(cursor.path)
    copy = None
    if spec.level is not ContextLevel.NONE and not in_part and not shown_whole:
        copy = prefix + suffix if cursor.copy is None else redact(cursor.copy)
        if copy_wanted is None or copy_wanted(copy):
            _add_copy(prompt, store, cursor, copy, budget.cursor_file)
    cursor_header = store.header(cursor.path)
    head_end = None
    if spec.layout is Layout.WINDOW:
        prompt.add("cursor_file", cursor_header, cursor.path, "file at the cursor")
        sp = tok.special
        prompt.add(
            "suffix", [sp.fim_begin, sp.fim_hole, *window.suffix_ids, sp.fim_end], cursor.path, _why(window, "suffix")
        )
        prompt.add("prefix", window.far_ids, cursor.path, _why(window, "far"))
        head_end = len(prompt)
        if on_head is not None:  # the head's anchors: the prompt's so far, and its own end
            has_copy = any(seg.kind == "cursor_copy" for seg in prompt.segments)
            on_head(prompt.ids, (*_anchors(prompt, None), head_end), has_copy)
    evidence, hints = [], NameHints()
    if spec.level is not ContextLevel.NONE and repo is not None and budget.evidence > 0:
        options = spec.evidence
        if spec.level is ContextLevel.FILE:
            options = EvidenceOptions(options.members, options.definitions, options.similar, workspace=False)
        line = prefix.count("\n")
        first = line - window.far_text.count("\n") - window.near_text.count("\n")
        text = CursorText(
            cursor.path, prefix, suffix, window.lines_before, window.cursor_line,
            (first, line + window.suffix_text.count("\n")),
        )  # fmt: skip
        gathered = gather(repo, text, options)
        evidence, hints = _fit_evidence(store, gathered.evidence, budget.evidence), gathered.hints
    if spec.layout is Layout.FILES:
        for item, ids in evidence:
            prompt.add("evidence", ids, item.path, f"{item.kind}: {item.reason}")
        prompt.add("cursor_file", cursor_header, cursor.path, "file at the cursor")
        _add_fim(prompt, tok, window.far_ids + window.near_ids, window.suffix_ids, spec.order, window)
    else:
        for item, ids in evidence:
            prompt.add("evidence", ids, item.path, f"{item.kind}: {item.reason}")
        prompt.add("prefix", window.near_ids, cursor.path, "the lines just before the cursor")
    elapsed = (time.perf_counter() - t0) * 1000
    return BuiltPrompt(
        prompt, hints, [item for item, _ in evidence], part, window, cursor.path, elapsed, copy, head_end
    )


def _why(window: CursorWindow, part: str) -> str:
    if part == "suffix":
        return "text after the cursor" + (" (cut to fit)" if window.suffix_cut else "")
    return "text before the cursor" + (" (far end cut to fit)" if window.far_cut else "")


def _add_repository(prompt: Prompt, part: RepositoryPart) -> None:
    base = len(prompt.ids)
    prompt.ids.extend(part.ids)
    for f in part.files:
        kind = "file" if f.form == "whole" else "summary"
        prompt.segments.append(PromptSegment(kind, base + f.start, base + f.end, f.rel, "repository file"))


def _add_copy(prompt: Prompt, store: TokenStore, cursor: CursorFile, text: str, budget: int) -> None:
    """The cursor file as it is now, whole if it fits, else its summary, else its head."""
    if budget <= 0:
        return
    header, tail = store.header(cursor.path), store.tail_ids
    room = budget - len(header) - len(tail)
    if room <= 0:
        return
    ids = store.blocks.ids([text])[0] if len(text) <= 16 * room else []
    why = "the cursor file (a copy: it is not in the repository part)"
    if not ids or len(ids) > room:
        summary = redact(cursor.summary)
        ids = store.tok.encode(summary) if summary else []
        why += ", summarised"
        if not ids or len(ids) > room:
            ids = store.tok.encode(text[: room * 4])[:room]
            why = why.replace("summarised", "its head")
    prompt.add("cursor_copy", [*header, *ids, *tail], cursor.path, why)


def _fit_evidence(store: TokenStore, items: list[Evidence], budget: int) -> list[tuple[Evidence, list[int]]]:
    """The most useful items that fit, returned least useful first (most useful nearest the cursor)."""
    chosen, used = [], 0
    for item in items:
        header = store.header(item.path or "evidence")
        body = store.tok.encode(item.text)
        room = budget - used - len(header) - len(store.tail_ids)
        if room <= 8:
            continue
        if len(body) > room:  # similar code: keep what follows the match; else the head (signatures)
            body = body[len(body) - room :] if item.kind == "similar" else body[:room]
        ids = [*header, *body, *store.tail_ids]
        chosen.append((item, ids))
        used += len(ids)
    return list(reversed(chosen))


def _add_fim(prompt: Prompt, tok, prefix_ids: list[int], suffix_ids: list[int], order: FimOrder, window) -> None:
    stable, volatile = fim_ids(tok, prefix_ids, suffix_ids, order)
    kinds = ("suffix", "prefix") if order is FimOrder.SPM else ("prefix", "suffix")
    for kind, ids in zip(kinds, (stable, volatile), strict=True):
        prompt.add(kind, ids, None, _why(window, "suffix" if kind == "suffix" else "far"))
