"""Training sequences (engine/training/samples.py): the FIM / left-to-right mix, packing whole
samples into seq_len + 1 tokens, labels from the samples' loss weights with structural tokens and
padding ignored, per-worker determinism, the held-out split, config validation."""

from __future__ import annotations

import random

import numpy as np
import pytest

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.model.prompt_format import file_header_ids, repo_header_ids
from deepfim.engine.training.samples import (
    IGNORE,
    SampleBuilder,
    SampleConfig,
    TrainingSequences,
    pack_sequence,
    structural_ids,
)
from deepfim.engine.training.token_cache import load_tokenized

TOK = DEFAULT_MODEL_DIR / "tokenizer.json"


def _builder(corpus_dir, tokenizer, split: str = "train", **kw) -> SampleBuilder:
    cfg = SampleConfig(**{"seq_len": 512, "min_sample_tokens": 64, **kw})
    return SampleBuilder(tokenizer, load_tokenized(corpus_dir, TOK, split), cfg)


def _name(tok, ids: list[int], begin: int, end: int) -> str:
    a = ids.index(begin)
    return tok.decode(ids[a + 1 : ids.index(end, a)])


def test_a_sequence_is_whole_samples_labelled_by_their_weights(tiny_corpus, tokenizer):
    builder = _builder(tiny_corpus, tokenizer)
    ids, labels, kinds = pack_sequence(builder, random.Random(0))
    assert ids.shape == labels.shape == (512,) and ids.dtype == labels.dtype == np.int64
    # the same draws, one by one: the sequence is their concatenation, then padding
    rng, stream, keep = random.Random(0), [], []
    for kind in kinds:
        s = builder.sample(rng, 513 - len(stream))
        assert s.kind == kind and s.ids[0] == tokenizer.special.bos and len(s.ids) <= 513 - len(stream)
        stream += s.ids
        keep += [False] + [w > 0 for w in s.weights[:-1]]  # is ids[j] a target
    pad = 513 - len(stream)
    assert 0 <= pad < 64  # the loop stops when what is left is shorter than min_sample_tokens
    full = np.asarray(stream + [tokenizer.special.pad] * pad)
    assert np.array_equal(ids, full[:-1])
    structural = structural_ids(tokenizer)
    targets = zip(full[1:], keep[1:] + [False] * pad, strict=True)
    expected = [t if k and t not in structural else IGNORE for t, k in targets]
    assert labels.tolist() == expected
    assert not set(labels.tolist()) & structural and (labels == tokenizer.special.eos).any()
    assert structural == tokenizer.special_id_set - {tokenizer.special.eos}
    assert kinds.count("l2r") < len(kinds)


def test_left_to_right_samples_are_a_window_of_a_file_after_its_names(tiny_corpus, tokenizer):
    builder = _builder(tiny_corpus, tokenizer, fim_rate=0.0)
    corpus, sp = builder.corpus, tokenizer.special
    starts = set()
    for k in range(40):
        budget = (64, 90, 2000)[k % 3]
        s = builder.sample(random.Random(k), budget)
        assert s.kind == "l2r" and len(s.ids) <= budget
        path = _name(tokenizer, s.ids, sp.file_name_begin, sp.file_name_end)
        index = next(i for i, f in enumerate(corpus.files) if f.path == path)
        header = repo_header_ids(tokenizer, corpus.files[index].repo) + file_header_ids(tokenizer, path)
        assert s.ids[: len(header)] == header
        body, text = s.ids[len(header) :], corpus.ids(index).tolist()
        start = next(i for i in range(len(text) - len(body) + 1) if text[i : i + len(body)] == body)
        assert body and (budget < 2000 or body == text)  # a large budget takes the whole file
        starts.add(start == 0)
        # no loss on predicting the header, loss on every token of the text
        assert s.weights == [0.0] * (len(header) - 1) + [1.0] * (len(body) + 1)
    assert starts == {True, False}  # from the file's start, and from a random place


def test_the_fim_rate_sets_the_mix(tiny_corpus, tokenizer):
    fim = _builder(tiny_corpus, tokenizer, fim_rate=1.0)
    assert all(fim.sample(random.Random(k), 2048).kind != "l2r" for k in range(20))
    both = _builder(tiny_corpus, tokenizer, fim_rate=0.5)
    kinds = [both.sample(random.Random(k), 2048).kind for k in range(40)]
    assert 0 < kinds.count("l2r") < len(kinds)


def test_streams_are_deterministic_per_worker_and_split(tiny_corpus):
    cfg = SampleConfig(seq_len=256, min_sample_tokens=64, seed=5)
    a, b = TrainingSequences(tiny_corpus, TOK, cfg), TrainingSequences(tiny_corpus, TOK, cfg)
    first = [next(a.stream(0, 2))["input_ids"] for _ in range(2)]
    assert np.array_equal(first[0], first[1]) and np.array_equal(first[0], next(b.stream(0, 2))["input_ids"])
    assert not np.array_equal(first[0], next(b.stream(1, 2))["input_ids"])
    other_seed = TrainingSequences(tiny_corpus, TOK, SampleConfig(seq_len=256, min_sample_tokens=64, seed=6))
    assert not np.array_equal(first[0], next(other_seed.stream(0, 2))["input_ids"])
    batch = next(a.batches(3))
    assert batch["input_ids"].shape == batch["labels"].shape == (3, 256)
    assert not np.array_equal(batch["input_ids"][0], batch["input_ids"][1])  # the stream moves on
    with pytest.raises(ValueError, match="worker"):
        next(a.stream(2, 2))


def test_the_held_out_split_samples_only_held_out_repositories(tiny_corpus, tokenizer):
    sp = tokenizer.special
    held = TrainingSequences(tiny_corpus, TOK, SampleConfig(seq_len=512, min_sample_tokens=64), "heldout")
    assert {f.repo for f in held.builder.corpus.files} == {"other"}
    ids = next(held.stream())["input_ids"].tolist()
    bos = [i for i, t in enumerate(ids) if t == sp.bos]
    assert bos and all(_name(tokenizer, ids[i:], sp.repo_name_begin, sp.repo_name_end) == "other" for i in bos)


def test_config_validation_names_the_bad_value(tiny_corpus, tokenizer):
    with pytest.raises(ValueError, match="fim_rate"):
        SampleConfig(fim_rate=1.5)
    with pytest.raises(ValueError, match="fim_rate"):
        SampleConfig(fim_rate=-0.1)
    with pytest.raises(ValueError, match="seq_len"):
        SampleConfig(seq_len=200)  # < 2 * min_sample_tokens
    with pytest.raises(ValueError, match="min_sample_tokens"):
        SampleConfig(seq_len=512, min_sample_tokens=32)
    corpus = load_tokenized(tiny_corpus, TOK, "train")
    corpus.files = []
    with pytest.raises(ValueError, match="no files"):
        SampleBuilder(tokenizer, corpus, SampleConfig())
