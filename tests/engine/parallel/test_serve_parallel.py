"""`deepfim serve --tp 2 --ep 2` end to end: rank 0 serves, the rank it spawned follows, a completion
over TLS equals the one-process engine's, and SIGTERM stops both ranks cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from deepfim.engine.api import CompletionRequest, SamplingParams
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.server.auth import add_user
from deepfim.engine.server.client import RemoteBackend
from deepfim.engine.serving.local_backend import LocalBackend


def test_serve_with_tensor_and_expert_parallel_ranks(tmp_path, tiny_checkpoint):
    env = {**os.environ, "DEEPFIM_CACHE_DIR": str(tmp_path / "cache"), "DEEPFIM_LOG_LEVEL": "WARNING",
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    users = tmp_path / "users.json"
    token = add_user(users, "alice")
    cmd = [sys.executable, "-m", "deepfim.cli", "serve", "--port", "0", "--users", str(users),
           "--checkpoint", str(tiny_checkpoint), "--tp", "2", "--ep", "2"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        line, deadline = "", time.monotonic() + 120
        while "deepfim team server:" not in line:
            assert proc.poll() is None and time.monotonic() < deadline, f"serve did not start: {line}"
            line = proc.stderr.readline()
        assert "2 ranks (tp 2, ep 2)" in line
        port = re.search(r"https 127\.0\.0\.1:(\d+),", line).group(1)
        cert = tmp_path / "cache" / "server" / "tls" / "cert.pem"
        tok = Tokenizer.from_file(tiny_checkpoint / "tokenizer.json")
        request = CompletionRequest(tok.encode("def total(items):\n    return "), SamplingParams(max_tokens=12))
        client = RemoteBackend(f"127.0.0.1:{port}", token, str(cert), cache_dir=tmp_path / "client")
        try:
            served = client.submit(request).result(120)
        finally:
            client.close()
        local = LocalBackend(tiny_checkpoint)
        try:
            want = local.submit(CompletionRequest(request.prompt, request.sampling)).result(120)
        finally:
            local.close()
        assert served.candidates[0].token_ids == want.candidates[0].token_ids
        assert served.timings.generated_tokens == want.timings.generated_tokens > 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
