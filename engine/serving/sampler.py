"""Choosing the next token: greedy, or temperature with nucleus (top-p) sampling."""

from __future__ import annotations

import torch

from deepfim.engine.api import SamplingParams


def sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None = None) -> tuple[int, float]:
    """Returns (token id, its log-probability under the unmodified distribution) from [V] logits."""
    logits = logits.float()
    logprobs = torch.log_softmax(logits, -1)
    if params.is_greedy:
        token = int(logits.argmax())
        return token, float(logprobs[token])
    probs = torch.softmax(logits / params.temperature, -1)
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        cumulative = sorted_probs.cumsum(-1)
        # keep the smallest prefix whose mass reaches top_p (always at least one token)
        cut = int((cumulative < params.top_p).sum()) + 1
        probs = torch.zeros_like(probs).scatter_(0, order[:cut], sorted_probs[:cut])
    token = int(torch.multinomial(probs, 1, generator=generator))
    return token, float(logprobs[token])


class StopChecker:
    """Finds the earliest stop string in generated text (also across token boundaries)."""

    def __init__(self, stop: tuple[str, ...]) -> None:
        self.stop = stop
        self.longest = max((len(s) for s in stop), default=0)

    def find(self, text: str, new_from: int) -> int | None:
        """Index where a stop string starts, looking only at text that could include new chars."""
        if not self.stop:
            return None
        start = max(0, new_from - self.longest + 1)
        hits = [i for s in self.stop if (i := text.find(s, start)) >= 0]
        return min(hits) if hits else None

    def safe_prefix(self, text: str) -> int:
        """Length of text that can be streamed: no stop string can start inside the rest."""
        if not self.stop:
            return len(text)
        for k in range(min(self.longest - 1, len(text)), 0, -1):
            tail = text[-k:]
            if any(s.startswith(tail) for s in self.stop):
                return len(text) - k
        return len(text)


LOOP_COPIES, LOOP_MAX_BLOCK = 3, 4  # a block of 1-4 lines written three times in a row
TOKEN_LOOP_MAX = 8  # a run of 1-8 tokens written three times in a row


def repeated_tokens_cut(tokens: list[int], ends: list[int], text: str) -> int | None:
    """Where to cut a completion that repeats a run of 1-8 tokens three times in a row
    (``text_document.text_document.text_document``): after the first copy.

    Only runs that hold a letter count, so ``0, 0, 0`` and ``)))`` are left alone; `ends[i]`
    is len(text) after token i. Looks only at runs ending with the last token.
    """
    n = len(tokens)
    for k in range(1, TOKEN_LOOP_MAX + 1):
        if n < LOOP_COPIES * k:
            break
        run = tokens[n - k :]
        if all(tokens[n - (c + 1) * k : n - c * k] == run for c in range(1, LOOP_COPIES)):
            first_end = ends[n - (LOOP_COPIES - 1) * k - 1]
            start = ends[n - LOOP_COPIES * k - 1] if n > LOOP_COPIES * k else 0
            block = text[start:first_end]
            if any(ch.isalpha() for ch in block) and (k > 1 or sum(ch.isalnum() for ch in block) >= 2):
                return first_end
    return None


def _last_lines(text: str) -> tuple[int, list[str]]:
    """(offset of the first returned line, the text's last lines: complete ones, then the open one)."""
    window = LOOP_COPIES * LOOP_MAX_BLOCK + 1
    lines = text.rsplit("\n", window)
    if len(lines) == window + 1:  # older lines cannot take part in a loop found now
        return len(lines[0]) + 1, lines[1:]
    return 0, lines


def repeated_lines_cut(text: str, new_from: int) -> int | None:
    """Where to cut a completion stuck in a loop: the end of the first copy of a block of up to
    four lines that the text's last complete lines repeat three times in a row.

    Small models decoding greedily fall into such loops (``G = nx.Graph()`` ten times); the
    user wants the first copy, and decoding the rest only costs time. A block must hold a
    non-blank line; only text that could include the new characters is examined.
    """
    if "\n" not in text[new_from:]:
        return None  # a loop is detected when a line completes
    start, lines = _last_lines(text)
    done = lines[:-1]  # complete lines; the last element is the line being written
    for k in range(1, LOOP_MAX_BLOCK + 1):
        if len(done) < LOOP_COPIES * k:
            break
        tail = done[-LOOP_COPIES * k :]
        block = tail[:k]
        if any(line.strip() for line in block) and all(tail[i * k : (i + 1) * k] == block for i in range(LOOP_COPIES)):
            kept = len(done) - LOOP_COPIES * k + k  # complete lines kept, including the first copy
            return start + sum(len(line) + 1 for line in lines[:kept])
    return None


def loop_safe_end(text: str) -> int:
    """How much of unfinished text can be streamed: up to the first line end after which the
    text so far could still be the start of a loop's repeats (`repeated_lines_cut` may cut there)."""
    start, lines = _last_lines(text)
    end = start
    for i, line in enumerate(lines[:-1]):
        end += len(line) + 1
        after = text[end:]
        for k in range(1, min(LOOP_MAX_BLOCK, i + 1) + 1):
            block = lines[i + 1 - k : i + 1]
            repeats = ("\n".join(block) + "\n") * (LOOP_COPIES - 1)
            if any(b.strip() for b in block) and repeats.startswith(after):
                return end
    return len(text)
