"""Usage:
    python utils/make_synthetic_corpus.py --output_dir DIR [--preset tiny|demo|generalize] [--seed N] [--jobs N]
        [--subsets train-clean,dev-clean,test-clean] [--speakers 120,10,10] [--chapters_per_speaker 1]
        [--utts_per_chapter 16,10,10] [--min_words 5] [--max_words 20]
        [--voices flite-rms:0.3,flite-kal16:0.2,festival-kal:0.15,espeak:0.35] [--texts fortunes,bible]
        [--text_pools disjoint|shared] [--vocabulary 1000] [--acoustics 0.5] [--allow_piper]
        [--force] [--no_progress]

Generates a synthetic speech corpus in LibriSpeech's exact layout under DIR/LibriSpeech:
<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<NNNN>.flac (16 kHz mono 16-bit), one
<speaker>-<chapter>.trans.txt per chapter, SPEAKERS.TXT, CHAPTERS.TXT and corpus.json.
Texts are fortunes and the King James Bible (see utils/corpus/synthetic.py).

Voices: flite-rms, flite-kal16, festival-kal and espeak (Debian packages), and the optional neural
voices hibari (US female), kokoro (Kokoro-82M, blends of a male and a female Japanese style speaking
accented English; slow, keep its share at most 25 %) and piper (US male, only with --allow_piper).
The neural voices need `source scripts/common.sh && ensure_voices` (requirements-voices.txt).
Voices reserved for independent evaluation (flite slt and awb, festival slt and ked, Kokoro jf_nezumi)
are refused.

Presets: "tiny" (12 espeak-ng utterances, a test fixture made in seconds), "demo" (default: about 2 h of
training audio from 120 speakers, dev and test sets of 100 utterances from 10 speakers each, sentences
made of the text pool's 1,000 most frequent words) and "generalize" (about 4 h from 200 speakers, dev
and test 128 utterances from 16 speakers each; Debian voices plus Kokoro blends at 15 %, per-utterance
rooms, noise, levels and codecs at --acoustics 0.5, sentences of any word; hibari is kept out of
training so utils/probe_corpus.py's new_engine set measures an unseen engine; needs the neural
voices).  Options given explicitly override the preset.  Per-subset counts take one value for every
subset or one per subset.

Re-running with the same settings does nothing; an interrupted or damaged corpus is completed.
A corpus made with other settings is refused unless --force (which deletes and regenerates it).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.corpus.neural import VoicesNotInstalledError  # noqa: E402
from utils.corpus.synthetic import PRESETS, SyntheticCorpusError, generate_corpus, resolve_config  # noqa: E402
from src.log import setup_logging  # noqa: E402

log = logging.getLogger("make_synthetic_corpus")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", required=True, help="the corpus goes to OUTPUT_DIR/LibriSpeech")
    p.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    p.add_argument("--seed", type=int, help="seed of every random choice (preset: 0)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--subsets", help="comma-separated subset folder names")
    p.add_argument("--speakers", help="speakers per subset: N or N1,N2,...")
    p.add_argument("--chapters_per_speaker", help="chapters per speaker: N or N1,N2,...")
    p.add_argument("--utts_per_chapter", help="utterances per chapter: N or N1,N2,...")
    p.add_argument("--min_words", type=int, help="fewest words per sentence (after number expansion)")
    p.add_argument("--max_words", type=int, help="most words per sentence")
    p.add_argument("--voices", help="VOICE[:WEIGHT],... from flite-rms, flite-kal16, festival-kal, espeak, hibari, "
                                    "kokoro, piper (neural ones: requirements-voices.txt)")
    p.add_argument("--texts", help="comma-separated text sources: fortunes, bible")
    p.add_argument("--text_pools", choices=("disjoint", "shared"),
                   help="disjoint: each source passage feeds one subset only (preset: disjoint)")
    p.add_argument("--vocabulary", type=int,
                   help="only sentences of the text pool's N most frequent words; 0: any word (preset demo: 1000)")
    p.add_argument("--acoustics", type=float,
                   help="strength in [0, 1] of per-utterance acoustic variety (rooms, noise, levels, telephone/GSM/"
                        "AMR/MP3 codecs, band limits); 0: none (presets tiny, demo: 0; generalize: 0.5)")
    p.add_argument("--allow_piper", action="store_true",
                   help="permit the Piper voice 'joe'. Licence caveat: Piper's engine is GPL-3.0-or-later (it runs "
                        "only as a separate process, never imported or shipped here) and the voice is fine-tuned "
                        "from a voice whose training data is licensed for research use only; check that your use "
                        "of the generated audio is allowed before enabling it")
    p.add_argument("--force", action="store_true", help="regenerate a corpus made with other settings")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    overrides = {k: getattr(args, k) for k in ("seed", "subsets", "speakers", "chapters_per_speaker",
                                                 "utts_per_chapter", "min_words", "max_words", "voices",
                                                 "texts", "text_pools", "vocabulary", "acoustics")}
    try:
        config = resolve_config(args.preset, **overrides)
        report = generate_corpus(args.output_dir, config, jobs=args.jobs, force=args.force,
                                 progress=not args.no_progress, allow_piper=args.allow_piper)
    except (SyntheticCorpusError, ValueError, VoicesNotInstalledError) as e:
        log.error("%s", e)
        return 1
    if report.failures:
        log.warning("%d utterances could not be synthesized and were left out: %s", len(report.failures),
                    ", ".join(u for u, _ in report.failures[:10]) + (" ..." if len(report.failures) > 10 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
