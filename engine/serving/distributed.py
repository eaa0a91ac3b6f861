"""The rank-0-driven step loop of a tensor / expert parallel engine (engine/model/parallel.py).

Rank 0 runs everything a single process runs (scheduler, prefix cache, sampling) with a
`DistributedModel` in place of the model; the other ranks run `follow`, which repeats each of
rank 0's model calls on the same tokens, so the collectives inside the forward (the TP/EP
all-reduces) meet. Every rank holds the same V4 state (parallel.py replicates what it is made
of), so followers keep their own copy of each of rank 0's states:

* rank 0's states are `TaggedState`s: every forward (and every speculative `keep_first`) gives
  the state a new tag, which snapshots inherit; the follower stores its state after that call
  under the same tag (a shallow snapshot, engine/model/state.py), and starts each call from a
  snapshot of the stored state its input tag names. A state rank 0 resumes from its prefix
  cache therefore continues from the same point on every rank.
* when no rank-0 object carries a tag any more (counted by finalizers), its release is sent
  with the next command and followers drop their copy.

Commands travel by `broadcast_object_list` on a gloo group of their own (also beside NCCL).
MTP drafts are off (`args.n_mtp_layers` reads 0 through the proxy) and so is the on-disk
snapshot store: states from elsewhere have no copy on the followers.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import weakref
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from deepfim.engine.model.state import ModelState

_IDLE_TIMEOUT = timedelta(days=365)  # followers wait on rank 0 as long as the server runs


def control_group():
    """A gloo group for the command broadcasts (new_group is collective: every rank calls it)."""
    return dist.new_group(backend="gloo", timeout=_IDLE_TIMEOUT)


class TaggedState(ModelState):
    """Rank 0's ModelState, naming the follower copy it corresponds to (see the module docstring)."""

    def snapshot(self) -> TaggedState:
        snap = super().snapshot()
        self._registry.adopt(snap, self._box[0])
        return snap

    def keep_first(self, keep: int, start: int, window: int) -> None:
        super().keep_first(keep, start, window)
        self._registry.kept(self, keep, start, window)


class _Registry:
    """Tags of rank 0's states, how many live objects carry each, and the command channel."""

    def __init__(self, group, device: torch.device) -> None:
        self.group = group
        self.device = device
        self._next = itertools.count(1)
        self._refs: dict[int, int] = {}
        self._known: set[int] = set()  # tags the followers hold a state for
        self._released: list[int] = []
        self._lock = threading.RLock()  # finalizers may run inside a locked block of the same thread

    def new_tag(self) -> int:
        return next(self._next)

    def adopt(self, state: TaggedState, tag: int) -> None:
        box = [tag]
        state._registry, state._box = self, box
        with self._lock:
            self._refs[tag] = self._refs.get(tag, 0) + 1
        weakref.finalize(state, self._drop, box)

    def _drop(self, box: list[int]) -> None:  # finalizers: no collectives here, only bookkeeping
        with self._lock:
            self._refs[box[0]] -= 1
            if not self._refs[box[0]]:
                del self._refs[box[0]]
                self._released.append(box[0])

    def retag(self, state: TaggedState, tag: int) -> None:
        with self._lock:
            self._refs[tag] = self._refs.get(tag, 0) + 1
        old, state._box[0] = state._box[0], tag
        self._drop([old])
        self._known.add(tag)

    def send(self, command: dict) -> None:
        with self._lock:
            released, self._released = self._released, []
        self._known.difference_update(released)
        dist.broadcast_object_list([{**command, "release": released}], src=0, group=self.group)

    def kept(self, state: TaggedState, keep: int, start: int, window: int) -> None:
        tag = self.new_tag()
        self.send({"op": "keep_first", "in": state._box[0], "out": tag, "args": (keep, start, window)})
        self.retag(state, tag)


class DistributedModel(nn.Module):
    """Rank 0's model: each call is sent to the followers, then run here (same tokens, same order)."""

    def __init__(self, model: nn.Module, group=None) -> None:
        super().__init__()
        self.inner = model
        self.registry = _Registry(group if group is not None else control_group(), model.embed.weight.device)
        self.args = dataclasses.replace(model.args, n_mtp_layers=0)  # no MTP drafts: see the module docstring
        self.embed = model.embed
        self._closed = False

    def new_state(self) -> TaggedState:
        state = TaggedState.empty(self.inner.args.layer_kinds, self.inner.args.n_mtp_layers)
        self.registry.adopt(state, self.registry.new_tag())
        return state

    def forward(self, ids: torch.Tensor, state: ModelState | None = None, logits: str = "all", ctx=None):
        if ctx is not None:
            raise ValueError("the distributed model is for inference (no ForwardContext)")
        tokens = ids.tolist()
        if state is None:
            self.registry.send({"op": "run", "ids": tokens, "logits": logits})
            return self.inner(ids, None, logits=logits)
        if not isinstance(state, TaggedState):
            raise RuntimeError("a state from outside this distributed model (the followers have no copy of it)")
        tag_in, tag_out = state._box[0], self.registry.new_tag()
        fresh = tag_in not in self.registry._known
        if fresh and state.pos:
            raise RuntimeError(f"state at position {state.pos} has no copy on the followers")
        self.registry.send({"op": "forward", "in": tag_in, "fresh": fresh, "out": tag_out, "ids": tokens,
                            "logits": logits})  # fmt: skip
        out = self.inner(ids, state, logits=logits)
        self.registry.retag(state, tag_out)
        return out

    def close(self) -> None:
        """Ends the followers' loops (idempotent)."""
        if not self._closed:
            self._closed = True
            self.registry.send({"op": "stop"})


def follow(model: nn.Module, group=None) -> int:
    """A follower rank's loop: repeats rank 0's calls until it says stop; returns the calls run."""
    group = group if group is not None else control_group()
    device = model.embed.weight.device
    states: dict[int, ModelState] = {}
    calls = 0
    with torch.inference_mode():
        while True:
            box = [None]
            dist.broadcast_object_list(box, src=0, group=group)
            cmd = box[0]
            for tag in cmd["release"]:
                states.pop(tag, None)
            op = cmd["op"]
            if op == "stop":
                return calls
            if op == "run":
                model(torch.tensor(cmd["ids"], device=device), None, logits=cmd["logits"])
            elif op == "forward":
                state = model.new_state() if cmd["fresh"] else states[cmd["in"]].snapshot()
                model(torch.tensor(cmd["ids"], device=device), state, logits=cmd["logits"])
                states[cmd["out"]] = state
            elif op == "keep_first":
                state = states[cmd["in"]].snapshot()
                state.keep_first(*cmd["args"])
                states[cmd["out"]] = state
            else:
                raise RuntimeError(f"unknown command {op!r} from rank 0")
            calls += 1
