"""Cutting the silence before the first and after the last loud stretch of an utterance.

Loudness is the mean square of consecutive ``hop_length`` blocks (the feature frames' grid); a block
is loud when it is within ``trim_db`` of the loudest.  ``trim_margin`` seconds, rounded to whole
blocks, are kept on either side.  Because the cut points lie on the block grid, trimming audio that
was already trimmed with the same settings returns it unchanged, so shards can store trimmed audio
and the front end can trim again without moving a sample.
"""
from __future__ import annotations

import numpy as np

from src.config import FeatureConfig

# Mean squares below this (-100 dBFS) count as digital silence; keeps log10 finite.
_FLOOR = 1e-10


def speech_bounds(audio: np.ndarray, cfg: FeatureConfig) -> tuple[int, int]:
    """Sample range ``[start, end)`` of ``audio`` (n,) to keep; ``(0, n)`` when trimming is off.

    Raises ValueError for a negative ``trim_db`` or ``trim_margin``.
    """
    if cfg.trim_db < 0 or cfg.trim_margin < 0:
        raise ValueError(f"features.trim_db and features.trim_margin must be >= 0, got {cfg.trim_db} "
                         f"and {cfg.trim_margin}")
    n, hop = len(audio), cfg.hop_length
    blocks = n // hop
    if cfg.trim_db == 0 or blocks == 0:
        return 0, n
    x = np.asarray(audio[: blocks * hop], dtype=np.float32).reshape(blocks, hop)
    level = 10 * np.log10(np.maximum(np.einsum("ij,ij->i", x, x) / hop, _FLOOR))
    loud = np.flatnonzero(level >= level.max() - cfg.trim_db)
    margin = int(round(cfg.trim_margin * cfg.sample_rate / hop)) * hop
    start = max(0, int(loud[0]) * hop - margin)
    end = min(n, (int(loud[-1]) + 1) * hop + margin)
    return start, end


def trim_silence(audio: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """``audio`` (n,) without its edge silence (a view); unchanged when ``cfg.trim_db`` is 0."""
    start, end = speech_bounds(audio, cfg)
    return audio[start:end]
