"""Seeded adversarial LSP traffic: what a broken client, a careless user or an attacker sends.

`FuzzTraffic(seed, root).items(n)` yields `n` messages as raw bytes, each with what the
server owes in return: the ids that must be answered exactly once (with the JSON-RPC error
code expected, or None for any answer but an internal error). Categories: framing (oversize
and wrong lengths, malformed headers, junk), envelopes (every way to break JSON-RPC 2.0),
params (wrong types, unknown methods), positions (past the end, inside surrogate pairs,
negative, huge), huge and odd text (lone surrogates, NULs, mixed line ends, buffers over the
size limit), cancel storms, and ordinary editing and completion in between.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602

ODD_TEXTS = (
    "def f(x):\n    return x\n",
    "s = '\ud800'\nt = '\udfff\ud83d'\n",  # lone surrogates (JSON escapes them)
    "a = 1\r\nb = 2\rc = 3\n\u2028d = 4\x0c\n",  # every line ending, and things that are none
    "x = '\x00\x01\x1b[31m'\n",
    "😀😀 = 'emoji'\n" * 40,
    "ثم = 'rtl'  # \u202e reversed\n",
    "",
    "\n" * 3000,
    "y" * 50_000,  # one long line
)


@dataclass
class Item:
    data: bytes
    category: str
    must_answer: dict[int | str, int | None] = field(default_factory=dict)  # id -> expected error code
    may_answer: set[int | str] = field(default_factory=set)  # recovered from a broken frame
    wait: bool = False  # the client waits for the answer before sending more (an editor pausing)


def frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class FuzzTraffic:
    def __init__(self, seed: int, root: Path, huge_bytes: int = 2_500_000) -> None:
        self.rng = random.Random(seed)
        self.uris = [(root / f"fuzz_{i}.py").as_uri() for i in range(8)] + ["untitled:Untitled-1"]
        self.real_file = root / "shop" / "cart.py"
        self.uris.append(self.real_file.as_uri())
        self.open: dict[str, list[str]] = {}  # uri -> lines (what we believe the server holds)
        self.versions: dict[str, int] = {}
        self.huge_bytes = huge_bytes
        self._next_id = 1000

    def new_id(self) -> int | str:
        self._next_id += 1
        return self._next_id if self.rng.random() < 0.7 else f"fz-{self._next_id}"

    def body(self, obj) -> bytes:
        return json.dumps(obj, ensure_ascii=self.rng.random() < 0.5).encode("utf-8", "surrogatepass")

    def request(self, method: str, params, expect: int | None = None) -> Item:
        msg_id = self.new_id()
        msg = {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}
        return Item(frame(self.body(msg)), method, {msg_id: expect})

    def notify(self, method: str, params) -> Item:
        return Item(frame(self.body({"jsonrpc": "2.0", "method": method, "params": params})), method)

    # -- the mix ----------------------------------------------------------------------------

    def items(self, n: int) -> Iterator[Item]:
        makers = [
            (self.edit, 18), (self.complete, 16), (self.open_or_close, 6), (self.cancel_storm, 3),
            (self.framing, 10), (self.envelope, 12), (self.not_json, 5), (self.bad_params, 10),
            (self.odd_position, 8), (self.unknown_method, 4), (self.custom, 5), (self.batch, 2),
            (self.huge_document, 1), (self.paced_complete, 1),
        ]  # fmt: skip
        funcs, weights = zip(*makers, strict=True)
        produced = 0
        while produced < n:
            for item in self.rng.choices(funcs, weights)[0]():
                produced += 1
                yield item

    # -- ordinary traffic -------------------------------------------------------------------

    def open_doc(self, uri: str, text: str) -> Item:
        self.open[uri] = text.split("\n")
        self.versions[uri] = 1
        item = {"uri": uri, "languageId": "python", "version": 1, "text": text}
        return self.notify("textDocument/didOpen", {"textDocument": item})

    def open_or_close(self) -> list[Item]:
        uri = self.rng.choice(self.uris)
        if uri in self.open and self.rng.random() < 0.5:
            del self.open[uri]
            return [self.notify("textDocument/didClose", {"textDocument": {"uri": uri}})]
        return [self.open_doc(uri, self.rng.choice(ODD_TEXTS))]

    def _position(self, uri: str) -> dict:
        lines = self.open.get(uri) or [""]
        line = self.rng.randrange(len(lines))
        return {"line": line, "character": self.rng.randint(0, len(lines[line]) + 1)}

    def edit(self) -> list[Item]:
        if not self.open:
            return self.open_or_close()
        uri = self.rng.choice(list(self.open))
        pos = self._position(uri)
        text = self.rng.choice(["x", "\n", "    ", "(", "😀", "\ud800", "return ", "\r\n", ""])
        end = dict(pos)
        if self.rng.random() < 0.2:  # a deletion, sometimes across lines or past the end
            end = {"line": pos["line"] + self.rng.randint(0, 3), "character": self.rng.randint(0, 200)}
        self.versions[uri] = self.versions.get(uri, 1) + 1
        lines = self.open[uri]
        if end == pos:
            line = lines[pos["line"]] if pos["line"] < len(lines) else ""
            col = min(pos["character"], len(line))
            lines[pos["line"] : pos["line"] + 1] = (line[:col] + text + line[col:]).split("\n")
        change = {"range": {"start": pos, "end": end}, "text": text}
        doc = {"uri": uri, "version": self.versions[uri]}
        return [self.notify("textDocument/didChange", {"textDocument": doc, "contentChanges": [change]})]

    def completion_params(self, uri: str, position: dict | None = None) -> dict:
        kind = self.rng.choice([1, 2])
        return {"textDocument": {"uri": uri}, "position": position or self._position(uri),
                "context": {"triggerKind": kind}}  # fmt: skip

    def complete(self) -> list[Item]:
        uri = self.rng.choice(list(self.open) or self.uris)
        if self.rng.random() < 0.8:
            return [self.request("textDocument/inlineCompletion", self.completion_params(uri))]
        params = {"textDocument": {"uri": uri}, "position": self._position(uri)}
        return [self.request("textDocument/completion", params)]

    def paced_complete(self) -> list[Item]:
        """A completion in real code that the client waits for: proves the engine path works."""
        uri, items = self.real_file.as_uri(), []
        if uri not in self.open:
            items.append(self.open_doc(uri, self.real_file.read_text(encoding="utf-8")))
        lines = self.open[uri]
        line = self.rng.randrange(len(lines))
        indent = len(lines[line]) - len(lines[line].lstrip())
        request = self.request("textDocument/inlineCompletion",
                               self.completion_params(uri, {"line": line, "character": indent}))  # fmt: skip
        request.wait = True
        return [*items, request]

    def cancel_storm(self) -> list[Item]:
        uri = self.rng.choice(list(self.open) or self.uris)
        requests = [self.request("textDocument/inlineCompletion", self.completion_params(uri))
                    for _ in range(self.rng.randint(5, 30))]  # fmt: skip
        ids = [next(iter(r.must_answer)) for r in requests]
        cancels = [self.notify("$/cancelRequest", {"id": i}) for i in ids]
        cancels += [self.notify("$/cancelRequest", {"id": self.rng.choice([999_999, "nope", None, [1], 1.5])})]
        self.rng.shuffle(cancels)
        return requests + cancels

    def custom(self) -> list[Item]:
        choice = self.rng.randrange(6)
        if choice == 0:
            return [self.request("deepfim/status", {})]
        if choice == 1:
            mode = self.rng.choice(["instant", "expert", "turbo", 7])
            return [self.request("deepfim/setMode", {"mode": mode}, None if mode in ("instant", "expert") else -32602)]
        if choice == 2:
            return [self.request("deepfim/accept", {"id": self.rng.choice(["s1", 5, None]), "acceptedChars": 3})]
        if choice == 3:
            return [self.request("deepfim/reject", self.rng.choice([{"id": "s2"}, {}, []]))]
        if choice == 4:
            args = self.rng.choice([[{"id": "s1"}], [], [1, "x", None], [{"index": 2}]])
            return [self.request("workspace/executeCommand", {"command": "deepfim.accept", "arguments": args})]
        return [self.request("textDocument/completion", {"textDocument": {"uri": "file:///nowhere.py"},
                                                         "position": {"line": 0, "character": 0}})]  # fmt: skip

    # -- adversarial ------------------------------------------------------------------------

    def framing(self) -> list[Item]:
        ok = self.request("deepfim/status", {})
        body = ok.data.split(b"\r\n\r\n", 1)[1]
        choice = self.rng.randrange(8)
        if choice == 0:  # a length no server can allocate, then the message anyway
            return [Item(b"Content-Length: 1000000000000\r\n\r\n" + body, "oversize", may_answer=set(ok.must_answer))]
        if choice == 1:  # longer than the body: the next header ends it
            k = self.rng.choice([1, 2, 7, 19, 33, 60, 5000])
            return [Item(b"Content-Length: %d\r\n\r\n" % (len(body) + k) + body, "too-long",
                         may_answer=set(ok.must_answer))]  # fmt: skip
        if choice == 2:  # shorter than the body: the rest is junk
            k = self.rng.randint(1, len(body) - 1)
            return [Item(b"Content-Length: %d\r\n\r\n" % (len(body) - k) + body, "too-short")]
        if choice == 3:
            header = self.rng.choice([b"Content-Length: abc", b"Content-Length: -5", b"Content-Lenght: 5",
                                      b"Content-Length 12", b"\xff\xfe"])  # fmt: skip
            return [Item(header + b"\r\n\r\n" + body, "bad-header")]
        if choice == 4:
            return [Item(bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 300))), "junk")]
        if choice == 5:  # legal variants: Content-Type first, LF-only lines, lower case
            content_type = b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n"
            header = self.rng.choice([content_type + b"Content-Length: %d\r\n\r\n", b"Content-Length: %d\n\n",
                                      b"content-length: %d\r\n\r\n"])  # fmt: skip
            return [Item(header % len(body) + body, "header-variant", ok.must_answer)]
        if choice == 6:  # a header block that never got its body
            return [Item(b"Content-Length: 10\r\n" + ok.data, "header-without-body", may_answer=set(ok.must_answer))]
        return [ok]

    def envelope(self) -> list[Item]:
        msg_id = self.new_id()
        base = {"jsonrpc": "2.0", "id": msg_id, "method": "deepfim/status", "params": {}}
        variants = [
            ({k: v for k, v in base.items() if k != "jsonrpc"}, msg_id),
            ({**base, "jsonrpc": "1.0"}, msg_id),
            ({**base, "jsonrpc": 2.0}, msg_id),
            ({**base, "method": 42}, msg_id),
            ({**base, "method": None}, msg_id),
            ({**base, "method": ["deepfim/status"]}, msg_id),
            ({**base, "id": {"a": 1}}, None),
            ({**base, "id": [1]}, None),
            ({**base, "id": True}, None),
            ({**base, "id": 1.5}, None),
            ({**base, "id": None}, None),
            ({**base, "params": 7}, msg_id),
            ({**base, "params": "x"}, msg_id),
            ({"jsonrpc": "2.0", "id": msg_id}, msg_id),
            ({"foo": "bar"}, None),
            ({"jsonrpc": "2.0", "method": 1, "params": "bar"}, None),
        ]
        msg, reply = self.rng.choice(variants)
        data = frame(self.body(msg))
        if reply is None:
            return [Item(data, "envelope")]  # answered with id null
        return [Item(data, "envelope", {reply: INVALID_REQUEST})]

    def not_json(self) -> list[Item]:
        body = self.rng.choice([b"{", b"", b"nul", b"{'single': 1}", b"[1, 2", b"\xff\xfe\x00",
                                b"[" * 100_000, b'{"jsonrpc": "2.0", "id": 1e99999}', b"1" * 5000])  # fmt: skip
        return [Item(frame(body), "not-json")]  # answered with id null (or, for some, as invalid)

    def batch(self) -> list[Item]:
        good = self.request("deepfim/status", {})
        (good_id,) = good.must_answer
        msg = [{"jsonrpc": "2.0", "id": good_id, "method": "deepfim/status", "params": {}}, 1, {"foo": 1}]
        return [Item(frame(self.body(self.rng.choice([msg, []]))), "batch", may_answer={good_id})]

    def bad_params(self) -> list[Item]:
        uri = self.rng.choice(self.uris)
        broken = [  # (params, the error a request with them gets; None: any answer)
            ({"textDocument": {"uri": uri}, "position": {"line": "zero", "character": 0},
              "context": {"triggerKind": 1}}, INVALID_PARAMS),
            ({"textDocument": {"uri": 5}, "position": {"line": 0, "character": 0},
              "context": {"triggerKind": 1}}, None),  # lsprotocol reads 5 as the URI "5"
            ({"position": {"line": 0, "character": 0}}, INVALID_PARAMS),
            ({"textDocument": {"uri": uri}, "position": {"line": 0, "character": 0},
              "context": {"triggerKind": 99}}, INVALID_PARAMS),
            ([1, 2, 3], INVALID_PARAMS),
            ({}, INVALID_PARAMS),
            ({"textDocument": {"uri": uri, "version": "x"}}, INVALID_PARAMS),
        ]  # fmt: skip
        params, code = self.rng.choice(broken)
        if self.rng.random() < 0.5:
            return [self.request("textDocument/inlineCompletion", params, code)]
        method = self.rng.choice(["textDocument/didChange", "textDocument/didOpen", "textDocument/didClose",
                                  "$/cancelRequest", "workspace/didChangeWorkspaceFolders"])  # fmt: skip
        return [self.notify(method, params)]

    def odd_position(self) -> list[Item]:
        uri = self.rng.choice(list(self.open) or self.uris)
        line = self.rng.choice([0, 10**6, 2**31 - 1])
        character = self.rng.choice([0, 1, 3, 10**7, 2**31 - 1])
        if self.rng.random() < 0.3:  # outside uinteger: not an LSP position
            bad = {"line": self.rng.choice([-1, 2**40, 0]), "character": self.rng.choice([-5, 2**33])}
            return [self.request("textDocument/inlineCompletion", self.completion_params(uri, bad), INVALID_PARAMS)]
        position = {"line": line, "character": character}
        return [self.request("textDocument/inlineCompletion", self.completion_params(uri, position))]

    def unknown_method(self) -> list[Item]:
        if self.rng.random() < 0.5:
            return [self.request(self.rng.choice(["deepfim/nope", "rpc.x", "textDocument/nope"]), {}, METHOD_NOT_FOUND)]
        return [self.notify(self.rng.choice(["$/setTrace", "$/unknown", "deepfim/whatever"]), {"x": 1})]

    def huge_document(self) -> list[Item]:
        uri = self.rng.choice(self.uris[:3])
        text = "value = 1  # padding\n" * (self.huge_bytes // 21)
        return [self.open_doc(uri, text), self.request("textDocument/inlineCompletion", self.completion_params(uri))]
