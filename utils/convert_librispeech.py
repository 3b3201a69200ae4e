"""Convert a LibriSpeech-layout folder to 16 kHz mono 16-bit wav files and a JSON manifest.

Usage:
    python utils/convert_librispeech.py --input_dir LibriSpeech/dev-clean \\
        --dest_dir data/dev-clean-wav --output_json data/librispeech-dev-clean-wav.json \\
        [--speed 0.9 1.1] [--parallel 4]

Works on real LibriSpeech and on any folder in its layout.  Transcripts are normalized to the
labels; utterances that cannot be used (missing/corrupt/empty audio, transcripts with characters
that have no spoken form) are skipped and reported with their file and line; audio recorded at a
lower rate (e.g. 8 kHz telephone speech) is upsampled with a warning and counted in the summary.
Audio extensions are matched in any letter case (``.flac``, ``.FLAC``).  Re-running reuses wav files
already written, so an interrupted conversion resumes.  ``--speed`` adds offline
speed-perturbed copies to each manifest entry's ``files`` (NVIDIA's manifest convention).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.data.librispeech import convert_librispeech  # noqa: E402
from src.log import setup_logging  # noqa: E402

log = logging.getLogger("convert_librispeech")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_dir", required=True, help="a LibriSpeech subset folder, e.g. LibriSpeech/dev-clean")
    p.add_argument("--dest_dir", required=True, help="where the wav files go (folders mirror the input)")
    p.add_argument("--output_json", required=True, help="manifest to write; fnames are relative to its folder")
    p.add_argument("--speed", type=float, nargs="*", default=[], help="extra offline speed factors, e.g. 0.9 1.1")
    p.add_argument("--parallel", type=int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--sample_rate", type=int, default=16000)
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    start = time.perf_counter()
    try:
        report = convert_librispeech(args.input_dir, args.dest_dir, args.output_json, speeds=args.speed,
                                     parallel=args.parallel, sample_rate=args.sample_rate,
                                     progress=not args.no_progress)
    except (FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        return 1
    log.info("%s -> %s in %.1f s", report.summary(), args.output_json, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
