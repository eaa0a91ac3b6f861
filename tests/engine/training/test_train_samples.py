"""Training samples: FIM layout and order, PSM/SPM consistency, repository-level context,
loss masks, packing, determinism, the token cache; plus spans and prompt packing."""

from __future__ import annotations

import random

import numpy as np
import pytest

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.model.prompt_format import FimOrder
from deepfim.engine.training.layout import pack_fim_prompt, rank_context_files, split_cursor_budget
from deepfim.engine.training.samples import IGNORE, SampleBuilder, SampleConfig, TrainingSequences, pack_sequence
from deepfim.engine.training.spans import SPAN_KINDS, choose_span
from deepfim.engine.training.token_cache import load_tokenized

TOK = DEFAULT_MODEL_DIR / "tokenizer.json"
REPORT = """def total_area(items):
    total = 0.0
    for item in items:
        if item is None:
            continue
        total += item.area()
    return total


def main():
    print(total_area([1, 2]))
"""


@pytest.fixture
def builder(tiny_corpus, tokenizer):
    corpus = load_tokenized(tiny_corpus, TOK, "train")
    return SampleBuilder(tokenizer, corpus, SampleConfig(seq_len=512, min_sample_tokens=64, max_middle_tokens=48))


def _index(builder, path):
    return next(i for i, f in enumerate(builder.corpus.files) if f.path == path)


def _fim_parts(tok, ids, order):
    """(prefix ids, suffix ids, middle ids) read back from a FIM sample by its markers."""
    sp = tok.special
    begin, hole, end = ids.index(sp.fim_begin), ids.index(sp.fim_hole), ids.index(sp.fim_end)
    eos = len(ids) - 1
    assert ids[eos] == sp.eos
    if order is FimOrder.PSM:
        assert begin < hole < end
        return ids[begin + 1 : hole], ids[hole + 1 : end], ids[end + 1 : eos]
    assert hole == begin + 1 < end
    return None, ids[hole + 1 : end], ids[end + 1 : eos]


def test_psm_and_spm_carry_the_same_prefix_suffix_and_middle(builder, tokenizer):
    i = _index(builder, "geo/report.py")
    psm = builder.fim(i, random.Random(7), 400, "block", FimOrder.PSM, repo_level=False)
    spm = builder.fim(i, random.Random(7), 400, "block", FimOrder.SPM, repo_level=False)
    assert psm.kind == "psm" and spm.kind == "spm"
    pre, suf, mid = _fim_parts(tokenizer, psm.ids, FimOrder.PSM)
    _, suf2, _ = _fim_parts(tokenizer, spm.ids, FimOrder.SPM)
    # SPM: [fim_begin, fim_hole, suffix, fim_end, prefix, middle, EOS]; the middle starts at middle_start.
    spm_mid = spm.ids[spm.middle_start : -1]
    spm_pre = spm.ids[spm.ids.index(tokenizer.special.fim_end) + 1 : spm.middle_start]
    assert mid == spm_mid and suf == suf2 and pre == spm_pre and mid
    assert psm.ids[psm.middle_start : -1] == mid
    text = builder.corpus.files[i].text
    assert tokenizer.decode(pre) + tokenizer.decode(mid) + tokenizer.decode(suf) == text
    assert tokenizer.encode(tokenizer.decode(mid)) == mid  # the middle is encoded on its own, as at inference


def test_repository_sample_puts_package_files_before_the_cursor_file(builder, tokenizer):
    sp = tokenizer.special
    i = _index(builder, "geo/report.py")
    cfg_all = SampleConfig(
        seq_len=1024, min_sample_tokens=64, max_middle_tokens=48, file_header_rate=1, repo_name_rate=1
    )
    b = SampleBuilder(tokenizer, builder.corpus, cfg_all)
    s = b.fim(i, random.Random(3), 1000, "line_rest", FimOrder.PSM, repo_level=True)
    assert s.kind == "psm+repo"
    ids = s.ids
    assert ids[0] == sp.bos and ids[1] == sp.repo_name_begin
    assert tokenizer.decode(ids[2 : ids.index(sp.repo_name_end)]) == "geo"
    names = []
    for k, t in enumerate(ids):
        if t == sp.file_name_begin:
            names.append(tokenizer.decode(ids[k + 1 : ids.index(sp.file_name_end, k)]))
    # report.py names `shapes`, so shapes.py comes first; the cursor file's header is last.
    assert names[0] == "geo/shapes.py" and names[-1] == "geo/report.py" and "geo/util.py" in names
    last_header = max(k for k, t in enumerate(ids) if t == sp.file_name_begin)
    assert ids.index(sp.fim_begin) > last_header
    assert ids.count(sp.file_end) == len(names) - 1  # every context file is closed, the cursor file is not
    first_ctx = ids.index(sp.file_begin) + 1
    assert tokenizer.decode(ids[first_ctx : ids.index(sp.file_end)]).startswith('"""Shapes')


def test_labels_ignore_structure_and_train_the_middle_and_eos(builder, tokenizer):
    ids, labels, kinds = pack_sequence(builder, random.Random(0))
    assert ids.shape == labels.shape == (512,)
    structural = tokenizer.special_id_set - {tokenizer.special.eos}
    targets = np.concatenate([ids[1:], [0]])
    for t, lab in zip(targets[:-1], labels[:-1], strict=True):
        if t in structural:
            assert lab == IGNORE
        elif lab != IGNORE:
            assert lab == t
    assert (labels == tokenizer.special.eos).any()
    assert kinds


def test_loss_only_on_middle_when_asked(tiny_corpus, tokenizer):
    corpus = load_tokenized(tiny_corpus, TOK, "train")
    cfg = SampleConfig(seq_len=256, min_sample_tokens=64, max_middle_tokens=48, fim_rate=1.0, loss_on_prompt=False)
    b = SampleBuilder(tokenizer, corpus, cfg)
    ids, labels, _ = pack_sequence(b, random.Random(1))
    trained = labels[labels != IGNORE]
    assert len(trained) and (trained == tokenizer.special.eos).sum() >= 1
    assert (labels != IGNORE).sum() < 0.5 * len(labels)


def test_stream_is_deterministic_per_worker(tiny_corpus):
    cfg = SampleConfig(seq_len=256, min_sample_tokens=64, max_middle_tokens=48, seed=5)
    a = TrainingSequences(tiny_corpus, TOK, cfg)
    b = TrainingSequences(tiny_corpus, TOK, cfg)
    first = [next(a.stream(0, 2))["input_ids"] for _ in range(1)][0]
    assert np.array_equal(first, next(b.stream(0, 2))["input_ids"])
    assert not np.array_equal(first, next(b.stream(1, 2))["input_ids"])
    batch = next(a.batches(3))
    assert batch["input_ids"].shape == batch["labels"].shape == (3, 256)


def test_token_cache_is_reused_and_matches_encoding(tiny_corpus, tokenizer):
    first = load_tokenized(tiny_corpus, TOK, "train")
    caches = list(tiny_corpus.glob("tokens-*/train.ids.npy"))
    assert len(caches) == 1
    second = load_tokenized(tiny_corpus, TOK, "train")
    assert isinstance(second.tokens, np.memmap)
    for k, f in enumerate(second.files):
        assert second.ids(k).tolist() == tokenizer.encode(f.text) == first.ids(k).tolist()


@pytest.mark.parametrize("kind", SPAN_KINDS)
def test_spans_stay_in_bounds_and_respect_lines(kind):
    rng = random.Random(11)
    for _ in range(50):
        a, b = choose_span(REPORT, kind, rng, max_chars=200)
        assert 0 <= a <= b <= len(REPORT) and b - a <= 200
        if kind in ("lines", "block"):
            assert a == 0 or REPORT[a - 1] == "\n"
        if kind == "block":
            assert REPORT[a:b].endswith("\n") and REPORT[a:b].startswith("    ")


def test_split_cursor_budget_gives_unused_space_to_the_other_side():
    assert split_cursor_budget(10, 10, 100) == (10, 10)
    assert split_cursor_budget(1000, 5, 100) == (95, 5)
    assert split_cursor_budget(5, 1000, 100) == (5, 95)
    assert split_cursor_budget(1000, 1000, 100) == (75, 25)


def test_pack_fim_prompt_fits_budget_and_cuts_the_last_context_file(tokenizer):
    sp = tokenizer.special
    prefix, suffix = tokenizer.encode("x = 1\n" * 50), tokenizer.encode("y = 2\n" * 50)
    context = [("a.py", tokenizer.encode("import os\n" * 30)), ("b.py", tokenizer.encode("import sys\n" * 300))]
    prompt = pack_fim_prompt(
        tokenizer, prefix, suffix, order=FimOrder.SPM, max_tokens=400, path="c.py", repo="r", context=context,
        cursor_tokens=120,
    )  # fmt: skip
    assert len(prompt) <= 400
    kinds = [s.kind for s in prompt.segments]
    assert kinds == ["header", "file", "file", "cursor_file", "suffix", "prefix"]
    last = prompt.segments[-1]
    assert prompt.ids[last.start : last.end] == prefix[-last.num_tokens :]  # SPM: the prefix is last
    assert prompt.ids.count(sp.file_end) == 2
    cursor = sum(s.num_tokens for s in prompt.segments if s.kind in ("prefix", "suffix")) - 3
    assert cursor == 120
    tight = pack_fim_prompt(tokenizer, prefix, suffix, order=FimOrder.PSM, max_tokens=200, context=context)
    assert [s.kind for s in tight.segments] == ["header", "prefix", "suffix"]  # the cursor file took it all
    with pytest.raises(ValueError, match="max_tokens"):
        pack_fim_prompt(tokenizer, prefix, suffix, order=FimOrder.PSM, max_tokens=2, path="c.py")


def test_rank_context_files_puts_named_modules_first():
    ranked = rank_context_files(
        "p/main.py", "from helpers import x\n", [("p/z.py", 1), ("p/helpers.py", 2), ("p/main.py", 3)]
    )
    assert [p for p, _ in ranked] == ["p/helpers.py", "p/z.py"]


def test_config_validation_names_the_bad_value():
    with pytest.raises(ValueError, match="fim_rate"):
        SampleConfig(fim_rate=1.5)
    with pytest.raises(ValueError, match="span_weights"):
        SampleConfig(span_weights=(1.0, 1.0))
