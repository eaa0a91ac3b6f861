"""Shared model calls: anchors, joining a call whose stream matches what was typed,
superseding, and cancelling a call once nobody waits for it."""

import asyncio

import pytest

from deepfim.lsp_server.runs import Anchor, Runs

KEY = ("file:///a.py", "inline")


def test_anchor_sees_only_typing_at_the_cursor():
    anchor = Anchor.at("x = fo", "\nprint(x)\n")
    assert anchor.typed_since("x = fo", "\nprint(x)\n") == ""
    assert anchor.typed_since("x = foo(", "\nprint(x)\n") == "o("
    assert anchor.typed_since("y = foo(", "\nprint(x)\n") is None  # changed before the cursor
    assert anchor.typed_since("x = foo(", "\nprint(y)\n") is None  # changed after it
    assert anchor.typed_since("x = f", "\nprint(x)\n") is None  # deleted past the anchor


def test_join_wait_and_supersede():
    async def scenario():
        runs: Runs[str] = Runs()
        release = asyncio.Event()

        async def call(partial):
            partial.text = "o(1)"
            await release.wait()
            return "o(1)"

        run = runs.start(KEY, Anchor.at("x = f", "\n"), call)
        await asyncio.sleep(0)
        assert runs.joinable(KEY, "x = fo(", "\n") == (run, "o(")  # the stream has "o(" already
        assert runs.joinable(KEY, "x = fx", "\n") is None  # typed something else
        first = asyncio.ensure_future(runs.wait(run))
        second = asyncio.ensure_future(runs.wait(run))
        await asyncio.sleep(0)
        first.cancel()  # one waiter leaves: the call goes on for the other
        await asyncio.sleep(0)
        assert not run.task.done()
        release.set()
        assert await second == "o(1)"
        with pytest.raises(asyncio.CancelledError):
            await first

        # a new call supersedes the one in flight; its waiters get None
        slow = runs.start(KEY, Anchor.at("a", ""), lambda partial: asyncio.sleep(10, "old"))
        waiter = asyncio.ensure_future(runs.wait(slow))
        await asyncio.sleep(0)
        runs.start(KEY, Anchor.at("b", ""), lambda partial: asyncio.sleep(0, "new"))
        assert await waiter is None and slow.task.cancelled()

        # a call nobody waits for any more is cancelled
        lonely = runs.start(("file:///b.py", "inline"), Anchor.at("", ""), lambda p: asyncio.sleep(10))
        only = asyncio.ensure_future(runs.wait(lonely))
        await asyncio.sleep(0)
        only.cancel()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert lonely.task.cancelled()

    asyncio.run(scenario())
