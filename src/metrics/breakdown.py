"""Where the errors are: WER per group of utterances and word accuracy by training frequency.

Both read the per-utterance reports eval.py and postprocess.py write (``src.tasks.asr.utterance_report``)
and count with the one alignment of :mod:`src.metrics.wer`, so totals match ``metrics.json``.
"""
from __future__ import annotations

import collections
import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

from src.metrics.wer import ErrorRates, word_matches

# Columns of the per-utterance report (written by src.tasks.asr.utterance_report).
REPORT_COLUMNS = ("utt_id", "word_errors", "reference_words", "reference", "hypothesis")

# Training-frequency bins of a reference word: (label, fewest, most occurrences); None: no upper bound.
FREQUENCY_BINS: tuple[tuple[str, int, int | None], ...] = (("10+", 10, None), ("1-9", 1, 9), ("0", 0, 0))


@dataclass(frozen=True)
class ReportRow:
    utt_id: str
    reference: str
    hypothesis: str


def read_report(path: str | Path) -> list[ReportRow]:
    """The rows of an eval.py ``<set>.tsv`` (header: ``REPORT_COLUMNS``)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = {"utt_id", "reference", "hypothesis"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: not a per-utterance report (no column {', '.join(sorted(missing))})")
        return [ReportRow(r["utt_id"], r["reference"] or "", r["hypothesis"] or "") for r in reader]


def wer_by_group(rows: Iterable[ReportRow], group_of: Callable[[str], str]) -> dict[str, dict]:
    """{group: {"wer": %, "words": n, "utterances": n}} with ``group_of(utt_id)`` naming each row's group,
    in order of first appearance."""
    groups: dict[str, ErrorRates] = {}
    for r in rows:
        groups.setdefault(group_of(r.utt_id), ErrorRates()).add(r.reference, r.hypothesis)
    return {g: {"wer": round(e.wer, 2), "words": e.words.reference_length, "utterances": e.utterances}
            for g, e in groups.items()}


def word_accuracy_by_frequency(rows: Iterable[ReportRow], train_counts: Mapping[str, int]) -> dict[str, dict]:
    """{bin: {"correct": %, "words": n}}: the share of reference words the hypothesis has right (aligned and
    equal), for words seen 10+ times, 1-9 times and never in the training transcripts."""
    hits, totals = collections.Counter(), collections.Counter()
    for r in rows:
        for word, right in word_matches(r.reference, r.hypothesis):
            label = _bin(train_counts.get(word, 0))
            totals[label] += 1
            hits[label] += right
    return {label: {"correct": round(100.0 * hits[label] / totals[label], 2) if totals[label] else None,
                    "words": totals[label]} for label, _, _ in FREQUENCY_BINS}


def _bin(count: int) -> str:
    for label, low, high in FREQUENCY_BINS:
        if count >= low and (high is None or count <= high):
            return label
    raise AssertionError(f"no frequency bin for {count}")
