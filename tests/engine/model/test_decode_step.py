"""The one-call C decode step (engine/model/decode_step.py, kernels/decode_step/step.c) against the
module path it replaces: same logits and same next state, token after token, for every layer
type and the config variants step.c branches on; and the state rules snapshots rely on."""

from __future__ import annotations

import pytest
import torch
from engine_fixtures import randomize

from deepfim.engine.model.config import tiny_args
from deepfim.engine.model.decode_step import DecodeStep
from deepfim.engine.model.transformer import Rotary, Transformer
from deepfim.engine.serving.model_runner import ModelRunner

TOL = 2e-5  # logits (of order 1)
STATE_TOL = 1e-4  # state rows (normed, of order 1-3: a few float32 ulps after 300 steps)

CONFIGS = {
    "all-layer-types": {},
    "top-k-covers-all": {"index_topk": 256},
    "sigmoid-no-shared-no-hash": {"score_func": "sigmoid", "n_shared_experts": 0, "n_hash_layers": 0},
    "softmax-small-window": {"score_func": "softmax", "window_size": 8},
    "two-streams-no-limit": {"hc_mult": 2, "swiglu_limit": 0.0, "n_activated_experts": 3},
    "reordered-layer-types": {"compress_ratios": (128, 4, 128, 0)},
    "bf16-checkpoint": {"bf16_values": True},
}


def make_model(seed: int = 0, bf16_values: bool = False, **overrides) -> Transformer:
    m = randomize(Transformer(tiny_args(index_n_heads=16, **overrides)), seed=seed).eval()
    with torch.no_grad():
        m.head.weight.mul_(0.25)  # logits of order 1: the bound is absolute
        if bf16_values:  # like every real checkpoint: the C step then reads bf16 copies of the matrices
            for p in m.parameters():
                p.copy_(p.bfloat16().float())
    return m


def held_in_bf16(model):
    """The model as a CPU that multiplies bf16 loads it (quantized.materialize): matrices in bf16,
    the head and the router gates in fp32; step.c then rounds activations at the products too."""
    with torch.no_grad():
        for name, module in model.named_modules():
            if name == "head" or type(module).__name__ == "Gate":
                continue
            for key, p in module.named_parameters(recurse=False):
                if (
                    key in ("weight", "w1", "w2", "w3")
                    and p.dim() >= 2
                    and isinstance(module, (torch.nn.Linear, torch.nn.Embedding, type(model.layers[0].ffn)))
                ):
                    p.data = p.data.bfloat16()
    return model


def model_named(name: str) -> Transformer:
    """A CONFIGS model, or "bf16-held": the bf16 checkpoint held in bf16 (step.c's bf16 products)."""
    return held_in_bf16(make_model(bf16_values=True)) if name == "bf16-held" else make_model(**CONFIGS[name])


_steps: dict[int, DecodeStep] = {}


def forward(model: Transformer, ids: torch.Tensor, state, kernel: bool):
    """One call through the C step (kernel) or the modules (the reference)."""
    if not kernel:
        return model(ids, state)
    step = _steps.get(id(model))
    if step is None or step.model is not model:
        step = _steps[id(model)] = DecodeStep.for_model(model)
    logits, _ = step(ids, state, "all")
    return logits


def decode(model: Transformer, state, ids: list[int], kernel: bool, chunks: list[int] | None = None) -> torch.Tensor:
    """Logits of `ids` fed from `state` one token at a time, or in calls of the `chunks` sizes."""
    sizes = iter(chunks or [1] * len(ids))
    out, i = [], 0
    with torch.no_grad():
        while i < len(ids):
            n = next(sizes)
            result = forward(model, torch.tensor([ids[i : i + n]]), state, kernel)
            out.append(result if kernel else result.logits)
            i += n
    return torch.cat(out, 1)


def assert_same_state(a, b) -> None:
    assert a.pos == b.pos
    for ca, cb in zip(a.layers, b.layers, strict=True):
        torch.testing.assert_close(ca.window, cb.window, rtol=0, atol=STATE_TOL)
        for sa, sb in ((ca.comp, cb.comp), (ca.index, cb.index)):
            if sa is None:
                continue
            for name in ("pending_kv", "pending_gate", "prev_kv", "prev_gate"):
                ta, tb = getattr(sa, name), getattr(sb, name)
                if ta is None or tb is None:  # a fresh state holds None where a stepped one holds 0 rows
                    assert (ta is None or ta.shape[1] == 0) and (tb is None or tb.shape[1] == 0), name
                else:
                    torch.testing.assert_close(ta, tb, rtol=0, atol=STATE_TOL)
            assert sa.entries.count == sb.entries.count
            if sa.entries.count:
                torch.testing.assert_close(sa.entries.tensor(), sb.entries.tensor(), rtol=0, atol=STATE_TOL)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_c_step_equals_module_step_from_position_zero(name):
    model = make_model(**CONFIGS[name])
    step = DecodeStep.for_model(model)
    assert step is not None and step.bf16 == (name == "bf16-checkpoint")
    ids = torch.randint(0, model.args.vocab_size, (300,), generator=torch.Generator().manual_seed(1)).tolist()
    fast_state, slow_state = model.new_state(), model.new_state()
    fast = decode(model, fast_state, ids, kernel=True)
    slow = decode(model, slow_state, ids, kernel=False)
    assert (fast - slow).abs().max().item() <= TOL
    assert_same_state(fast_state, slow_state)


VERIFY_SIZES = [2, 5, 16, 3, 7, 4, 1, 9, 16, 11, 13, 6, 8, 15, 10, 12, 14] * 3  # speculative verification
BLOCK_SIZES = [128, 1, 127, 64, 33, 128, 3, 96]  # prefill chunks up to a whole 128-token block


@pytest.mark.parametrize(
    ("name", "sizes"),
    [(name, VERIFY_SIZES) for name in ("all-layer-types", "reordered-layer-types", "bf16-checkpoint")]
    + [(name, BLOCK_SIZES) for name in ("all-layer-types", "bf16-checkpoint")],
)
def test_multi_token_calls_equal_the_module_path(name, sizes):
    """Calls of 2..128 tokens cross window and compressor boundaries (windows of 4 and 128, a
    sliding window of 128)."""
    model = make_model(**CONFIGS[name])
    ids = torch.randint(0, model.args.vocab_size, (sum(sizes),), generator=torch.Generator().manual_seed(5)).tolist()
    fast_state, slow_state = model.new_state(), model.new_state()
    fast = decode(model, fast_state, ids, kernel=True, chunks=sizes)
    slow = decode(model, slow_state, ids, kernel=False, chunks=sizes)
    assert (fast - slow).abs().max().item() <= TOL
    assert_same_state(fast_state, slow_state)


@pytest.mark.parametrize("name", ["bf16-checkpoint", "bf16-held"])
def test_c_step_results_do_not_depend_on_how_a_prompt_is_chunked(name):
    """The prefix cache may end prefill chunks anywhere the C step serves them: each token's
    sums run the same whatever the call's other rows (matmul.h, select.c, decode.c), so the
    logits and the next state are bit for bit the same in one call of 128 or in any pieces
    (bf16-held: the bf16 products, AMX tiles of 16 tokens where the CPU has them)."""
    model = model_named(name)
    gen = torch.Generator().manual_seed(9)
    prompt = torch.randint(0, model.args.vocab_size, (1, 300), generator=gen)
    ids = torch.randint(0, model.args.vocab_size, (128 + 8,), generator=gen).tolist()
    results = []
    for chunks in ([128] + [1] * 8, [16] * 8 + [8], [5, 100, 23, 8], [1] * 136):
        with torch.no_grad():
            state = model.new_state()
            model(prompt, state)
        results.append((decode(model, state, ids, kernel=True, chunks=chunks)[:, -9:], state))
    (first, first_state), others = results[0], results[1:]
    for logits, state in others:
        assert torch.equal(logits, first)  # the last 9 tokens' logits, after every chunking
        for ca, cb in zip(first_state.layers, state.layers, strict=True):
            assert torch.equal(ca.window, cb.window)
            for sa, sb in ((ca.comp, cb.comp), (ca.index, cb.index)):
                if sa is not None and sa.entries.count:
                    assert torch.equal(sa.entries.tensor(), sb.entries.tensor())


@pytest.mark.parametrize("name", ["all-layer-types", "bf16-checkpoint", "bf16-held"])
def test_c_step_results_do_not_depend_on_the_thread_count(name):
    """A call's tokens are split among the OpenMP threads for their selection and attention
    (step.c attend_sequence), a matrix's rows for its products: bit for bit what one thread
    computes, at every layer type."""
    model = model_named(name)
    gen = torch.Generator().manual_seed(11)
    prompt = torch.randint(0, model.args.vocab_size, (1, 300), generator=gen)
    ids = torch.randint(0, model.args.vocab_size, (128 + 64 + 5,), generator=gen).tolist()
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 4, 3):  # one part; four parts of 32 / 16 tokens; three uneven ones
            torch.set_num_threads(1)  # the module path's prompt: torch's sums may split by thread
            with torch.no_grad():
                state = model.new_state()
                model(prompt, state)
            torch.set_num_threads(threads)
            results.append((decode(model, state, ids, kernel=True, chunks=[128, 64, 5]), state))
    finally:
        torch.set_num_threads(before)
    (first, first_state), others = results[0], results[1:]
    for logits, state in others:
        assert torch.equal(logits, first)
        for ca, cb in zip(first_state.layers, state.layers, strict=True):
            assert torch.equal(ca.window, cb.window)
            for sa, sb in ((ca.comp, cb.comp), (ca.index, cb.index)):
                if sa is not None and sa.entries.count:
                    assert torch.equal(sa.entries.tensor(), sb.entries.tensor())


def test_keep_first_after_a_multi_token_call_equals_the_module_path():
    """Rejected drafts are taken back from the C call's undo records exactly as from the modules'."""
    model = make_model()
    gen = torch.Generator().manual_seed(6)
    prompt = torch.randint(0, model.args.vocab_size, (1, 126), generator=gen)
    calls = [(torch.randint(0, model.args.vocab_size, (1, size), generator=gen), keep)
             for size, keep in [(6, 2), (9, 9), (4, 1), (16, 7), (3, 3), (8, 5)]]  # fmt: skip
    states = {}
    for kernel in (True, False):
        with torch.no_grad():
            state = model.new_state()
            model(prompt, state)
            for drafts, keep in calls:
                start = state.pos
                forward(model, drafts, state, kernel)
                if keep < drafts.shape[1]:
                    state.keep_first(keep, start, model.args.window_size)
        states[kernel] = state
    assert_same_state(states[True], states[False])
    tail = [1, 2, 3, 4, 5, 6, 7, 8]
    assert (decode(model, states[True], tail, True) - decode(model, states[False], tail, False)).abs().max() <= TOL


def test_c_step_continues_a_chunked_prefill_and_feeds_a_later_chunk():
    model = make_model()
    ids = torch.randint(0, model.args.vocab_size, (1, 420), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(ids).logits
        state = model.new_state()
        model(ids[:, :203], state)  # module path, ends inside open windows of every ratio
        steps = decode(model, state, ids[0, 203:350].tolist(), kernel=True)
        rest = model(ids[:, 350:], state).logits  # module path again, from the C step's state
    assert (steps - full[:, 203:350]).abs().max().item() <= TOL
    assert (rest - full[:, 350:]).abs().max().item() <= TOL


def test_snapshot_taken_before_c_steps_is_untouched_by_them():
    model = make_model()
    gen = torch.Generator().manual_seed(3)
    prompt = torch.randint(0, model.args.vocab_size, (1, 255), generator=gen)
    a, b = (torch.randint(0, model.args.vocab_size, (40,), generator=gen).tolist() for _ in range(2))
    with torch.no_grad():
        state = model.new_state()
        model(prompt, state)
    snap = state.snapshot()
    decode(model, state, a, kernel=True)  # appends entries, replaces windows: the snapshot must not see it
    got = decode(model, snap, b, kernel=True)
    with torch.no_grad():
        fresh = model.new_state()
        model(prompt, fresh)
    assert (got - decode(model, fresh, b, kernel=False)).abs().max().item() <= TOL


def test_positions_past_the_rope_table(monkeypatch):
    monkeypatch.setattr(Rotary, "TABLE", 64)
    model = make_model(window_size=16)
    ids = torch.randint(0, model.args.vocab_size, (200,), generator=torch.Generator().manual_seed(4)).tolist()
    fast = decode(model, model.new_state(), ids, kernel=True)
    slow = decode(model, model.new_state(), ids, kernel=False)
    assert (fast - slow).abs().max().item() <= TOL


def test_the_runner_hands_the_c_step_only_the_calls_it_covers(monkeypatch, tiny_checkpoint):
    from deepfim.engine.model.tokenizer import Tokenizer

    assert DecodeStep.for_model(make_model(quant_sim=True)) is None  # FP8 numerics: the module path
    model = make_model()
    runner = ModelRunner(model, Tokenizer.from_file(tiny_checkpoint))
    assert runner.decode_step is not None and runner.mtp is None  # MTP drafts cost more than they save here
    assert ModelRunner(model, runner.tokenizer, decode_step=False).decode_step is None
    limit = runner.decode_step.max_tokens
    assert limit == 128  # step.c's MAX_TOKENS, read from the library: a whole prefill block
    calls = []
    real = DecodeStep.batch
    monkeypatch.setattr(DecodeStep, "batch", lambda self, c: calls.extend(len(i) for i, _, _ in c) or real(self, c))
    state = model.new_state()
    with torch.no_grad():
        runner.forward(list(range(limit + 1)), state, "none")  # a prefill chunk: the modules
        runner.forward(list(range(limit)), state, "last")
        runner.forward([7], state, "last")
    assert calls == [limit, 1] and state.pos == 2 * limit + 2


def test_a_state_that_does_not_match_its_position_is_refused():
    model = make_model()
    state = model.new_state()
    decode(model, state, [1, 2, 3], kernel=True)
    state.pos = 5  # the compressors hold 3 tokens of their open windows, not 5
    with pytest.raises(RuntimeError, match="does not match"):
        decode(model, state, [4], kernel=True)
