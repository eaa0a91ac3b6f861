"""Which requests run in each step (engine/serving/scheduler.py), seen through the engine loop
around a scripted runner: every running sequence decodes in one batch, the prefill budget goes
by priority then round robin across users, a keystroke preempts background work within one chunk
and background work then waits, but for one step in `BACKGROUND_EVERY`."""

from __future__ import annotations

from serving_support import req

from deepfim.engine.api import Priority
from deepfim.engine.serving.scheduler import BACKGROUND_EVERY


def test_keystroke_preempts_a_long_background_prefill_within_one_chunk(engine):
    runner = engine.runner
    runner.hold_at = 3  # the engine stops before its 4th step, a background chunk already chosen
    bg = engine.submit(req("bg", 2000, Priority.BACKGROUND))
    assert runner.held.wait(5)
    key = engine.submit(req("key", 100, Priority.INSTANT, user="typist"))
    runner.gate.set()
    key.result(5)
    bg.result(10)
    # the keystroke's prefill ran in the first step chosen after it arrived, and alone: the
    # prefill budget (one chunk) went to it, not to the background prompt
    first_key = next(i for i, ids in enumerate(runner.steps) if "key" in ids)
    assert first_key == 4 and runner.steps[first_key] == ["key"]
    # its decode steps then ran alone too (no background chunk slowed them); then bg went on
    assert runner.steps[first_key + 1] == ["key"] and runner.steps[first_key + 2] == ["key"]
    assert runner.steps[first_key + 3] == ["bg"]
    assert [rid for rid, _ in runner.log].count("bg") == 20 + 2


def test_background_work_gets_one_step_in_every_few_while_others_keep_the_engine_busy(engine):
    """A server that is never idle still warms its workspaces, at a bounded cost to the others."""
    runner = engine.runner
    runner.gate.clear()
    bg = engine.submit(req("bg", 1000, Priority.BACKGROUND, user="warmer"))
    long = engine.submit(req("long", 100, Priority.INSTANT, user="typist", max_tokens=3 * BACKGROUND_EVERY))
    runner.gate.set()
    long.result(10)
    bg.result(10)
    busy = [ids for ids in runner.steps if "long" in ids]
    with_bg = [i for i, ids in enumerate(busy) if "bg" in ids]
    # bg joins one step in BACKGROUND_EVERY while "long" runs, no more and no less
    assert len(busy) == 1 + 3 * BACKGROUND_EVERY
    assert len(with_bg) == 3 and with_bg[0] < BACKGROUND_EVERY
    assert [b - a for a, b in zip(with_bg, with_bg[1:], strict=False)] == [BACKGROUND_EVERY] * 2


def test_all_running_sequences_decode_in_one_step(engine):
    runner = engine.runner
    runner.gate.clear()
    handles = [engine.submit(req(f"u{i}", 100, user=f"user{i}", max_tokens=8)) for i in range(4)]
    runner.gate.set()
    for h in handles:
        h.result(5)
    # one prompt chunk per step (the budget), each beside the decode steps of those already running
    assert [sorted(ids) for ids in runner.steps[:4]] == [
        ["u0"],
        ["u0", "u1"],
        ["u0", "u1", "u2"],
        ["u0", "u1", "u2", "u3"],
    ]
    assert len([ids for ids in runner.steps if len(ids) == 4]) == 6  # from u3's prefill to u0's last token
    assert max(len(ids) for ids in runner.steps) == 4


def test_prefill_budget_goes_by_priority_then_round_robin_across_users(engine):
    runner = engine.runner
    runner.gate.clear()
    handles = [
        engine.submit(req("alice-1", 300, user="alice", max_tokens=1)),
        engine.submit(req("alice-2", 100, user="alice", max_tokens=1)),
        engine.submit(req("bob-1", 300, user="bob", max_tokens=1)),
        engine.submit(req("expert", 100, Priority.EXPERT, user="carol", max_tokens=1)),
    ]
    runner.gate.set()
    for h in handles:
        h.result(5)
    prefills = [rid for rid, kind in runner.log if kind == "prefill"]
    # one 100-token chunk per step (the budget): alice and bob alternate, alice's second request
    # waits for her first, the expert request waits for every instant prompt
    assert prefills[:6] == ["alice-1", "bob-1", "alice-1", "bob-1", "alice-1", "bob-1"]
    assert prefills.index("alice-2") < prefills.index("expert") == len(prefills) - 1
