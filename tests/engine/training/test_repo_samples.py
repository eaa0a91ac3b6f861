"""Repository-level FIM samples (engine/training/repo_samples.py): each sample is the prompt the
product's builder (`MemoryRepo.prompt`) makes for a hole in a corpus file, rebuilt here by a fresh
`MemoryRepo` from the cursor alone, then the middle and EOS; it fits its room; the repository part
and the cursor file's copy show the file without its hole and carry no loss."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from conftest import corpus_files

from deepfim.context.memory_repo import MemoryRepo
from deepfim.context.prompt_builder import BuiltPrompt, ContextLevel, Layout, PromptSpec
from deepfim.context.repository_part import RepositoryPart
from deepfim.context.tokens import TokenStore
from deepfim.engine.model.prompt_format import FimOrder
from deepfim.engine.training.corpus import CorpusFile
from deepfim.engine.training.repo_samples import RepoSampleBuilder, RepoSampleConfig
from deepfim.engine.training.spans import SPAN_KINDS

# longer than the cursor window, so its samples carry a copy of it
TABLE = "".join(f"def scale_{i}(value):\n    factor = {i} * 3 + 1\n    return value * factor\n\n\n" for i in range(60))
FILES = [f for f in corpus_files() if f.split == "train"] + [
    CorpusFile("geo/table.py", "geo", "geo", "t:geo", "python", "t", TABLE)
]
TEXTS = {(f.repo, f.path): f.text for f in FILES}
ROOMS = (300, 700, 1500, 3000)
NO_LOSS = {"header", "file", "summary", "cursor_copy"}  # BOS and name; the repository part; the copy


@dataclass
class Call:
    """One `MemoryRepo.prompt` call the builder made (the real method ran)."""

    repo: str
    spec: PromptSpec
    rel: str
    prefix: str
    suffix: str
    part: RepositoryPart | None
    built: BuiltPrompt


@pytest.fixture
def calls(monkeypatch) -> list[Call]:
    seen, real = [], MemoryRepo.prompt

    def recorded(self, store, spec, rel, prefix, suffix, repository=None, copy=None):
        built = real(self, store, spec, rel, prefix, suffix, repository, copy)
        seen.append(Call(self.name, spec, rel, prefix, suffix, repository, built))
        return built

    monkeypatch.setattr(MemoryRepo, "prompt", recorded)
    return seen


def _draw(tok, cfg: RepoSampleConfig, calls: list[Call], n: int, seed: int = 0, builder=None):
    """(sample, the prompt call that made it, room) for n draws that gave a sample."""
    builder, rng, out = builder or RepoSampleBuilder(tok, FILES, cfg), random.Random(seed), []
    for i in range(4 * n):
        room = ROOMS[i % len(ROOMS)]
        before = len(calls)
        s = builder.sample(rng, room)
        if s is not None:
            assert len(calls) == before + 1
            out.append((s, calls[-1], room))
        if len(out) == n:
            break
    assert len(out) == n
    return out


def _repo(name: str) -> MemoryRepo:
    return MemoryRepo(name, [(path, text) for (repo, path), text in TEXTS.items() if repo == name])


def _text(tok, ids) -> str:
    return tok.decode([i for i in ids if i not in tok.special_id_set])


MIXED = {"no_context_rate": 0.15, "no_repository_rate": 0.25, "in_repository_rate": 0.5}


@pytest.mark.parametrize("layout", list(Layout))
def test_a_sample_is_the_products_prompt_for_its_hole_then_the_middle_and_eos(tokenizer, calls, layout):
    cfg = RepoSampleConfig(layout=layout, **MIXED)
    builder = RepoSampleBuilder(tokenizer, FILES, cfg)
    drawn = _draw(tokenizer, cfg, calls, 40, builder=builder)
    fresh: dict[str, MemoryRepo] = {}
    store = TokenStore(tokenizer, None)
    for s, call, room in drawn:
        n = len(call.built.prompt)
        assert len(s.ids) <= room and len(s.weights) == len(s.ids)
        assert s.ids[:n] == call.built.prompt.ids and s.ids[-1] == tokenizer.special.eos
        middle_ids = s.ids[n:-1]
        middle = tokenizer.decode(middle_ids)
        assert call.prefix + middle + call.suffix == TEXTS[(call.repo, call.rel)]
        assert tokenizer.encode(middle) == middle_ids and len(middle_ids) <= cfg.max_middle_tokens
        level, hole = s.kind.split(":")
        assert level == call.spec.level.value and hole in ("node", "block", *SPAN_KINDS)
        assert call.spec.layout is layout and (layout is Layout.FILES or call.spec.order is FimOrder.SPM)
        # a fresh repository, given the cursor (and the part), builds the same prompt: nothing of
        # earlier samples stays in the builder's cached repository
        repo = fresh.setdefault(call.repo, _repo(call.repo))
        with repo.buffer(call.rel, call.prefix + call.suffix):
            again = repo.prompt(store, call.spec, call.rel, call.prefix, call.suffix, call.part)
        assert again.prompt.ids == call.built.prompt.ids
    for name in fresh:  # and the cached repositories hold the files as they are
        cached, repo = builder.repo(name), _repo(name)
        assert cached.texts == repo.texts
        assert {r: e.digest for r, e in cached.index.entries.items()} == {
            r: e.digest for r, e in repo.index.entries.items()
        }
    levels = {s.kind.split(":")[0] for s, _, _ in drawn}
    assert levels == {"none", "file", "repository"}
    if layout is Layout.FILES:
        assert {call.spec.order for _, call, _ in drawn} == set(FimOrder)


def test_the_repository_part_and_the_copy_show_the_file_without_its_hole(tokenizer, calls):
    drawn = _draw(tokenizer, RepoSampleConfig(**MIXED), calls, 60, seed=1)
    seen = {"in part": 0, "copy": 0, "part files": 0}
    summaries = {(name, rel): e.summary for name in ("geo", "pts") for rel, e in _repo(name).index.entries.items()}
    for s, call, _ in drawn:
        buffer = call.prefix + call.suffix
        kinds = [seg.kind for seg in call.built.prompt.segments]
        if call.spec.level is not ContextLevel.REPOSITORY:
            assert "file" not in kinds and "summary" not in kinds
        if call.spec.level is ContextLevel.NONE:
            assert "cursor_copy" not in kinds and "evidence" not in kinds
        for seg in call.built.prompt.segments:
            shown = _text(tokenizer, s.ids[seg.start : seg.end])
            if seg.kind in ("file", "summary"):
                seen["part files"] += 1
                assert call.part is not None and call.part.contains(seg.path)
            if seg.path == call.rel and seg.kind == "file":  # the cursor file in the part: as the buffer holds it
                assert shown == call.rel + buffer
                seen["in part"] += 1
            elif seg.kind == "file":  # every other file as it is (no earlier sample's buffer stays)
                assert shown == seg.path + TEXTS[(call.repo, seg.path)]
            elif seg.kind == "summary" and seg.path != call.rel:
                assert shown == seg.path + summaries[(call.repo, seg.path)]
            if seg.kind == "cursor_copy":
                assert seg.path == call.rel and not call.built.repository.contains(call.rel)
                assert shown == call.rel + buffer or "summarised" in seg.reason or "head" in seg.reason
                seen["copy"] += 1
    assert all(seen.values()), seen


def test_only_the_window_the_evidence_and_the_middle_carry_loss(tokenizer, calls):
    for s, call, _ in _draw(tokenizer, RepoSampleConfig(**MIXED), calls, 40, seed=2):
        n = len(call.built.prompt)
        # weights[i] is the loss on predicting ids[i + 1]
        for seg in call.built.prompt.segments:
            expected = 0.0 if seg.kind in NO_LOSS else 1.0
            assert all(s.weights[t - 1] == expected for t in range(max(1, seg.start), seg.end)), seg
        assert all(w == 1.0 for w in s.weights[n - 1 : len(s.ids) - 1])  # the middle and EOS


def test_syntax_node_holes_are_single_lines_and_block_holes_whole_lines(tokenizer, calls):
    nodes = _draw(tokenizer, RepoSampleConfig(node_hole_rate=1.0, block_hole_rate=0.0), calls, 20, seed=3)
    for s, call, _ in nodes:
        middle = tokenizer.decode(s.ids[len(call.built.prompt) : -1])
        assert s.kind.endswith(":node") and middle.strip() and "\n" not in middle
        assert call.suffix == "" or call.suffix.startswith("\n")
    blocks = _draw(tokenizer, RepoSampleConfig(node_hole_rate=1.0, block_hole_rate=1.0), calls, 20, seed=4)
    for s, call, _ in blocks:
        middle = tokenizer.decode(s.ids[len(call.built.prompt) : -1])
        assert s.kind.endswith(":block") and call.prefix.endswith("\n") and middle.endswith("\n")
        assert 2 <= middle.count("\n") <= 12


def test_a_sample_never_exceeds_its_room_or_its_middle_budget_and_is_deterministic(tokenizer, calls):
    cfg = RepoSampleConfig(**MIXED)
    a, b = RepoSampleBuilder(tokenizer, FILES, cfg), RepoSampleBuilder(tokenizer, FILES, cfg)
    ra, rb = random.Random(9), random.Random(9)
    for room in (40, 120, 600, 2000) * 5:
        sa, sb = a.sample(ra, room), b.sample(rb, room)
        assert (sa is None) == (sb is None)
        if sa is not None:
            assert len(sa.ids) <= room and (sa.ids, sa.weights, sa.kind) == (sb.ids, sb.weights, sb.kind)
    assert all(a.sample(random.Random(k), 40) is None for k in range(20))  # no prompt fits 40 tokens
    short = RepoSampleBuilder(tokenizer, FILES, RepoSampleConfig(max_middle_tokens=2))
    made = 0
    for k in range(30):
        before = len(calls)
        s = short.sample(random.Random(k), 3000)
        if s is not None:
            made += 1
            assert len(calls) == before + 1 and len(s.ids) - len(calls[-1].built.prompt) - 1 <= 2
    assert made  # short holes exist (empty and one-token spans), longer ones are refused
