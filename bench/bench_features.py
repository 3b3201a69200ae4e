"""Benchmark of the log-mel front end against the same pipeline built from librosa calls.

Usage:
    python bench/bench_features.py [--num_utts 128] [--repeats 5] [--batch_size 16]
                                   [--output bench/results/adhoc/features.json] [--seed 0]

Synthetic speech-like utterances (glottal pulse train through formant resonators, syllable-rate
envelope, pauses, a little noise) with a LibriSpeech-like duration spread (2–20 s, median ≈ 12 s)
are turned into normalised log-mel features three ways, interleaved in every round so that machine
load affects all three alike:

    batched    src.audio.features.batch_features, batch_size utterances per call (all cores)
    batched_1t the same with threads=1 (as inside parallel data-loader workers)
    single     src.audio.features.filterbank_features, one utterance per call
    librosa    pre-emphasis + librosa.stft + power + librosa mel matrix + log + normalisation

Methods run in the order listed, every round.  It reports the median throughput in audio-seconds per second and the median over rounds of each
ratio ours/librosa, prints a table, and writes the numbers as JSON.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import scipy.signal  # noqa: E402

from bench import adhoc_output  # noqa: E402
from src.audio.features import batch_features, filterbank_features, valid_frames  # noqa: E402
from src.config import FeatureConfig  # noqa: E402
from src.fileio import atomic_write_json  # noqa: E402


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num_utts", type=int, default=128, help="synthetic utterances per round")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (each runs all three methods)")
    p.add_argument("--batch_size", type=int, default=16, help="utterances per batch_features call")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic corpus")
    p.add_argument("--output", default=adhoc_output("features"), help="JSON result file")
    args = p.parse_args(argv)
    for name in ("num_utts", "repeats", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    return args


def librispeech_like_durations(n: int, rng: np.random.Generator) -> np.ndarray:
    """Durations in seconds, (n,): most between 8 and 16 s, median ≈ 12 s, clipped to [2, 20]."""
    return np.clip(rng.normal(12.0, 3.5, size=n), 2.0, 20.0)


def synthetic_speech(duration: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A voiced, speech-like float32 signal (n,) in [-1, 1] with pauses and background noise."""
    n = int(round(duration * sample_rate))
    t = np.arange(n) / sample_rate
    # Slowly wandering pitch → sawtooth pulse train (rich in harmonics).
    f0 = rng.uniform(90, 220) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.2, 0.8) * t))
    phase = np.cumsum(f0) / sample_rate
    source = 2.0 * (phase % 1.0) - 1.0
    # Two fixed formant resonators give the spectrum a speech-like envelope.
    voiced = source
    for formant, bandwidth in ((rng.uniform(400, 800), 80.0), (rng.uniform(1000, 2200), 120.0)):
        r = np.exp(-np.pi * bandwidth / sample_rate)
        theta = 2 * np.pi * formant / sample_rate
        voiced = scipy.signal.lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], voiced)
    # Syllables at ~4 Hz, with a pause roughly every couple of seconds.
    envelope = np.maximum(0.0, np.sin(2 * np.pi * rng.uniform(3, 5) * t)) ** 2
    envelope *= (np.sin(2 * np.pi * 0.4 * t + rng.uniform(0, 2 * np.pi)) > -0.6)
    x = voiced * envelope
    x = 0.5 * x / (np.abs(x).max() + 1e-9) + 1e-3 * rng.standard_normal(n)
    return x.astype(np.float32)


class LibrosaFrontEnd:
    """The NVIDIA Jasper front end written with librosa calls (the baseline)."""

    def __init__(self, cfg: FeatureConfig) -> None:
        import librosa  # heavy import, only for the baseline
        self.librosa = librosa
        self.cfg = cfg
        self.window = scipy.signal.get_window("hann", cfg.win_length, fftbins=False)
        self.mel = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels).astype(np.float32)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        c = self.cfg
        y = np.concatenate([audio[:1], audio[1:] - np.float32(c.preemph) * audio[:-1]])
        spec = self.librosa.stft(y, n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length,
                                 window=self.window, center=True, pad_mode="reflect")
        logmel = np.log(self.mel @ (spec.real ** 2 + spec.imag ** 2) + c.log_zero_guard)
        n = valid_frames(audio.shape[0], c.hop_length)
        valid = logmel[:, :n]
        out = np.zeros_like(logmel)
        out[:, :n] = (valid - valid.mean(1, keepdims=True)) / (valid.std(1, ddof=1, keepdims=True) + c.norm_eps)
        return out


def time_call(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = FeatureConfig()
    rng = np.random.default_rng(args.seed)
    durations = librispeech_like_durations(args.num_utts, rng)
    audios = [synthetic_speech(d, cfg.sample_rate, rng) for d in durations]
    audio_seconds = sum(a.shape[0] for a in audios) / cfg.sample_rate
    baseline = LibrosaFrontEnd(cfg)

    def run_batched() -> None:
        for i in range(0, len(audios), args.batch_size):
            batch_features(audios[i:i + args.batch_size], cfg)

    def run_batched_1t() -> None:
        for i in range(0, len(audios), args.batch_size):
            batch_features(audios[i:i + args.batch_size], cfg, threads=1)

    def run_single() -> None:
        for a in audios:
            filterbank_features(a, cfg.sample_rate)

    def run_librosa() -> None:
        for a in audios:
            baseline(a)

    methods = {"batched": run_batched, "batched_1t": run_batched_1t, "single": run_single,
               "librosa": run_librosa}
    # Warm-up (first calls pay for caches and FFT plans), and a check that all compute the same thing.
    max_diff = 0.0
    for a in audios[:4]:
        feats, _ = batch_features([a], cfg, pad_to=1)
        max_diff = max(max_diff, float(np.abs(feats[0] - baseline(a)).max()),
                       float(np.abs(filterbank_features(a) - feats[0]).max()))

    load_before = os.getloadavg()[0]
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            seconds[name].append(time_call(fn))

    speed = {m: [audio_seconds / s for s in seconds[m]] for m in methods}
    ratios = {f"{m}/librosa": [lib / s for s, lib in zip(seconds[m], seconds["librosa"])]
              for m in methods if m != "librosa"}
    result = {
        "benchmark": "log-mel features (NVIDIA Jasper front end)",
        "num_utts": args.num_utts,
        "audio_seconds_per_round": round(audio_seconds, 2),
        "median_duration_s": round(float(np.median(durations)), 2),
        "repeats": args.repeats,
        "batch_size": args.batch_size,
        "cpu_count": os.cpu_count(),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "python": platform.python_version(),
        "numpy": np.__version__,
        "audio_seconds_per_second": {m: round(statistics.median(v), 1) for m, v in speed.items()},
        "median_ratio_vs_librosa": {k: round(statistics.median(v), 3) for k, v in ratios.items()},
        "max_abs_diff_vs_librosa": max_diff,
        "per_round_seconds": {m: [round(s, 4) for s in v] for m, v in seconds.items()},
    }

    print(f"{args.num_utts} utterances, {audio_seconds:.0f} audio-seconds per round, "
          f"{args.repeats} rounds, batch size {args.batch_size}")
    print(f"{'method':<11} {'audio-s/s (median)':>19} {'min':>9} {'max':>9} {'× librosa':>10}")
    for m in methods:
        ratio = result["median_ratio_vs_librosa"].get(f"{m}/librosa", 1.0)
        print(f"{m:<11} {statistics.median(speed[m]):>19.0f} {min(speed[m]):>9.0f} "
              f"{max(speed[m]):>9.0f} {ratio:>10.2f}")
    print(f"max |ours - librosa| on normalised features: {max_diff:.1e}")
    atomic_write_json(args.output, result)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
