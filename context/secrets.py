"""What must never reach the index or a prompt: secret files by name, and secrets in text.

Two lines of defence:

1. **By name** (`secret_path_reason`): ``.env*``, keys and certificates, keystores,
   credential stores (``.netrc``, ``.npmrc``, ``.aws/credentials``, ...), and whole
   directories such as ``.ssh``. These files are never opened, whatever ``.gitignore`` or
   ``.deepfimignore`` say, and a buffer of such a file is never indexed or packed.
2. **By content** (`find_secrets`, `redact`): the rules of `secrets_rules.py` (key and token
   formats, private keys, passwords in URLs, connection strings and headers, credential
   assignments in any format, high-entropy literals). A secret is *redacted*, not its file
   dropped: every file is redacted where it is read (`discovery.read_text`), every buffer
   before it is indexed, and the cursor file's window before it is tokenized
   (`redact_split`). So a config file with one password still gives its context, and no
   index entry, summary, chunk, token id or cache file ever holds the value.

A false positive costs one literal of context (it reads ``<redacted>``); a false negative
leaks a credential into every prompt and every prefix-cache snapshot. `bench/bench_secrets.py`
measures both: the scan speed on real source and how many files of it get a redaction.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath

import ahocorasick_rs

from deepfim.context import secrets_checks
from deepfim.context.secrets_checks import CHECKS
from deepfim.context.secrets_rules import RULES, Rule

REDACTED = "<redacted>"

_SECRET_DIRS = frozenset({".ssh", ".gnupg", ".password-store", ".aws", ".azure", ".kube", ".docker"})
_SECRET_NAMES = frozenset({
    ".netrc", "_netrc", ".npmrc", ".pypirc", ".git-credentials", ".pgpass", ".htpasswd",
    ".dockercfg", ".my.cnf", ".s3cfg", ".boto", ".vault-token", ".terraformrc",
    "credentials", "credentials.json", "credentials.yml", "credentials.yaml", "credentials.xml",
    "secrets.json", "secrets.yml", "secrets.yaml", "secrets.toml", "secret.json", "secret.yaml",
    "id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", "known_hosts", "authorized_keys",
    "terraform.tfstate", "master.key", "keystore", "wp-config.php",
})  # fmt: skip
_SECRET_SUFFIXES = (
    ".pem", ".key", ".crt", ".cer", ".der", ".p12", ".pfx", ".p8", ".jks", ".keystore",
    ".ppk", ".asc", ".gpg", ".pgp", ".kdbx", ".tfvars", ".tfstate", ".secret", ".secrets",
)  # fmt: skip
_SECRET_PREFIXES = ("id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", "client_secret", "service-account", ".env")


def secret_path_reason(rel: str) -> str | None:
    """Why a workspace path is secret by its name alone, or None.

    Args:
        rel: path relative to the workspace root (``/`` separators) or any absolute path.
    """
    parts = PurePosixPath(rel.replace("\\", "/")).parts
    if not parts:
        return None
    for part in parts[:-1]:
        if part.lower() in _SECRET_DIRS:
            return f"inside {part}/"
    name = parts[-1].lower()
    if name in _SECRET_NAMES:
        return f"credential file {parts[-1]}"
    if name.endswith(_SECRET_SUFFIXES):
        return f"key or certificate {parts[-1]}"
    if name.startswith(_SECRET_PREFIXES) or name.endswith(".env"):
        return f"secret file {parts[-1]}"
    return None


class _Compiled:
    """One rule ready to run: its regex, the text it matches (raw or lower-cased) and its check."""

    __slots__ = ("rule", "rx", "rx_any_case", "check", "groups")

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.rx = re.compile(rule.pattern)
        # lower() changes the length of a few characters (İ); then spans would not line up
        self.rx_any_case = re.compile(rule.pattern, re.IGNORECASE) if rule.icase else self.rx
        self.check = CHECKS[rule.check] if rule.check else None
        self.groups = [g for g in ("secret", "bare") if g in self.rx.groupindex]


_COMPILED = tuple(_Compiled(rule) for rule in RULES)
# Every rule's keywords in one Aho-Corasick automaton: one pass over the text says which
# rules can match (a substring test per keyword would be a hundred passes).
_KEYWORD_LIST = sorted({k for c in _COMPILED for k in c.rule.keywords})
_KEYWORDS = ahocorasick_rs.AhoCorasick(_KEYWORD_LIST)


def detector_fingerprint() -> str:
    """A hash of the rules and their checks: an index built under other rules must be rebuilt,
    or a secret that only a newer rule finds would stay in its cached entries."""
    rows = [(r.id, r.keywords, r.pattern, r.icase, r.check, r.anchored) for r in RULES]
    checks = Path(secrets_checks.__file__).read_bytes()
    return hashlib.blake2b(repr(rows).encode() + checks, digest_size=8).hexdigest()


def _anchored(rx: re.Pattern, subject: str, starts: list[int]):
    """Matches of `rx` starting exactly at `starts` (ascending), without overlaps, like finditer."""
    reached = 0
    for pos in starts:
        if pos >= reached and (m := rx.match(subject, pos)) is not None:
            reached = m.end()
            yield m


def _matches(text: str):
    """(start, end, rule id) of every accepted match of every rule whose keywords occur."""
    lowered = text.lower()
    aligned = len(lowered) == len(text)
    present: dict[str, list[int]] = {}
    for index, start, _ in _KEYWORDS.find_matches_as_indexes(lowered, overlapping=True):
        present.setdefault(_KEYWORD_LIST[index], []).append(start)  # character offsets
    for c in _COMPILED:
        rule = c.rule
        if rule.keywords and present.keys().isdisjoint(rule.keywords):
            continue
        if rule.icase:
            rx, subject = (c.rx, lowered) if aligned else (c.rx_any_case, text)
        else:
            rx, subject = c.rx, text
        if rule.anchored and aligned:  # keyword positions are positions in `lowered`
            starts = sorted({pos for k in rule.keywords for pos in present.get(k, ())})
            found = _anchored(rx, subject, starts)
        else:
            found = rx.finditer(subject)
        for m in found:
            start, end = m.span()
            for g in c.groups:
                if m.start(g) >= 0:
                    start, end = m.span(g)
                    break
            if c.check is None or c.check(text[start:end], m, subject):
                yield start, end, rule.id


def find_secrets(text: str) -> list[tuple[int, int, str]]:
    """Character spans ``(start, end, kind)`` of secrets in `text`, in order, non-overlapping.

    `kind` is the id of the rule that found it (`secrets_rules.RULES`); where spans of
    several rules overlap they are merged and the first one's id is kept.
    """
    spans = sorted(_matches(text))
    merged: list[tuple[int, int, str]] = []
    for start, end, kind in spans:
        if merged and start < merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end, merged[-1][2])
            continue
        merged.append((start, end, kind))
    return merged


def secret_kind(text: str) -> str | None:
    """The kind of the first secret found in `text`, or None when it looks clean."""
    return next((kind for _, _, kind in _matches(text)), None)


def redact(text: str) -> str:
    """`text` with every secret span replaced by ``<redacted>``."""
    spans = find_secrets(text)
    if not spans:
        return text
    pieces, last = [], 0
    for start, end, _ in spans:
        pieces += [text[last:start], REDACTED]
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


def redact_split(prefix: str, suffix: str) -> tuple[str, str]:
    """Redacts the cursor file as one text, then splits it again at the cursor.

    A secret that straddles the cursor (a key being pasted) is cut on both sides: its
    placeholder goes into the prefix and the rest of it is dropped from the suffix.
    """
    text = prefix + suffix
    spans = find_secrets(text)
    if not spans:
        return prefix, suffix
    cursor = len(prefix)
    before, after, last = [], [], 0
    for start, end, _ in spans:
        if end <= cursor:
            before += [text[last:start], REDACTED]
        elif start >= cursor:
            if last < cursor:
                before.append(text[last:cursor])
                last = cursor
            after += [text[last:start], REDACTED]
        else:
            before += [text[last:start], REDACTED]
        last = end
    if last < cursor:
        before.append(text[last:cursor])
        last = cursor
    after.append(text[last:])
    return "".join(before), "".join(after)
