"""Online augmentation: speed perturbation and SpecAugment masks."""
from __future__ import annotations

import numpy as np
import pytest

from src.audio.augment import Augmenter, change_speed, freq_warp, spec_augment, speed_perturb
from src.config import AugmentConfig, FeatureConfig

SR = FeatureConfig().sample_rate
AUG = AugmentConfig()


def tone(freq: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.argmax(spectrum) * SR / len(audio))


def fake_features(lengths: list[int], n_bins: int = 64, seed: int = 0) -> np.ndarray:
    """Normalised-looking features (B, F, T_pad) with non-zero valid frames and zero padding."""
    rng = np.random.default_rng(seed)
    feats = np.zeros((len(lengths), n_bins, max(lengths) + 7), np.float32)
    for b, n in enumerate(lengths):
        feats[b, :, :n] = rng.standard_normal((n_bins, n)) + 10.0   # never exactly 0
    return feats


# ------------------------------------------------------------------ speed perturbation

def test_speed_perturb_length_within_range():
    audio = tone(440, 2.0)
    for seed in range(10):
        out = speed_perturb(audio, np.random.default_rng(seed))
        assert out.dtype == np.float32 and out.ndim == 1
        lo, hi = len(audio) / AUG.max_speed, len(audio) / AUG.min_speed
        assert lo - 2 <= len(out) <= hi + 2


def test_change_speed_length_is_rounded_ratio():
    # The data pipeline plans padded shapes from this length before resampling.
    rng = np.random.default_rng(0)
    for _ in range(50):
        n, speed = int(rng.integers(100, 200_000)), float(rng.uniform(0.8, 1.2))
        assert len(change_speed(np.full(n, 0.1, np.float32), speed)) == int(np.rint(n / speed))


def test_speed_perturb_draws_differ_and_seed_reproduces():
    audio = tone(440, 1.0)
    rng = np.random.default_rng(3)
    first, second = speed_perturb(audio, rng), speed_perturb(audio, rng)
    assert len(first) != len(second) or not np.array_equal(first, second)
    again = speed_perturb(audio, np.random.default_rng(3))
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("speed", [0.85, 0.9, 1.1, 1.15])
def test_tone_moves_by_speed_factor(speed):
    out = change_speed(tone(1000, 1.0), speed)
    assert abs(len(out) - SR / speed) <= 2
    assert peak_hz(out) == pytest.approx(1000 * speed, abs=3.0)


def test_speed_perturb_fixed_range_gives_that_speed():
    out = speed_perturb(tone(1000, 1.0), np.random.default_rng(0), min_speed=1.1, max_speed=1.1)
    assert peak_hz(out) == pytest.approx(1100, abs=3.0)


def test_speed_perturb_input_untouched_and_bad_range():
    audio = tone(300)
    before = audio.copy()
    speed_perturb(audio, np.random.default_rng(0))
    np.testing.assert_array_equal(audio, before)
    with pytest.raises(ValueError):
        speed_perturb(audio, np.random.default_rng(0), min_speed=1.2, max_speed=1.1)
    with pytest.raises(ValueError):
        speed_perturb(audio, np.random.default_rng(0), min_speed=0.0, max_speed=1.1)


# ------------------------------------------------------------------ SpecAugment

def test_masks_stay_inside_valid_frames_and_widths_bounded():
    lengths = [120, 40, 300, 5]
    feats = fake_features(lengths)
    cfg = AugmentConfig(freq_masks=1, time_masks=1)
    for seed in range(30):
        out = spec_augment(feats, np.array(lengths), np.random.default_rng(seed), cfg)
        assert out.shape == feats.shape and out.dtype == feats.dtype
        for b, n in enumerate(lengths):
            valid, pad = out[b, :, :n], out[b, :, n:]
            assert np.all(pad == 0)
            masked_bins = np.all(valid == 0, axis=1)
            masked_frames = np.all(valid == 0, axis=0)
            # Anything zeroed belongs to a full-length frequency band or a full-height time band.
            zeros = valid == 0
            assert np.array_equal(zeros, masked_bins[:, None] | masked_frames[None, :])
            if zeros.all():
                # A single mask covered everything: only a time mask over a short utterance can.
                assert n <= cfg.max_time_width
                continue
            assert masked_bins.sum() <= cfg.max_freq_width
            assert masked_frames.sum() <= min(cfg.max_time_width, n)
            # One mask of each kind is a single contiguous run.
            for mask in (masked_bins, masked_frames):
                idx = np.flatnonzero(mask)
                if len(idx):
                    assert idx[-1] - idx[0] + 1 == len(idx)


def test_masks_never_reach_padding_and_cover_whole_valid_range():
    lengths = [100, 37]
    feats = fake_features(lengths)
    for b, n in enumerate(lengths):
        feats[b, :, n:] = 7.0                           # a sentinel that a stray mask would zero
    hit_last_frame = False
    for seed in range(40):
        out = spec_augment(feats, lengths, np.random.default_rng(seed))
        for b, n in enumerate(lengths):
            assert np.all(out[b, :, n:] == 7.0)
        hit_last_frame |= bool(np.all(out[0, :, lengths[0] - 1] == 0))
    assert hit_last_frame                               # masks can end at the last valid frame


def test_masks_actually_mask_with_default_config():
    lengths = [400, 300]
    out = spec_augment(fake_features(lengths), np.array(lengths), np.random.default_rng(1), AUG)
    zeros = [(out[b, :, :n] == 0).mean() for b, n in enumerate(lengths)]
    assert all(z > 0 for z in zeros)
    # At most 2 × 20 bins and 2 × 75 frames per utterance.
    for b, n in enumerate(lengths):
        valid = out[b, :, :n]
        assert np.all(valid == 0, axis=1).sum() <= AUG.freq_masks * AUG.max_freq_width
        assert np.all(valid == 0, axis=0).sum() <= AUG.time_masks * AUG.max_time_width


def test_spec_augment_input_untouched_and_deterministic():
    lengths = [100, 60]
    feats = fake_features(lengths)
    before = feats.copy()
    a = spec_augment(feats, lengths, np.random.default_rng(5))
    b = spec_augment(feats, lengths, np.random.default_rng(5))
    c = spec_augment(feats, lengths, np.random.default_rng(6))
    np.testing.assert_array_equal(feats, before)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a is not feats


def test_spec_augment_2d_and_short_lengths():
    feats = fake_features([50])[0]                      # (F, T)
    out = spec_augment(feats, 50, np.random.default_rng(0))
    assert out.shape == feats.shape and np.all(out[:, 50:] == 0)
    tiny = fake_features([1, 3])
    out = spec_augment(tiny, [1, 3], np.random.default_rng(0))
    assert np.all(out[0, :, 1:] == 0) and np.all(out[1, :, 3:] == 0)
    with pytest.raises(ValueError):
        spec_augment(tiny, [1, 999], np.random.default_rng(0))


# ------------------------------------------------------------------ Augmenter

def test_disabled_config_is_identity():
    aug = Augmenter(AugmentConfig(speed_perturb=False, spec_augment=False))
    audio, feats = tone(500), fake_features([30, 20])
    rng = np.random.default_rng(0)
    assert aug.augment_audio(audio, rng) is audio
    assert aug.augment_features(feats, [30, 20], rng) is feats


def test_enabled_augmenter_changes_audio_and_features():
    aug = Augmenter(AUG)
    audio = tone(500, 1.0)
    out = aug.augment_audio(audio, np.random.default_rng(0))
    assert len(out) != len(audio)
    feats = fake_features([300])
    masked = aug.augment_features(feats, [300], np.random.default_rng(0))
    assert not np.array_equal(masked, feats)
    np.testing.assert_array_equal(masked, spec_augment(feats, [300], np.random.default_rng(0), AUG))


def test_augmenter_rejects_bad_speed_range():
    with pytest.raises(ValueError):
        Augmenter(AugmentConfig(min_speed=1.2, max_speed=0.9))


# ------------------------------------------------------------------------------------------------
# Frequency warp


class _Fixed:
    """A generator stand-in whose uniform draws are fixed warp factors."""

    def __init__(self, *alphas: float) -> None:
        self.alphas = np.array(alphas)

    def uniform(self, low, high, n):
        assert n == len(self.alphas) and np.all((low <= self.alphas) & (self.alphas <= high))
        return self.alphas


def test_freq_warp_moves_a_band_to_the_scaled_frequency():
    librosa = pytest.importorskip("librosa")
    centres = librosa.mel_frequencies(64 + 2, fmin=0.0, fmax=8000.0)[1:-1]   # Slaney bands, as ours
    b0 = 30
    feats = np.zeros((2, 64, 7), np.float32)
    feats[:, b0, :5] = 1.0                                # two frames of padding stay zero
    out = freq_warp(feats, _Fixed(1.15, 0.85), max_warp=0.2)
    for utt, alpha in zip(out, (1.15, 0.85)):
        peak = np.average(np.arange(64), weights=utt[:, 0])
        assert peak == pytest.approx(np.interp(alpha * centres[b0], centres, np.arange(64)), abs=0.05)
        assert not utt[:, 5:].any()
    assert feats[:, b0, :5].all() and feats.sum() == 10   # input untouched


def test_freq_warp_identity_shapes_and_errors():
    x = np.random.default_rng(0).standard_normal((64, 30)).astype(np.float32)
    np.testing.assert_allclose(freq_warp(x, _Fixed(1.0), max_warp=0.1), x, atol=1e-6)
    assert freq_warp(x[None], np.random.default_rng(1), 0.1).shape == (1, 64, 30)
    assert freq_warp(x, np.random.default_rng(1), 0.1).dtype == np.float32
    with pytest.raises(ValueError, match="max_warp"):
        freq_warp(x, np.random.default_rng(1), 1.5)
    with pytest.raises(ValueError, match="shape"):
        freq_warp(x[0], np.random.default_rng(1), 0.1)
