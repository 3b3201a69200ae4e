"""Usage:
    python utils/probe_corpus.py --corpus_dir demo_work/corpus --output_dir probe [--utterances 40]
        [--sets seen,new_voice,new_text,pitch,tempo,channel] [--train_subset train-clean]
        [--heldout_subset test-clean] [--jobs 2] [--no_progress]
    python eval.py --config CFG --checkpoint CKPT --manifest probe/*.json --output_dir probe/eval

Renders probe sets from a generated corpus's plan (src/data/probe.py): training utterances exactly as
trained on (seen), the same texts in held-out voices (new_voice), held-out texts in training voices
(new_text), and training utterances with the pitch, tempo or channel changed.  Their WERs, side by
side, show whether a model generalises or has memorised its corpus.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.data.probe import PROBE_SETS, load_plan, write_probe_sets  # noqa: E402
from src.data.synthetic import SyntheticCorpusError, check_tools  # noqa: E402
from src.log import setup_logging  # noqa: E402

log = logging.getLogger("probe_corpus")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus_dir", required=True, help="the corpus (its corpus.json, or the folder above LibriSpeech/)")
    p.add_argument("--output_dir", required=True, help="OUTPUT_DIR/<set>/*.wav and OUTPUT_DIR/<set>.json")
    p.add_argument("--utterances", type=int, default=40, help="utterances per set")
    p.add_argument("--sets", default=",".join(PROBE_SETS), help="comma-separated, from " + ", ".join(PROBE_SETS))
    p.add_argument("--train_subset", help="the subset the model was trained on (default: the corpus's first)")
    p.add_argument("--heldout_subset", help="speakers and texts the model never saw (default: the corpus's last)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--no_progress", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    if args.utterances < 1:
        log.error("--utterances must be at least 1")
        return 2
    try:
        plan = load_plan(args.corpus_dir)
        check_tools(plan.config)
        manifests = write_probe_sets(plan, args.output_dir, n=args.utterances, jobs=args.jobs,
                                     sets=[s.strip() for s in args.sets.split(",") if s.strip()],
                                     train_subset=args.train_subset, heldout_subset=args.heldout_subset,
                                     progress=not args.no_progress)
    except (FileNotFoundError, ValueError, SyntheticCorpusError) as e:
        log.error("%s", e)
        return 1
    print(f"evaluate with: python eval.py --config CFG --checkpoint CKPT --manifest "
          f"{' '.join(str(m) for m in manifests.values())} --output_dir {Path(args.output_dir) / 'eval'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
