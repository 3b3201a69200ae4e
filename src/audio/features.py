"""The front ends, in numpy: ``features.kind`` picks one, and everything (MindRecord, training,
evaluation, transcription, 310 preprocessing) goes through :func:`batch_features`.

* ``logmel``: NVIDIA Jasper's log-mel filterbank (below, this module);
* ``spectrogram``: deepspeech.pytorch's log1p |STFT| (src/audio/spectrogram.py);
* ``mfcc``: TensorFlow speech_commands' MFCC (src/audio/mfcc.py).

Log-mel features exactly as NVIDIA's Jasper front end computes them:

For one utterance ``x`` of ``n`` samples at 16 kHz:

0. optional edge-silence trim (``trim_db > 0``, src/audio/trim.py): ``n`` is then the trimmed length;
1. optional dither (training only): ``x + dither * N(0, 1)``;
2. pre-emphasis: ``y[0] = x[0]``, ``y[t] = x[t] - 0.97 * x[t-1]``;
3. centred STFT: reflect padding of ``n_fft // 2`` samples on each side, frames of ``n_fft = 512``
   every ``hop = 160`` samples, window = symmetric Hann of 320 samples centred in the 512-sample frame;
4. power spectrum ``|X|^2`` → Slaney mel filterbank (64 bands, 0–8 kHz) → ``log(mel + 1e-20)``;
5. per-feature normalisation over the ``ceil(n / hop)`` valid frames with the mean and the unbiased
   (ddof=1) standard deviation plus 1e-5; the frames after the valid ones are set to 0.

The total number of frames is ``1 + n // hop``; batches are padded to a multiple of ``pad_to`` (16)
frames with zeros.  Every constant comes from :class:`src.config.FeatureConfig`.

How it is made fast (same numbers, less work): only the ``win_length`` samples under the window are
framed, placed at the start of an ``n_fft`` row of zeros (a circular shift of the centred frame
changes the phase of its DFT, not the power); frames go through scipy's FFT in cache-sized chunks,
in float32; the mel product only multiplies the non-zero blocks of the filterbank; utterances of a
batch run in parallel threads while numpy's BLAS is held to one thread (its idle threads would
otherwise spin and steal the cores from the FFT).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import os
import threading
from typing import Iterator, Sequence, TypeVar

import numpy as np
import scipy.fft

from src.audio.trim import trim_silence
from src.config import FeatureConfig

try:  # without it BLAS keeps its own thread count
    import threadpoolctl
    from threadpoolctl import ThreadpoolController
except ImportError:  # pragma: no cover
    threadpoolctl = ThreadpoolController = None

_DEFAULT = FeatureConfig()
# Frames per FFT call: enough to amortise the call, few enough that the spectrum (2 MB) stays in cache.
_CHUNK_FRAMES = 1024
# Fewer frames than this (2.5 s of audio) are not worth handing to another thread.
_MIN_PART_FRAMES = 256

IntOrArray = TypeVar("IntOrArray", int, np.ndarray)


# ---------------------------------------------------------------------------------------------
# Frame-count formulas (the one place they are written down)
# ---------------------------------------------------------------------------------------------

def num_frames(num_samples: IntOrArray, hop_length: int = _DEFAULT.hop_length) -> IntOrArray:
    """Total frames of a centred STFT: ``1 + num_samples // hop_length`` (int or int array)."""
    return 1 + num_samples // hop_length


def valid_frames(num_samples: IntOrArray, hop_length: int = _DEFAULT.hop_length) -> IntOrArray:
    """Frames that carry signal: ``ceil(num_samples / hop_length)`` (int or int array).

    These are the frames used for normalisation and the lengths given to the model.
    """
    return -(-num_samples // hop_length)


def frame_count(num_samples: IntOrArray, cfg: FeatureConfig = _DEFAULT) -> IntOrArray:
    """Total frames the front end of ``cfg`` gives for ``num_samples`` (int or int array)."""
    if cfg.kind == "mfcc":  # frames entirely inside the signal, no centring (at least one)
        return np.maximum(1 + (num_samples - cfg.win_length) // cfg.hop_length, 1) \
            if isinstance(num_samples, np.ndarray) else max(1 + (num_samples - cfg.win_length) // cfg.hop_length, 1)
    return num_frames(num_samples, cfg.hop_length)


def valid_frame_count(num_samples: IntOrArray, cfg: FeatureConfig = _DEFAULT) -> IntOrArray:
    """Frames of ``cfg``'s front end that the model treats as signal (the ``lengths`` input)."""
    if cfg.kind == "logmel":
        return valid_frames(num_samples, cfg.hop_length)
    return frame_count(num_samples, cfg)   # whole-utterance front ends: every frame counts


def padded_frames(n: IntOrArray, multiple: int = _DEFAULT.pad_to) -> IntOrArray:
    """``n`` rounded up to a multiple of ``multiple`` (int or int array)."""
    return -(-n // multiple) * multiple


# ---------------------------------------------------------------------------------------------
# Constant matrices
# ---------------------------------------------------------------------------------------------

def _hz_to_slaney_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear (3 mel per 200 Hz) below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz * 3.0 / 200.0
    # Above 1 kHz: 27 mel per factor 6.4 in frequency, continuous with the linear part (15 mel at 1 kHz).
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) * (27.0 / np.log(6.4))
    return np.where(hz >= 1000.0, log_part, linear)


def _slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * 200.0 / 3.0
    log_part = 1000.0 * np.exp((mel - 15.0) * (np.log(6.4) / 27.0))
    return np.where(mel >= 15.0, log_part, linear)


@functools.lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int = _DEFAULT.sample_rate, n_fft: int = _DEFAULT.n_fft,
                   n_mels: int = _DEFAULT.n_mels, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """Triangular mel filters on the Slaney scale with Slaney (constant-area) normalisation.

    Returns float32 ``(n_mels, n_fft // 2 + 1)``, equal to
    ``librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)``.
    The result is cached and read-only.
    """
    fmax = sample_rate / 2.0 if fmax is None else fmax
    bin_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    # n_mels triangles need n_mels + 2 edges, evenly spaced on the mel scale.
    edges = _slaney_mel_to_hz(np.linspace(_hz_to_slaney_mel(fmin), _hz_to_slaney_mel(fmax), n_mels + 2))
    lo, centre, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bin_hz - lo) / (centre - lo)
    falling = (hi - bin_hz) / (hi - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= 2.0 / (hi - lo)          # each triangle gets unit area in Hz
    out = weights.astype(np.float32)
    out.flags.writeable = False
    return out


def mel_warp_source(alpha: float, sample_rate: int = _DEFAULT.sample_rate, n_mels: int = _DEFAULT.n_mels) -> np.ndarray:
    """Fractional band index each mel band reads from when the spectrum is scaled in frequency by
    ``alpha`` (content at f Hz moves to alpha * f).  Returns float64 ``(n_mels,)``, clipped to the bands."""
    top = _hz_to_slaney_mel(np.float64(sample_rate / 2.0))
    step = top / (n_mels + 1)                       # band centres sit at mel (i + 1) * step
    centres = _slaney_mel_to_hz(step * np.arange(1, n_mels + 1))
    return np.clip(_hz_to_slaney_mel(centres / alpha) / step - 1.0, 0.0, n_mels - 1.0)


@functools.lru_cache(maxsize=8)
def hann_window(win_length: int = _DEFAULT.win_length) -> np.ndarray:
    """Symmetric Hann window (first and last samples 0), float32 ``(win_length,)``, read-only."""
    n = np.arange(win_length, dtype=np.float64)
    out = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / (win_length - 1))).astype(np.float32)
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=8)
def _mel_blocks(cfg: FeatureConfig, bands_per_block: int = 8) -> tuple[tuple[int, int, int, int, np.ndarray], ...]:
    """The mel filterbank as dense blocks of its non-zero part.

    Each triangle spans only a few FFT bins, so groups of neighbouring bands touch a short bin range;
    multiplying by these blocks does ~1/7 of the work of the full (n_bins, n_mels) product.
    Returns ``(band_lo, band_hi, bin_lo, bin_hi, weights (bin_hi - bin_lo, band_hi - band_lo))`` tuples.
    """
    fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels)
    blocks = []
    for lo in range(0, fb.shape[0], bands_per_block):
        hi = min(lo + bands_per_block, fb.shape[0])
        used = np.flatnonzero(fb[lo:hi].any(axis=0))
        b0, b1 = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 1)
        blocks.append((lo, hi, b0, b1, np.ascontiguousarray(fb[lo:hi, b0:b1].T)))
    return tuple(blocks)


# ---------------------------------------------------------------------------------------------
# Feature computation
# ---------------------------------------------------------------------------------------------

def _check_audio(audio: np.ndarray, index: int | None = None) -> np.ndarray:
    audio = np.asarray(audio)
    where = "audio" if index is None else f"audio[{index}]"
    if audio.ndim != 1:
        raise ValueError(f"{where} must be 1-D mono samples, got shape {audio.shape}")
    if audio.size == 0:
        raise ValueError(f"{where} is empty: features need at least one sample")
    return audio


def _windowed_frames(audio: np.ndarray, noise: np.ndarray | None, cfg: FeatureConfig) -> np.ndarray:
    """Pre-emphasised, windowed frames of one utterance, ready for the FFT: float32 (T_valid, n_fft).

    Each row holds the ``win_length`` samples that the centred window does not zero, multiplied by
    the window, followed by zeros.  Moving the window part to the start of the row is a circular
    shift of the centred frame, which leaves the power spectrum unchanged.  Reflect padding by
    ``n_fft // 2`` and then skipping the zero part of the window equals reflect padding by only
    the samples the window reaches, since a reflected sample depends only on its distance to the edge.
    """
    x = audio.astype(np.float32, copy=False)
    if noise is not None:
        x = x + noise
    n = x.shape[0]
    # Frame t is centred on sample t * hop; its window starts `left` samples before that.
    left = cfg.n_fft // 2 - (cfg.n_fft - cfg.win_length) // 2
    right = cfg.win_length - left
    padded = np.empty(left + n + right, dtype=np.float32)
    y = padded[left:left + n]
    # y[0] = x[0]; y[t] = x[t] - preemph * x[t-1], written straight into the padded buffer.
    y[0] = x[0]
    np.multiply(x[:-1], np.float32(-cfg.preemph), out=y[1:])
    y[1:] += x[1:]
    if n > max(left, right):
        # Mirror about the first and last samples (which are not repeated).
        padded[:left] = y[1:left + 1][::-1]
        padded[left + n:] = y[::-1][1:right + 1]
    else:
        # Shorter than the padding: reflect repeatedly, as np.pad does (torch would refuse).
        padded = np.pad(y, (left, right), mode="reflect")
    t_valid = valid_frames(n, cfg.hop_length)
    windows = np.lib.stride_tricks.sliding_window_view(padded, cfg.win_length)
    frames = np.empty((t_valid, cfg.n_fft), dtype=np.float32)
    np.multiply(windows[: (t_valid - 1) * cfg.hop_length + 1: cfg.hop_length], hann_window(cfg.win_length),
                out=frames[:, :cfg.win_length])
    frames[:, cfg.win_length:] = 0.0
    return frames


def _log_mel_into(frames: np.ndarray, out: np.ndarray, cfg: FeatureConfig) -> None:
    """Windowed frames (T, n_fft) → log-mel written transposed into ``out`` (n_mels, T).

    ``frames`` is used as FFT scratch space and overwritten.
    """
    blocks = _mel_blocks(cfg)
    rows = np.empty((frames.shape[0], cfg.n_mels), dtype=np.float32)
    for start in range(0, frames.shape[0], _CHUNK_FRAMES):
        stop = min(start + _CHUNK_FRAMES, frames.shape[0])
        spec = scipy.fft.rfft(frames[start:stop], axis=1, overwrite_x=True)
        # |X|^2 = re^2 + im^2, squared in place on the interleaved float32 view of the spectrum.
        ri = spec.view(np.float32)
        np.multiply(ri, ri, out=ri)
        power = np.add(ri[:, 0::2], ri[:, 1::2])
        for band_lo, band_hi, bin_lo, bin_hi, weights in blocks:
            np.matmul(power[:, bin_lo:bin_hi], weights, out=rows[start:stop, band_lo:band_hi])
    rows += np.float32(cfg.log_zero_guard)
    np.log(rows, out=rows)
    out[...] = rows.T


def _normalize_(feats: np.ndarray, cfg: FeatureConfig) -> None:
    """Per-feature normalisation in place: feats (n_mels, T_valid), each row → (x - mean) / (std + eps).

    Rows are contiguous, so numpy's pairwise summation keeps float32 sums accurate.
    """
    n = feats.shape[1]
    feats -= feats.mean(axis=1, keepdims=True)
    if n > 1:
        std = np.sqrt(np.square(feats).sum(axis=1, keepdims=True) / np.float32(n - 1))
    else:
        # One frame has no spread; its centred value is 0, and so is the result.
        std = np.zeros((feats.shape[0], 1), dtype=np.float32)
    feats /= std + np.float32(cfg.norm_eps)


def _utterance_into(audio: np.ndarray, noise: np.ndarray | None, out: np.ndarray, cfg: FeatureConfig,
                    pool: concurrent.futures.Executor | None = None, parts: int = 1) -> None:
    """Features of one utterance into ``out`` (n_mels, T_valid), a view of the zeroed batch array.

    With a ``pool``, the spectra of ``parts`` consecutive frame ranges are computed in parallel.
    """
    frames = _windowed_frames(audio, noise, cfg)
    n = frames.shape[0]
    parts = max(1, min(parts, n // _MIN_PART_FRAMES))
    if pool is None or parts == 1:
        _log_mel_into(frames, out, cfg)
    else:
        bounds = np.linspace(0, n, parts + 1).astype(int)
        jobs = [pool.submit(_log_mel_into, frames[lo:hi], out[:, lo:hi], cfg)
                for lo, hi in zip(bounds[:-1], bounds[1:])]
        for job in jobs:
            job.result()
    _normalize_(out, cfg)


_POOLS: dict[int, concurrent.futures.ThreadPoolExecutor] = {}
_POOLS_PID = os.getpid()
_POOLS_LOCK = threading.Lock()


def _thread_pool(threads: int) -> concurrent.futures.ThreadPoolExecutor:
    """A shared pool of exactly ``threads`` threads; pools are rebuilt after a fork (they have no threads there)."""
    global _POOLS_PID
    with _POOLS_LOCK:
        if _POOLS_PID != os.getpid():
            _POOLS.clear()
            _POOLS_PID = os.getpid()
        if threads not in _POOLS:
            _POOLS[threads] = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="features")
        return _POOLS[threads]


_BLAS_LOCK = threading.Lock()
_BLAS_STATE: dict = {"controller": None, "limiter": None, "users": 0}


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """Context in which numpy's BLAS uses one thread (a no-op without threadpoolctl).

    Reference-counted, so concurrent callers cannot leave BLAS limited after they all finish.
    """
    if ThreadpoolController is None:
        yield
        return
    with _BLAS_LOCK:
        if _BLAS_STATE["users"] == 0:
            if _BLAS_STATE["controller"] is None:
                _BLAS_STATE["controller"] = ThreadpoolController()
            _BLAS_STATE["limiter"] = _BLAS_STATE["controller"].limit(limits=1, user_api="blas")
        _BLAS_STATE["users"] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_STATE["users"] -= 1
            if _BLAS_STATE["users"] == 0:
                _BLAS_STATE["limiter"].restore_original_limits()
                _BLAS_STATE["limiter"] = None
                _release_openblas_control(force=False)


def _release_openblas_control(force: bool) -> None:
    """threadpoolctl lets one Python thread at a time control OpenBLAS and remembers which.  Give control
    back when done: the caller may be a MindSpore pipeline thread, and a forked child that inherits
    the record of a foreign thread fails an assertion the next time it limits BLAS."""
    controller = getattr(threadpoolctl, "OpenBLASController", None)
    if controller is not None and hasattr(controller, "clear_controlling_thread"):
        controller.clear_controlling_thread(force=force)


def _reset_blas_state_in_child() -> None:
    global _BLAS_LOCK
    _BLAS_LOCK = threading.Lock()  # another thread may have held it at the fork
    _BLAS_STATE.update(controller=None, limiter=None, users=0)
    _release_openblas_control(force=True)


if ThreadpoolController is not None:
    os.register_at_fork(after_in_child=_reset_blas_state_in_child)


def _resolve_threads(threads: int) -> int:
    return max(1, os.cpu_count() or 1) if threads < 1 else threads


def batch_features(audios: Sequence[np.ndarray], cfg: FeatureConfig = _DEFAULT, dither: float = 0.0,
                   rng: np.random.Generator | None = None, pad_to: int | None = None,
                   threads: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Normalised log-mel features of a batch of utterances.

    Args:
        audios: B float mono signals at ``cfg.sample_rate``, each (n_b,) with n_b >= 1.
        cfg: the front-end constants.
        dither: standard deviation of Gaussian noise added before pre-emphasis (training only;
            use ``cfg.dither`` there, 0 for evaluation).
        rng: source of the dither noise; required when ``dither > 0``.  The noise is drawn in
            utterance order, so the result depends only on the rng state, never on ``threads``.
        pad_to: frame multiple of the padded length; ``None`` uses ``cfg.pad_to``, 1 disables it.
        threads: CPU threads to use (-1 = all cores; 1 inside data-loader workers that already
            run in parallel).

    Returns (``n_b`` the length after ``cfg.trim_db``'s trim, if any):
        features: float32 (B, n_mels, T_pad) with ``T_pad = padded_frames(max_b num_frames(n_b), pad_to)``;
            frames at and after ``valid_frames(n_b)`` are exactly 0.
        lengths: int32 (B,) ``valid_frames(n_b)``.
    """
    if len(audios) == 0:
        raise ValueError("batch_features needs at least one utterance")
    if dither > 0.0 and rng is None:
        raise ValueError("dither > 0 needs an rng (np.random.Generator) so runs are reproducible")
    pad_to = cfg.pad_to if pad_to is None else pad_to
    if pad_to < 1:
        raise ValueError(f"pad_to must be >= 1, got {pad_to}")
    audios = [trim_silence(_check_audio(a, i if len(audios) > 1 else None), cfg) for i, a in enumerate(audios)]
    noises = [np.float32(dither) * rng.standard_normal(a.shape[0], dtype=np.float32) if dither > 0.0 else None
              for a in audios]
    if cfg.kind != "logmel":
        return _other_front_end(audios, noises, cfg, pad_to)

    sizes = np.array([a.shape[0] for a in audios], dtype=np.int64)
    lengths = valid_frames(sizes, cfg.hop_length).astype(np.int32)
    t_pad = int(padded_frames(int(num_frames(sizes, cfg.hop_length).max()), pad_to))
    features = np.zeros((len(audios), cfg.n_mels, t_pad), dtype=np.float32)

    threads = _resolve_threads(threads)
    # Numpy's OpenBLAS threads busy-wait after each call and would compete with our threads for the
    # cores; the mel products are small, so BLAS runs single-threaded and the parallelism is ours:
    # utterances in parallel, or the frame ranges of a single utterance.
    with _single_threaded_blas():
        if threads == 1:
            for a, noise, out, t in zip(audios, noises, features, lengths):
                _utterance_into(a, noise, out[:, :t], cfg)
        elif len(audios) == 1:
            pool = _thread_pool(threads)
            _utterance_into(audios[0], noises[0], features[0, :, :lengths[0]], cfg, pool, threads)
        else:
            pool = _thread_pool(threads)
            jobs = [pool.submit(_utterance_into, a, noise, out[:, :t], cfg)
                    for a, noise, out, t in zip(audios, noises, features, lengths)]
            for job in jobs:
                job.result()
    return features, lengths


def _other_front_end(audios: list[np.ndarray], noises: list[np.ndarray | None], cfg: FeatureConfig,
                     pad_to: int) -> tuple[np.ndarray, np.ndarray]:
    """batch_features for the whole-utterance front ends: (B, feature_dim, T_pad), lengths (B,)."""
    mats = [_single_features(a if noise is None else a + noise, cfg) for a, noise in zip(audios, noises)]
    sizes = np.array([a.shape[0] for a in audios], dtype=np.int64)
    lengths = valid_frame_count(sizes, cfg).astype(np.int32)
    t_pad = int(padded_frames(int(max(m.shape[1] for m in mats)), pad_to))
    out = np.zeros((len(mats), cfg.feature_dim, t_pad), dtype=np.float32)
    for row, m in zip(out, mats):
        row[:, :m.shape[1]] = m
    return out, lengths


def _single_features(audio: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """One utterance through the spectrogram or MFCC front end of ``cfg``: (feature_dim, T) float32."""
    if cfg.kind == "spectrogram":
        from src.audio.spectrogram import spectrogram_features as spectrogram
        return spectrogram(audio, cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                           win_length=cfg.win_length, window=cfg.window)
    from src.audio.mfcc import mfcc_features as mfcc
    return mfcc(audio, cfg.sample_rate, window_size=cfg.win_length, stride=cfg.hop_length,
                dct_coefficient_count=cfg.n_mfcc, filterbank_channel_count=cfg.n_mels,
                lower_frequency_limit=cfg.fmin, upper_frequency_limit=cfg.fmax or cfg.sample_rate / 2)


def spectrogram_features(audio: np.ndarray, sample_rate: int = 16000, **settings) -> np.ndarray:
    """deepspeech.pytorch's spectrogram: float32 (161, T), T = 1 + len // 160 (src/audio/spectrogram.py)."""
    from src.audio.spectrogram import spectrogram_features as spectrogram
    return spectrogram(audio, sample_rate, **settings)


def mfcc_features(audio: np.ndarray, sample_rate: int = 16000, **settings) -> np.ndarray:
    """TensorFlow speech_commands' MFCC: float32 (10, T), T = 1 + (len − 640) // 320 (src/audio/mfcc.py)."""
    from src.audio.mfcc import mfcc_features as mfcc
    return mfcc(audio, sample_rate, **settings)


def filterbank_features(audio: np.ndarray, sample_rate: int = _DEFAULT.sample_rate,
                        cfg: FeatureConfig = _DEFAULT) -> np.ndarray:
    """Normalised log-mel features of one utterance, without dither or padding.

    Args:
        audio: float32 mono (n,) in [-1, 1], n >= 1.
        sample_rate: rate of ``audio``; must equal ``cfg.sample_rate`` (resample first otherwise,
            e.g. with ``src.audio.io.resample``).

    Returns:
        float32 (n_mels, T) with ``T = num_frames(n) = 1 + n // hop``, ``n`` counted after
        ``cfg.trim_db``'s trim if any; frames from ``valid_frames(n)`` on are 0.
    """
    if sample_rate != cfg.sample_rate:
        raise ValueError(f"audio is at {sample_rate} Hz but the features expect {cfg.sample_rate} Hz; "
                         f"resample it first (src.audio.io.resample or load_audio(path, target_sr="
                         f"{cfg.sample_rate}))")
    audio = _check_audio(audio)
    features, _ = batch_features([audio], cfg, pad_to=1)
    return features[0]
