"""Which request runs next (engine/serving/scheduler.py), seen through the engine loop around a
scripted runner: priorities, preemption within one chunk, round robin across users."""

from __future__ import annotations

from serving_support import req

from deepfim.engine.api import Priority


def test_keystroke_preempts_a_long_background_prefill_within_one_chunk(engine):
    runner = engine.runner
    keys = []

    def submit_key_during_third_chunk(_active):
        # submitted while a background chunk runs: exactly that chunk may finish first
        if len(runner.log) == 3 and not keys:
            keys.append(engine.submit(req("key", 100, Priority.INSTANT)))

    runner.after_step = submit_key_during_third_chunk
    bg = engine.submit(req("bg", 2000, Priority.BACKGROUND))
    bg.result(10)
    keys[0].result(5)
    order = [rid for rid, _ in runner.log]
    # the keystroke's prefill and both decode steps ran before the next background chunk
    assert order[:6] == ["bg"] * 3 + ["key"] * 3
    assert order.count("bg") == 20 + 2


def test_priority_then_round_robin_across_users(engine):
    runner = engine.runner
    runner.gate.clear()
    handles = [
        engine.submit(req("alice-1", 100, user="alice", max_tokens=3)),
        engine.submit(req("alice-2", 100, user="alice", max_tokens=3)),
        engine.submit(req("bob-1", 100, user="bob", max_tokens=3)),
        engine.submit(req("expert", 100, Priority.EXPERT, user="carol", max_tokens=1)),
    ]
    runner.gate.set()
    for h in handles:
        h.result(5)
    order = [rid for rid, _ in runner.log]
    assert order.index("expert") > max(i for i, r in enumerate(order) if r != "expert" and r != "alice-2")
    # bob is served between alice's steps instead of waiting for both alice requests
    assert order.index("bob-1") < order.index("alice-2")
    assert order[:4] == ["alice-1", "bob-1", "alice-1", "bob-1"]
