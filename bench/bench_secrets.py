"""Benchmark of the secret detector (`context/secrets.py`) on real source: speed and false positives.

Redaction runs on every indexed file and, on every keystroke, on the cursor window, so it
must be fast on ordinary code and must rarely fire there (each hit replaces a literal with
``<redacted>``). Prints, on the CPython standard library's ``.py`` files:

* whole-tree scan speed in MB/s (median of ``--repeats``),
* ``redact_split`` time for cursor windows of 8 and 32 KB (median over windows),
* how many files get at least one redaction, by rule, and with ``--list`` which values;
* with ``--detect-secrets``, the same scan by detect-secrets (if installed; it is not a
  dependency) on the first ``--ds-files`` files, side by side, and the canaries of the
  test corpus (``tests/context/secret_corpus.py``, one file per format) each detector finds.

Usage::

    .venv/bin/python bench/bench_secrets.py [--lib DIR] [--repeats N] [--list] [--detect-secrets]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from deepfim.context.secrets import find_secrets, redact_split


def _sources(lib: Path) -> list[tuple[str, str]]:
    out = []
    for path in sorted(lib.rglob("*.py")):
        if "site-packages" in path.parts:
            continue
        try:
            out.append((str(path.relative_to(lib)), path.read_text(encoding="utf-8", errors="replace")))
        except OSError:
            continue
    return out


def _scan_seconds(texts: list[str]) -> float:
    t0 = time.perf_counter()
    for text in texts:
        find_secrets(text)
    return time.perf_counter() - t0


def _window_us(texts: list[str], size: int) -> float:
    """Median microseconds of `redact_split` on `size`-character windows around a mid-file cursor."""
    times = []
    for text in (t for t in texts if len(t) >= size):
        middle = len(text) // 2
        prefix, suffix = text[middle - size * 3 // 4 : middle], text[middle : middle + size // 4]
        t0 = time.perf_counter()
        redact_split(prefix, suffix)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def _detect_secrets_mb_s(sources: list[tuple[str, str]], lib: Path) -> tuple[float, int] | None:
    try:
        from detect_secrets.core import scan
        from detect_secrets.settings import default_settings
    except ImportError:
        return None
    size, flagged = 0, 0
    t0 = time.perf_counter()
    with default_settings():
        for rel, text in sources:
            size += len(text.encode())
            flagged += any(True for _ in scan.scan_file(str(lib / rel)))
    return size / 1e6 / (time.perf_counter() - t0), flagged


def _corpus_coverage() -> None:
    """Canaries of the test corpus that survive `redact` vs that detect-secrets reports."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "context"))
    from detect_secrets.core import scan
    from detect_secrets.settings import default_settings
    from secret_corpus import build, leaked

    from deepfim.context.secrets import redact

    files, canaries, _, cursor = build()
    files.update({path: prefix + suffix for _, path, prefix, suffix, _ in cursor})
    ours = sum(len(leaked(canaries, text)) - len(leaked(canaries, redact(text))) for text in files.values())
    theirs = 0
    with tempfile.TemporaryDirectory() as tmp, default_settings():
        for i, text in enumerate(files.values()):
            path = Path(tmp) / f"{i}.txt"
            path.write_text(text)
            found = " ".join(s.secret_value or "" for s in scan.scan_file(str(path)))
            theirs += len(leaked(leaked(canaries, text), found))
    print(f"test corpus, {len(files)} files, {len(canaries)} canaries: ours redacts {ours}, "
          f"detect-secrets finds {theirs}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lib", type=Path, default=Path(sysconfig.get_paths()["stdlib"]))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--list", action="store_true", help="print every redacted value")
    parser.add_argument("--detect-secrets", action="store_true", help="also time detect-secrets, if installed")
    parser.add_argument("--ds-files", type=int, default=200, help="files for detect-secrets (it is slow)")
    args = parser.parse_args(argv)

    sources = _sources(args.lib)
    texts = [text for _, text in sources]
    megabytes = sum(len(t.encode()) for t in texts) / 1e6
    seconds = statistics.median(_scan_seconds(texts) for _ in range(args.repeats))
    print(f"corpus: {args.lib} — {len(texts):,} .py files, {megabytes:.1f} MB")
    print(f"scan: {megabytes / seconds:.1f} MB/s (median of {args.repeats}, {seconds:.2f} s for the tree)")
    for size in (8_192, 32_768):
        print(f"redact_split, {size // 1024} KB cursor window: {_window_us(texts, size):.0f} µs median")

    by_rule: collections.Counter[str] = collections.Counter()
    flagged = []
    for rel, text in sources:
        spans = find_secrets(text)
        if spans:
            flagged.append((rel, [(text[a:b], kind) for a, b, kind in spans]))
            by_rule.update({kind for _, _, kind in spans})
    share = 100 * len(flagged) / len(sources)
    print(f"files with a redaction: {len(flagged)} of {len(sources):,} ({share:.2f}%)")
    print("  by rule (files): " + (", ".join(f"{k} {n}" for k, n in by_rule.most_common()) or "none"))
    if args.list:
        for rel, found in flagged:
            print(f"  {rel}: " + "; ".join(f"{kind} {value[:40]!r}" for value, kind in found))

    if args.detect_secrets:
        sample = sources[: args.ds_files]
        result = _detect_secrets_mb_s(sample, args.lib)
        if result is None:
            print("detect-secrets: not installed (pip install detect-secrets==1.5.0 to compare)")
        else:
            sample_mb = sum(len(t.encode()) for _, t in sample) / 1e6
            ours = sample_mb / _scan_seconds([t for _, t in sample])
            ds_speed, ds_flagged = result
            print(f"detect-secrets 1.5 on the first {len(sample)} files ({sample_mb:.1f} MB): {ds_speed:.2f} MB/s, "
                  f"{ds_flagged} files flagged; ours {ours:.1f} MB/s (x{ours / ds_speed:.0f})")  # fmt: skip
            _corpus_coverage()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
