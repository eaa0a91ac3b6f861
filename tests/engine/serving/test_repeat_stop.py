"""The repeat stop on the shipped embedded model: greedy decoding of a small model falls into
token loops on prompts like these (``"random", "random", …``), which the stop must catch.

A completion may never hold a run of 1-8 tokens written three times in a row when the run has
letters (``text_document.text_document.text_document``); it is cut after the run's first copy,
and what it keeps is what decoding without the stop wrote up to there. Runs without letters
(``)))``, ``0, 0, 0``) are code, not loops, and stay.
"""

from __future__ import annotations

import pytest

from deepfim.engine.api import SamplingParams
from deepfim.engine.model.prompt_format import FimOrder, build_fim_prompt
from deepfim.engine.serving.generate import generate, load_runner
from deepfim.engine.serving.model_runner import ModelRunner
from deepfim.engine.serving.sampler import LOOP_COPIES, TOKEN_LOOP_MAX, repeated_tokens_cut

PROBES = [
    ("def size(doc):\n    return len(doc.", "\n"),
    ("import os\npath = os.path.", "\n"),
    ("def f(server):\n    server.protocol.", "\n"),
    ("values = [", "]\n"),
    ("from . import", "\n"),
    ("data = config[", "\n"),
    ("text = text.replace(", "\n"),
    ("    if node.parent.", "\n"),
    ("ESCAPES = {", "}\n"),
    ("names = ('", ")\n"),
]


def _loop_at(tokens: list[int], texts: list[str]) -> int | None:
    """The first index where a run of 1-8 tokens with a letter starts its third copy."""
    for end in range(len(tokens) + 1):
        for k in range(1, TOKEN_LOOP_MAX + 1):
            if end < LOOP_COPIES * k:
                break
            run = tokens[end - k : end]
            copies = all(tokens[end - (c + 1) * k : end - c * k] == run for c in range(1, LOOP_COPIES))
            if copies and any(ch.isalpha() for ch in "".join(texts[end - k : end])):
                return end - k
    return None


@pytest.fixture(scope="module")
def shipped() -> ModelRunner:
    return load_runner()


@pytest.fixture(scope="module")
def pairs(shipped):
    """(without the stop, with it) for each probe, 48 greedy tokens."""
    out = []
    for prefix, suffix in PROBES:
        prompt = build_fim_prompt(shipped.tokenizer, prefix, suffix, FimOrder.SPM, path="example.py").ids
        free = generate(shipped, prompt, SamplingParams(max_tokens=48, stop_loops=False))[0]
        stopped = generate(shipped, prompt, SamplingParams(max_tokens=48, stop_loops=True))[0]
        out.append((free, stopped))
    return out


def test_the_model_does_loop_on_some_probe_so_the_test_means_something(pairs, shipped):
    texts = lambda c: [shipped.tokenizer.decode([t]) for t in c.token_ids]  # noqa: E731
    looping = [free for free, _ in pairs if _loop_at(free.token_ids, texts(free)) is not None]
    assert looping, "no probe loops without the stop any more: add probes this model loops on"


def test_no_completion_keeps_a_token_loop(pairs, shipped):
    for free, stopped in pairs:
        texts = [shipped.tokenizer.decode([t]) for t in stopped.token_ids]
        assert _loop_at(stopped.token_ids, texts) is None, stopped.text
        assert free.text.startswith(stopped.text)  # the stop only cuts; it never changes a token


def test_a_loop_is_cut_after_its_first_copy(pairs, shipped):
    tok = shipped.tokenizer
    cut_any = False
    for free, stopped in pairs:
        ids = free.token_ids
        texts = [tok.decode([t]) for t in ids]
        third = _loop_at(ids, texts)
        if third is None or len(stopped.text) == len(free.text):
            continue
        cut_any = True
        assert stopped.finish_reason == "stop"
        assert len(stopped.text) < len(tok.decode(ids[:third]))  # the second copy is gone too
    assert cut_any


def test_runs_without_letters_are_code_not_loops(shipped):
    tok = shipped.tokenizer
    for text in (")))))))", "0, 0, 0, 0, 0", "[[[[[[[[", "\n\n\n\n"):
        ids = tok.encode(text)
        ends = [len(tok.decode(ids[: i + 1])) for i in range(len(ids))]
        assert repeated_tokens_cut(ids, ends, tok.decode(ids)) is None, text
    ids = tok.encode("doc")
    run = tok.encode(".text_document")
    cut = None
    while cut is None:  # as decoding does: checked after every token
        ids.append(run[(len(ids) - 1) % len(run)])
        ends = [len(tok.decode(ids[: i + 1])) for i in range(len(ids))]
        cut = repeated_tokens_cut(ids, ends, tok.decode(ids))
    assert tok.decode(ids)[:cut] == "doc.text_document"
    assert tok.decode(ids) == "doc" + ".text_document" * 3  # noticed as the third copy ends
