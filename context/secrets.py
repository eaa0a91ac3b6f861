"""What must never reach the index or a prompt: secret files by name, and secrets in text.

Two lines of defence:

1. **By name** (`secret_path_reason`): ``.env*``, keys and certificates, keystores,
   credential stores (``.netrc``, ``.npmrc``, ``.aws/credentials``, ...), and whole
   directories such as ``.ssh``. These files are never opened, whatever ``.gitignore`` or
   ``.deepfimignore`` say, and a buffer of such a file is never indexed or packed.
2. **By content** (`find_secrets`): private-key blocks and tokens with a recognisable
   shape (AWS, GitHub, GitLab, Slack, Stripe, Google, OpenAI/Anthropic-style ``sk-``,
   JWTs) and quoted literals assigned to names like ``api_key`` or ``password``. A file
   containing one is left out of the index; the cursor file's own text is redacted instead
   (`redact_split`), so completion still works in it.

Detection is deliberately broad: a false positive costs one file of context, a false
negative leaks a credential into every prompt and every prefix-cache snapshot.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

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


# (kind, substrings of which one must occur, regex). The substring test is a fast filter:
# on clean text (nearly all of it) no regex runs at all.
_PATTERNS = [
    ("private key", ("PRIVATE KEY",),
     r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?(?:-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)"),
    # the end of a key whose beginning was cut off (the cursor window's far edge)
    ("private key", ("PRIVATE KEY",),
     r"\A(?:(?!-----BEGIN)[\s\S])*?-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"),
    ("AWS access key", ("AKIA", "ASIA", "AGPA", "AIDA", "AROA"), r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b"),
    ("AWS secret", ("ecret", "ECRET"),
     r"(?i)aws_?secret_?(?:access_?)?key\s*[:=]\s*['\"]?[A-Za-z0-9/+=]{30,}"),
    ("GitHub token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
     r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})"),
    ("GitLab token", ("glpat-",), r"\bglpat-[A-Za-z0-9_-]{20,}"),
    ("Slack token", ("xox",), r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    ("Stripe key", ("_live_",), r"\b[rs]k_live_[A-Za-z0-9]{20,}"),
    ("Google API key", ("AIza",), r"\bAIza[0-9A-Za-z_-]{35}"),
    ("API key", ("sk-",), r"\bsk-(?:proj-|ant-[a-z0-9]+-)?[A-Za-z0-9_-]{32,}"),
    ("JWT", ("eyJ",), r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"),
]  # fmt: skip
_COMPILED = [(kind, triggers, re.compile(pattern)) for kind, triggers, pattern in _PATTERNS]
# Quoted literals assigned to credential-like names. Matched on lower-cased text: a
# case-insensitive regex is about seven times slower on source code.
_LITERAL_TRIGGERS = ("key", "token", "secret", "passw")
_LITERAL_RE = re.compile(
    r"(?:api[_-]?key|apikey|secret|access[_-]?token|auth[_-]?token|private[_-]?key|passw(?:or)?d)"
    r"[\w-]*['\"]?\s*(?::=|=>|[:=])\s*[bru]?['\"]"
    r"(?=[^'\"\s]*[0-9])(?=[^'\"\s]*[a-z])[^'\"\s]{12,}['\"]"
)
_LITERAL_RE_ANY_CASE = re.compile(_LITERAL_RE.pattern, re.IGNORECASE)


def _active(text: str):
    """(kind, regex, text to match) for each pattern whose trigger substrings occur."""
    found = [(kind, rx, text) for kind, triggers, rx in _COMPILED if any(t in text for t in triggers)]
    lowered = text.lower()
    if any(t in lowered for t in _LITERAL_TRIGGERS):
        # lower() may change the length of a few characters; then spans would not line up
        if len(lowered) == len(text):
            found.append(("credential literal", _LITERAL_RE, lowered))
        else:
            found.append(("credential literal", _LITERAL_RE_ANY_CASE, text))
    return found


def find_secrets(text: str) -> list[tuple[int, int, str]]:
    """Character spans ``(start, end, kind)`` of secrets in `text`, in order, non-overlapping."""
    spans = sorted((m.start(), m.end(), kind) for kind, rx, subject in _active(text) for m in rx.finditer(subject))
    merged: list[tuple[int, int, str]] = []
    for start, end, kind in spans:
        if merged and start < merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end, merged[-1][2])
            continue
        merged.append((start, end, kind))
    return merged


def secret_kind(text: str) -> str | None:
    """The kind of a secret found in `text`, or None when it looks clean."""
    for kind, rx, subject in _active(text):
        if rx.search(subject):
            return kind
    return None


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
