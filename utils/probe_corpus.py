"""Usage:
    python utils/probe_corpus.py --corpus_dir demo_work/corpus --output_dir probe [--utterances 40]
        [--sets seen,new_voice,new_text,pitch,tempo,channel,open_text,new_engine] [--train_subset train-clean]
        [--heldout_subset test-clean] [--new_engine hibari] [--allow_piper] [--jobs 2] [--no_progress]
    python eval.py --config CFG --checkpoint CKPT --manifest probe/*.json --output_dir probe/eval

Renders probe sets from a generated corpus's plan (utils/corpus/probe.py): training utterances exactly as
trained on (seen), the same texts in held-out voices (new_voice), held-out texts in training voices
(new_text), training utterances with the pitch, tempo or channel changed, unrestricted sentences
(open_text), and the training texts read by a synthesizer family no training speaker uses
(new_engine).  Their WERs, side by side, show whether a model generalises or has memorised its corpus.

By default every set is made; new_engine only when an engine family outside training is installed
(the neural voices: `source scripts/common.sh && ensure_voices`), otherwise it is left out with a note.
Piper (GPL-3.0-or-later engine, run as a separate process; its voice 'joe' descends from a voice whose
training data is licensed for research use only) is used only with --allow_piper.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.corpus.probe import ALL_PROBE_SETS, NEW_ENGINE_ORDER, available_sets, load_plan, write_probe_sets  # noqa: E402
from utils.corpus.synthetic import SyntheticCorpusError, check_tools  # noqa: E402
from utils.corpus.neural import ReservedVoiceError, VoicesNotInstalledError  # noqa: E402
from src.log import setup_logging  # noqa: E402

log = logging.getLogger("probe_corpus")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus_dir", required=True, help="the corpus (its corpus.json, or the folder above LibriSpeech/)")
    p.add_argument("--output_dir", required=True, help="OUTPUT_DIR/<set>/*.wav and OUTPUT_DIR/<set>.json")
    p.add_argument("--utterances", type=int, default=40, help="utterances per set")
    p.add_argument("--sets", help="comma-separated, from " + ", ".join(ALL_PROBE_SETS)
                   + " (default: all that can be made here)")
    p.add_argument("--train_subset", help="the subset the model was trained on (default: the corpus's first)")
    p.add_argument("--heldout_subset", help="speakers and texts the model never saw (default: the corpus's last)")
    p.add_argument("--new_engine", choices=NEW_ENGINE_ORDER,
                   help="engine family of the new_engine set (default: the first of "
                        + ", ".join(NEW_ENGINE_ORDER) + " that training did not use and that is installed)")
    p.add_argument("--allow_piper", action="store_true",
                   help="permit the Piper voice 'joe' (GPL-3.0-or-later engine, run as a separate process; the "
                        "voice is fine-tuned from a voice whose training data is licensed for research use only)")
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
        check_tools(plan.config, allow_piper=args.allow_piper)
        if args.sets:
            sets = [s.strip() for s in args.sets.split(",") if s.strip()]
        else:
            sets = list(available_sets(plan, args.train_subset, args.allow_piper))
            if args.new_engine and "new_engine" not in sets:
                sets.append("new_engine")  # asked for by name: its error says why it cannot be made
            if "new_engine" not in sets:
                log.warning("new_engine left out: no engine family outside training is installed here "
                            "(source scripts/common.sh && ensure_voices)")
        manifests = write_probe_sets(plan, args.output_dir, n=args.utterances, jobs=args.jobs, sets=sets,
                                     train_subset=args.train_subset, heldout_subset=args.heldout_subset,
                                     progress=not args.no_progress, allow_piper=args.allow_piper,
                                     new_engine=args.new_engine)
    except (FileNotFoundError, ValueError, SyntheticCorpusError, VoicesNotInstalledError, ReservedVoiceError) as e:
        log.error("%s", e)
        return 1
    print(f"evaluate with: python eval.py --config CFG --checkpoint CKPT --manifest "
          f"{' '.join(str(m) for m in manifests.values())} --output_dir {Path(args.output_dir) / 'eval'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
