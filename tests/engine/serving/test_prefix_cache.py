"""The V4 prefix cache: resuming after an edit is bit-identical to a cold run; users stay apart."""

from __future__ import annotations

import random

import pytest
import torch

from deepfim.engine.api import CompletionHandle, CompletionRequest, SamplingParams
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.serving.model_runner import ModelRunner
from deepfim.engine.serving.prefix_cache import PrefixCache, PromptKeys, boundaries
from deepfim.engine.serving.sequence import ActiveRequest
from deepfim.engine.serving.speculative import SpeculativeConfig


@pytest.fixture(scope="module")
def tok(tiny_checkpoint):
    return Tokenizer.from_file(tiny_checkpoint)


def prefill(runner: ModelRunner, ids: list[int], namespace: str = "alice") -> ActiveRequest:
    params = SamplingParams(max_tokens=1, speculative=False, token_healing=False)  # the ids as given
    request = CompletionRequest(ids, params, namespace=namespace)
    req = ActiveRequest(request, CompletionHandle(request), None, runner.tokenizer)
    while req.prefilling:
        runner.advance(req)
    return req


def test_resume_after_edits_at_random_positions_is_bit_identical(tiny_model, tok):
    rng = random.Random(0)
    base = [rng.randrange(3, 8000) for _ in range(900)]
    warm = ModelRunner(tiny_model, tok, PrefixCache(), SpeculativeConfig(enabled=False))
    prefill(warm, base)
    for trial in range(6):
        at = rng.randrange(0, len(base) - 10)
        edited = base[:at] + [rng.randrange(3, 8000) for _ in range(rng.randrange(1, 5))] + base[at + 3 :]
        if trial % 2:
            edited = edited[: rng.randrange(at + 1, len(edited) + 1)]  # also cut the tail
        hot = prefill(warm, edited)
        cold = prefill(ModelRunner(tiny_model, tok, None, SpeculativeConfig(enabled=False)), edited)
        assert torch.equal(hot.last_logits, cold.last_logits), f"edit at {at}"
        assert hot.timings.cached_tokens >= (at // 128) * 128 - 128
        assert hot.timings.cached_tokens <= at
        assert hot.candidates[0].tokens == cold.candidates[0].tokens


def test_typing_recomputes_a_few_tokens_per_keystroke(tiny_model, tok):
    cache = PrefixCache()
    runner = ModelRunner(tiny_model, tok, cache, SpeculativeConfig(enabled=False))
    ids = list(range(100, 100 + 700))
    prefill(runner, ids)
    recomputed = []
    for extra in range(1, 9):  # one more token per keystroke
        typed = ids + list(range(1000, 1000 + extra))
        req = prefill(runner, typed)
        recomputed.append(len(typed) - req.timings.cached_tokens)
        cold = prefill(ModelRunner(tiny_model, tok, None, SpeculativeConfig(enabled=False)), typed)
        assert torch.equal(req.last_logits, cold.last_logits)
    assert max(recomputed) <= 16, recomputed  # was up to 127 each
    assert cache.stats()["hits"] >= 8


def test_chunk_boundaries_depend_only_on_positions():
    assert boundaries(45, 128) == [16, 32, 45]
    assert boundaries(300, 128) == [128, 256, 272, 288, 300]
    assert boundaries(256, 128) == [128, 256] and boundaries(5, 128) == [5]
    shared = set(boundaries(1000, 128)) & set(boundaries(1001, 128))
    assert max(shared) == 992  # 1000 and 1001 share every chunk up to the last 16-token one
    assert boundaries(300, 128, sub_blocks=False) == [128, 256, 300]
    assert boundaries(300, 128, (200,), sub_blocks=False) == [128, 200, 256, 300]


def test_the_prompt_tail_is_cut_in_sub_blocks_only_for_a_decode_step(tiny_model, tok, monkeypatch):
    """Short calls are cheap on the C step only: the modules take the tail in one call."""
    ids = list(range(300, 600))
    calls = {}
    for name, decode_step in (("c step", True), ("modules", False)):
        runner = ModelRunner(tiny_model, tok, PrefixCache(), SpeculativeConfig(enabled=False), decode_step=decode_step)
        calls[name] = seen = []
        real_forward = runner.forward
        monkeypatch.setattr(
            runner, "forward", lambda ids, *rest, f=real_forward, s=seen: s.append(len(ids)) or f(ids, *rest)
        )
        if runner.decode_step is not None:
            real_batch = runner.decode_step.batch
            monkeypatch.setattr(
                runner.decode_step, "batch", lambda c, f=real_batch, s=seen: s.extend(len(x[0]) for x in c) or f(c)
            )
        prefill(runner, ids)
    assert calls == {"c step": [128, 128, 16, 16, 12], "modules": [128, 128, 44]}


def test_same_prompt_again_costs_no_prefill(tiny_model, tok, monkeypatch):
    runner = ModelRunner(tiny_model, tok, PrefixCache(), SpeculativeConfig(enabled=False))
    forwarded: list[int] = []  # tokens of each model call (the modules' and the batched C step's)
    real_forward, real_batch = runner.forward, runner.decode_step.batch
    monkeypatch.setattr(runner, "forward", lambda ids, *rest: forwarded.append(len(ids)) or real_forward(ids, *rest))
    monkeypatch.setattr(
        runner.decode_step, "batch", lambda calls: forwarded.extend(len(c[0]) for c in calls) or real_batch(calls)
    )
    ids = list(range(300, 555))
    first = prefill(runner, ids)
    assert sum(forwarded) == len(ids)
    again = prefill(runner, ids)
    assert again.timings.cached_tokens == len(ids)
    assert sum(forwarded) == len(ids)  # not one token recomputed (the time saved: `deepfim bench prefix`)
    assert torch.equal(again.last_logits, first.last_logits)


def test_namespaces_never_share_state(tiny_model, tok):
    cache = PrefixCache()
    runner = ModelRunner(tiny_model, tok, cache, SpeculativeConfig(enabled=False))
    secret = list(range(2000, 2600))
    prefill(runner, secret, namespace="user:alice")
    assert cache.match(cache.keys("user:bob", secret)).length == 0
    assert cache.match(cache.keys("user:alice", secret)).length == len(secret)
    bob = prefill(runner, secret, namespace="user:bob")
    assert bob.timings.cached_tokens == 0


def test_a_positions_key_depends_only_on_the_tokens_before_it():
    ids = list(range(5000, 5300))
    longer, shorter = PromptKeys("alice", ids, 128), PromptKeys("alice", ids[:200], 128)
    for end in (5, 16, 128, 144, 200):
        assert longer.at(end) == shorter.at(end)
    assert longer.at(256) != PromptKeys("alice", ids[:255] + [7], 128).at(256)
    assert longer.at(128) != PromptKeys("bob", ids, 128).at(128)
    assert longer.exact != shorter.exact and longer.exact != PromptKeys("bob", ids, 128).exact
    assert longer.ends == [end for end, _ in longer.keyed_ends()] == boundaries(300, 128)
    with pytest.raises(ValueError):
        longer.at(301)


def test_an_insert_off_a_chunk_boundary_is_refused(tiny_model, tok):
    cache = PrefixCache()
    runner = ModelRunner(tiny_model, tok, cache, SpeculativeConfig(enabled=False))
    ids = list(range(300, 500))
    state = tiny_model.new_state()
    runner.forward(ids, state, "none")
    assert state.pos == 200
    with pytest.raises(ValueError, match="not on a chunk boundary"):
        cache.insert(cache.keys("alice", ids + [9, 9, 9]), state)  # 200 of 203: not a chunk end
    cache.insert(cache.keys("alice", ids), state)  # the prompt's end is one


def test_lru_eviction_respects_the_budget(tiny_model, tok):
    cache = PrefixCache(budget_bytes=1_500_000)
    runner = ModelRunner(tiny_model, tok, cache, SpeculativeConfig(enabled=False))
    for k in range(4):
        prefill(runner, [4000 + k] + list(range(10, 10 + 600)))
    stats = cache.stats()
    assert stats["bytes"] <= 1_500_000 and stats["evictions"] > 0
    assert cache.match(cache.keys("alice", [4003] + list(range(10, 610)))).length > 0  # the newest survives
    # the running count of shared bytes is what the cache's buffers hold, after the evictions
    entries = cache._entries.values()
    buffers = {id(b): b for e in entries for b in e.buffers}
    held = sum(e.private_bytes for e in entries) + sum(b.data.numel() * 4 for b in buffers.values())
    assert stats["bytes"] == held


def test_cached_snapshots_hold_only_the_bytes_the_budget_counts(tiny_model, tok):
    """Every tensor a cached snapshot holds is its own (no view pinning a chunk-sized tensor) and
    no undo record is kept, so the memory the cache holds is within what it counts: the distinct
    storages behind its entries add up to no more than its byte count (a snapshot at a block end
    and the exact one at the same place share tensors, counted twice)."""
    cache = PrefixCache()
    runner = ModelRunner(tiny_model, tok, cache, SpeculativeConfig(enabled=False))
    prefill(runner, list(range(10, 10 + 900)))  # module-path chunks of 128, then 16-token C calls
    storages, held = {}, 0
    for entry in cache._entries.values():
        st = entry.state
        small = [st.last_hidden]
        for c in [*st.layers, *st.mtp]:
            assert c.undo_window is None
            small.append(c.window)
            for comp in (c.comp, c.index):
                if comp is not None:
                    assert comp.undo is None
                    small += [comp.pending_kv, comp.pending_gate, comp.prev_kv, comp.prev_gate]
                    if comp.entries.buf is not None:
                        data = comp.entries.buf.data
                        storages[data.untyped_storage().data_ptr()] = data.untyped_storage().nbytes()
        for t in small:
            if t is not None:
                assert t.untyped_storage().nbytes() == t.numel() * t.element_size()
                storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        held += 0 if entry.logits is None else entry.logits.numel() * 4
    assert len(cache._entries) > 5
    assert sum(storages.values()) + held <= cache.nbytes()


def prefill_anchored(runner, ids, anchors, persist=False, namespace="alice", prefill_only=False):
    params = SamplingParams(max_tokens=1, speculative=False, token_healing=False)
    request = CompletionRequest(ids, params, namespace=namespace, anchors=anchors, persist=persist,
                                prefill_only=prefill_only)  # fmt: skip
    req = ActiveRequest(request, CompletionHandle(request), None, runner.tokenizer)
    while req.prefilling:
        runner.advance(req)
    return req


def _store(tmp_path, model="m1"):
    from deepfim.engine.serving.snapshot_store import SnapshotStore

    return SnapshotStore(tmp_path, model)


def test_a_restart_resumes_from_the_persisted_part_bit_identically(tiny_model, tok, tmp_path):
    part = list(range(500, 1100))  # the shared part: 600 tokens, its end no block boundary
    warm = ModelRunner(tiny_model, tok, PrefixCache(store=_store(tmp_path)), SpeculativeConfig(enabled=False))
    assert prefill_anchored(warm, part, (len(part),), persist=True, prefill_only=True).prefill_done
    files = list((tmp_path / "snapshots-v1" / "m1").glob("*.safetensors"))
    assert len(files) == 1  # only the anchor asked for is written
    # a new process: an empty memory cache over the same folder
    cache = PrefixCache(store=_store(tmp_path))
    restarted = ModelRunner(tiny_model, tok, cache, SpeculativeConfig(enabled=False))
    prompt = part + [7, 8, 9, 10]
    hot = prefill_anchored(restarted, prompt, (len(part),))
    cold = prefill_anchored(ModelRunner(tiny_model, tok, None, SpeculativeConfig(enabled=False)), prompt, (len(part),))
    assert hot.timings.cached_tokens == len(part) and cache.stats()["disk_hits"] == 1
    assert torch.equal(hot.last_logits, cold.last_logits)


def test_a_part_prefilled_while_the_c_step_compiles_is_not_persisted(tiny_model, tok, tmp_path, monkeypatch):
    """At a first start the modules serve until the C step is built; a state they computed part
    of differs by rounding from the all-C cold run a restart compares with, so it stays in memory
    only. The first call after the build attaches the C step, and a part prefilled from then on
    is persisted."""
    import threading

    from deepfim.kernels.decode_step import cpu as c_step_cpu

    built = threading.Event()
    monkeypatch.setattr(c_step_cpu, "building", lambda: True)
    monkeypatch.setattr(c_step_cpu, "compiling", lambda: not built.is_set())
    part = list(range(500, 1100))
    runner = ModelRunner(tiny_model, tok, PrefixCache(store=_store(tmp_path)), SpeculativeConfig(enabled=False))
    assert runner.decode_step is None
    assert prefill_anchored(runner, part, (len(part),), persist=True, prefill_only=True).prefill_done
    folder = tmp_path / "snapshots-v1" / "m1"
    assert not list(folder.glob("*.safetensors"))
    built.set()
    other = list(range(2000, 2600))
    prefill_anchored(runner, other, (len(other),), persist=True, prefill_only=True)
    assert runner.decode_step is not None  # attached by that prefill's first call
    assert len(list(folder.glob("*.safetensors"))) == 1
    restarted = ModelRunner(tiny_model, tok, PrefixCache(store=_store(tmp_path)), SpeculativeConfig(enabled=False))
    prompt = other + [7, 8, 9, 10]
    hot = prefill_anchored(restarted, prompt, (len(other),))
    cold = prefill_anchored(ModelRunner(tiny_model, tok, None, SpeculativeConfig(enabled=False)), prompt, (len(other),))
    assert hot.timings.cached_tokens == len(other) and torch.equal(hot.last_logits, cold.last_logits)


def test_a_restarted_warmer_loads_its_part_from_disk(tiny_model, tok, tmp_path):
    """The warmer of a restarted server asks for exactly the part it persisted: no prefill."""
    part = list(range(500, 1100))
    warm = ModelRunner(tiny_model, tok, PrefixCache(store=_store(tmp_path)), SpeculativeConfig(enabled=False))
    prefill_anchored(warm, part, (len(part),), persist=True, prefill_only=True)
    cache = PrefixCache(store=_store(tmp_path))
    restarted = ModelRunner(tiny_model, tok, cache, SpeculativeConfig(enabled=False))
    again = prefill_anchored(restarted, part, (len(part),), persist=True, prefill_only=True)
    assert again.prefill_done and again.timings.cached_tokens == len(part) and cache.stats()["disk_hits"] == 1
    # and the state it loaded serves a cursor prompt bit-identically to a cold run
    prompt = part + [7, 8, 9, 10]
    hot = prefill_anchored(restarted, prompt, (len(part),))
    cold = prefill_anchored(ModelRunner(tiny_model, tok, None, SpeculativeConfig(enabled=False)), prompt, (len(part),))
    assert hot.timings.cached_tokens == len(part) and torch.equal(hot.last_logits, cold.last_logits)


@pytest.mark.parametrize("damage", ["truncate", "flip", "other-model", "format"])
def test_a_bad_snapshot_is_refused_with_a_log_line_and_recomputed(tiny_model, tok, tmp_path, caplog, damage):
    from safetensors import safe_open
    from safetensors.torch import save_file

    part = list(range(300, 700))
    warm = ModelRunner(tiny_model, tok, PrefixCache(store=_store(tmp_path)), SpeculativeConfig(enabled=False))
    prefill_anchored(warm, part, (len(part),), persist=True, prefill_only=True)
    (path,) = (tmp_path / "snapshots-v1" / "m1").glob("*.safetensors")
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "flip":
        data[-100] ^= 0xFF  # inside the tensors: the checksum catches it
        path.write_bytes(bytes(data))
    else:
        with safe_open(str(path), "pt") as f:
            meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
        meta["model" if damage == "other-model" else "format"] = "something-else"
        save_file(tensors, str(path), metadata=meta)
    cache = PrefixCache(store=_store(tmp_path))
    runner = ModelRunner(tiny_model, tok, cache, SpeculativeConfig(enabled=False))
    prompt = part + [11, 12]
    with caplog.at_level("WARNING"):
        req = prefill_anchored(runner, prompt, (len(part),))
    assert req.timings.cached_tokens == 0 and cache.store.rejected == 1 and not path.exists()
    assert "prefix snapshot" in caplog.text and "recomputed" in caplog.text
    cold = prefill_anchored(ModelRunner(tiny_model, tok, None, SpeculativeConfig(enabled=False)), prompt, (len(part),))
    assert torch.equal(req.last_logits, cold.last_logits)


def test_snapshots_stay_under_their_size_cap(tiny_model, tok, tmp_path):
    store = _store(tmp_path)
    runner = ModelRunner(tiny_model, tok, PrefixCache(store=store), SpeculativeConfig(enabled=False))
    prefill_anchored(runner, list(range(100, 400)), (300,), persist=True, prefill_only=True)
    one = store.nbytes()
    store.max_bytes = int(one * 1.5)
    prefill_anchored(runner, list(range(1000, 1300)), (300,), persist=True, prefill_only=True)
    assert store.nbytes() <= store.max_bytes and len(list(store.directory.glob("*.safetensors"))) == 1


def _active(runner, ids, anchors, prefill_only=False, cancelled=False):
    params = SamplingParams(max_tokens=1, speculative=False, token_healing=False)
    request = CompletionRequest(ids, params, namespace="alice", anchors=anchors, prefill_only=prefill_only)
    handle = CompletionHandle(request)
    if cancelled:
        handle.cancel()
    return ActiveRequest(request, handle, None, runner.tokenizer)


@pytest.mark.parametrize("head_cancelled", [False, True])
def test_a_prompt_waits_for_the_prefill_of_its_own_head_in_flight(tiny_model, tok, head_cancelled):
    """The language server sends a new file's prompt head ahead (prefill only) while it gathers
    the rest; the whole prompt, arriving during that prefill, waits for it and resumes at the
    head's end instead of computing the same tokens beside it, with the logits of a cold run.
    A cancelled head holds no one up."""
    from deepfim.engine.serving.scheduler import WAITS, Scheduler

    part = list(range(500, 1100))  # the part every file shares (600 tokens), cached
    head = part + list(range(1200, 1420))  # + this file's header, suffix and far prefix
    prompt = head + list(range(1500, 1590))  # + evidence and near prefix
    anchors = (len(part), len(head))
    runner = ModelRunner(tiny_model, tok, PrefixCache(), SpeculativeConfig(enabled=False))
    prefill_anchored(runner, part, (len(part),), prefill_only=True)
    scheduler = Scheduler()
    ahead = _active(runner, head, anchors, prefill_only=True)
    scheduler.add(ahead)
    runner.step(scheduler.next_batch(runner.prefill_cost))  # its first chunk: 600 -> 640
    if head_cancelled:
        ahead.handle.cancel()
        scheduler.remove(ahead)
    whole = _active(runner, prompt, anchors)
    scheduler.add(whole)
    waited = 0
    while whole.prefilling:
        if not head_cancelled:
            waited += runner.prefill_cost(whole) == WAITS
        batch = scheduler.next_batch(runner.prefill_cost)
        assert (whole in batch) == (head_cancelled or not ahead.prefilling)
        runner.step(batch)
        if ahead.done:
            scheduler.remove(ahead)
    cold = prefill_anchored(ModelRunner(tiny_model, tok, None, SpeculativeConfig(enabled=False)), prompt, anchors)
    assert torch.equal(whole.last_logits, cold.last_logits)
    if head_cancelled:
        assert whole.timings.cached_tokens == 640  # the one chunk the head computed
    else:
        assert waited == 2 and whole.timings.cached_tokens == len(head)  # the head's chunks 640 -> 768 -> 820
