"""Where the errors are: WER per group of utterances and word accuracy by training frequency.

Both read the per-utterance reports eval.py and postprocess.py write (``src.inference.utterance_report``)
and count with the one alignment of :mod:`src.metrics.wer`, so totals match ``metrics.json``.
"""
from __future__ import annotations

import collections
import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

import Levenshtein

from src.metrics.wer import word_counts

# Training-frequency bins of a reference word: (label, fewest, most occurrences); None: no upper bound.
FREQUENCY_BINS: tuple[tuple[str, int, int | None], ...] = (("10+", 10, None), ("1-9", 1, 9), ("0", 0, 0))


@dataclass(frozen=True)
class ReportRow:
    utt_id: str
    reference: str
    hypothesis: str


def read_report(path: str | Path) -> list[ReportRow]:
    """The rows of an eval.py ``<set>.tsv`` (header utt_id, word_errors, reference_words, reference, hypothesis)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = {"utt_id", "reference", "hypothesis"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: not a per-utterance report (no column {', '.join(sorted(missing))})")
        return [ReportRow(r["utt_id"], r["reference"] or "", r["hypothesis"] or "") for r in reader]


def wer_by_group(rows: Iterable[ReportRow], group_of: Callable[[str], str]) -> dict[str, dict]:
    """{group: {"wer": %, "words": n, "utterances": n}} with ``group_of(utt_id)`` naming each row's group,
    in order of first appearance."""
    errors: dict[str, list[int]] = {}
    for r in rows:
        c = word_counts(r.reference, r.hypothesis)
        e = errors.setdefault(group_of(r.utt_id), [0, 0, 0])
        e[0] += c.errors
        e[1] += c.reference_length
        e[2] += 1
    return {g: {"wer": round(100.0 * err / max(n, 1), 2), "words": n, "utterances": u}
            for g, (err, n, u) in errors.items()}


def word_accuracy_by_frequency(rows: Iterable[ReportRow], train_counts: Mapping[str, int]) -> dict[str, dict]:
    """{bin: {"correct": %, "words": n}}: the share of reference words the hypothesis has right (aligned and
    equal), for words seen 10+ times, 1-9 times and never in the training transcripts."""
    hits, totals = collections.Counter(), collections.Counter()
    for r in rows:
        ref, hyp = r.reference.split(), r.hypothesis.split()
        for tag, i1, i2, _, _ in Levenshtein.opcodes(ref, hyp):
            for word in ref[i1:i2]:
                label = _bin(train_counts.get(word, 0))
                totals[label] += 1
                hits[label] += tag == "equal"
    return {label: {"correct": round(100.0 * hits[label] / totals[label], 2) if totals[label] else None,
                    "words": totals[label]} for label, _, _ in FREQUENCY_BINS}


def _bin(count: int) -> str:
    for label, low, high in FREQUENCY_BINS:
        if count >= low and (high is None or count <= high):
            return label
    raise AssertionError(f"no frequency bin for {count}")
