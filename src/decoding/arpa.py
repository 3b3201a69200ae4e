"""Word n-gram language models in ARPA format, estimated from transcripts, for beam search and tests.

Usage:
    python -m src.decoding.arpa --input data/train-clean-100.json [more.json | text.txt ...] \\
        --output lm/3-gram.arpa [--order 3] [--normalize]

Inputs are manifest JSON files (their ``transcript`` fields) or plain text files (one sentence a
line).  Words are lower-cased to match labels.json.  The model is interpolated Kneser-Ney with one
absolute discount per order (D = n1 / (n1 + 2 n2) from the count-of-counts, 0.5 when the corpus is
too small to estimate it), written as a back-off ARPA file: interpolated Kneser-Ney has exactly that
form, with the interpolation weight of a context as its back-off weight.  The file loads in KenLM
(and so in the beam search decoder); for large corpora KenLM's own ``lmplz`` is the faster tool.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Iterator, Sequence

log = logging.getLogger(__name__)

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
_NEVER = -99.0  # log10 probability ARPA files give <s>, which is never predicted
_FALLBACK_DISCOUNT = 0.5

Ngram = tuple[str, ...]


def _discount(counts: Counter) -> float:
    """Absolute discount of one order from how many n-grams were seen once (n1) and twice (n2)."""
    n1 = sum(1 for c in counts.values() if c == 1)
    n2 = sum(1 for c in counts.values() if c == 2)
    if n1 == 0 or n2 == 0:
        return _FALLBACK_DISCOUNT
    d = n1 / (n1 + 2 * n2)
    return d if 0.0 < d < 1.0 else _FALLBACK_DISCOUNT


def _adjusted_counts(sentences: Iterable[Sequence[str]], order: int) -> list[Counter]:
    """Counts per order (index k holds (k+1)-grams): raw counts for the highest order and for n-grams
    starting with <s> (nothing precedes them); for the other n-grams the number of distinct words seen
    right before them (Kneser-Ney continuation counts)."""
    raw = [Counter() for _ in range(order)]
    for words in sentences:
        padded = (BOS, *words, EOS)
        for n in range(1, order + 1):
            table = raw[n - 1]
            for i in range(len(padded) - n + 1):
                table[padded[i:i + n]] += 1
    del raw[0][(BOS,)]
    counts = [Counter() for _ in range(order)]
    counts[order - 1] = raw[order - 1]
    for k in range(order - 2, -1, -1):
        counts[k].update({g: c for g, c in raw[k].items() if g[0] == BOS})
        for gram in raw[k + 1]:  # each distinct longer n-gram is one left context of its suffix
            counts[k][gram[1:]] += 1
    return counts


def estimate(sentences: Iterable[Sequence[str]], order: int = 3) -> tuple[list[dict[Ngram, float]],
                                                                             list[dict[Ngram, float]]]:
    """Interpolated Kneser-Ney: per order k, {n-gram: log10 p} and {context: log10 back-off weight}.

    ``sentences`` are lists of words (no <s>/</s>).  Index k of each list holds (k+1)-grams.
    """
    if order < 2:
        raise ValueError(f"order must be at least 2 (KenLM loads bigram models and up), got {order}")
    counts = _adjusted_counts(sentences, order)
    if not counts[0]:
        raise ValueError("no words to estimate a language model from")
    probs: list[dict[Ngram, float]] = [dict() for _ in range(order)]
    backoffs: list[dict[Ngram, float]] = [dict() for _ in range(order)]

    # Unigrams interpolate with the uniform distribution over the vocabulary (+ <unk>, without <s>).
    d = _discount(counts[0])
    total = sum(counts[0].values())
    vocab_size = len(counts[0]) + (UNK not in counts[0])
    uniform = d * len(counts[0]) / total / vocab_size
    p1 = {g: max(c - d, 0.0) / total + uniform for g, c in counts[0].items()}
    p1.setdefault((UNK,), uniform)
    lower = p1

    for k in range(1, order):
        d = _discount(counts[k])
        context_total: dict[Ngram, float] = defaultdict(float)
        context_types: dict[Ngram, int] = defaultdict(int)
        for gram, c in counts[k].items():
            context_total[gram[:-1]] += c
            context_types[gram[:-1]] += 1
        gamma = {h: d * context_types[h] / context_total[h] for h in context_total}
        current = {g: max(c - d, 0.0) / context_total[g[:-1]] + gamma[g[:-1]] * lower[g[1:]]
                   for g, c in counts[k].items()}
        backoffs[k - 1] = {h: math.log10(w) for h, w in gamma.items()}
        probs[k - 1] = {g: math.log10(p) for g, p in lower.items()}
        lower = current
    probs[order - 1] = {g: math.log10(p) for g, p in lower.items()}
    probs[0][(BOS,)] = _NEVER
    return probs, backoffs


def format_arpa(probs: Sequence[dict[Ngram, float]], backoffs: Sequence[dict[Ngram, float]]) -> Iterator[str]:
    """The lines of an ARPA file (n-grams sorted within each order, so output is reproducible)."""
    yield ""
    yield "\\data\\"
    for k, table in enumerate(probs):
        yield f"ngram {k + 1}={len(table)}"
    for k, table in enumerate(probs):
        yield ""
        yield f"\\{k + 1}-grams:"
        for gram in sorted(table):
            line = f"{table[gram]:.6f}\t{' '.join(gram)}"
            if k + 1 < len(probs) and gram in backoffs[k]:
                line += f"\t{backoffs[k][gram]:.6f}"
            yield line
    yield ""
    yield "\\end\\"


def write_arpa(path: str | os.PathLike, sentences: Iterable[str], order: int = 3) -> Path:
    """Estimate an ``order``-gram model from sentences (strings of space-separated words, lower-cased
    here) and write it atomically as ARPA text.  Returns the path."""
    from src.fileio import atomic_open

    tokenized = [s.lower().split() for s in sentences]
    tokenized = [t for t in tokenized if t]
    probs, backoffs = estimate(tokenized, order)
    path = Path(path)
    with atomic_open(path, "w", encoding="utf-8") as f:
        for line in format_arpa(probs, backoffs):
            f.write(line + "\n")
    log.info("%s: %d-gram model, %s", path, order, ", ".join(f"{len(t)} {k + 1}-grams" for k, t in enumerate(probs)))
    return path


def read_sentences(path: str | os.PathLike, normalize: bool = False) -> list[str]:
    """Transcripts of a manifest (``.json``) or the lines of a text file.  With ``normalize`` text-file
    lines go through src.text.normalize (numbers, abbreviations); lines it cannot normalize are
    skipped with a warning."""
    path = Path(path)
    if path.suffix == ".json":
        from src.data.manifest import load_manifest_entries

        return [str(e["transcript"]) for e in load_manifest_entries(path)]
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"text file not found: {path}") from None
    if not normalize:
        return lines
    from src.text.normalize import TextNormalizationError, normalize_text

    out, skipped = [], 0
    for line in lines:
        try:
            out.append(normalize_text(line))
        except TextNormalizationError:
            skipped += 1
    if skipped:
        log.warning("%s: %d lines could not be normalized and were skipped", path, skipped)
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", nargs="+", required=True, help="manifest JSON files and/or text files")
    p.add_argument("--output", required=True, help="ARPA file to write")
    p.add_argument("--order", type=int, default=3)
    p.add_argument("--normalize", action="store_true", help="normalize text-file lines (numbers, abbreviations)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from src.log import setup_logging

    setup_logging()
    try:
        sentences = [s for path in args.input for s in read_sentences(path, args.normalize)]
        write_arpa(args.output, sentences, args.order)
    except (FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
