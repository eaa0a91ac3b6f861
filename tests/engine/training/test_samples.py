"""Training samples (engine/training/samples.py): FIM layout and order, PSM/SPM consistency,
repository-level context, loss masks, packing, per-worker determinism, config validation."""

from __future__ import annotations

import random

import numpy as np
import pytest

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.engine.model.prompt_format import FimOrder
from deepfim.engine.training.samples import IGNORE, SampleBuilder, SampleConfig, TrainingSequences, pack_sequence
from deepfim.engine.training.token_cache import load_tokenized

TOK = DEFAULT_MODEL_DIR / "tokenizer.json"


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


def test_config_validation_names_the_bad_value():
    with pytest.raises(ValueError, match="fim_rate"):
        SampleConfig(fim_rate=1.5)
    with pytest.raises(ValueError, match="span_weights"):
        SampleConfig(span_weights=(1.0, 1.0))
