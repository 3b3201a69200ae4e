"""Usage:
    python utils/make_kws_corpus.py --output_dir DIR [--quick | --preset quick|demo] [--seed N]
        [--speakers N] [--repeats N] [--words w1,w2,...] [--others_per_speaker N]
        [--voices flite-rms:0.3,flite-kal16:0.2,festival-kal:0.15,espeak:0.35] [--background_seconds S]
        [--jobs N] [--force] [--no_progress]

Generates a keyword-spotting corpus in Speech Commands' exact layout in DIR, spoken by the
project's synthetic voices (utils/corpus/kws_corpus.py): DIR/<word>/<speaker>_nohash_<n>.wav
(16 kHz mono 16-bit, exactly one second), DIR/validation_list.txt, DIR/testing_list.txt,
DIR/_background_noise_/*.wav and DIR/corpus.json.  Convert it like the real dataset:
    python utils/convert_speech_commands.py --input_dir DIR --output_dir OUT

Presets: "demo" (default: 160 speakers, 128 for training and 16 each for validation and test, each
saying the 35 words of Speech Commands v0.02 and 10 other words once: 7,200 clips) and "quick"
(--quick: 6 espeak-ng speakers, the 10 commands and 2 other words each, made in seconds; a test
fixture).  Options given explicitly override the preset.  --speakers counts all splits (10 % each
for validation and test, at least one); --repeats is the number of clips per speaker and word.

Re-running with the same settings reuses every file; a corpus made with other settings is refused
unless --force (which deletes and regenerates it).  Numbers measured on this corpus are not
comparable with results on the real Speech Commands.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.log import setup_logging  # noqa: E402
from utils.corpus.kws_corpus import PRESETS, KwsCorpusError, generate_kws_corpus, resolve_config  # noqa: E402
from utils.corpus.synthetic import SyntheticCorpusError  # noqa: E402

log = logging.getLogger("make_kws_corpus")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", required=True, help="the Speech Commands root to create")
    preset = p.add_mutually_exclusive_group()
    preset.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    preset.add_argument("--quick", dest="preset", action="store_const", const="quick",
                        help="the tiny test preset (same as --preset quick)")
    p.add_argument("--seed", type=int, help="seed of every random choice (presets: 0)")
    p.add_argument("--speakers", type=int, help="speakers in all splits (at least 3)")
    p.add_argument("--repeats", type=int, help="clips per speaker and word")
    p.add_argument("--words", help="comma-separated words every speaker says (demo: the 35 words of v0.02)")
    p.add_argument("--others_per_speaker", type=int, help="extra words per speaker, for _unknown_ variety")
    p.add_argument("--voices", help="VOICE[:WEIGHT],... as for utils/make_synthetic_corpus.py")
    p.add_argument("--background_seconds", type=float, help="length of each _background_noise_ file")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--force", action="store_true", help="regenerate a corpus made with other settings")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    overrides = {k: getattr(args, k) for k in ("seed", "speakers", "repeats", "words", "others_per_speaker",
                                                 "voices", "background_seconds")}
    try:
        config = resolve_config(args.preset, **overrides)
        report = generate_kws_corpus(args.output_dir, config, jobs=args.jobs, force=args.force,
                                     progress=not args.no_progress)
    except (KwsCorpusError, SyntheticCorpusError, ValueError) as e:
        log.error("%s", e)
        return 1
    if report.failures:
        log.warning("%d clips could not be synthesized and were left out: %s", len(report.failures),
                    ", ".join(r for r, _ in report.failures[:10]) + (" ..." if len(report.failures) > 10 else ""))
    log.info("generated in %.1f s", report.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
