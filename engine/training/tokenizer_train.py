"""Train the embedded model's byte-level BPE tokenizer on the corpus' training split.

    python -m deepfim.engine.training.tokenizer_train --corpus data/corpus \
        --out engine/default_model/tokenizer.json --vocab-size 8192

The pre-tokeniser is DeepSeek-V4's (v4-model.md §9.1): digits in runs of ≤ 3, CJK/kana runs
isolated, the same letters/punctuation/whitespace regex, ByteLevel without prefix space, no
normaliser. That regex already keeps an indentation run in one piece (``\\s+(?!\\S)`` takes
all spaces but the one that joins the next word), so BPE learns single tokens for the
common indent widths; `indent_report` checks it.

Ids 0..11 are the V4 special-token strings (`deepfim.engine.model.tokenizer`), in V4's order for
BOS/EOS/pad (0, 1, 2). As in V4, BOS/EOS/pad are flagged special and the FIM and
repository/file markers are not (decoding keeps them). The vocabulary size counts them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from deepfim.engine.model import tokenizer as T
from deepfim.engine.training.corpus import CorpusFile, load_corpus

log = logging.getLogger(__name__)

SPECIALS = (
    T.BOS, T.EOS, T.PAD, T.FIM_HOLE, T.FIM_BEGIN, T.FIM_END, T.REPO_NAME_BEGIN, T.REPO_NAME_END,
    T.FILE_NAME_BEGIN, T.FILE_NAME_END, T.FILE_BEGIN, T.FILE_END,
)  # fmt: skip
FLAGGED_SPECIAL = {T.BOS, T.EOS, T.PAD}

# DeepSeek-V4's pre-tokeniser patterns, verbatim from its tokenizer.json.
DIGITS = r"\p{N}{1,3}"
CJK = r"[一-龥぀-ゟ゠-ヿ]+"
WORDS = (
    r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"
    r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Languages with little text in the corpus are repeated so their idioms get merges too.
LANGUAGE_REPEATS = {"python": 1, "typescript": 3, "javascript": 2}


def new_tokenizer() -> HFTokenizer:
    """An untrained BPE with V4's pre-tokeniser and decoder."""
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(DIGITS), behavior="isolated"),
            pre_tokenizers.Split(Regex(CJK), behavior="isolated"),
            pre_tokenizers.Split(Regex(WORDS), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def training_texts(files: list[CorpusFile]) -> Iterator[str]:
    for f in files:
        for _ in range(LANGUAGE_REPEATS.get(f.lang, 1)):
            yield f.text


def train_tokenizer(files: list[CorpusFile], vocab_size: int) -> dict:
    """Trains on the given files; returns the tokenizer.json content as a dict."""
    if not len(SPECIALS) + 256 < vocab_size <= 65536:
        raise ValueError(f"vocab_size must be in ({len(SPECIALS) + 256}, 65536], got {vocab_size}")
    tok = new_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        max_token_length=32,
        show_progress=False,
    )
    tok.train_from_iterator(training_texts(files), trainer=trainer, length=len(files))
    spec = json.loads(tok.to_str())
    for added in spec["added_tokens"]:
        added["special"] = added["content"] in FLAGGED_SPECIAL
        added["normalized"] = False
    ids = [next(a["id"] for a in spec["added_tokens"] if a["content"] == s) for s in SPECIALS]
    assert ids == list(range(len(SPECIALS))), ids
    return spec


def truncate_vocab(spec: dict, vocab_size: int) -> dict:
    """The same BPE with only its first merges: what training to `vocab_size` would give.

    BPE training is greedy, so the first k merges of a bigger run are the merges of a run
    stopped at k; this lets one training run compare vocabulary sizes.
    """
    spec = json.loads(json.dumps(spec))
    model = spec["model"]
    keep_merges = vocab_size - (len(model["vocab"]) - len(model["merges"]))
    if keep_merges < 0 or keep_merges > len(model["merges"]):
        raise ValueError(f"cannot truncate a {len(model['vocab'])}-token vocabulary to {vocab_size}")
    model["merges"] = model["merges"][:keep_merges]
    model["vocab"] = {t: i for t, i in model["vocab"].items() if i < vocab_size}
    return spec


def bytes_per_token(tok: T.Tokenizer, files: list[CorpusFile]) -> float:
    texts = [f.text for f in files]
    n_tokens = sum(len(ids) for ids in tok.encode_batch(texts))
    return sum(len(t.encode("utf-8")) for t in texts) / max(n_tokens, 1)


def indent_report(tok: T.Tokenizer) -> dict[str, int]:
    """Tokens for an indented line at common indent widths (1 + word is compact)."""
    return {f"{n} spaces": len(tok.encode("\n" + " " * n + "return x")) for n in (4, 8, 12, 16, 24)} | {
        "2 tabs": len(tok.encode("\n\t\treturn x"))
    }


def statistics(spec: dict, heldout: list[CorpusFile], sizes: tuple[int, ...], dim: int = 256) -> list[dict]:
    """Held-out bytes/token per language for each candidate vocabulary size."""
    rows = []
    langs = sorted({f.lang for f in heldout})
    for size in sizes:
        tok = T.Tokenizer(truncate_vocab(spec, size))
        row = {"vocab": size, "embedding_params_d256_untied": 2 * size * dim}
        for lang in langs:
            row[f"bytes_per_token_{lang}"] = round(bytes_per_token(tok, [f for f in heldout if f.lang == lang]), 3)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    parser.add_argument("--out", type=Path, default=Path("engine/default_model/tokenizer.json"))
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--compare", default="4096,8192,12288,16384", help="vocab sizes to report (≤ trained)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    sizes = tuple(int(s) for s in args.compare.split(",") if s)
    train, heldout = load_corpus(args.corpus, "train"), load_corpus(args.corpus, "heldout")
    start = time.perf_counter()
    big = train_tokenizer(train, max((args.vocab_size, *sizes)))
    log.info("trained in %.0f s", time.perf_counter() - start)
    spec = truncate_vocab(big, args.vocab_size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(spec, ensure_ascii=False, indent=None) + "\n", encoding="utf-8")
    tok = T.Tokenizer.from_file(args.out)
    report = {
        "vocab_size": tok.vocab_size,
        "compare": statistics(big, heldout, sizes),
        "indent_tokens": indent_report(tok),
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
