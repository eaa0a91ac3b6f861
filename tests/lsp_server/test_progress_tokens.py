"""`$/progress` against clients that refuse progress tokens, over stdio with the real server.

vscode-languageclient answers a `window/workDoneProgress/create` that arrives between its
`initialized` and the registration of its features with "method not found"; the server's
indexing starts at `initialized`, so on a fast machine its progress was lost (seen as a
flaky VS Code end-to-end test). The clients here refuse the first creates, or all of them.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from lsp_support import server_args, start_client, stop_client
from lsprotocol import types
from pygls.exceptions import JsonRpcMethodNotFound
from pytest_lsp import LanguageClient
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, default_converter, register_lsp_features

pytestmark = pytest.mark.asyncio


def refusing_client(refusals: int) -> tuple[LanguageClient, list[str], list[str]]:
    """A test client that answers the first `refusals` creates "method not found"; also returns
    the tokens refused and those that had progress before they were accepted."""
    client = LanguageClient(converter_factory=default_converter)
    refused: list[str] = []
    early: list[str] = []
    accept = DEFAULT_CLIENT_FEATURES[types.WINDOW_WORK_DONE_PROGRESS_CREATE]

    def create(client: LanguageClient, params: types.WorkDoneProgressCreateParams):
        if len(refused) < refusals:
            refused.append(str(params.token))
            raise JsonRpcMethodNotFound.of(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
        if params.token in client.progress_reports:
            early.append(str(params.token))
        return accept(client, params)

    register_lsp_features(client, {**DEFAULT_CLIENT_FEATURES, types.WINDOW_WORK_DONE_PROGRESS_CREATE: create})
    return client, refused, early


async def wait_ready(client: LanguageClient) -> None:
    deadline = time.monotonic() + 30
    status = await client.protocol.send_request_async("deepfim/status", {})
    while (status.loading or not status.index.ready) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        status = await client.protocol.send_request_async("deepfim/status", {})
    assert not status.loading and status.index.ready, status


def begun_and_ended(client: LanguageClient) -> dict[str, list[str]]:
    """Title of each piece of work -> the kinds of its reports, in order."""
    work: dict[str, list[str]] = {}
    for reports in client.progress_reports.values():
        begins = [r for r in reports if isinstance(r, types.WorkDoneProgressBegin)]
        if begins:
            work[begins[0].title] = [r.kind for r in reports]
    return work


async def test_refused_tokens_are_asked_again_and_the_work_is_still_shown(workspace):
    client, refused, early = refusing_client(refusals=2)
    client = await start_client(server_args(engine="double"), workspace, client=client)
    try:
        await wait_ready(client)
        await asyncio.sleep(0.3)  # the last `end` may trail the status by a moment
        work = begun_and_ended(client)
        assert len(refused) == 2
        indexing = [kinds for title, kinds in work.items() if title.startswith("DeepFIM: indexing")]
        loading = [kinds for title, kinds in work.items() if title == "DeepFIM: loading model"]
        assert indexing and loading, work
        for kinds in indexing + loading:
            assert kinds[0] == "begin" and kinds[-1] == "end" and kinds.count("end") == 1, work
        # the refused tokens were asked for again, and no progress went out before acceptance
        assert set(refused) <= set(client.progress_reports) and early == []
    finally:
        await stop_client(client)


async def test_a_client_that_refuses_every_token_gets_no_progress_and_a_working_server(workspace):
    client, refused, _ = refusing_client(refusals=10_000)
    client = await start_client(server_args(engine="double"), workspace, client=client)
    try:
        await wait_ready(client)
        assert refused  # the server asked
        assert client.progress_reports == {}
        status = await client.protocol.send_request_async("deepfim/status", {})
        assert status.index.files > 0 and status.last_error is None
    finally:
        await stop_client(client)
