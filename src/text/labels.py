"""The output vocabulary (labels.json) and CTC token encoding.

labels.json lists the output symbols; the CTC blank is the extra index ``len(labels)`` (28 for the
English character set), always last, so the model has ``len(labels) + 1`` outputs.

The single-character symbols are the alphabet.  A vocabulary may add *word pieces* after them:
strings of two or more alphabet characters (never the word separator " "), listed in the order
they were learned (src/text/pieces.py).  A word is then encoded as byte-pair encoding does: start
from its characters and, while two neighbouring tokens join into a listed piece, join the pair whose
piece is listed first.  The separator stays a token of its own, so a transcript is still decoded by
concatenating its tokens, and beam search spells words with the separator after them as before.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Sequence

import numpy as np

DEFAULT_LABELS_PATH = Path(__file__).resolve().parents[2] / "labels.json"
WORD_SEPARATOR = " "


class Labels:
    """Maps text to token ids and back.  ``blank`` = ``len(symbols)``."""

    def __init__(self, symbols: Sequence[str]) -> None:
        symbols = list(symbols)
        if len(set(symbols)) != len(symbols) or not all(isinstance(s, str) and s for s in symbols):
            raise ValueError(f"labels must be distinct non-empty strings, got {symbols!r}")
        self.symbols = symbols
        self._index = {s: i for i, s in enumerate(symbols)}
        self.pieces = [s for s in symbols if len(s) > 1]
        if self.pieces:
            bad = [p for p in self.pieces if WORD_SEPARATOR in p or any(c not in self._index for c in p)]
            if bad:
                raise ValueError(f"word pieces must be made of single-character labels other than the word "
                                 f"separator {WORD_SEPARATOR!r}: {bad[:5]!r}")
            if WORD_SEPARATOR not in self._index:
                raise ValueError(f"labels with word pieces need the word separator {WORD_SEPARATOR!r}")
        self._rank = {p: r for r, p in enumerate(self.pieces)}
        self._splits: dict[str, tuple[str, ...]] = {}  # word → tokens, filled as words are met

    @property
    def blank(self) -> int:
        return len(self.symbols)

    @property
    def num_classes(self) -> int:
        """Model output size: every symbol plus the CTC blank."""
        return len(self.symbols) + 1

    def __contains__(self, char: str) -> bool:
        return len(char) == 1 and char in self._index

    def unknown_chars(self, text: str) -> list[str]:
        """Characters of ``text`` outside the alphabet, in order of first appearance."""
        return list(dict.fromkeys(c for c in text if c not in self._index))

    def encode(self, text: str) -> np.ndarray:
        """Text → int32 token ids.  Raises ValueError naming any character outside the labels."""
        unknown = self.unknown_chars(text)
        if unknown:
            raise ValueError(f"characters outside the labels {unknown!r} in {text!r}; normalize the text first")
        if not self.pieces:
            return np.fromiter((self._index[c] for c in text), dtype=np.int32, count=len(text))
        ids: list[int] = []
        for k, word in enumerate(text.split(WORD_SEPARATOR)):
            if k:
                ids.append(self._index[WORD_SEPARATOR])
            ids.extend(self._index[t] for t in self.split_word(word))
        return np.asarray(ids, dtype=np.int32)

    def split_word(self, word: str) -> tuple[str, ...]:
        """One word (no separator) → its tokens: characters joined by the pieces, earliest-learned first."""
        cached = self._splits.get(word)
        if cached is None:
            cached = self._splits[word] = self._join_pieces(word)
        return cached

    def _join_pieces(self, word: str) -> tuple[str, ...]:
        tokens = list(word)
        while len(tokens) > 1:
            ranks = [self._rank.get(a + b, len(self._rank)) for a, b in zip(tokens, tokens[1:])]
            best = min(range(len(ranks)), key=ranks.__getitem__)
            if ranks[best] == len(self._rank):
                break
            tokens[best: best + 2] = [tokens[best] + tokens[best + 1]]
        return tuple(tokens)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Token ids → text; blank ids are skipped (no CTC collapsing here: see src.decoding)."""
        n = len(self.symbols)
        return "".join(self.symbols[int(i)] for i in ids if 0 <= int(i) < n)


@functools.lru_cache(maxsize=8)
def load_labels(path: str | Path = DEFAULT_LABELS_PATH) -> Labels:
    """Read labels.json (a JSON list of characters, optionally followed by word pieces).

    A relative path that does not exist from the working directory is taken from the repository root,
    so configs can say ``labels_path: labels.json`` wherever the command runs.
    """
    path = Path(path)
    if not path.is_absolute() and not path.exists():
        path = DEFAULT_LABELS_PATH.parent / path
    try:
        symbols = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"labels file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(symbols, list):
        raise ValueError(f"{path}: expected a JSON list of labels")
    try:
        return Labels(symbols)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
