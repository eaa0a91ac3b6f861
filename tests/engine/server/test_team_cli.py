"""`deepfim make-cert`, `deepfim add-user` and the checks `deepfim serve` makes before starting."""

from __future__ import annotations

import ssl
import subprocess

from deepfim.cli import main
from deepfim.engine.server.auth import UserStore


def test_make_cert_writes_a_cert_clients_can_verify(tmp_path, capsys):
    assert main(["make-cert", "--out", str(tmp_path), "--host", "gpu-box.lan", "--host", "10.0.0.7"]) == 0
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    assert str(cert) in capsys.readouterr().out
    assert key.stat().st_mode & 0o077 == 0
    text = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-text"], capture_output=True, text=True
    ).stdout
    assert "DNS:gpu-box.lan" in text and "IP Address:10.0.0.7" in text and "IP Address:127.0.0.1" in text
    ctx = ssl.create_default_context(cafile=str(cert))
    assert ctx.cert_store_stats()["x509_ca"] == 1
    assert main(["make-cert", "--out", str(tmp_path), "--host", "bad host"]) == 2


def test_add_user_prints_a_token_that_authenticates(tmp_path, capsys):
    users = tmp_path / "users.json"
    assert main(["add-user", "alice", "--users", str(users)]) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert token.startswith("dfm_") and "shown only once" in out.err
    assert UserStore(users).authenticate(token).name == "alice"
    assert main(["add-user", "alice", "--users", str(users)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["add-user", "alice", "--users", str(users), "--replace"]) == 0
    assert UserStore(users).authenticate(token) is None


def test_serve_refuses_plain_tcp_off_loopback_and_an_empty_users_file(tmp_path, capsys):
    args = ["serve", "--users", str(tmp_path / "u.json"), "--admin-token-file", str(tmp_path / "admin")]
    assert main([*args, "--host", "0.0.0.0", "--insecure-no-tls"]) == 2
    assert "--insecure-no-tls is only allowed with a loopback" in capsys.readouterr().err
    assert main([*args, "--insecure-no-tls"]) == 2
    assert "no users in" in capsys.readouterr().err
    assert main([*args, "--cert", str(tmp_path / "missing.pem")]) == 2
    assert "give both --cert and --key" in capsys.readouterr().err
