"""Training sequences: packed FIM (PSM and SPM) and left-to-right samples with a loss mask.

Sample mix (`SampleConfig` defaults; the model card quotes them):

* 90 % FIM, 10 % plain left-to-right. FIM samples are PSM or SPM 50/50, built by
  `deepfim.engine.model.prompt_format.fim_ids` from the same prefix/middle/suffix, so both orders teach
  the same middle. Hole kinds (`spans`): char 20 %, line_rest 35 %, lines 20 %, block 25 %;
  the middle is ≤ 256 tokens and ends with EOS.
* 50 % of samples (FIM or not) are repository-level: files of the cursor file's package
  (files it names first, the rest shuffled) as file segments *before* the cursor file,
  whole or cut to their head, with the cursor file given a random 25–75 % of the budget.
  The layout is `layout.pack_fim_prompt`, the one evaluation and the engine use.
* The repository name is shown in 80 % of samples, the cursor file's path in 95 %.
* Files are drawn in proportion to their tokens, TypeScript weighted ×2.
* Samples are packed into `seq_len + 1` tokens (each starts with BOS); a remainder shorter
  than 128 tokens is padding. Targets that are structural tokens (BOS, PAD, FIM and file
  markers) or padding are ignored (-100); with `loss_on_prompt=False` only middle and EOS
  targets count.

Determinism: everything is drawn from one `random.Random` seeded by (seed, worker, workers).
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepfim.engine.model.prompt_format import FimOrder, file_header_ids, file_segment_ids, repo_header_ids
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.training.layout import pack_fim_prompt, rank_context_files
from deepfim.engine.training.spans import SPAN_KINDS, choose_span
from deepfim.engine.training.token_cache import TokenizedCorpus, load_tokenized

IGNORE = -100


@dataclass(frozen=True)
class SampleConfig:
    seq_len: int = 2048
    fim_rate: float = 0.9
    spm_rate: float = 0.5
    repo_rate: float = 0.5
    span_weights: tuple[float, ...] = (0.2, 0.35, 0.2, 0.25)  # in SPAN_KINDS order
    max_middle_tokens: int = 256
    file_header_rate: float = 0.95
    repo_name_rate: float = 0.8
    language_weights: tuple[tuple[str, float], ...] = (("python", 1.0), ("typescript", 2.0), ("javascript", 1.0))
    min_sample_tokens: int = 128
    loss_on_prompt: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("fim_rate", "spm_rate", "repo_rate", "file_header_rate", "repo_name_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.seq_len < 2 * self.min_sample_tokens:
            raise ValueError(f"seq_len must be ≥ {2 * self.min_sample_tokens}, got {self.seq_len}")
        if len(self.span_weights) != len(SPAN_KINDS) or min(self.span_weights) < 0 or sum(self.span_weights) <= 0:
            raise ValueError(f"span_weights needs {len(SPAN_KINDS)} non-negative weights, got {self.span_weights}")
        if self.max_middle_tokens < 1 or self.min_sample_tokens < 64:
            raise ValueError(
                f"need max_middle_tokens ≥ 1 and min_sample_tokens ≥ 64, got {self.max_middle_tokens}, "
                f"{self.min_sample_tokens}"
            )


@dataclass
class Sample:
    ids: list[int]
    middle_start: int  # index of the first middle token; len(ids) for left-to-right samples
    kind: str  # "psm" | "spm" | "l2r", with "+repo" for repository-level samples


class SampleBuilder:
    """Builds single samples that fit a token budget from a tokenized corpus."""

    def __init__(self, tok: Tokenizer, corpus: TokenizedCorpus, config: SampleConfig) -> None:
        self.tok, self.corpus, self.cfg = tok, corpus, config
        lang_weight = dict(config.language_weights)
        weights = [corpus.num_tokens(i) * lang_weight.get(f.lang, 1.0) for i, f in enumerate(corpus.files)]
        self._cumulative = np.cumsum(weights, dtype=np.float64)
        if not len(self._cumulative) or self._cumulative[-1] <= 0:
            raise ValueError("the corpus has no tokens to sample from")
        self._packages = corpus.by_package()
        self._span_cum = np.cumsum(config.span_weights)

    def pick_file(self, rng: random.Random) -> int:
        return int(np.searchsorted(self._cumulative, rng.random() * self._cumulative[-1], side="right"))

    def _context(self, index: int, rng: random.Random, budget: int) -> list[tuple[str, list[int]]]:
        f = self.corpus.files[index]
        if not f.package:
            return []
        siblings = [(self.corpus.files[j].path, j) for j in self._packages[(f.repo, f.package)] if j != index]
        ranked = rank_context_files(f.path, f.text, siblings, rng)
        out, used = [], 0
        for path, j in ranked:
            if used >= budget:
                break
            ids = self.corpus.ids(j)[: budget - used].tolist()
            out.append((path, ids))
            used += len(ids)
        return out

    def fim(self, index: int, rng: random.Random, budget: int, span_kind: str, order: FimOrder, repo_level: bool):
        """One FIM sample of ≤ budget tokens, or None when the drawn hole does not fit."""
        f, cfg = self.corpus.files[index], self.cfg
        a, b = choose_span(f.text, span_kind, rng, max_chars=cfg.max_middle_tokens * 3)
        cursor_cap = rng.randint(budget // 4, 3 * budget // 4) if repo_level else budget
        window = cursor_cap * 6  # characters; more than enough text for cursor_cap tokens
        prefix, middle, suffix = self.tok.encode_batch(
            [f.text[max(0, a - window) : a], f.text[a:b], f.text[b : b + window]]
        )
        if len(middle) > cfg.max_middle_tokens or budget - len(middle) - 1 < cfg.min_sample_tokens // 2:
            return None
        max_prompt = budget - len(middle) - 1
        context = self._context(index, rng, max_prompt - cursor_cap) if repo_level else []
        prompt = pack_fim_prompt(
            self.tok, prefix, suffix, order=order, max_tokens=max_prompt,
            path=f.path if rng.random() < cfg.file_header_rate else None,
            repo=f.repo if rng.random() < cfg.repo_name_rate else None,
            context=context, cursor_tokens=cursor_cap,
        )  # fmt: skip
        kind = order.value + ("+repo" if context else "")
        return Sample(prompt.ids + middle + [self.tok.special.eos], len(prompt.ids), kind)

    def left_to_right(self, index: int, rng: random.Random, budget: int, repo_level: bool) -> Sample:
        f, cfg, sp = self.corpus.files[index], self.cfg, self.tok.special
        header = repo_header_ids(self.tok, f.repo if rng.random() < cfg.repo_name_rate else None)
        cursor_header = file_header_ids(self.tok, f.path) if rng.random() < cfg.file_header_rate else []
        room = budget - len(header) - len(cursor_header) - 1
        cursor_cap = rng.randint(room // 4, 3 * room // 4) if repo_level else room
        ids = self.corpus.ids(index)
        n = min(len(ids), cursor_cap)
        start = 0 if rng.random() < 0.5 or len(ids) == n else rng.randint(0, len(ids) - n)
        body = ids[start : start + n].tolist()
        tail = [sp.file_end] if cursor_header and start + n == len(ids) and sp.has_file_markers else []
        out = list(header)
        remaining = budget - len(header) - len(cursor_header) - len(body) - len(tail)
        for path, ctx in self._context(index, rng, remaining) if repo_level else []:
            segment = file_segment_ids(self.tok, path, ctx[: max(0, remaining - 8 - len(path))])
            if len(segment) > remaining or len(segment) < cfg.min_sample_tokens // 4:
                break
            out += segment
            remaining -= len(segment)
        out += cursor_header + body + tail
        assert len(out) <= budget, (len(out), budget)
        return Sample(
            out,
            len(out),
            "l2r" + ("+repo" if len(out) > len(header) + len(cursor_header) + len(body) + len(tail) else ""),
        )

    def sample(self, rng: random.Random, budget: int) -> Sample:
        cfg = self.cfg
        for _ in range(8):
            index = self.pick_file(rng)
            repo_level = rng.random() < cfg.repo_rate
            if rng.random() >= cfg.fim_rate:
                return self.left_to_right(index, rng, budget, repo_level)
            kind = SPAN_KINDS[bisect.bisect_right(self._span_cum, rng.random() * self._span_cum[-1])]
            order = FimOrder.SPM if rng.random() < cfg.spm_rate else FimOrder.PSM
            sample = self.fim(index, rng, budget, kind, order, repo_level)
            if sample is not None:
                return sample
        return self.left_to_right(self.pick_file(rng), rng, budget, False)


def structural_ids(tok: Tokenizer) -> frozenset[int]:
    """Ids that are never trained as targets: every special token but EOS."""
    return frozenset(tok.special_id_set - {tok.special.eos})


def pack_sequence(builder: SampleBuilder, rng: random.Random) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(input_ids, labels, sample kinds) of length seq_len; labels are -100 where ignored."""
    cfg, sp = builder.cfg, builder.tok.special
    stream: list[int] = []
    train: list[bool] = []
    kinds = []
    ignore = structural_ids(builder.tok)
    while (room := cfg.seq_len + 1 - len(stream)) >= cfg.min_sample_tokens:
        s = builder.sample(rng, room)
        stream += s.ids
        train += [cfg.loss_on_prompt or k >= s.middle_start for k in range(len(s.ids))]
        kinds.append(s.kind)
    pad = sp.pad if sp.pad is not None else sp.eos
    stream += [pad] * (cfg.seq_len + 1 - len(stream))
    train += [False] * (cfg.seq_len + 1 - len(train))
    ids = np.asarray(stream, dtype=np.int64)
    keep = np.asarray(train, dtype=bool) & ~np.isin(ids, list(ignore))
    labels = np.where(keep[1:], ids[1:], IGNORE)
    return ids[:-1], labels, kinds


class TrainingSequences:
    """An endless, deterministic stream of packed sequences from a built corpus.

    Each worker of a data loader gets its own stream: pass (worker, num_workers), or let
    `__iter__` read torch's worker info when torch is the caller.
    """

    def __init__(self, corpus_dir: str | Path, tokenizer_path: str | Path, config: SampleConfig, split: str = "train"):
        self.config = config
        self.tok = Tokenizer.from_file(tokenizer_path)
        self.builder = SampleBuilder(self.tok, load_tokenized(corpus_dir, tokenizer_path, split), config)

    def stream(self, worker: int = 0, num_workers: int = 1) -> Iterator[dict[str, np.ndarray]]:
        if not 0 <= worker < num_workers:
            raise ValueError(f"worker must be in [0, {num_workers}), got {worker}")
        rng = random.Random(f"{self.config.seed}:{worker}:{num_workers}")
        while True:
            input_ids, labels, _ = pack_sequence(self.builder, rng)
            yield {"input_ids": input_ids, "labels": labels}

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        import sys

        worker, workers = 0, 1
        if "torch" in sys.modules:
            info = sys.modules["torch"].utils.data.get_worker_info()
            if info is not None:
                worker, workers = info.id, info.num_workers
        return self.stream(worker, workers)

    def batches(self, batch_size: int, worker: int = 0, num_workers: int = 1) -> Iterator[dict[str, np.ndarray]]:
        """Stacked [batch_size, seq_len] arrays."""
        it = self.stream(worker, num_workers)
        while True:
            rows = [next(it) for _ in range(batch_size)]
            yield {key: np.stack([r[key] for r in rows]) for key in rows[0]}
