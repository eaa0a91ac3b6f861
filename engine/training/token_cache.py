"""The corpus pre-tokenised once: every file's ids in one uint16 array, cached on disk.

Cache files sit next to the corpus, keyed by the tokenizer's content hash and the split
file's size and mtime, so a new tokenizer or a rebuilt corpus never reads stale ids::

    data/corpus/tokens-<key>/train.ids.npy        all ids, file after file (uint16)
    data/corpus/tokens-<key>/train.offsets.npy    n_files + 1 start offsets (int64)
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.training.corpus import CorpusFile, load_corpus

log = logging.getLogger(__name__)
BATCH_FILES = 256


@dataclass
class TokenizedCorpus:
    """Files of one split with their token ids; `ids(i)` is a zero-copy view."""

    files: list[CorpusFile]
    tokens: np.ndarray  # uint16, all files concatenated
    offsets: np.ndarray  # int64, len(files) + 1

    def ids(self, index: int) -> np.ndarray:
        return self.tokens[self.offsets[index] : self.offsets[index + 1]]

    def num_tokens(self, index: int) -> int:
        return int(self.offsets[index + 1] - self.offsets[index])

    def by_package(self) -> dict[tuple[str, str], list[int]]:
        """File indices grouped by (repo, package directory)."""
        groups: dict[tuple[str, str], list[int]] = {}
        for i, f in enumerate(self.files):
            groups.setdefault((f.repo, f.package), []).append(i)
        return groups


def encode_files(tok: Tokenizer, files: list[CorpusFile]) -> tuple[np.ndarray, np.ndarray]:
    if tok.vocab_size > 65536:
        raise ValueError(f"uint16 cache needs a vocabulary ≤ 65536, got {tok.vocab_size}")
    chunks, lengths = [], []
    for start in range(0, len(files), BATCH_FILES):
        for ids in tok.encode_batch([f.text for f in files[start : start + BATCH_FILES]]):
            chunks.append(np.asarray(ids, dtype=np.uint16))
            lengths.append(len(ids))
    offsets = np.zeros(len(files) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    tokens = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint16)
    return tokens, offsets


def cache_key(tokenizer_path: Path, split_file: Path) -> str:
    h = hashlib.sha256(Path(tokenizer_path).read_bytes())
    stat = split_file.stat()
    h.update(f"{split_file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def load_tokenized(corpus_dir: str | Path, tokenizer_path: str | Path, split: str) -> TokenizedCorpus:
    """The split's files and ids, encoding them (and writing the cache) on first use."""
    corpus_dir, tokenizer_path = Path(corpus_dir), Path(tokenizer_path)
    if tokenizer_path.is_dir():
        tokenizer_path = tokenizer_path / "tokenizer.json"
    files = load_corpus(corpus_dir, split)
    folder = corpus_dir / f"tokens-{cache_key(tokenizer_path, corpus_dir / f'{split}.jsonl')}"
    ids_path, off_path = folder / f"{split}.ids.npy", folder / f"{split}.offsets.npy"
    if ids_path.is_file() and off_path.is_file():
        tokens, offsets = np.load(ids_path, mmap_mode="r"), np.load(off_path)
        if len(offsets) == len(files) + 1:
            return TokenizedCorpus(files, tokens, offsets)
        log.warning("stale token cache %s; re-encoding", folder)
    log.info("encoding %d %s files with %s", len(files), split, tokenizer_path)
    tokens, offsets = encode_files(Tokenizer.from_file(tokenizer_path), files)
    folder.mkdir(parents=True, exist_ok=True)
    for path, array in ((ids_path, tokens), (off_path, offsets)):
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, array)
        tmp.replace(path)
    return TokenizedCorpus(files, tokens, offsets)
