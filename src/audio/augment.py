"""Online data augmentation for training: speed perturbation of audio and SpecAugment masks.

Every function takes a ``np.random.Generator`` and draws from it afresh on each call, so a data
pipeline seeded once per worker gets new perturbations every epoch and the same ones on a rerun.
The knobs live in :class:`src.config.AugmentConfig`.
"""
from __future__ import annotations

import numpy as np

from src.audio import features as features_mod
from src.audio.io import resample
from src.config import AugmentConfig, FeatureConfig

_AUG = AugmentConfig()
_SAMPLE_RATE = FeatureConfig().sample_rate


def _check_speed_range(min_speed: float, max_speed: float) -> None:
    if not 0.0 < min_speed <= max_speed:
        raise ValueError(f"speed range must satisfy 0 < min_speed <= max_speed, got [{min_speed}, {max_speed}]")


def draw_speed(rng: np.random.Generator, min_speed: float = _AUG.min_speed,
               max_speed: float = _AUG.max_speed) -> float:
    """A speed factor drawn uniformly from ``[min_speed, max_speed]``."""
    _check_speed_range(min_speed, max_speed)
    return float(rng.uniform(min_speed, max_speed))


def change_speed(audio: np.ndarray, speed: float, sample_rate: int = _SAMPLE_RATE) -> np.ndarray:
    """Play ``audio`` (n,) ``speed`` times faster, as sox's ``speed`` effect does: tempo and pitch both change.

    The signal is reinterpreted as sampled at ``sample_rate * speed`` and resampled back to
    ``sample_rate`` (soxr), so the result has ``round(n / speed)`` samples and a tone at f Hz moves
    to ``speed * f`` Hz.  Returns a new float32 array.
    """
    if speed <= 0.0:
        raise ValueError(f"speed must be positive, got {speed}")
    audio = np.asarray(audio, dtype=np.float32)
    if speed == 1.0:
        return audio.copy()
    return resample(audio, sample_rate * speed, sample_rate)


def speed_perturb(audio: np.ndarray, rng: np.random.Generator, min_speed: float = _AUG.min_speed,
                  max_speed: float = _AUG.max_speed, sample_rate: int = _SAMPLE_RATE) -> np.ndarray:
    """Random speed perturbation: ``change_speed(audio, s)`` with s ~ U[min_speed, max_speed].

    audio: (n,) float mono → float32 (≈ n / s,).
    """
    return change_speed(audio, draw_speed(rng, min_speed, max_speed), sample_rate)


def spec_augment(features: np.ndarray, lengths: np.ndarray | int | None, rng: np.random.Generator,
                 cfg: AugmentConfig = _AUG) -> np.ndarray:
    """SpecAugment frequency and time masks (set to 0, the mean of normalised features).

    Args:
        features: (B, F, T) or (F, T) normalised features; not modified.
        lengths: valid frames per utterance, (B,) (or an int / None = T for a 2-D input).  Time masks
            lie inside ``[0, length)``; padding is never touched and stays as it was.
        rng: source of the mask widths and positions.
        cfg: ``freq_masks`` masks of width ~ U{0..max_freq_width} bins and ``time_masks`` masks of
            width ~ U{0..max_time_width} frames per utterance (widths clipped to F and to the length).

    Returns:
        A new array of the same shape and dtype.
    """
    feats = np.array(features, copy=True)
    if feats.ndim not in (2, 3):
        raise ValueError(f"features must be (F, T) or (B, F, T), got shape {feats.shape}")
    view = feats if feats.ndim == 3 else feats[None]    # a view: masks written to it land in feats
    n_utts, n_bins, n_frames = view.shape
    if lengths is None:
        lengths = np.full(n_utts, n_frames)
    lengths = np.broadcast_to(np.asarray(lengths, dtype=np.int64).reshape(-1), (n_utts,))
    if np.any(lengths < 0) or np.any(lengths > n_frames):
        raise ValueError(f"lengths must lie in [0, {n_frames}], got {lengths.tolist()}")

    for utt, length in zip(view, lengths):
        length = int(length)
        for _ in range(cfg.freq_masks):
            width = min(int(rng.integers(0, cfg.max_freq_width, endpoint=True)), n_bins)
            start = int(rng.integers(0, n_bins - width, endpoint=True))
            utt[start:start + width, :length] = 0
        for _ in range(cfg.time_masks):
            width = min(int(rng.integers(0, cfg.max_time_width, endpoint=True)), length)
            start = int(rng.integers(0, length - width, endpoint=True))
            utt[:, start:start + width] = 0
    return feats


def freq_warp(features: np.ndarray, rng: np.random.Generator, max_warp: float,
              sample_rate: int = _SAMPLE_RATE) -> np.ndarray:
    """Vocal-tract-length-style warp: each utterance's log-mel spectrum scaled in frequency by its own
    factor alpha ~ U[1 - max_warp, 1 + max_warp] (linear interpolation between mel bands).

    Speaker differences in formant positions are largely such a scaling; speed perturbation scales
    frequency too, but always together with tempo.

    Args:
        features: (B, F, T) or (F, T) features; not modified.  Padding frames stay zero.
    Returns:
        A new array of the same shape and dtype.
    """
    if not 0.0 <= max_warp < 1.0:
        raise ValueError(f"max_warp must lie in [0, 1), got {max_warp}")
    feats = np.array(features, copy=True)
    if feats.ndim not in (2, 3):
        raise ValueError(f"features must be (F, T) or (B, F, T), got shape {feats.shape}")
    view = feats if feats.ndim == 3 else feats[None]
    for i, alpha in enumerate(rng.uniform(1.0 - max_warp, 1.0 + max_warp, len(view))):
        src = features_mod.mel_warp_source(float(alpha), sample_rate, view.shape[1])
        lo = np.minimum(src.astype(np.int64), view.shape[1] - 2)
        w = (src - lo)[:, None].astype(view.dtype)
        view[i] = (1 - w) * view[i][lo] + w * view[i][lo + 1]
    return feats


class Augmenter:
    """The training-time augmentation described by an :class:`AugmentConfig`.

    Disabled stages return their input unchanged (the same object), so evaluation code can call
    the same methods with ``AugmentConfig(speed_perturb=False, spec_augment=False)``.
    """

    def __init__(self, cfg: AugmentConfig = _AUG, sample_rate: int = _SAMPLE_RATE) -> None:
        self.cfg = cfg
        self.sample_rate = sample_rate
        if cfg.speed_perturb:
            _check_speed_range(cfg.min_speed, cfg.max_speed)

    def augment_audio(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Speed perturbation when enabled: (n,) → (≈ n / s,) float32."""
        if not self.cfg.speed_perturb:
            return audio
        return speed_perturb(audio, rng, self.cfg.min_speed, self.cfg.max_speed, self.sample_rate)

    def augment_features(self, features: np.ndarray, lengths: np.ndarray | int | None,
                         rng: np.random.Generator) -> np.ndarray:
        """SpecAugment masks when enabled: (B, F, T) or (F, T) → same shape, new array."""
        if not self.cfg.spec_augment or (self.cfg.freq_masks == 0 and self.cfg.time_masks == 0):
            return features
        return spec_augment(features, lengths, rng, self.cfg)
