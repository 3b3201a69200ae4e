"""MFCC features exactly as TensorFlow's speech_commands example computes them, in numpy.

The example (and ARM's DS-CNN graphs) run ``AudioSpectrogram`` then ``Mfcc`` on a clip decoded by
``DecodeWav(desired_samples=16000)``.  For a clip ``x`` of ``n`` float samples in [-1, 1]:

1. frames of ``window_size`` samples every ``stride`` samples, no centring and no padding:
   ``T = 1 + (n - window_size) // stride`` frames (0 when the clip is shorter than one window);
2. each frame times a *periodic* Hann window ``0.5 - 0.5 cos(2 pi i / window_size)``, zero-padded
   to the next power of two (640 → 1024), real FFT in double precision, squared magnitude of the
   ``fft // 2 + 1`` bins, stored as float32 (the op's output type);
3. TensorFlow's own mel filterbank (not librosa's, not HTK's): ``filterbank_channel_count + 1``
   centres equally spaced on the mel scale ``1127 ln(1 + f / 700)`` strictly above
   ``lower_frequency_limit``, the last one at ``upper_frequency_limit``; only the bins from
   ``int(1.5 + lower / hz_per_bin)`` to ``int(upper / hz_per_bin)`` contribute, each to the two
   channels around it with triangular weights measured in mel; the filterbank weighs the
   *magnitude* (the square root of the power spectrum), not the power;
4. natural log with a floor of 1e-12 on the filterbank output;
5. DCT-II with the scale ``sqrt(2 / channels)`` on every coefficient (coefficient 0 included, so it is
   not orthonormal), keeping the first ``dct_coefficient_count``.

Steps 2-5 run in float64 and the result is rounded to float32, as TensorFlow's kernels do; measured
against ``tf.raw_ops.AudioSpectrogram`` + ``tf.raw_ops.Mfcc`` in tests/test_dscnn_tf.py.

Output layout: ``(dct_coefficient_count, T)`` (features × frames, as every front end of the zoo);
TensorFlow's op returns the transpose, ``(1, T, dct_coefficient_count)``.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from src.config import FeatureConfig

__all__ = ["mfcc_features", "mfcc_batch", "mfcc_from_config", "mfcc_num_frames", "decode_clip",
           "clip_samples", "fft_length_for", "periodic_hann", "tf_mel_matrix", "tf_dct_matrix",
           "power_spectrogram", "FILTERBANK_FLOOR"]

#: floor applied to the filterbank output before the log (TensorFlow's Mfcc kernel)
FILTERBANK_FLOOR = 1e-12


# ---------------------------------------------------------------------------------------------
# Clip length and frame counts
# ---------------------------------------------------------------------------------------------

def clip_samples(sample_rate: int = 16000, clip_duration_ms: int = 1000) -> int:
    """Samples of one clip: ``int(sample_rate * clip_duration_ms / 1000)`` (16,000 for 1 s)."""
    return int(sample_rate * clip_duration_ms / 1000)


def mfcc_num_frames(num_samples: int, window_size: int = 640, stride: int = 320) -> int:
    """Frames of an uncentred spectrogram: ``1 + (num_samples - window_size) // stride``, or 0 when the
    clip is shorter than one window (49 for 16,000 samples)."""
    if num_samples < window_size:
        return 0
    return 1 + (num_samples - window_size) // stride


def fft_length_for(window_size: int) -> int:
    """The FFT size AudioSpectrogram uses: the smallest power of two >= ``window_size`` (640 → 1024)."""
    if window_size < 1:
        raise ValueError(f"window_size must be positive, got {window_size}")
    return 1 << (int(window_size) - 1).bit_length()


def decode_clip(audio: np.ndarray, desired_samples: int = 16000) -> np.ndarray:
    """A clip of exactly ``desired_samples``: zeros appended at the end, or the tail cut off, as
    ``DecodeWav(desired_samples=...)`` does.  audio: (n,) float → (desired_samples,) float32."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"decode_clip expects mono audio of shape (n,), got {audio.shape}")
    if desired_samples < 0:
        raise ValueError(f"desired_samples must be >= 0, got {desired_samples}")
    if len(audio) >= desired_samples:
        return audio[:desired_samples].copy()
    return np.concatenate([audio, np.zeros(desired_samples - len(audio), np.float32)])


# ---------------------------------------------------------------------------------------------
# Constant matrices (built once per parameter set)
# ---------------------------------------------------------------------------------------------

def periodic_hann(length: int) -> np.ndarray:
    """(length,) float64: ``0.5 - 0.5 cos(2 pi i / length)`` (periodic: the last point is not 0)."""
    i = np.arange(length, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * i / length)


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


@functools.lru_cache(maxsize=16)
def tf_mel_matrix(num_bins: int, sample_rate: float, channels: int = 40, lower: float = 20.0,
                  upper: float = 4000.0) -> np.ndarray:
    """TensorFlow's mel filterbank as a matrix: (channels, num_bins) float64 ``W`` with
    ``filterbank = W @ sqrt(power)`` for a power spectrum of ``num_bins`` bins (0 … sample_rate / 2).

    Each bin between the two limits lies between two consecutive centres (the first "centre" being
    ``mel(lower)``, the band's left edge); it gives the channel on its left the weight
    ``(c_right - m) / (c_right - c_left)`` and the channel on its right the rest, where ``m`` is the
    bin's mel frequency.  Bins outside ``[int(1.5 + lower / hz_per_bin), int(upper / hz_per_bin)]``
    get no weight.  The returned array is read-only (it is cached).
    """
    if channels < 1 or num_bins < 2 or sample_rate <= 0 or lower < 0 or upper <= lower:
        raise ValueError(f"invalid mel filterbank: channels={channels}, bins={num_bins}, "
                         f"sample_rate={sample_rate}, limits {lower}..{upper} Hz")
    mel_low, mel_high = _hz_to_mel(lower), _hz_to_mel(upper)
    spacing = (mel_high - mel_low) / (channels + 1)
    centres = mel_low + spacing * np.arange(1, channels + 2)          # channels + 1 values
    hz_per_bin = 0.5 * sample_rate / (num_bins - 1)
    first = int(1.5 + lower / hz_per_bin)
    last = int(upper / hz_per_bin)
    weights = np.zeros((channels, num_bins), np.float64)
    for b in range(max(first, 0), min(last, num_bins - 1) + 1):
        mel = float(_hz_to_mel(b * hz_per_bin))
        # index of the last centre below this bin's frequency (-1: below the first centre)
        left = int(np.searchsorted(centres[:channels], mel, side="left")) - 1
        if left >= 0:
            w = (centres[left + 1] - mel) / (centres[left + 1] - centres[left])
            weights[left, b] += w
        else:
            w = (centres[0] - mel) / (centres[0] - mel_low)
        if left + 1 < channels:
            weights[left + 1, b] += 1.0 - w
    weights.flags.writeable = False
    return weights


@functools.lru_cache(maxsize=16)
def tf_dct_matrix(coefficients: int, channels: int) -> np.ndarray:
    """(coefficients, channels) float64 DCT-II: ``sqrt(2 / channels) cos(pi k (j + 0.5) / channels)``
    for every k (no special scale for k = 0).  Read-only (cached)."""
    if not 1 <= coefficients <= channels:
        raise ValueError(f"dct_coefficient_count={coefficients} must be within [1, {channels}]")
    k = np.arange(coefficients, dtype=np.float64)[:, None]
    j = np.arange(channels, dtype=np.float64)[None, :]
    dct = np.sqrt(2.0 / channels) * np.cos(np.pi / channels * k * (j + 0.5))
    dct.flags.writeable = False
    return dct


@functools.lru_cache(maxsize=16)
def _window(window_size: int) -> np.ndarray:
    w = periodic_hann(window_size)
    w.flags.writeable = False
    return w


# ---------------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------------

def _frames(audio: np.ndarray, window_size: int, stride: int) -> np.ndarray:
    """(..., n) → (..., T, window_size) view of the uncentred frames."""
    count = mfcc_num_frames(audio.shape[-1], window_size, stride)
    if count == 0:
        return np.zeros(audio.shape[:-1] + (0, window_size), audio.dtype)
    view = np.lib.stride_tricks.sliding_window_view(audio, window_size, axis=-1)
    return view[..., ::stride, :][..., :count, :]


def power_spectrogram(audio: np.ndarray, window_size: int = 640, stride: int = 320) -> np.ndarray:
    """AudioSpectrogram(magnitude_squared=True): (..., n) float → (..., T, fft // 2 + 1) float32."""
    frames = _frames(np.asarray(audio, dtype=np.float32), window_size, stride).astype(np.float64)
    spectrum = np.fft.rfft(frames * _window(window_size), n=fft_length_for(window_size), axis=-1)
    return (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)


def _mfcc_from_power(power: np.ndarray, sample_rate: float, dct_coefficient_count: int,
                     filterbank_channel_count: int, lower: float, upper: float) -> np.ndarray:
    """(..., T, bins) float32 power → (..., dct_coefficient_count, T) float32."""
    mel = tf_mel_matrix(power.shape[-1], float(sample_rate), filterbank_channel_count, float(lower), float(upper))
    dct = tf_dct_matrix(dct_coefficient_count, filterbank_channel_count)
    filterbank = np.sqrt(power.astype(np.float64)) @ mel.T                  # (..., T, channels)
    logs = np.log(np.maximum(filterbank, FILTERBANK_FLOOR))
    return np.swapaxes(logs @ dct.T, -1, -2).astype(np.float32)


def mfcc_features(audio: np.ndarray, sample_rate: int = 16000, window_size: int = 640, stride: int = 320,
                  dct_coefficient_count: int = 10, filterbank_channel_count: int = 40,
                  lower_frequency_limit: float = 20.0, upper_frequency_limit: float = 4000.0) -> np.ndarray:
    """TensorFlow speech_commands' MFCC of one clip.

    audio: (n,) float32 mono in [-1, 1] (decode it to the clip length first with :func:`decode_clip`
    to get the model's fixed frame count) → (dct_coefficient_count, T) float32,
    T = 1 + (n - window_size) // stride (49 for one second at 16 kHz; 0 frames below one window).
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"mfcc_features expects mono audio of shape (n,), got {audio.shape}")
    return mfcc_batch(audio[None], sample_rate, window_size, stride, dct_coefficient_count,
                      filterbank_channel_count, lower_frequency_limit, upper_frequency_limit)[0]


def mfcc_batch(clips: np.ndarray, sample_rate: int = 16000, window_size: int = 640, stride: int = 320,
               dct_coefficient_count: int = 10, filterbank_channel_count: int = 40,
               lower_frequency_limit: float = 20.0, upper_frequency_limit: float = 4000.0) -> np.ndarray:
    """:func:`mfcc_features` of equal-length clips in one pass: (B, n) → (B, dct_coefficient_count, T)."""
    clips = np.asarray(clips, dtype=np.float32)
    if clips.ndim != 2:
        raise ValueError(f"mfcc_batch expects clips of shape (B, n), got {clips.shape}")
    if window_size < 1 or stride < 1:
        raise ValueError(f"window_size and stride must be positive, got {window_size} and {stride}")
    power = power_spectrogram(clips, window_size, stride)
    return _mfcc_from_power(power, sample_rate, dct_coefficient_count, filterbank_channel_count,
                            lower_frequency_limit, upper_frequency_limit)


def mfcc_from_config(audio: np.ndarray, features: "FeatureConfig") -> np.ndarray:
    """:func:`mfcc_features` with the constants of a ``features: {kind: mfcc}`` config section:
    ``win_length`` → window_size, ``hop_length`` → stride, ``n_mfcc`` → dct_coefficient_count,
    ``n_mels`` → filterbank channels, ``fmin``/``fmax`` → frequency limits (``fmax`` 0: Nyquist).
    ``n_fft`` must be the power of two the spectrogram takes (1024 for a 640-sample window)."""
    fft = fft_length_for(features.win_length)
    if features.n_fft != fft:
        raise ValueError(f"features.n_fft={features.n_fft}: TensorFlow's spectrogram of a "
                         f"{features.win_length}-sample window uses an FFT of {fft}")
    if features.window != "hann":
        raise ValueError(f"features.window={features.window!r}: TensorFlow's spectrogram uses a periodic hann window")
    upper = features.fmax if features.fmax > 0 else features.sample_rate / 2
    return mfcc_features(audio, features.sample_rate, features.win_length, features.hop_length, features.n_mfcc,
                         features.n_mels, features.fmin, upper)
