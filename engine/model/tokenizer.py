"""Tokenizer for DeepFIM checkpoints: a `tokenizer.json` read with HF `tokenizers`.

Works with the real DeepSeek-V4 tokenizer (129,280 ids) and with the embedded model's own
byte-level BPE; both carry the same special-token *strings*, so every special token is
looked up by name, never by a hard-coded id.

Text from the workspace is encoded **without** added-token matching: a file that literally
contains ``<｜fim▁hole｜>`` must not be able to inject control tokens into the prompt. We
build a second `tokenizers.Tokenizer` from the same JSON with the added tokens removed and
use it for all raw text; special tokens are appended by id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer as _HFTokenizer

# The DeepSeek-V4 special-token strings (see ../shared/design/v4-model.md §9).
BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
FIM_HOLE = "<｜fim▁hole｜>"
FIM_BEGIN = "<｜fim▁begin｜>"
FIM_END = "<｜fim▁end｜>"
REPO_NAME_BEGIN = "<｜begin▁of▁repo▁name｜>"
REPO_NAME_END = "<｜end▁of▁repo▁name｜>"
FILE_NAME_BEGIN = "<｜begin▁of▁file▁name｜>"
FILE_NAME_END = "<｜end▁of▁file▁name｜>"
FILE_BEGIN = "<｜begin▁of▁file｜>"
FILE_END = "<｜end▁of▁file｜>"

REQUIRED_SPECIALS = (BOS, EOS, FIM_HOLE, FIM_BEGIN, FIM_END)
OPTIONAL_SPECIALS = (PAD, REPO_NAME_BEGIN, REPO_NAME_END, FILE_NAME_BEGIN, FILE_NAME_END, FILE_BEGIN, FILE_END)
ALL_SPECIALS = REQUIRED_SPECIALS + OPTIONAL_SPECIALS


class TokenizerError(ValueError):
    """A tokenizer file that is missing, unreadable or lacks a required special token."""


@dataclass(frozen=True)
class SpecialIds:
    """Ids of the special tokens; optional markers are None when the vocabulary lacks them."""

    bos: int
    eos: int
    fim_hole: int
    fim_begin: int
    fim_end: int
    pad: int | None
    repo_name_begin: int | None
    repo_name_end: int | None
    file_name_begin: int | None
    file_name_end: int | None
    file_begin: int | None
    file_end: int | None

    @property
    def has_file_markers(self) -> bool:
        return None not in (self.file_name_begin, self.file_name_end, self.file_begin, self.file_end)

    @property
    def has_repo_markers(self) -> bool:
        return None not in (self.repo_name_begin, self.repo_name_end)


class Tokenizer:
    """Encodes raw text (never matching special strings) and decodes ids, specials included."""

    def __init__(self, spec: dict, source: str = "<memory>") -> None:
        try:
            self._full = _HFTokenizer.from_str(json.dumps(spec))
            text_spec = dict(spec)
            text_spec["added_tokens"] = []
            self._text = _HFTokenizer.from_str(json.dumps(text_spec))
        except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
            raise TokenizerError(f"{source}: not a valid tokenizer.json ({exc})") from exc
        self.source = source
        ids = {s: self._full.token_to_id(s) for s in ALL_SPECIALS}
        missing = [s for s in REQUIRED_SPECIALS if ids[s] is None]
        if missing:
            raise TokenizerError(f"{source}: tokenizer lacks required special tokens {missing}")
        self.special = SpecialIds(
            bos=ids[BOS], eos=ids[EOS], fim_hole=ids[FIM_HOLE], fim_begin=ids[FIM_BEGIN],
            fim_end=ids[FIM_END], pad=ids[PAD], repo_name_begin=ids[REPO_NAME_BEGIN],
            repo_name_end=ids[REPO_NAME_END], file_name_begin=ids[FILE_NAME_BEGIN],
            file_name_end=ids[FILE_NAME_END], file_begin=ids[FILE_BEGIN], file_end=ids[FILE_END],
        )  # fmt: skip
        self.special_id_set = frozenset(i for i in ids.values() if i is not None)
        self.vocab_size = self._full.get_vocab_size(with_added_tokens=True)

    @classmethod
    def from_file(cls, path: str | Path) -> Tokenizer:
        """The tokenizer of a tokenizer.json (or of the one in a directory). One instance per
        file version and process: the engine and the language server both ask for the
        checkpoint's at start, one after the other."""
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        try:
            st = path.stat()
        except FileNotFoundError as exc:
            raise TokenizerError(f"{path}: no tokenizer.json found") from exc
        except OSError as exc:
            raise TokenizerError(f"{path}: unreadable tokenizer.json ({exc})") from exc
        return _load(cls, str(path), str(path.resolve()), st.st_mtime_ns, st.st_size)

    def encode(self, text: str) -> list[int]:
        """Token ids of raw text; special-token strings inside `text` stay plain text."""
        if not text:
            return []
        return self._text.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Encodes many texts at once (parallel in Rust); empty strings give empty lists."""
        if not texts:
            return []
        return [e.ids for e in self._text.encode_batch(list(texts), add_special_tokens=False)]

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def decode(self, ids: list[int], skip_special: bool = False) -> str:
        return self._full.decode(list(ids), skip_special_tokens=skip_special)

    def id_to_token(self, token_id: int) -> str | None:
        return self._full.id_to_token(token_id)

    def token_id(self, token: str) -> int | None:
        return self._full.token_to_id(token)


class StreamDecoder:
    """Turns a growing list of ids into text increments without splitting UTF-8 characters.

    Byte-level BPE tokens can end in the middle of a multi-byte character; decoding them one
    by one would emit U+FFFD. We decode the whole tail since the last clean boundary and only
    release text once it no longer ends in a replacement character.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tok = tokenizer
        self._ids: list[int] = []
        self._emitted = ""

    def push(self, token_id: int) -> str:
        self._ids.append(token_id)
        text = self._tok.decode(self._ids)
        if text.endswith("\ufffd"):
            return ""
        delta = text[len(self._emitted) :]
        self._emitted = text
        return delta

    @property
    def text(self) -> str:
        return self._emitted


@lru_cache(maxsize=8)
def _load(cls: type[Tokenizer], shown: str, resolved: str, mtime_ns: int, size: int) -> Tokenizer:
    """Reads a tokenizer.json; keyed by the file's version (a rewritten file is read again)."""
    try:
        spec = json.loads(Path(resolved).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:  # (from_file saw it exist)
        raise TokenizerError(f"{shown}: unreadable tokenizer.json ({exc})") from exc
    return cls(spec, source=shown)
