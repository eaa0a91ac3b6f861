"""Value checks for the secret rules (`secrets_rules.py`): is this match a credential or just code?

A regex finds ``token = next(it)`` as readily as ``token = 9f8e...``. These checks see the
matched value (original case) and the match, and keep only values that look like a secret:
not a placeholder (``changeme``, ``${DB_PASSWORD}``, ``<your-key>``), not a reference
(``self.password``, ``os.environ``), not a path or URL, and random enough. Each is cheap
and runs only on regex matches, never on all text.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections import Counter
from collections.abc import Callable

# values that name or stand for a secret instead of being one
PLACEHOLDERS = frozenset({
    "password", "passwd", "pass", "pwd", "secret", "secrets", "token", "apikey", "api_key", "changeme", "change_me",
    "changeit", "example", "placeholder", "redacted", "none", "null", "nil", "true", "false", "yes", "no", "on",
    "off", "required", "optional", "string", "str", "bytes", "int", "undefined", "empty", "hidden", "dummy",
    "default", "value", "values", "test", "testing", "sample", "mypassword", "yourpassword", "your_password",
    "password123", "secret123", "foobar", "foo", "bar", "admin", "root", "user", "username", "guest", "anonymous",
})  # fmt: skip
# words after a credential name that make it something else: token_type, password_file, secretName, tokenizer
EXCLUDED_TAILS = frozenset({
    "s", "es", "izer", "izers", "ize", "ized", "izing", "ization", "less", "type", "types", "name", "names", "file",
    "files", "path", "paths", "dir", "url", "uri", "endpoint", "field", "fields", "env", "var", "vars", "length",
    "len", "count", "size", "ref", "refs", "keyref", "format", "fmt", "prefix", "suffix", "header", "param",
    "params", "policy", "regex", "re", "pattern", "id", "ids", "timeout", "ttl", "expiry", "expires", "expiration",
    "label", "kind", "mode", "class", "index", "idx", "pos", "list", "map", "hint", "help", "prompt", "message",
    "msg", "text", "title", "description", "desc", "version", "algorithm", "alg", "method", "scheme", "scope",
    "scopes", "source", "provider", "store", "manager", "selector", "spec", "mount", "arn", "location", "reset",
    "required", "enabled", "visible", "input", "widget", "validator", "min", "max", "rules", "strength", "chars",
})  # fmt: skip
_TAIL_ENDINGS = ("name", "file", "path", "type", "url", "uri", "keyref", "izer", "endpoint")
# words before a credential name: max_tokens, eos_token, is_secret
EXCLUDED_HEADS = frozenset({
    "max", "min", "num", "n", "bos", "eos", "pad", "unk", "sep", "cls", "mask", "start", "end", "special", "next",
    "prev", "last", "first", "is", "has", "use", "show", "no", "total", "count", "stop", "new_line", "sentinel",
})  # fmt: skip
_PASSWORD_NAMES = ("passw", "pwd", "_pass", "passphrase", "passcode")
_SYMBOLS = frozenset("!@#$%^&*+=~?/:")
_DOTTED_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
_IDENTIFIER_WORDS = re.compile(r"[A-Za-z]+(?:[_\-. ][A-Za-z]+)*")
_WORD = re.compile(r"[A-Z]?[a-z]{3,}|[A-Z]{3,}|_")
_FILE_NAME = re.compile(r"[\w.-]+\.(?:json|ya?ml|pem|key|txt|crt|cfg|conf|ini|toml|env|p12|pfx|jks|gpg|asc)")
_FORMAT = re.compile(r"%(?:\([\w.]+\))?[-#0-9.]*[sdrfxXeEgGcoi]")
_HEX = re.compile(r"[0-9a-fA-F-]+")
_KEY_CHAR = re.compile(r"[\w.-]")


def is_placeholder(value: str) -> bool:
    """Templated, masked or example values: ``${X}``, ``{{ x }}``, ``<key>``, ``****``, ``changeme``."""
    low = value.lower()
    if low in PLACEHOLDERS or len(set(low)) <= 2:
        return True
    if value[0] in "<[{(%_" and value[-1] in ">]})%_":
        return True
    if "${" in value or "$(" in value or ("{" in value and "}" in value) or _FORMAT.search(value):
        return True  # templated: ${X}, {{ x }}, f"{x}", "%s", "%(name)s", "%d:%d"
    if value[0] == "$" or low.startswith(("your", "<", "xxx", "***", "...")):
        return True
    return "xxxx" in low or "****" in low


def is_reference(value: str) -> bool:
    """A name of something else: ``self.password``, ``settings.SECRET_KEY``, ``base64.b64decode``.

    (A dotted token of a known shape, like a Kubernetes bootstrap token, has its own rule.)
    """
    return bool(_DOTTED_NAME.fullmatch(value))


def is_path_or_url(value: str) -> bool:
    if "://" in value or value.startswith(("/", "./", "../", "~/", "\\", "file:")):
        return True
    return bool(re.match(r"[a-zA-Z]:\\", value)) or bool(_FILE_NAME.fullmatch(value))


def _has_digit(value: str) -> bool:
    return any(c.isdigit() for c in value)


def _has_symbol(value: str) -> bool:
    return any(c in _SYMBOLS for c in value)


def _random_enough(value: str) -> bool:
    """A letter and a digit or symbol (``hunter2``, ``S3cret!``), or long and of mixed case."""
    letter = any(c.isalpha() for c in value)
    if letter and (_has_digit(value) or _has_symbol(value)):
        return True
    return len(value) >= 16 and value != value.lower() and value != value.upper()


def _ordinary(value: str) -> bool:
    return is_placeholder(value) or is_reference(value) or is_path_or_url(value)


def password(value: str, match: re.Match, text: str) -> bool:
    """A password in prose, a command line, XML or a Dockerfile."""
    return not _ordinary(value) and _random_enough(value)


def prose(value: str, match: re.Match, text: str) -> bool:
    """A password in running text: it must hold a digit (prose is full of ``password is hashed``)."""
    return password(value, match, text) and _has_digit(value)


def token(value: str, match: re.Match, text: str) -> bool:
    """A bearer or basic credential in an Authorization header (any Basic one: ``user:pass``)."""
    if len(value) < 8 or _ordinary(value):
        return False
    return match.groupdict().get("scheme") == "basic" or _random_enough(value)


def url_password(value: str, match: re.Match, text: str) -> bool:
    """The password of ``scheme://user:password@host`` unless it is an example word."""
    return not is_placeholder(value) and value.lower() not in ("pw", "pwd", "x")


def credential(value: str, match: re.Match, text: str) -> bool:
    """The value of ``<credential name> = value`` in any config or code format."""
    tail = match.group("tail").lower()
    words = [w for w in re.split(r"[_.-]", tail) if w]
    if tail and (any(w in EXCLUDED_TAILS for w in words) or tail.endswith(_TAIL_ENDINGS)):
        return False
    start = match.start("kw")
    head = start
    while head > 0 and _KEY_CHAR.match(text, head - 1):
        head -= 1
    head_words = [w for w in re.split(r"[_.-]", text[head:start].lower()) if w]
    if head_words and head_words[-1] in EXCLUDED_HEADS:
        return False
    if _ordinary(value) or value.isdigit():
        return False
    bare = match.group("bare") is not None
    if bare and (value.endswith(":") or match.group("sep") in ("==", "!=")):
        return False  # `if token == END:`: a comparison with a name, the head of a block
    if _random_enough(value):
        return True
    is_password = match.group("kw").lower().startswith(_PASSWORD_NAMES)
    # a quoted lower-case word for a password (`PASSWORD = "correcthorse"`), not NAME_LIKE or a-field-name
    return not bare and is_password and len(value) >= 8 and value.isalpha() and value.islower()


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def _sequential(low: str) -> bool:
    run = 1
    for a, b in zip(low, low[1:], strict=False):
        run = run + 1 if ord(b) - ord(a) == 1 else 1
        if run >= 6:
            return True
    return False


def high_entropy(value: str, match: re.Match, text: str) -> bool:
    """A quoted literal random enough to be a key: digits and both cases, few words, not hex."""
    if _HEX.fullmatch(value) or _sequential(value.lower()):
        return False  # hex digests and ids are too common in code (test vectors, commit ids)
    if not (_has_digit(value) and value != value.lower() and value != value.upper()):
        return False
    if sum(len(w) for w in _WORD.findall(value)) * 2 >= len(value):
        return False  # CamelCaseWordsAndSo0n
    if _encoded_text(value):
        return False
    return entropy(value) >= 0.85 * math.log2(min(len(value), 64))


def _encoded_text(value: str) -> bool:
    """Base64 of printable text (test data, e-mail bodies), where a key decodes to random bytes."""
    body = value.rstrip("=")
    if not re.fullmatch(r"[A-Za-z0-9+/]+", body):
        return False
    for skip in range(4):  # the literal may be cut from a longer encoding at any offset
        chunk = body[skip:][: (len(body) - skip) // 4 * 4]
        try:
            raw = base64.b64decode(chunk)
        except (binascii.Error, ValueError):
            continue
        if raw and sum(32 <= b < 127 or b in (9, 10, 13) for b in raw) >= 0.95 * len(raw):
            return True
    return False


def two_digits(value: str, match: re.Match, text: str) -> bool:
    """At least two digits: random ids have them, dotted names (``config.settingsfile``) rarely."""
    return sum(c.isdigit() for c in value) >= 2


def base64_private_key(value: str, match: re.Match, text: str) -> bool:
    """Base64 of a PEM private key (kubeconfig ``client-key-data``), not of a certificate."""
    head = value[: len(value) // 4 * 4][:64]
    try:
        return b"PRIVATE KEY" in base64.b64decode(head)
    except (binascii.Error, ValueError):
        return False


CHECKS: dict[str, Callable[[str, re.Match, str], bool]] = {
    "password": password,
    "prose": prose,
    "token": token,
    "url_password": url_password,
    "credential": credential,
    "high_entropy": high_entropy,
    "base64_private_key": base64_private_key,
    "two_digits": two_digits,
}
