"""The character vocabulary (labels.json) and CTC token encoding.

labels.json holds the output symbols; the CTC blank is the extra index ``len(labels)`` (28 for
the English set), always last, so the model has ``len(labels) + 1`` outputs.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Sequence

import numpy as np

DEFAULT_LABELS_PATH = Path(__file__).resolve().parents[2] / "labels.json"


class Labels:
    """Maps text to token ids and back.  ``blank`` = ``len(symbols)``."""

    def __init__(self, symbols: Sequence[str]) -> None:
        symbols = list(symbols)
        if len(set(symbols)) != len(symbols) or any(len(s) != 1 for s in symbols):
            raise ValueError(f"labels must be distinct single characters, got {symbols!r}")
        self.symbols = symbols
        self._index = {s: i for i, s in enumerate(symbols)}

    @property
    def blank(self) -> int:
        return len(self.symbols)

    @property
    def num_classes(self) -> int:
        """Model output size: every symbol plus the CTC blank."""
        return len(self.symbols) + 1

    def __contains__(self, char: str) -> bool:
        return char in self._index

    def unknown_chars(self, text: str) -> list[str]:
        """Characters of ``text`` that are not symbols, in order of first appearance."""
        return list(dict.fromkeys(c for c in text if c not in self._index))

    def encode(self, text: str) -> np.ndarray:
        """Text → int32 token ids.  Raises ValueError naming any character outside the labels."""
        unknown = self.unknown_chars(text)
        if unknown:
            raise ValueError(f"characters outside the labels {unknown!r} in {text!r}; normalize the text first")
        return np.fromiter((self._index[c] for c in text), dtype=np.int32, count=len(text))

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Token ids → text; blank ids are skipped (no CTC collapsing here: see src.decoding)."""
        n = len(self.symbols)
        return "".join(self.symbols[int(i)] for i in ids if 0 <= int(i) < n)


@functools.lru_cache(maxsize=8)
def load_labels(path: str | Path = DEFAULT_LABELS_PATH) -> Labels:
    """Read labels.json (a JSON list of single characters).

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
        raise ValueError(f"{path}: expected a JSON list of characters")
    return Labels(symbols)
