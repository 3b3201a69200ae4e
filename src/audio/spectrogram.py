"""deepspeech.pytorch's spectrogram front end, in numpy.

deepspeech.pytorch (``loader/data_loader.py``) feeds its DeepSpeech2 model with a normalised log
magnitude spectrogram computed by ``librosa.stft``.  For one utterance ``x`` of ``n`` float samples in
[-1, 1] (stereo averaged to mono by the caller):

1. centred STFT: ``n_fft // 2`` zeros on each side of the signal (librosa >= 0.10 pads with zeros,
   ``pad_mode='constant'``), frames of ``n_fft`` samples every ``hop_length`` samples, so
   ``T = 1 + n // hop_length`` frames;
2. window: a *periodic* window of ``win_length`` samples (``scipy.signal.get_window(window, win_length)``,
   what librosa uses: Hamming ``0.54 - 0.46 cos(2 pi i / win_length)``), centred in the ``n_fft`` frame
   when shorter;
3. magnitude ``|X|`` of the ``n_fft // 2 + 1`` bins, then ``log1p``;
4. one scalar mean and one standard deviation (unbiased, ``ddof=1``, as ``torch.Tensor.std``) over the
   whole (bins × frames) matrix: ``(S - mean) / std``.  deepspeech.pytorch divides without a guard;
   here a spectrogram whose std is 0 (digital silence, or a single value) is divided by 1 instead of
   giving NaN.

Every frame counts as signal (the model's ``lengths`` input is ``T``); batches are zero-padded after
the last frame.  Defaults are deepspeech.pytorch's (16 kHz, 20 ms Hamming window, 10 ms hop:
161 × T).  The STFT runs in float64 and the result is rounded to float32; measured against librosa in
tests/test_deepspeech2.py.
"""
from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

__all__ = ["spectrogram_features", "batch_spectrograms", "spectrogram_num_frames", "periodic_window",
           "log_magnitude", "WINDOWS"]

WINDOWS = ("hamming", "hann")


def spectrogram_num_frames(num_samples, hop_length: int = 160):
    """Frames of the centred STFT for ``num_samples`` samples: ``1 + num_samples // hop_length``
    (int or int array)."""
    return 1 + num_samples // hop_length


@functools.lru_cache(maxsize=16)
def periodic_window(window: str, win_length: int, n_fft: int) -> np.ndarray:
    """The ``window`` (periodic, as ``scipy.signal.get_window(window, win_length, fftbins=True)``) of
    ``win_length`` samples zero-padded on both sides to ``n_fft`` samples (centred): float64 (n_fft,)."""
    if window not in WINDOWS:
        raise ValueError(f"window {window!r} is not supported; choose one of {list(WINDOWS)}")
    if not 1 <= win_length <= n_fft:
        raise ValueError(f"win_length must be within [1, n_fft={n_fft}], got {win_length}")
    phase = 2.0 * np.pi * np.arange(win_length) / win_length
    w = 0.54 - 0.46 * np.cos(phase) if window == "hamming" else 0.5 - 0.5 * np.cos(phase)
    padded = np.zeros(n_fft)
    start = (n_fft - win_length) // 2
    padded[start:start + win_length] = w
    padded.flags.writeable = False
    return padded


def log_magnitude(audio: np.ndarray, n_fft: int = 320, hop_length: int = 160, win_length: int = 320,
                  window: str = "hamming") -> np.ndarray:
    """``log1p(|STFT|)`` before normalisation: float64 (n_fft // 2 + 1, 1 + n // hop_length)."""
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim != 1 or x.shape[0] == 0:
        raise ValueError(f"expected mono audio (n,) with n >= 1, got shape {x.shape}")
    if hop_length < 1:
        raise ValueError(f"hop_length must be >= 1, got {hop_length}")
    w = periodic_window(window, win_length, n_fft)
    half = n_fft // 2
    padded = np.concatenate([np.zeros(half), x, np.zeros(half)])
    frames_total = spectrogram_num_frames(x.shape[0], hop_length)
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(frames_total, n_fft), strides=(padded.strides[0] * hop_length, padded.strides[0]),
        writeable=False)
    spectrum = np.fft.rfft(frames * w, axis=1)          # (T, n_fft // 2 + 1)
    return np.log1p(np.abs(spectrum)).T


def spectrogram_features(audio: np.ndarray, sample_rate: int = 16000, n_fft: int = 320, hop_length: int = 160,
                         win_length: int = 320, window: str = "hamming") -> np.ndarray:
    """Normalised log1p magnitude spectrogram of one utterance, as deepspeech.pytorch computes it.

    Args:
        audio: float mono signal (n,) in [-1, 1], n >= 1, at ``sample_rate``.
        sample_rate: rate of ``audio`` (the front end itself does not depend on it; deepspeech.pytorch
            derives ``n_fft = win_length = 0.02 * sample_rate`` and ``hop_length = 0.01 * sample_rate``
            from it, which the defaults are for 16 kHz).
        n_fft, hop_length, win_length, window: the STFT (``window`` in :data:`WINDOWS`, periodic).

    Returns:
        float32 (n_fft // 2 + 1, T) with ``T = 1 + n // hop_length``: ``(S - mean(S)) / std(S, ddof=1)``
        for ``S = log1p(|STFT|)`` (divided by 1 where that std is 0).
    """
    if sample_rate < 1:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    s = log_magnitude(audio, n_fft, hop_length, win_length, window)
    mean = s.mean()
    std = s.std(ddof=1) if s.size > 1 else 0.0
    s -= mean
    if std > 0:
        s /= std
    return s.astype(np.float32)


def batch_spectrograms(audios: Sequence[np.ndarray], sample_rate: int = 16000, n_fft: int = 320,
                       hop_length: int = 160, win_length: int = 320, window: str = "hamming",
                       pad_to: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """:func:`spectrogram_features` of B utterances, zero-padded to one length.

    Returns:
        features: float32 (B, n_fft // 2 + 1, T_pad), ``T_pad`` the longest ``1 + n_b // hop_length``
            rounded up to a multiple of ``pad_to``; frames after each utterance's own are 0 (as
            deepspeech.pytorch's collate function pads).
        lengths: int32 (B,) ``1 + n_b // hop_length`` (every frame of an utterance is valid).
    """
    if len(audios) == 0:
        raise ValueError("batch_spectrograms needs at least one utterance")
    if pad_to < 1:
        raise ValueError(f"pad_to must be >= 1, got {pad_to}")
    mats = [spectrogram_features(a, sample_rate, n_fft, hop_length, win_length, window) for a in audios]
    lengths = np.array([m.shape[1] for m in mats], dtype=np.int32)
    t_pad = -(-int(lengths.max()) // pad_to) * pad_to
    out = np.zeros((len(mats), n_fft // 2 + 1, t_pad), dtype=np.float32)
    for row, m in zip(out, mats):
        row[:, :m.shape[1]] = m
    return out, lengths
