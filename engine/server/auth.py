"""Users and tokens of the team server.

The users file (JSON) stores, per user, only a random salt and HMAC-SHA256(salt, token):
a stolen file does not reveal tokens. Tokens look like ``dfm_<key id>_<secret>``; the key
id selects the one record to check, so authentication costs one hash whatever the number
of users, and the comparison is constant-time (`hmac.compare_digest`). Unknown key ids are
checked against a dummy record so timing does not tell them apart.

The admin token is a separate secret in its own file: it grants `/metrics` per-user series
and the user list, never completions.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
TOKEN_RE = re.compile(r"^dfm_([0-9a-f]{12})_([A-Za-z0-9_-]{20,128})$")
FILE_VERSION = 1
LIMIT_KEYS = ("max_prompt_tokens", "max_new_tokens", "requests_per_second", "burst", "max_inflight")


class AuthError(ValueError):
    """A users or admin-token file that is malformed, or a bad user name."""


@dataclass(frozen=True)
class Principal:
    """Who is on the other end of a connection, after authentication."""

    name: str
    role: str  # "user" | "admin"
    limits: dict = field(default_factory=dict)  # per-user overrides of Limits fields
    key_id: str | None = None  # the token's key in the users file (None: the admin token)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _digest(salt: bytes, token: str) -> bytes:
    return hmac.new(salt, token.encode("utf-8"), hashlib.sha256).digest()


def new_token() -> tuple[str, str]:
    """(key id, token) for a new user."""
    key_id = secrets.token_hex(6)
    return key_id, f"dfm_{key_id}_{secrets.token_urlsafe(32)}"


def _write_private(path: Path, text: str) -> None:
    """Writes atomically with mode 0600 (the file holds secrets or their hashes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _read_users(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AuthError(f"{path}: unreadable users file ({exc})") from exc
    if not isinstance(data, dict) or data.get("version") != FILE_VERSION or not isinstance(data.get("users"), list):
        raise AuthError(f"{path}: not a DeepFIM users file (want {{'version': {FILE_VERSION}, 'users': [...]}})")
    for entry in data["users"]:
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(k), str) for k in ("name", "key_id", "salt", "hash")
        ):
            raise AuthError(f"{path}: malformed user entry {entry!r}")
        limits = entry.get("limits", {})
        if not isinstance(limits, dict) or set(limits) - set(LIMIT_KEYS):
            raise AuthError(f"{path}: user {entry['name']!r} has unknown limits {limits!r} (allowed: {LIMIT_KEYS})")
        bad = {k: v for k, v in limits.items() if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0}
        if bad:
            raise AuthError(f"{path}: user {entry['name']!r} has limits that are not positive numbers: {bad!r}")
    return data["users"]


def add_user(path: str | Path, name: str, *, replace: bool = False, limits: dict | None = None) -> str:
    """Adds (or with `replace`, re-keys) user `name` in the users file; returns the new token.

    The token is shown once: only its salted hash is stored.
    """
    if not NAME_RE.match(name):
        raise AuthError(f"user name {name!r} must match {NAME_RE.pattern}")
    path = Path(path)
    users = _read_users(path)
    if any(u["name"] == name for u in users) and not replace:
        raise AuthError(f"user {name!r} already exists in {path} (use --replace to issue a new token)")
    users = [u for u in users if u["name"] != name]
    key_id, token = new_token()
    salt = secrets.token_bytes(16)
    entry = {"name": name, "key_id": key_id, "salt": salt.hex(), "hash": _digest(salt, token).hex()}
    entry["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if limits:
        entry["limits"] = limits
    users.append(entry)
    _write_private(path, json.dumps({"version": FILE_VERSION, "users": users}, indent=2) + "\n")
    return token


def revoke_user(path: str | Path, name: str) -> None:
    """Removes user `name` from the users file: their token stops working at once (servers re-read
    the file when it changes)."""
    path = Path(path)
    users = _read_users(path)
    if not any(u["name"] == name for u in users):
        raise AuthError(f"no user {name!r} in {path}")
    kept = [u for u in users if u["name"] != name]
    _write_private(path, json.dumps({"version": FILE_VERSION, "users": kept}, indent=2) + "\n")


def list_users(path: str | Path) -> list[dict]:
    """The users of a users file: name, key id, creation time and limits (never the hashes)."""
    return [
        {"name": u["name"], "key_id": u["key_id"], "created": u.get("created"), "limits": dict(u.get("limits", {}))}
        for u in _read_users(Path(path))
    ]


def load_admin_token(path: str | Path, *, create: bool = True) -> str:
    """The admin token stored in `path`; a new one is written (mode 0600) when absent."""
    path = Path(path)
    if not path.exists():
        if not create:
            raise AuthError(f"{path}: admin token file does not exist")
        token = f"dfm_admin_{secrets.token_urlsafe(32)}"
        _write_private(path, token + "\n")
        log.warning("wrote a new admin token to %s", path)
        return token
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s is readable by other users; chmod 600 it", path)
    token = path.read_text(encoding="utf-8").strip()
    if len(token) < 20:
        raise AuthError(f"{path}: admin token is shorter than 20 characters")
    return token


class UserStore:
    """Authenticates tokens against the users file, re-reading it when its mtime changes."""

    def __init__(self, users_file: str | Path | None, admin_token: str | None = None) -> None:
        self.path = Path(users_file) if users_file else None
        self._admin_salt = secrets.token_bytes(16)
        self._admin_digest = _digest(self._admin_salt, admin_token) if admin_token else None
        self._by_key: dict[str, dict] = {}
        self._mtime: tuple | None = None
        self._dummy_salt = secrets.token_bytes(16)
        self.reload()

    def reload(self) -> None:
        """Re-reads the users file if it changed (called on every authentication: one stat)."""
        if self.path is None:
            return
        try:
            st = self.path.stat()
            mtime = (st.st_mtime_ns, st.st_size, st.st_ino)  # add_user replaces the file: new inode
        except FileNotFoundError:
            mtime = None
        if mtime == self._mtime:
            return
        try:
            users = _read_users(self.path)
        except AuthError:
            if self._mtime is None:
                raise
            log.exception("keeping the previous users: the users file is now malformed")
            return
        self._by_key = {u["key_id"]: u for u in users}
        self._mtime = mtime

    def user_names(self) -> list[str]:
        self.reload()
        return sorted(u["name"] for u in self._by_key.values())

    def authenticate(self, token: object) -> Principal | None:
        """The principal a token belongs to, or None. Never raises on bad input."""
        if not isinstance(token, str) or len(token) > 256:
            return None
        if self._admin_digest is not None and hmac.compare_digest(_digest(self._admin_salt, token), self._admin_digest):
            return Principal(name="admin", role="admin")
        self.reload()
        match = TOKEN_RE.match(token)
        entry = self._by_key.get(match.group(1)) if match else None
        if entry is None:
            hmac.compare_digest(_digest(self._dummy_salt, token), bytes(32))  # same work as a real check
            return None
        if not hmac.compare_digest(_digest(bytes.fromhex(entry["salt"]), token), bytes.fromhex(entry["hash"])):
            return None
        return self._principal(entry)

    def current(self, principal: Principal) -> Principal | None:
        """The principal as the users file has it now, or None when its token was revoked
        (the user removed or re-keyed): open connections re-check before every message."""
        if principal.is_admin:
            return principal
        self.reload()
        entry = self._by_key.get(principal.key_id or "")
        if entry is None or entry["name"] != principal.name:
            return None
        return self._principal(entry)

    @staticmethod
    def _principal(entry: dict) -> Principal:
        return Principal(name=entry["name"], role="user", limits=dict(entry.get("limits", {})), key_id=entry["key_id"])
