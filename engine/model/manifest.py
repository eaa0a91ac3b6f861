"""An optional sha256 manifest of a checkpoint directory: `SHA256SUMS`, in `sha256sum` format
(`sha256sum -c SHA256SUMS` checks it too).

Flipped bytes in a weight file load without complaint (most bit patterns are valid numbers)
and give garbage completions, so a checkpoint that has a manifest is verified before its
weights are read. `deepfim checksum DIR` writes one; `deepfim checksum --verify DIR` checks it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

MANIFEST = "SHA256SUMS"
_LINE = re.compile(r"([0-9a-f]{64}) [ *](.+)")
_CHUNK = 1 << 20


class ManifestError(ValueError):
    """The manifest is unreadable, or files do not match it; the message names each file."""


def checkpoint_files(ckpt_dir: Path) -> list[Path]:
    """The files a checkpoint consists of: config, tokenizer, weights (and their index)."""
    names = ["config.json", "tokenizer.json", "model.safetensors.index.json"]
    files = [ckpt_dir / n for n in names if (ckpt_dir / n).is_file()]
    return files + sorted(ckpt_dir.glob("*.safetensors"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(ckpt_dir: str | Path) -> Path:
    """Writes `SHA256SUMS` for the checkpoint's files; returns its path."""
    ckpt_dir = Path(ckpt_dir)
    lines = [f"{sha256_file(f)}  {f.name}\n" for f in checkpoint_files(ckpt_dir)]
    if not lines:
        raise ManifestError(f"{ckpt_dir}: no checkpoint files to list")
    path = ckpt_dir / MANIFEST
    tmp = path.with_name(MANIFEST + ".tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    tmp.replace(path)
    return path


def verify_manifest(ckpt_dir: str | Path) -> int:
    """Checks every file against `SHA256SUMS`; returns how many were checked (0: no manifest).

    Raises:
        ManifestError: naming each file that is missing, differs, or is not listed.
    """
    ckpt_dir = Path(ckpt_dir)
    path = ckpt_dir / MANIFEST
    if not path.exists():
        return 0
    expected: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        match = _LINE.fullmatch(line.strip())
        if match is None:
            raise ManifestError(f"{path}:{number}: not a sha256sum line: {line[:80]!r}")
        expected[match.group(2)] = match.group(1)
    problems = []
    for name, digest in expected.items():
        file = ckpt_dir / name
        if not file.is_file():
            problems.append(f"{name}: missing")
        elif sha256_file(file) != digest:
            problems.append(f"{name}: sha256 differs from {MANIFEST} (corrupt or changed since it was written)")
    problems += [f"{f.name}: not listed in {MANIFEST}" for f in checkpoint_files(ckpt_dir) if f.name not in expected]
    if problems:
        raise ManifestError(f"{ckpt_dir}: checkpoint does not match its manifest:\n  " + "\n  ".join(problems))
    return len(expected)
