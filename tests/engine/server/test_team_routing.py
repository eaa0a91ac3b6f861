"""`ModeRouter`: expert mode on its own checkpoint behind one server."""

from __future__ import annotations

import json

import pytest
from conftest import write_byte_tokenizer
from teamserver_double import PrefixCacheEchoBackend

from deepfim.engine.api import CompletionRequest, SamplingParams
from deepfim.engine.server.auth import UserStore, add_user
from deepfim.engine.server.client import RemoteBackend
from deepfim.engine.server.routing import ModeRouter
from deepfim.engine.server.server import ServerThread
from deepfim.engine.server.tls import server_context


def test_requests_go_to_the_backend_of_their_mode(tmp_path, tokenizer_file, tls_files):
    instant = PrefixCacheEchoBackend(str(tokenizer_file), modes=("instant", "expert"))
    expert = PrefixCacheEchoBackend(str(tokenizer_file), modes=("instant", "expert"))
    router = ModeRouter({"instant": instant, "expert": expert})
    token = add_user(tmp_path / "users.json", "alice")
    with ServerThread(router, UserStore(tmp_path / "users.json"), ssl_context=server_context(*tls_files)) as server:
        client = RemoteBackend(f"127.0.0.1:{server.port}", token, tls_ca=str(tls_files[0]), cache_dir=tmp_path)
        try:
            for mode in ("instant", "expert", "expert"):
                client.submit(CompletionRequest([1, 2, 3], SamplingParams(max_tokens=3), mode=mode)).result(10)
        finally:
            client.close()
    assert [r.mode for r in instant.submitted] == ["instant"]
    assert [r.mode for r in expert.submitted] == ["expert", "expert"]
    assert set(router.stats()["modes"]) == {"instant", "expert"}
    router.close()
    assert not instant._thread.is_alive() and not expert._thread.is_alive()


def test_router_refuses_checkpoints_with_different_tokenizers(tmp_path, tokenizer_file):
    other = tmp_path / "other.json"
    spec = json.loads(write_byte_tokenizer(other).read_text())
    spec["added_tokens"].append({**spec["added_tokens"][0], "id": 999, "content": "<extra>"})
    other.write_text(json.dumps(spec))
    a = PrefixCacheEchoBackend(str(tokenizer_file))
    b = PrefixCacheEchoBackend(str(other))
    with pytest.raises(ValueError, match="different tokenizers"):
        ModeRouter({"instant": a, "expert": b})
    with pytest.raises(ValueError, match="mode 'expert' is not served"):
        ModeRouter({"instant": a}).fim_orders("expert")
    a.close()
    b.close()


def test_client_needs_a_token():
    with pytest.raises(ValueError, match="a user token is required"):
        RemoteBackend("127.0.0.1:7431", None)
