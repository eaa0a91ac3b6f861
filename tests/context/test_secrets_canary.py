"""A planted canary secret never reaches the index, its cache, or any packed prompt."""

from __future__ import annotations

import os

import pytest
from ctx_fixtures import prompt_of, write_tree

from deepfim.context.secrets import find_secrets, redact, redact_split, secret_path_reason
from deepfim.context.workspace import PrivateFileError

CANARY = "CANARY7f3c9a2b5d1e4f60"
PEM = f"-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA{CANARY}x9\nQk3l{CANARY}==\n-----END RSA PRIVATE KEY-----\n"

SECRET_FILES = {
    ".env": f"API_TOKEN={CANARY}\n",
    "config/.env.production": f"DB_PASSWORD={CANARY}\n",
    "deploy/server.key": PEM,
    "certs/site.pem": PEM,
    "keystore.p12": f"{CANARY}\n",
    ".aws/credentials": f"[default]\naws_secret_access_key = {CANARY}\n",
    ".npmrc": f"//registry.npmjs.org/:_authToken={CANARY}\n",
    ".netrc": f"machine example.com login me password {CANARY}\n",
    "home/.ssh/id_ed25519": PEM,
    "secrets.yaml": f"token: {CANARY}\n",
    # secret by content, in files that look like ordinary source
    "app/settings.py": f'DEBUG = False\nAWS_SECRET_ACCESS_KEY = "{CANARY}"\n',
    "app/keys.py": f'KEY = """\n{PEM}"""\n',
    "web/token.js": f'export const token = "ghp_{CANARY}abcdefghijklmn";\n',
}
CLEAN = {
    "app/__init__.py": "",
    "app/main.py": "from app import settings, keys\nfrom app.util import helper\n\n\ndef run():\n    return helper()\n",
    "app/util.py": "def helper():\n    return 42\n",
    "web/index.js": "import { token } from './token.js';\nexport const t = token;\n",
}


@pytest.fixture
def repo(tmp_path):
    root = write_tree(tmp_path / "repo", {**SECRET_FILES, **CLEAN})
    os.symlink(".env", root / "notes.txt")  # an innocent name for a secret
    return root


def _everything_packed(ws, tok, root):
    text = (root / "app/main.py").read_text()
    return tok.decode(prompt_of(ws, tok, root / "app/main.py", text, "", 1_000_000).prompt.ids)


def test_secret_files_are_skipped_and_files_with_secrets_are_indexed_redacted(repo, make_workspace):
    ws = make_workspace(repo)
    # a file holding a secret keeps its context with the value redacted
    with_secrets = {"app/settings.py", "app/keys.py", "web/token.js"}
    assert set(ws.files()) == {"app/main.py", "app/util.py", "web/index.js", "app/__init__.py", *with_secrets}
    skipped = ws.stats().skipped
    # .aws/ and .ssh/ are never entered; the nine others are looked at by name only
    assert skipped == {"secret-name": 9}
    for rel in with_secrets:
        entry = ws.entry(repo / rel)
        assert CANARY not in entry.summary and not any(CANARY.lower() in c.lower() for c in entry.chunks), rel


def test_the_canary_never_appears_in_a_prompt_or_the_cache(repo, make_workspace, tok, cache_dir):
    ws = make_workspace(repo)
    # open secret files as editor buffers, edit a clean file into a secret one
    ws.update_buffer(repo / ".env", f"API_TOKEN={CANARY}\nMORE=1\n")
    ws.update_buffer(repo / "deploy/server.key", PEM)
    ws.update_buffer(repo / "app/util.py", f'def helper():\n    return "sk-proj-{CANARY}{CANARY}"\n')
    prompt = _everything_packed(ws, tok, repo)
    assert "def run()" in prompt and CANARY not in prompt
    buffer = f'def helper():\n    return "sk-proj-{CANARY}{CANARY}"\n'
    util = tok.decode(prompt_of(ws, tok, repo / "app/util.py", buffer, "", 1_000_000).prompt.ids)
    assert 'return "<redacted>"' in util and CANARY not in util  # the edited buffer's copy, its secret redacted
    ws.save()
    for path in cache_dir.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path


def test_secrets_in_the_cursor_file_are_redacted(repo, make_workspace, tok):
    ws = make_workspace(repo)
    prefix = f'import os\n\npassword = "{CANARY}"\nkey = "AKIAABCDEFGHIJKLMNOP"\n\ndef f():\n    '
    result = prompt_of(ws, tok, repo / "app/new.py", prefix, "return 1\n", 4096)
    text = tok.decode(result.prompt.ids)
    assert CANARY not in text and "AKIAABCDEFGHIJKLMNOP" not in text
    assert "<redacted>" in text and "def f():" in text


def test_a_key_cut_by_the_cursor_window_is_still_redacted(make_workspace, tmp_path, tok):
    ws = make_workspace(write_tree(tmp_path / "r", {"a.py": "x = 1\n"}))
    body = "".join(f"{CANARY}{i:04d}\n" for i in range(400))  # a long key body
    prefix = f"KEY = '''\n-----BEGIN PRIVATE KEY-----\n{body}-----END PRIVATE KEY-----\n'''\n" + "y = 2\n" * 50
    result = prompt_of(ws, tok, tmp_path / "r/b.py", prefix, "", 600)  # the window starts inside the key
    assert CANARY not in tok.decode(result.prompt.ids)


def test_a_secret_cursor_file_is_refused(repo, make_workspace, tok):
    ws = make_workspace(repo)
    with pytest.raises(PrivateFileError, match=r"\.env"):
        prompt_of(ws, tok, repo / ".env", "API_TOKEN=", "", 4096)
    assert ws.is_private(repo / "home/.ssh/id_ed25519") and not ws.is_private(repo / "app/main.py")


def test_the_context_command_prints_no_canary(repo, tokenizer_path, monkeypatch, capsys, cache_dir):
    from deepfim.cli import main

    monkeypatch.setenv("DEEPFIM_CACHE_DIR", str(cache_dir))
    rc = main(["context", f"{repo}/app/main.py:5:5", "--root", str(repo), "--tokenizer", str(tokenizer_path)])
    out = capsys.readouterr().out
    assert rc == 0 and "def helper()" in out and CANARY not in out


@pytest.mark.parametrize(
    "rel, secret",
    [
        (".env", True), (".env.local", True), ("prod.env", True), ("a/b/.npmrc", True), ("x/.ssh/config", True),
        ("tls/server.crt", True), ("id_rsa.pub", True), ("client_secret_123.json", True), ("terraform.tfvars", True),
        ("secrets.py", False), ("netrc.py", False), ("environment.py", False), ("src/keys.py", False),
        ("README.md", False), (".envrc.example.md", True),
    ],
)  # fmt: skip
def test_secret_names(rel, secret):
    assert (secret_path_reason(rel) is not None) is secret


@pytest.mark.parametrize(
    "text",
    [
        "ghp_" + "a1" * 18,
        "github_pat_" + "A1b2" * 12,
        "xoxb-1234567890-abcdefghij",
        "sk_live_" + "a1B2" * 6,
        "AIza" + "B" * 35,
        "sk-proj-" + "x1" * 20,
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        'api_key = "a1b2c3d4e5f6g7h8"',
        'client_secret: "Zx9Qw8Er7Ty6Ui5O"',
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----",
    ],
)
def test_secret_shapes_are_found(text):
    source = f"x = 1\n{text}\ny = 2\n"
    assert find_secrets(source) and text not in redact(source)


@pytest.mark.parametrize(
    "text",
    [
        'password = getpass.getpass("Password: ")',
        'token = "short"',
        "key = hashlib.sha256(data).hexdigest()",
        'PASSWORD_ENV_VAR = "MY_APP_PASSWORD"',
        "def secret_key(self): ...",
    ],
)
def test_ordinary_code_is_not_mistaken_for_a_secret(text):
    assert find_secrets(text) == []


def test_redact_split_keeps_the_cursor_between_the_halves():
    prefix, suffix = (
        "a = 1\nkey = '''-----BEGIN RSA PRIVATE KEY-----\nAAAA",
        "BBBB\n-----END RSA PRIVATE KEY-----'''\nb = 2\n",
    )
    p, s = redact_split(prefix, suffix)
    assert p == "a = 1\nkey = '''<redacted>" and s == "'''\nb = 2\n"


def test_an_index_cached_under_other_secret_rules_is_rebuilt(repo, make_workspace, cache_dir):
    import msgpack

    from deepfim.context import cache
    from deepfim.context.sealed import seal, unseal

    make_workspace(repo)  # scans and saves
    index = next(cache_dir.rglob("index.msgpack"))
    data = msgpack.unpackb(unseal(cache.MAGIC, index.read_bytes()), raw=False, strict_map_key=False)
    assert make_workspace(repo).stats().reused > 0  # same rules: the cache serves
    data["detector"] = "rules-of-an-older-version"
    index.write_bytes(seal(cache.MAGIC, msgpack.packb(data, use_bin_type=True)))
    assert make_workspace(repo).stats().reused == 0  # every file read again, redacted by today's rules
