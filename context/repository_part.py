"""The repository part of a workspace's prompts: files in a fixed order, the same for every
cursor file, so the engine prefills it once (in the background) and every keystroke in every
file resumes after it.

Which files: the most central first (files many others import, code before text; see
`index.prior_scores`) until the budget is full, each whole when it takes at most
`max_file_share` of the budget, else as its summary (imports and signatures). Files edited in
this session are left out: they are volatile (every edit would invalidate everything after
them) and the cursor file's own text reaches the prompt through its copy and its window.
Where: sorted by path, so a package's files sit together and a file that joins or leaves the
selection moves nothing before it.

A part is immutable and identified by `key` (a hash of its ids): the language server keeps
serving one part until the next one is prefilled.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from deepfim.context.records import FileEntry
from deepfim.context.tokens import TokenStore

MIN_SEGMENT_TOKENS = 16
MAX_CHARS_PER_TOKEN = 12  # a file with more characters per token than this is vanishingly rare
MAX_MISSES = 512  # stop looking for files that fit after this many in a row did not
BATCH = 64


@dataclass(frozen=True)
class RepositoryFile:
    rel: str
    form: str  # "whole" | "summary"
    start: int  # token offsets inside the part
    end: int
    digest: str  # the content it shows


@dataclass(frozen=True)
class RepositoryPart:
    ids: array  # uint32 token ids (never modified after construction)
    files: tuple[RepositoryFile, ...]
    budget: int
    excluded: frozenset[str]  # volatile files left out
    key: str = ""  # a hash of `ids`: two parts with the same key are the same prompt prefix

    @classmethod
    def of(cls, ids: array, files: tuple[RepositoryFile, ...], budget: int, excluded: frozenset[str]):
        return cls(ids, files, budget, excluded, hashlib.blake2b(ids.tobytes(), digest_size=12).hexdigest())

    def contains(self, rel: str, digest: str | None = None) -> bool:
        """Whether the part shows `rel` (with that content, when `digest` is given)."""
        return any(f.rel == rel and (digest is None or f.digest == digest) for f in self.files)

    def __len__(self) -> int:
        return len(self.ids)


EMPTY = RepositoryPart.of(array("I"), (), 0, frozenset())


def build_repository_part(
    order: Iterable[str],
    entries: dict[str, FileEntry],
    store: TokenStore,
    text_of: Callable[[FileEntry], str | None],
    budget: int,
    max_file_share: float,
    exclude: frozenset[str] = frozenset(),
) -> RepositoryPart:
    """The part for `budget` tokens from files in `order` (most central first)."""
    if budget < MIN_SEGMENT_TOKENS:
        return RepositoryPart.of(array("I"), (), budget, exclude)
    cap = max(MIN_SEGMENT_TOKENS, int(budget * max_file_share))
    chosen: list[tuple[str, str, array, str]] = []
    used = misses = 0
    it = (entries[rel] for rel in order if rel in entries and rel not in exclude and entries[rel].chars > 0)
    while budget - used >= MIN_SEGMENT_TOKENS and misses < MAX_MISSES:
        batch = [e for _, e in zip(range(BATCH), it, strict=False)]
        if not batch:
            break
        wanted = []
        for e in batch:
            if e.chars <= MAX_CHARS_PER_TOKEN * cap:
                wanted.append((TokenStore.key(e.digest, "whole"), lambda e=e: text_of(e)))
            if e.summary and len(e.summary) <= MAX_CHARS_PER_TOKEN * (budget - used):
                wanted.append((TokenStore.key(e.digest, "summary"), lambda e=e: e.summary))
        store.ensure(wanted)
        for e in batch:
            remaining = budget - used
            if remaining < MIN_SEGMENT_TOKENS:
                break
            overhead = len(store.header(e.rel)) + len(store.tail_ids)
            for form, room in (("whole", min(remaining, cap)), ("summary", remaining)):
                ids = store.get(TokenStore.key(e.digest, form))
                if ids is not None and overhead + len(ids) <= room:
                    chosen.append((e.rel, form, ids, e.digest))
                    used += overhead + len(ids)
                    misses = 0
                    break
            else:
                misses += 1
    ids = array("I")
    files = []
    for rel, form, content, digest in sorted(chosen, key=lambda c: c[0]):
        start = len(ids)
        ids.extend(store.header(rel))
        ids.extend(content)
        ids.extend(store.tail_ids)
        files.append(RepositoryFile(rel, form, start, len(ids), digest))
    return RepositoryPart.of(ids, tuple(files), budget, exclude)
