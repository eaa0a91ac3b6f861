"""A model whose logits turn NaN, through the real server and engine: every completion gets
an empty result (not a JSON-RPC error per keystroke), `deepfim/status` `last_error` says
what happened, and the editor sees one status message."""

import shutil

import pytest
import torch
from lsp_support import Editor, inline_params, server_args, start_client, stop_client
from safetensors.torch import load_file, save_file

from deepfim.engine import DEFAULT_MODEL_DIR

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def overflowing_checkpoint(tmp_path_factory):
    """The embedded model with an output head so large (finite, so it loads) that every
    logit overflows to infinity."""
    out = tmp_path_factory.mktemp("nan-model")
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(DEFAULT_MODEL_DIR / name, out / name)
    tensors = load_file(str(DEFAULT_MODEL_DIR / "model.safetensors"))
    tensors["head.weight"] = torch.full_like(tensors["head.weight"], 3e38)
    save_file(tensors, str(out / "model.safetensors"))
    return out


async def test_nan_logits_give_empty_results_one_message_and_a_current_last_error(workspace, overflowing_checkpoint):
    client = await start_client(server_args(engine="embedded"), workspace, {"checkpoint": str(overflowing_checkpoint)})
    try:
        editor = Editor(client)
        uri = editor.open(workspace / "shop" / "cart.py")
        for line in (3, 10, 20):
            result = await client.text_document_inline_completion_async(inline_params(uri, line, 0, invoked=True))
            assert list(result.items) == []  # answered, empty: no -32603 per request
        status = await client.protocol.send_request_async("deepfim/status", {})
        assert "non-finite logits" in status.last_error
        shown = [m.message for m in client.messages if "non-finite" in m.message]
        assert len(shown) == 1 and "checksum --verify" in shown[0]
    finally:
        await stop_client(client)
