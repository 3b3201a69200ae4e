"""Greedy (best path) CTC decoding: the most likely class per frame, repeats merged, blanks removed."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from src.text.labels import Labels


def best_path_ids(log_probs: np.ndarray, length: int, blank: int) -> list[int]:
    """One utterance: log_probs (T', C), ``length`` valid frames → token ids."""
    best = log_probs[:length].argmax(axis=-1)
    if best.size == 0:
        return []
    keep = np.ones(best.shape, dtype=bool)
    keep[1:] = best[1:] != best[:-1]          # merge repeats first ...
    return [int(t) for t in best[keep] if t != blank]  # ... then drop blanks ("a _ a" stays "aa")


def greedy_decode(log_probs: np.ndarray, lengths: Sequence[int] | np.ndarray, labels: Labels) -> list[str]:
    """A batch: log_probs (B, T', C) (log- or raw probabilities: only the argmax matters), lengths (B,)
    valid output frames → B transcripts."""
    return [labels.decode(best_path_ids(lp, int(n), labels.blank)) for lp, n in zip(log_probs, lengths)]
