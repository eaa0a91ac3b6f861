"""The in-process engine shortens the GIL's switch interval (engine/serving/local_backend.py):
beside a busy Python thread, each of a model call's torch ops would otherwise wait up to 5 ms
for the GIL (`deepfim bench latency` times a first suggestion beside an index scan)."""

from __future__ import annotations

import sys

import pytest

from deepfim.engine.api import CompletionRequest, SamplingParams
from deepfim.engine.serving.local_backend import GIL_SWITCH_S, LocalBackend


def test_an_engine_in_the_process_keeps_gil_waits_short(tiny_checkpoint):
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)  # the interpreter's default
    try:
        backend = LocalBackend(tiny_checkpoint)
        try:
            assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_S)
            result = backend.submit(CompletionRequest(list(range(10, 60)), SamplingParams(max_tokens=2))).result(60)
            assert result.candidates
        finally:
            backend.close()
    finally:
        sys.setswitchinterval(before)
