"""Training sequences: repository-level FIM samples and left-to-right samples, with loss masks.

Sample mix (`SampleConfig` defaults; the model card quotes them):

* 90 % FIM samples built by the product's prompt builder (`repo_samples.py`: the prompt the
  language server would send for a hole in a file of a corpus repository, then the middle
  and EOS), in the checkpoint's layout;
* 10 % plain left-to-right samples: a file's text (whole or a window of it) after its
  name markers, so the model keeps its ordinary language modelling.
* Files are drawn in proportion to their size.
* Samples are packed into `seq_len + 1` tokens (each starts with BOS); a remainder shorter
  than `min_sample_tokens` is padding. Targets that are structural tokens (BOS, PAD, FIM and
  file markers), padding, or in a part the sample gives no loss (the repository part and the
  cursor file's copy: they repeat across samples) are ignored (-100).

Determinism: everything is drawn from one `random.Random` seeded by (seed, worker, workers).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepfim.engine.model.prompt_format import file_header_ids, repo_header_ids
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.training.repo_samples import RepoSample, RepoSampleBuilder, RepoSampleConfig
from deepfim.engine.training.token_cache import TokenizedCorpus, load_tokenized

IGNORE = -100


@dataclass(frozen=True)
class SampleConfig:
    seq_len: int = 4096
    fim_rate: float = 0.9
    min_sample_tokens: int = 128
    seed: int = 0
    repo: RepoSampleConfig = field(default_factory=RepoSampleConfig)

    def __post_init__(self) -> None:
        if not 0.0 <= self.fim_rate <= 1.0:
            raise ValueError(f"fim_rate must be in [0, 1], got {self.fim_rate}")
        if self.seq_len < 2 * self.min_sample_tokens:
            raise ValueError(f"seq_len must be ≥ {2 * self.min_sample_tokens}, got {self.seq_len}")
        if self.min_sample_tokens < 64:
            raise ValueError(f"min_sample_tokens must be ≥ 64, got {self.min_sample_tokens}")


class SampleBuilder:
    """Samples that fit a token budget, from a tokenized corpus."""

    def __init__(self, tok: Tokenizer, corpus: TokenizedCorpus, config: SampleConfig) -> None:
        self.tok, self.corpus, self.cfg = tok, corpus, config
        if not corpus.files:
            raise ValueError("the corpus has no files to sample from")
        self.fim = RepoSampleBuilder(tok, corpus.files, config.repo)
        self._cumulative = np.cumsum([corpus.num_tokens(i) for i in range(len(corpus.files))], dtype=np.float64)

    def left_to_right(self, rng: random.Random, budget: int) -> RepoSample:
        index = int(np.searchsorted(self._cumulative, rng.random() * self._cumulative[-1], side="right"))
        f = self.corpus.files[min(index, len(self.corpus.files) - 1)]
        header = repo_header_ids(self.tok, f.repo) + file_header_ids(self.tok, f.path)
        ids = self.corpus.ids(min(index, len(self.corpus.files) - 1))
        n = min(len(ids), budget - len(header))
        start = 0 if rng.random() < 0.5 or len(ids) == n else rng.randint(0, len(ids) - n)
        out = header + ids[start : start + n].tolist()
        return RepoSample(out, [0.0] * (len(header) - 1) + [1.0] * (len(out) - len(header) + 1), "l2r")

    def sample(self, rng: random.Random, budget: int) -> RepoSample:
        if rng.random() < self.cfg.fim_rate:
            for _ in range(8):
                found = self.fim.sample(rng, budget)
                if found is not None:
                    return found
        return self.left_to_right(rng, budget)


def structural_ids(tok: Tokenizer) -> frozenset[int]:
    """Ids that are never trained as targets: every special token but EOS."""
    return frozenset(tok.special_id_set - {tok.special.eos})


def pack_sequence(builder: SampleBuilder, rng: random.Random) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(input_ids, labels, sample kinds) of length seq_len; labels are -100 where ignored."""
    cfg, sp = builder.cfg, builder.tok.special
    stream: list[int] = []
    train: list[bool] = []
    kinds = []
    while (room := cfg.seq_len + 1 - len(stream)) >= cfg.min_sample_tokens:
        s = builder.sample(rng, room)
        # weights[i] is the loss on predicting ids[i + 1]; shift to "is ids[j] a target"
        stream += s.ids
        train += [False] + [w > 0 for w in s.weights[: len(s.ids) - 1]]
        kinds.append(s.kind)
    pad = sp.pad if sp.pad is not None else sp.eos
    stream += [pad] * (cfg.seq_len + 1 - len(stream))
    train += [False] * (cfg.seq_len + 1 - len(train))
    ids = np.asarray(stream, dtype=np.int64)
    keep = np.asarray(train, dtype=bool) & ~np.isin(ids, list(structural_ids(builder.tok)))
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
