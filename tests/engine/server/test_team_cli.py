"""`deepfim make-cert`, `deepfim users` and `deepfim serve` (its checks before starting, and a run)."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time

from deepfim.cli import main
from deepfim.engine.api import CompletionRequest, SamplingParams
from deepfim.engine.model.tokenizer import Tokenizer
from deepfim.engine.server.auth import UserStore, add_user
from deepfim.engine.server.client import RemoteBackend
from deepfim.engine.server.tls import client_context


def test_make_cert_writes_a_cert_clients_can_verify(tmp_path, capsys):
    assert main(["make-cert", "--out", str(tmp_path), "--host", "gpu-box.lan", "--host", "10.0.0.7"]) == 0
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    assert str(cert) in capsys.readouterr().out
    assert key.stat().st_mode & 0o077 == 0
    from cryptography import x509

    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    names = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "gpu-box.lan" in names.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} >= {"10.0.0.7", "127.0.0.1", "::1"}
    ctx = ssl.create_default_context(cafile=str(cert))
    assert ctx.cert_store_stats()["x509_ca"] == 1
    assert main(["make-cert", "--out", str(tmp_path), "--host", "bad host"]) == 2


def test_users_add_list_revoke(tmp_path, capsys):
    users = tmp_path / "users.json"
    assert main(["users", "add", "alice", "--users", str(users)]) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert token.startswith("dfm_") and "shown only once" in out.err
    assert UserStore(users).authenticate(token).name == "alice"
    assert main(["users", "add", "alice", "--users", str(users)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["users", "add", "alice", "--users", str(users), "--replace"]) == 0
    new = capsys.readouterr().out.strip()
    assert UserStore(users).authenticate(token) is None and UserStore(users).authenticate(new).name == "alice"
    assert main(["users", "add", "bob", "--users", str(users)]) == 0
    capsys.readouterr()
    assert main(["users", "list", "--users", str(users)]) == 0
    listing = capsys.readouterr().out
    assert listing.startswith("alice") and "\nbob" in listing and new not in listing
    assert main(["users", "revoke", "alice", "--users", str(users)]) == 0
    assert UserStore(users).authenticate(new) is None and UserStore(users).user_names() == ["bob"]
    assert main(["users", "revoke", "alice", "--users", str(users)]) == 2
    assert "no user 'alice'" in capsys.readouterr().err
    assert main(["users", "add", "--users", str(users)]) == 2


def test_serve_refuses_plain_tcp_off_loopback_and_an_empty_users_file(tmp_path, capsys):
    args = ["serve", "--users", str(tmp_path / "u.json"), "--admin-token-file", str(tmp_path / "admin")]
    assert main([*args, "--host", "0.0.0.0", "--insecure-no-tls"]) == 2
    assert "--insecure-no-tls is only allowed with a loopback" in capsys.readouterr().err
    assert main([*args, "--insecure-no-tls"]) == 2
    assert "no users in" in capsys.readouterr().err
    assert main([*args, "--cert", str(tmp_path / "missing.pem")]) == 2
    assert "give both --cert and --key" in capsys.readouterr().err


def test_serve_runs_the_real_engine_until_sigterm(tmp_path, engine_checkpoint):
    """`deepfim serve` end to end: a self-made certificate, a user, a completion through RemoteBackend
    and one through `deepfim complete --server`, /health, SIGTERM."""
    env = {**os.environ, "DEEPFIM_CACHE_DIR": str(tmp_path / "cache"), "DEEPFIM_LOG_LEVEL": "WARNING"}
    users = tmp_path / "users.json"
    token = add_user(users, "alice")
    cmd = [sys.executable, "-m", "deepfim.cli", "serve", "--port", "0", "--users", str(users),
           "--checkpoint", str(engine_checkpoint)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 120
        while "deepfim team server:" not in line:
            assert proc.poll() is None and time.monotonic() < deadline, f"serve did not start: {line}"
            line = proc.stderr.readline()
        (port,) = re.search(r"https 127\.0\.0\.1:(\d+),", line).groups()
        cert = tmp_path / "cache" / "server" / "tls" / "cert.pem"
        assert f"clients trust {cert}" in line and (tmp_path / "cache" / "server" / "admin-token").exists()
        client = RemoteBackend(f"127.0.0.1:{port}", token, str(cert), cache_dir=tmp_path / "client")
        try:
            tok = Tokenizer.from_file(client.tokenizer_path)
            result = client.submit(CompletionRequest(tok.encode("x = "), SamplingParams(max_tokens=3))).result(60)
            assert result.timings.generated_tokens == 3
        finally:
            client.close()
        (tmp_path / "ws").mkdir()
        (tmp_path / "ws" / "m.py").write_text("def add(a, b):\n    return \n")
        done = subprocess.run(
            [sys.executable, "-m", "deepfim.cli", "complete", "m.py:2:11", "--server", f"127.0.0.1:{port}",
             "--token", token, "--tls-ca", str(cert)],
            cwd=tmp_path / "ws", env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0 and "m.py:2:11" in done.stdout + done.stderr, done.stderr
        conn = http.client.HTTPSConnection("127.0.0.1", int(port), context=client_context(cert))
        conn.request("GET", "/health")
        assert json.loads(conn.getresponse().read()) == {"status": "ok", "model_loaded": True}
        admin = (tmp_path / "cache" / "server" / "admin-token").read_text().strip()
        conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {admin}"})
        metrics_text = conn.getresponse().read().decode()
        found = re.findall(r'deepfim_user_requests_total\{outcome="\w+",user="alice"\} ([\d.]+)', metrics_text)
        served = sum(float(n) for n in found)
        assert served >= 2, metrics_text  # RemoteBackend's request and `deepfim complete`'s
        conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
