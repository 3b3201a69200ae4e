"""Benchmark of the training data path: padding overhead of the length buckets, and loading speed.

Usage:
    python bench/bench_loader.py [--num_index 20000] [--num_utts 96] [--repeats 3]
                                 [--output bench/results/adhoc/loader.json]

Part 1 plans one training epoch for a LibriSpeech-like duration distribution (no audio needed) and
reports padded frames / real frames − 1 and the number of distinct batch shapes, for several bucket
counts and batch sizes, against two references: random batches padded to their longest member
(rounded to 16 frames), and length-sorted batches padded the same way (little padding, but a new
shape for almost every batch, i.e. a graph compilation each).
Part 2 writes a MindRecord folder of synthetic speech-like audio and times full epochs through the
real pipeline (MindDataset → int16 PCM → speed perturbation → features → SpecAugment → batches),
in training and evaluation mode, reporting median utterances/s and audio-seconds/s.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench import adhoc_output  # noqa: E402
from bench.bench_features import librispeech_like_durations, synthetic_speech  # noqa: E402
from src.audio import features  # noqa: E402
from src.audio.io import write_wav  # noqa: E402
from src.config import load_config  # noqa: E402
from src.data.dataset import SpeechData  # noqa: E402
from src.data.manifest import Utterance  # noqa: E402
from src.data.mindrecord import ShardIndex, write_mindrecord  # noqa: E402
from src.fileio import atomic_write_json  # noqa: E402
from src.log import setup_logging  # noqa: E402
from src.text.labels import load_labels  # noqa: E402

SR = 16000


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num_index", type=int, default=20000, help="utterances in the planned (audio-free) index")
    p.add_argument("--num_utts", type=int, default=96, help="utterances of real audio for the loading test")
    p.add_argument("--repeats", type=int, default=3, help="timed epochs per mode")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=adhoc_output("loader"))
    return p.parse_args(argv)


def reference_overhead(frames: np.ndarray, batch_size: int, rng: np.random.Generator, sort: bool) -> tuple[float, int]:
    """Overhead and distinct shapes when batches are padded to their own longest member."""
    order = np.argsort(frames) if sort else rng.permutation(len(frames))
    batches = [frames[order[i:i + batch_size]] for i in range(0, len(order) - batch_size + 1, batch_size)]
    padded = [features.padded_frames(int(b.max()), 16) for b in batches]
    real = sum(int(features.valid_frames(b * 160).sum()) for b in batches)
    return sum(p * len(b) for p, b in zip(padded, batches)) / real - 1, len(set(padded))


def padding_table(args: argparse.Namespace) -> list[dict]:
    rng = np.random.default_rng(args.seed)
    samples = (librispeech_like_durations(args.num_index, rng) * SR).astype(np.int64)
    index = ShardIndex([], "audio", SR, [str(i) for i in range(len(samples))], samples, samples // SR * 15)
    rows = []
    for batch_size in (16, 32):
        for buckets in (4, 6, 8, 12):
            config = load_config(None, [f"data.batch_size={batch_size}", f"data.num_buckets={buckets}"])
            data = SpeechData(index, config, train=True)
            rows.append({"batching": f"planned buckets ({buckets})", "batch_size": batch_size,
                         "overhead": data.padding_overhead(0), "shapes": len(data.shapes())})
        kept = features.num_frames(samples[samples <= 16.7 * SR])
        for name, sort in (("random, pad to batch max", False), ("length-sorted, pad to batch max", True)):
            over, shapes = reference_overhead(kept, batch_size, rng, sort)
            rows.append({"batching": name, "batch_size": batch_size, "overhead": over, "shapes": shapes})
    return rows


def loading_speed(args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(args.seed + 1)
    durations = np.minimum(librispeech_like_durations(args.num_utts, rng), 16.5)
    labels = load_labels()
    with tempfile.TemporaryDirectory() as tmp:
        utts = []
        for i, d in enumerate(durations):
            path = Path(tmp) / f"{i}.wav"
            audio = synthetic_speech(float(d), SR, rng)
            write_wav(path, audio, SR)
            utts.append(Utterance(f"u{i}", path, "a b c " * int(d), len(audio) / SR, len(audio), SR))
        write_mindrecord(utts, Path(tmp) / "mr", 2, labels, progress=False)
        audio_seconds = float(sum(u.duration for u in utts))
        out = {}
        for mode, train in (("train", True), ("eval", False)):
            config = load_config(None, [f"data.batch_size={args.batch_size}"])
            data = SpeechData(Path(tmp) / "mr", config, train=train)
            times = []
            for epoch in range(args.repeats + 1):          # the first epoch warms caches up
                start, n = time.perf_counter(), 0
                for feats, *_ in data.pipeline(epoch).create_tuple_iterator(num_epochs=1, output_numpy=True):
                    n += feats.shape[0]
                if epoch:
                    times.append(time.perf_counter() - start)
            used = audio_seconds * n / len(utts)
            med = statistics.median(times)
            out[mode] = {"utterances_per_s": n / med, "audio_seconds_per_s": used / med, "epoch_seconds": times}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging("ERROR")  # the planner warns once per configuration about skipped long utterances
    rows = padding_table(args)
    print(f"Padding overhead of one training epoch, {args.num_index} LibriSpeech-like utterances "
          "(speed perturbation 0.85–1.15, max 16.7 s):")
    print(f"{'batching':<34}{'batch':>6}{'overhead':>10}{'shapes':>8}")
    for r in rows:
        print(f"{r['batching']:<34}{r['batch_size']:>6}{100 * r['overhead']:>9.1f}%{r['shapes']:>8}")
    speed = loading_speed(args)
    print(f"\nLoading {args.num_utts} utterances from MindRecord, batch {args.batch_size}, median of {args.repeats} epochs:")
    for mode, s in speed.items():
        print(f"  {mode:<6}{s['utterances_per_s']:>8.1f} utterances/s {s['audio_seconds_per_s']:>9.0f} audio-s/s")
    atomic_write_json(args.output, {"machine": platform.platform(), "padding": rows, "loading": speed,
                                    "args": vars(args)})
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
