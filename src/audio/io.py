"""Reading and writing audio: any soundfile-readable file → float32 mono at a chosen rate.

Resampling uses soxr (the resampler librosa itself uses): high quality and fast.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from src.fileio import atomic_path


class AudioError(ValueError):
    """An audio file that cannot be used (unreadable, empty, wrong format)."""


def resample(audio: np.ndarray, orig_sr: float, target_sr: float) -> np.ndarray:
    """Resample float32 ``audio`` (T,) from ``orig_sr`` to ``target_sr`` (rates may be fractional)."""
    if orig_sr == target_sr:
        return audio
    return soxr.resample(audio, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def load_audio(path: str | os.PathLike, target_sr: int | None = None) -> tuple[np.ndarray, int]:
    """Read ``path`` as float32 mono in [-1, 1], resampled to ``target_sr`` when given.

    Returns ``(audio (T,), sample_rate)``.  Multi-channel audio is averaged to mono.
    Raises AudioError naming the file when it cannot be read or holds no samples.
    """
    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioError(f"{path}: cannot read audio ({e}); is it a valid wav/flac/ogg file?") from None
    if audio.shape[0] == 0:
        raise AudioError(f"{path}: the file holds no audio samples")
    audio = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    if target_sr is not None and sr != target_sr:
        audio, sr = resample(audio, sr, target_sr), target_sr
    return np.ascontiguousarray(audio, dtype=np.float32), int(sr)


def float_to_int16(audio: np.ndarray) -> np.ndarray:
    """float32 [-1, 1] → int16 PCM, clipped."""
    return np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16)


def int16_to_float(pcm: np.ndarray) -> np.ndarray:
    """int16 PCM → float32 in [-1, 1)."""
    return pcm.astype(np.float32) / 32768.0


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit PCM wav atomically.  ``audio``: (T,) int16 or float32 in [-1, 1]."""
    pcm = audio if audio.dtype == np.int16 else float_to_int16(audio)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), pcm, sample_rate, subtype="PCM_16", format="WAV")


def audio_info(path: str | Path) -> sf._SoundFileInfo:
    """Header information (samplerate, channels, frames) without decoding."""
    try:
        return sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioError(f"{path}: cannot read audio header ({e})") from None
