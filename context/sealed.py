"""Checksummed cache files: a magic tag, a blake2b digest of the payload, then the payload.

The index and token caches are read on every start; a truncated or bit-flipped file must be
noticed and rebuilt (one log line), not parsed into entries that quietly degrade every run.
"""

from __future__ import annotations

import hashlib

_DIGEST = 16


class DamagedCache(ValueError):
    """A cache file that is not what was written; the message says how."""


def seal(magic: bytes, payload: bytes) -> bytes:
    return magic + hashlib.blake2b(payload, digest_size=_DIGEST).digest() + payload


def unseal(magic: bytes, data: bytes) -> bytes:
    """The payload of `seal(magic, payload)`.

    Raises:
        DamagedCache: not such a file (another format or version), or its checksum differs.
    """
    if not data.startswith(magic):
        raise DamagedCache(f"not a {magic.decode(errors='replace')} file (another format, or overwritten)")
    digest, payload = data[len(magic) : len(magic) + _DIGEST], data[len(magic) + _DIGEST :]
    if hashlib.blake2b(payload, digest_size=_DIGEST).digest() != digest:
        raise DamagedCache(f"checksum mismatch ({len(data)} bytes: truncated or corrupted)")
    return payload
