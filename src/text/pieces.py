"""Learn a word-piece vocabulary (byte-pair encoding within words) from training transcripts.

Usage:
    python -m src.text.pieces --input data/train-clean.json [more.json | text.txt ...] \\
        --output pieces.json [--size 256] [--base labels.json]

Writes a labels file (src/text/labels.py): the base alphabet, then the learned pieces in the order
they were learned.  Learning starts from each word's characters and repeatedly joins the most
frequent pair of neighbouring tokens (counted over the word frequencies; ties go to the pair that
sorts first, so the result depends on the transcripts alone) into a new piece, until the vocabulary
has ``size`` labels or no pair occurs twice.  Frequent words end up as one token and rare ones as a
few pieces, so a CTC model emits fewer, longer tokens and misspells less; any word remains
spellable from the alphabet.
"""
from __future__ import annotations

import argparse
import collections
import logging
import sys
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from src.fileio import atomic_write_json
from src.text.labels import WORD_SEPARATOR, Labels, load_labels

log = logging.getLogger(__name__)

MIN_PAIR_COUNT = 2  # a pair seen once is a whole rare word, not a reusable piece
TOP_WORDS = 100     # the summary line says how many of this many most frequent words are one token


def word_counts(transcripts: Iterable[str], base: Labels, source: str = "") -> collections.Counter[str]:
    """How often each word occurs in ``transcripts``.  Raises ValueError naming the transcript (and
    ``source``, e.g. its file) with characters outside ``base``."""
    counts: collections.Counter[str] = collections.Counter()
    for k, text in enumerate(transcripts):
        unknown = base.unknown_chars(text)
        if unknown:
            where = f"{source}: " if source else ""
            raise ValueError(f"{where}transcript {k} (counted from 0) has characters outside the labels "
                             f"{unknown!r}: {text!r}")
        counts.update(w for w in text.split(WORD_SEPARATOR) if w)
    return counts


def learn_pieces(transcripts: Iterable[str], base: Labels, size: int) -> Labels:
    """Base labels plus up to ``size - len(base.symbols)`` pieces learned from ``transcripts``."""
    return pieces_from_counts(word_counts(transcripts, base), base, size)


def pieces_from_counts(counts: Mapping[str, int], base: Labels, size: int) -> Labels:
    """Base labels plus up to ``size - len(base.symbols)`` pieces learned from word frequencies.

    Raises ValueError for a size below the base alphabet's or a base that already has pieces.
    """
    if base.pieces:
        raise ValueError("the base labels already hold word pieces; start from a character alphabet")
    if size < len(base.symbols):
        raise ValueError(f"size {size} is smaller than the base alphabet ({len(base.symbols)} labels)")
    words = {tuple(w): c for w, c in counts.items()}
    pieces: list[str] = []
    while len(base.symbols) + len(pieces) < size:
        pairs: collections.Counter[tuple[str, str]] = collections.Counter()
        for tokens, c in words.items():
            for pair in zip(tokens, tokens[1:]):
                pairs[pair] += c
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        if pairs[best] < MIN_PAIR_COUNT:
            break
        joined = best[0] + best[1]
        pieces.append(joined)
        words = {_join(tokens, best, joined): c for tokens, c in words.items()}
    return Labels(base.symbols + pieces)


def _join(tokens: tuple[str, ...], pair: tuple[str, str], joined: str) -> tuple[str, ...]:
    out, i = [], 0
    while i < len(tokens):
        if i + 1 < len(tokens) and (tokens[i], tokens[i + 1]) == pair:
            out.append(joined)
            i += 2
        else:
            out.append(tokens[i])
            i += 1
    return tuple(out)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", nargs="+", required=True, help="manifest JSON files and/or text files")
    p.add_argument("--output", required=True, help="labels file to write")
    p.add_argument("--size", type=int, default=256, help="labels in all, alphabet included (blank not counted)")
    p.add_argument("--base", default="labels.json", help="character alphabet to start from")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from src.decoding.arpa import read_sentences
    from src.log import setup_logging

    setup_logging()
    try:
        base = load_labels(args.base)
        counts: collections.Counter[str] = collections.Counter()
        separators = 0
        for path in args.input:
            texts = [s.lower() for s in read_sentences(path)]
            counts += word_counts(texts, base, source=str(path))
            separators += sum(t.count(WORD_SEPARATOR) for t in texts)
        labels = pieces_from_counts(counts, base, args.size)
    except (FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        return 1
    atomic_write_json(args.output, labels.symbols, indent=None)
    tokens = separators + sum(c * len(labels.split_word(w)) for w, c in counts.items())
    chars = separators + sum(c * len(w) for w, c in counts.items())
    whole = sum(len(labels.split_word(w)) == 1 for w, _ in counts.most_common(TOP_WORDS))
    log.info("wrote %s: %d labels (%d pieces); the transcripts are %d tokens against %d characters "
             "(%.2fx fewer); %d of the %d most frequent words are one token", Path(args.output),
             len(labels.symbols), len(labels.pieces), tokens, chars, chars / max(tokens, 1), whole,
             min(TOP_WORDS, len(counts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
