"""Word and character error rates: the one implementation used by training, eval.py and postprocess.py.

Errors are the minimum number of substitutions, insertions and deletions (Levenshtein alignment)
turning the reference into the hypothesis.  WER is over whitespace-separated words; CER is over
characters, spaces included (word boundaries are output symbols of the model).  Rates are totals over
a data set (sum of errors / sum of reference lengths), never averages of per-utterance rates.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import Levenshtein


@dataclass(frozen=True)
class EditCounts:
    substitutions: int = 0
    insertions: int = 0
    deletions: int = 0
    reference_length: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.insertions + self.deletions

    def __add__(self, other: "EditCounts") -> "EditCounts":
        return EditCounts(self.substitutions + other.substitutions, self.insertions + other.insertions,
                          self.deletions + other.deletions, self.reference_length + other.reference_length)

    def rate(self) -> float:
        """Errors per reference token in percent (inf for errors against an empty reference)."""
        if self.reference_length == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return 100.0 * self.errors / self.reference_length


def edit_counts(reference: Sequence, hypothesis: Sequence) -> EditCounts:
    """Alignment counts between two token sequences (strings or lists of words)."""
    s = i = d = 0
    for op, *_ in Levenshtein.editops(reference, hypothesis):
        if op == "replace":
            s += 1
        elif op == "insert":
            i += 1
        else:
            d += 1
    return EditCounts(s, i, d, len(reference))


def word_matches(reference: str, hypothesis: str) -> list[tuple[str, bool]]:
    """Each reference word with whether the alignment keeps it unchanged in the hypothesis."""
    ref = reference.split()
    return [(w, tag == "equal") for tag, i1, i2, _, _ in Levenshtein.opcodes(ref, hypothesis.split())
            for w in ref[i1:i2]]


def word_counts(reference: str, hypothesis: str) -> EditCounts:
    return edit_counts(reference.split(), hypothesis.split())


def char_counts(reference: str, hypothesis: str) -> EditCounts:
    return edit_counts(" ".join(reference.split()), " ".join(hypothesis.split()))


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER in percent."""
    return ErrorRates.of(references, hypotheses).wer


def cer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus CER in percent."""
    return ErrorRates.of(references, hypotheses).cer


@dataclass
class ErrorRates:
    """Running totals over a data set: ``add`` each utterance, read ``wer``/``cer``."""
    words: EditCounts = EditCounts()
    chars: EditCounts = EditCounts()
    utterances: int = 0

    @classmethod
    def of(cls, references: Sequence[str], hypotheses: Sequence[str]) -> "ErrorRates":
        if len(references) != len(hypotheses):
            raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
        totals = cls()
        for r, h in zip(references, hypotheses):
            totals.add(r, h)
        return totals

    def add(self, reference: str, hypothesis: str) -> tuple[EditCounts, EditCounts]:
        """Score one utterance; returns its (word, char) counts for per-utterance reports."""
        w, c = word_counts(reference, hypothesis), char_counts(reference, hypothesis)
        self.words, self.chars, self.utterances = self.words + w, self.chars + c, self.utterances + 1
        return w, c

    @property
    def wer(self) -> float:
        return self.words.rate()

    @property
    def cer(self) -> float:
        return self.chars.rate()

    def as_dict(self) -> dict:
        """The metrics.json entry of a data set."""
        return {"wer": round(self.wer, 4), "cer": round(self.cer, 4), "utterances": self.utterances,
                "words": self.words.reference_length, "word_errors": self.words.errors,
                "substitutions": self.words.substitutions, "insertions": self.words.insertions,
                "deletions": self.words.deletions}
