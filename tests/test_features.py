"""The numpy log-mel front end against a reference assembled from librosa calls."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from src.audio.features import (batch_features, filterbank_features, hann_window, mel_filterbank,
                                num_frames, padded_frames, valid_frames)
from src.config import FeatureConfig

librosa = pytest.importorskip("librosa")

CFG = FeatureConfig()
SR = CFG.sample_rate


def speech_like(num_samples: int, seed: int = 0) -> np.ndarray:
    """Harmonics of a gliding pitch, amplitude-modulated at a syllable rate, over quiet noise: (n,) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / SR
    f0 = rng.uniform(100, 200) * (1 + 0.1 * np.sin(2 * np.pi * 0.8 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voiced = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 25))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * rng.uniform(3, 5) * t)
    x = 0.1 * voiced * envelope + 2e-3 * rng.standard_normal(num_samples)
    return x.astype(np.float32)


def librosa_reference(audio: np.ndarray) -> np.ndarray:
    """The Jasper front end from librosa building blocks, in float64: (n_mels, 1 + n // hop)."""
    x = audio.astype(np.float64)
    y = np.concatenate([x[:1], x[1:] - CFG.preemph * x[:-1]])
    window = scipy.signal.get_window("hann", CFG.win_length, fftbins=False)
    spec = librosa.stft(y, n_fft=CFG.n_fft, hop_length=CFG.hop_length, win_length=CFG.win_length,
                        window=window, center=True, pad_mode="reflect")
    mel = librosa.filters.mel(sr=SR, n_fft=CFG.n_fft, n_mels=CFG.n_mels, fmin=0, fmax=SR / 2,
                              norm="slaney", htk=False)
    logmel = np.log(mel.astype(np.float64) @ np.abs(spec) ** 2 + CFG.log_zero_guard)
    n_valid = int(np.ceil(len(x) / CFG.hop_length))
    valid = logmel[:, :n_valid]
    out = np.zeros_like(logmel)
    out[:, :n_valid] = (valid - valid.mean(1, keepdims=True)) / (valid.std(1, ddof=1, keepdims=True) + CFG.norm_eps)
    return out


def test_constant_matrices_match_librosa_and_scipy():
    ref = librosa.filters.mel(sr=SR, n_fft=CFG.n_fft, n_mels=CFG.n_mels, fmin=0, fmax=SR / 2)
    ours = mel_filterbank(SR, CFG.n_fft, CFG.n_mels)
    assert ours.shape == (CFG.n_mels, CFG.n_fft // 2 + 1) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(hann_window(CFG.win_length),
                               scipy.signal.get_window("hann", CFG.win_length, fftbins=False), atol=1e-7)


@pytest.mark.filterwarnings("ignore:n_fft=.* is too large")
@pytest.mark.parametrize("num_samples", [161, 400, 1600, 16000, 16001, 23999, 54321, 160000])
def test_matches_librosa_reference(num_samples):
    audio = speech_like(num_samples, seed=num_samples)
    ours = filterbank_features(audio)
    ref = librosa_reference(audio)
    assert ours.dtype == np.float32
    assert ours.shape == ref.shape == (CFG.n_mels, 1 + num_samples // CFG.hop_length)
    diff = np.abs(ours.astype(np.float64) - ref)
    assert diff.mean() <= 1e-5, diff.mean()
    assert diff.max() <= 5e-3, diff.max()


@pytest.mark.parametrize("n, total, valid", [(1, 1, 1), (159, 1, 1), (160, 2, 1), (161, 2, 2),
                                             (400, 3, 3), (16000, 101, 100), (16001, 101, 101)])
def test_frame_count_formulas(n, total, valid):
    assert num_frames(n) == total and valid_frames(n) == valid
    assert filterbank_features(speech_like(n)).shape == (CFG.n_mels, total)
    np.testing.assert_array_equal(num_frames(np.array([n, 2 * n])), [total, 1 + 2 * n // CFG.hop_length])


def test_padded_frames():
    assert padded_frames(1) == 16 and padded_frames(16) == 16 and padded_frames(17) == 32
    assert padded_frames(10, 1) == 10 and padded_frames(10, 8) == 16
    np.testing.assert_array_equal(padded_frames(np.array([0, 5, 32])), [0, 16, 32])


def test_frames_after_valid_ones_are_zero():
    audio = speech_like(16000)                           # divisible by hop: last frame not valid
    feats = filterbank_features(audio)
    assert np.all(feats[:, 100:] == 0) and np.all(np.abs(feats[:, :100]).sum(axis=0) > 0)


def test_normalised_over_valid_frames():
    feats = filterbank_features(speech_like(48000))
    valid = feats[:, :valid_frames(48000)]
    np.testing.assert_allclose(valid.mean(axis=1), 0.0, atol=1e-4)
    np.testing.assert_allclose(valid.std(axis=1, ddof=1), 1.0, atol=1e-3)


def test_batch_equals_single_and_pads_with_zeros():
    sizes = [16000, 400, 48123, 32000, 777]
    audios = [speech_like(n, seed=i) for i, n in enumerate(sizes)]
    feats, lengths = batch_features(audios)
    t_max = max(num_frames(n) for n in sizes)
    assert feats.dtype == np.float32 and lengths.dtype == np.int32
    assert feats.shape == (len(sizes), CFG.n_mels, padded_frames(t_max, CFG.pad_to))
    assert feats.shape[2] % CFG.pad_to == 0 and feats.shape[2] >= t_max
    np.testing.assert_array_equal(lengths, [valid_frames(n) for n in sizes])
    for b, audio in enumerate(audios):
        single = filterbank_features(audio)
        np.testing.assert_allclose(feats[b, :, :single.shape[1]], single, atol=1e-5)
        assert np.all(feats[b, :, lengths[b]:] == 0)
    one_thread, _ = batch_features(audios, threads=1)
    np.testing.assert_array_equal(one_thread, feats)


def test_thread_count_does_not_change_features():
    audio = speech_like(30 * SR)                        # long enough to be split across threads
    one = filterbank_features(audio)
    for threads in (1, 2, 3):
        many, _ = batch_features([audio], pad_to=1, threads=threads)
        np.testing.assert_allclose(many[0], one, atol=1e-5)


def test_pad_to_argument():
    feats, _ = batch_features([speech_like(16000)], pad_to=8)
    assert feats.shape[2] == 104
    feats, _ = batch_features([speech_like(16000)], pad_to=1)
    assert feats.shape[2] == 101


def test_dither_only_when_positive_and_reproducible():
    audios = [speech_like(16000), speech_like(8000, seed=1)]
    plain, _ = batch_features(audios)
    zero, _ = batch_features(audios, dither=0.0, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(plain, zero)
    a, _ = batch_features(audios, dither=CFG.dither, rng=np.random.default_rng(7))
    b, _ = batch_features(audios, dither=CFG.dither, rng=np.random.default_rng(7), threads=1)
    c, _ = batch_features(audios, dither=CFG.dither, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, plain) and not np.array_equal(a, c)
    # Silence stays finite with dither: the noise sets the floor.
    quiet, _ = batch_features([np.zeros(8000, np.float32)], dither=CFG.dither, rng=np.random.default_rng(0))
    assert np.all(np.isfinite(quiet))
    with pytest.raises(ValueError, match="rng"):
        batch_features(audios, dither=1e-5)


def test_input_not_modified():
    audio = speech_like(16000)
    before = audio.copy()
    batch_features([audio], dither=1e-3, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(audio, before)


def test_errors():
    with pytest.raises(ValueError, match="resample"):
        filterbank_features(speech_like(8000), sample_rate=8000)
    with pytest.raises(ValueError, match="empty"):
        filterbank_features(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="1-D"):
        filterbank_features(np.zeros((2, 8000), np.float32))
    with pytest.raises(ValueError, match=r"audio\[1\] is empty"):
        batch_features([speech_like(800), np.zeros(0, np.float32)])
    with pytest.raises(ValueError):
        batch_features([])


def test_very_short_inputs_are_finite():
    for n in (1, 2, 100, 160, 161, 256, 257):
        feats = filterbank_features(speech_like(n))
        assert feats.shape == (CFG.n_mels, num_frames(n)) and np.all(np.isfinite(feats))


def test_blas_thread_count_restored():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [lib["num_threads"] for lib in threadpoolctl.threadpool_info()]
    batch_features([speech_like(16000), speech_like(8000)])
    assert [lib["num_threads"] for lib in threadpoolctl.threadpool_info()] == before


def _features_shape_in_child() -> tuple[int, ...]:
    feats, _ = batch_features([speech_like(8000), speech_like(4000)], threads=2)
    return feats.shape


def test_thread_pool_survives_fork():
    import multiprocessing
    batch_features([speech_like(8000), speech_like(4000)], threads=2)   # the parent's pool exists now
    with multiprocessing.get_context("fork").Pool(1) as pool:
        shape = pool.apply_async(_features_shape_in_child).get(timeout=60)
    assert shape == (2, CFG.n_mels, padded_frames(num_frames(8000)))
