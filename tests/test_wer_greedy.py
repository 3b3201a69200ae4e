import math

import numpy as np
import pytest

from src.decoding.greedy import best_path_ids, greedy_decode
from src.metrics.wer import ErrorRates, cer, char_counts, wer, word_counts
from src.text.labels import load_labels


def test_word_counts_by_kind():
    c = word_counts("the cat sat on the mat", "the bat sat on mat")   # one alignment only
    assert (c.substitutions, c.deletions, c.insertions, c.reference_length) == (1, 1, 0, 6)
    assert c.rate() == pytest.approx(100 * 2 / 6)
    assert word_counts("a b", "z a b").insertions == 1


def test_corpus_rates_are_totals_not_averages():
    refs, hyps = ["a b c d", "e"], ["a b c d", "f"]
    assert wer(refs, hyps) == pytest.approx(100 * 1 / 5)      # not mean(0 %, 100 %) = 50 %
    assert cer(["ab cd"], ["ab ce"]) == pytest.approx(100 * 1 / 5)  # the space counts as a character


def test_whitespace_does_not_count_and_empty_cases():
    assert char_counts("a  b ", " a b").errors == 0
    assert word_counts("", "").rate() == 0.0
    assert math.isinf(word_counts("", "extra").rate())
    assert word_counts("all gone", "").deletions == 2


def test_error_rates_accumulate_and_report():
    totals = ErrorRates()
    totals.add("hello world", "hello word")
    totals.add("good morning", "good morning")
    d = totals.as_dict()
    assert d["utterances"] == 2 and d["words"] == 4 and d["wer"] == 25.0 and d["substitutions"] == 1
    with pytest.raises(ValueError):
        ErrorRates.of(["a"], [])


def one_hot_log_probs(path, num_classes=29):
    lp = np.full((len(path), num_classes), -20.0, dtype=np.float32)
    lp[np.arange(len(path)), path] = 0.0
    return lp


def test_greedy_merges_repeats_then_drops_blanks():
    labels = load_labels()
    b, a, space = labels.blank, 1, 0
    # repeats merge ("a a" → "a"), a blank separates a real double letter ("a _ a" → "aa")
    path = [a, a, b, a, b, b, space, 2, 2]
    assert best_path_ids(one_hot_log_probs(path), len(path), b) == [a, a, space, 2]
    assert best_path_ids(one_hot_log_probs(path), 3, b) == [a]       # only valid frames are decoded
    assert best_path_ids(one_hot_log_probs([b, b]), 2, b) == []


def test_greedy_decode_batch_uses_lengths():
    labels = load_labels()
    ids = labels.encode("hi")
    path = [ids[0], labels.blank, ids[1], ids[1]]
    batch = np.stack([one_hot_log_probs(path), one_hot_log_probs(path[::-1])])
    assert greedy_decode(batch, [4, 2], labels) == ["hi", "i"]
