"""Repository-level FIM samples built by the product's own prompt builder.

A corpus source (a package, CPython, an npm module) is one repository (`MemoryRepo`). A sample:

1. a cursor file drawn in proportion to its tokens, and a hole in it: at a syntax-node start to
   the end of its line (what the editor asks while typing; statement starts and mid-line),
   a whole block body, or one of the random span kinds of `spans.py`;
2. the file as the editor would hold it while the hole is being written (the hole removed);
3. the prompt `context/prompt_builder.py` builds for that cursor in the checkpoint's layout,
   exactly as the language server would: the repository part (most central files first),
   either showing the cursor file as the buffer holds it (a file not edited this session) or
   leaving it out with a copy of it after the part (edited); the cursor window with the
   evidence the language server would retrieve; with some probability no repository part or
   no context at all (the first request before the repository part is prefilled);
4. then the middle and EOS.

The repository part gets whatever the sequence has left, so a sample fills its sequence. Loss
weights: the window, the evidence and the middle (1), not the repository part or the copy
(0): those texts repeat across samples of a repository and would be memorised.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np

from deepfim.context.languages import parser
from deepfim.context.memory_repo import MemoryRepo
from deepfim.context.prompt_builder import ContextLevel, Layout, PromptSpec
from deepfim.context.settings import PromptBudget
from deepfim.context.tokens import TokenStore
from deepfim.engine.model.prompt_format import FimOrder
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.training.corpus import CorpusFile
from deepfim.engine.training.spans import SPAN_KINDS, choose_span, multi_line_candidates, single_line_candidates

REPO_CACHE = 256  # indexed repositories kept in memory (indexing a big one takes seconds)
NO_LOSS_KINDS = ("header", "file", "summary", "cursor_copy")


@dataclass(frozen=True)
class RepoSampleConfig:
    seq_len: int = 4096
    node_hole_rate: float = 0.6  # else one of spans.SPAN_KINDS
    block_hole_rate: float = 0.3  # of the syntax-node holes
    in_repository_rate: float = 0.35  # the cursor file in the repository part (not edited)
    no_repository_rate: float = 0.15  # the level below REPOSITORY (cold start)
    no_context_rate: float = 0.05
    vary_budget_rate: float = 0.5  # other window sizes than the defaults
    max_middle_tokens: int = 192
    layout: Layout = Layout.WINDOW


@dataclass
class RepoSample:
    ids: list[int]
    weights: list[float]  # per target position: the loss weight of predicting ids[i + 1]
    kind: str


class RepoSampleBuilder:
    def __init__(self, tok: Tokenizer, files: list[CorpusFile], config: RepoSampleConfig) -> None:
        self.tok, self.cfg = tok, config
        self.store = TokenStore(tok, None)
        self.by_repo: dict[str, list[CorpusFile]] = {}
        for f in files:
            if f.lang in ("python", "typescript", "javascript"):
                self.by_repo.setdefault(f.repo, []).append(f)
        self.files = [f for repo in sorted(self.by_repo) for f in self.by_repo[repo]]
        weights = np.array([len(f.text) for f in self.files], dtype=np.float64)
        self._cumulative = np.cumsum(weights)
        self._repos: OrderedDict[str, MemoryRepo] = OrderedDict()

    def repo(self, name: str) -> MemoryRepo:
        found = self._repos.get(name)
        if found is None:
            found = MemoryRepo(name, [(f.path, f.text) for f in self.by_repo[name]])
            self._repos[name] = found
            while len(self._repos) > REPO_CACHE:
                self._repos.popitem(last=False)
        else:
            self._repos.move_to_end(name)
        return found

    def _hole(self, f: CorpusFile, rng: random.Random) -> tuple[int, int, str]:
        """(start, end, kind) as character offsets."""
        if rng.random() < self.cfg.node_hole_rate:
            src = f.text.encode("utf-8")
            root = parser(f.lang).parse(src).root_node
            if rng.random() < self.cfg.block_hole_rate:
                blocks = multi_line_candidates(src, root, f.lang)
                if blocks:
                    a, b = rng.choice(blocks)
                    return len(src[:a].decode("utf-8")), len(src[:b].decode("utf-8")), "block"
            rows = single_line_candidates(src, root)
            if rows:
                starts = rows[rng.choice(sorted(rows))]
                a = rng.choice(starts)
                end = src.find(b"\n", a)
                b = len(src) if end < 0 else end
                return len(src[:a].decode("utf-8")), len(src[:b].decode("utf-8")), "node"
        kind = rng.choice(SPAN_KINDS)
        a, b = choose_span(f.text, kind, rng, max_chars=self.cfg.max_middle_tokens * 3)
        return a, b, kind

    def _budget(self, rng: random.Random) -> PromptBudget:
        base = PromptBudget()
        if rng.random() >= self.cfg.vary_budget_rate:
            return base
        return replace(
            base, suffix=rng.choice((32, 64, 96, 160)), far_prefix=rng.choice((64, 160, 320, 640)),
            evidence=rng.choice((64, 128, 192, 320)), near_prefix=rng.choice((24, 48, 96)),
        )  # fmt: skip

    def sample(self, rng: random.Random, room: int) -> RepoSample | None:
        """One sample of at most `room` tokens, or None when the drawn hole does not fit."""
        cfg = self.cfg
        index = int(np.searchsorted(self._cumulative, rng.random() * self._cumulative[-1], side="right"))
        f = self.files[min(index, len(self.files) - 1)]
        a, b, hole_kind = self._hole(f, rng)
        prefix, middle, suffix = f.text[:a], f.text[a:b], f.text[b:]
        middle_ids = self.tok.encode(middle)
        if len(middle_ids) > cfg.max_middle_tokens:
            return None
        draw = rng.random()
        level = ContextLevel.REPOSITORY
        if draw < cfg.no_context_rate:
            level = ContextLevel.NONE
        elif draw < cfg.no_context_rate + cfg.no_repository_rate:
            level = ContextLevel.FILE
        budget = self._budget(rng)
        fixed = budget.window + len(middle_ids) + 64
        copy_budget = min(budget.cursor_file, max(0, (room - fixed) // 2))
        budget = replace(budget, cursor_file=copy_budget)
        repo = self.repo(f.repo)
        order = FimOrder.SPM if cfg.layout is Layout.WINDOW or rng.random() < 0.5 else FimOrder.PSM
        spec = PromptSpec(cfg.layout, order, budget, level)
        buffer = prefix + suffix
        with repo.buffer(f.path, buffer):
            part = None
            if level is ContextLevel.REPOSITORY:
                in_part = rng.random() < cfg.in_repository_rate
                exclude = frozenset() if in_part else frozenset({f.path})
                order_files = None
                if rng.random() < 0.3:  # also other fills than the most central files
                    order_files = list(repo.index.entries)
                    rng.shuffle(order_files)
                left = room - fixed - (0 if in_part else copy_budget)
                part = repo.repository_part(self.store, max(0, left), order_files, exclude)
            built = repo.prompt(self.store, spec, f.path, prefix, suffix, part)
        ids = built.prompt.ids + middle_ids + [self.tok.special.eos]
        if len(ids) > room:
            return None
        weights = [0.0] * len(ids)
        for seg in built.prompt.segments:
            if seg.kind not in NO_LOSS_KINDS:
                for i in range(max(0, seg.start - 1), seg.end - 1):
                    weights[i] = 1.0
        for i in range(len(built.prompt.ids) - 1, len(ids) - 1):
            weights[i] = 1.0  # the middle and EOS
        return RepoSample(ids, weights, f"{level.value}:{hole_kind}")
