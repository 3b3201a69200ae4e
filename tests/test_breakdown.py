import pytest

from src.tasks.asr import UtteranceResult, utterance_report
from src.metrics.breakdown import ReportRow, read_report, word_accuracy_by_frequency, wer_by_group
from src.metrics.wer import ErrorRates, word_counts


def rows() -> list[ReportRow]:
    return [ReportRow("11-1-0000", "the cat sat", "the cat sat"),
            ReportRow("11-1-0001", "a dog ran far", "a dog ran"),          # one deletion
            ReportRow("22-5-0000", "the zebra sat", "the zebras sad too")]  # 2 substitutions, 1 insertion


def test_wer_by_group_totals_errors_per_group():
    got = wer_by_group(rows(), lambda utt: utt.split("-")[0])
    assert list(got) == ["11", "22"]
    assert got["11"] == {"wer": pytest.approx(100 / 7, abs=0.01), "words": 7, "utterances": 2}
    assert got["22"] == {"wer": 100.0, "words": 3, "utterances": 1}
    assert wer_by_group(rows(), lambda utt: "all")["all"]["wer"] == pytest.approx(
        ErrorRates.of([r.reference for r in rows()], [r.hypothesis for r in rows()]).wer, abs=0.01)


def test_word_accuracy_by_training_frequency():
    counts = {"the": 50, "cat": 12, "sat": 3, "a": 40, "dog": 1, "ran": 9}   # far, zebra: never seen
    got = word_accuracy_by_frequency(rows(), counts)
    assert got["10+"] == {"correct": 100.0, "words": 4}                      # the, cat, a, the: all right
    assert got["1-9"] == {"correct": 75.0, "words": 4}                       # sat, dog, ran right; "sat" → "sad"
    assert got["0"] == {"correct": 0.0, "words": 2}                          # far deleted, zebra substituted
    assert word_accuracy_by_frequency([], counts)["0"] == {"correct": None, "words": 0}


def test_read_report_round_trips_eval_tsv(tmp_path):
    results = [UtteranceResult(r.utt_id, r.reference, r.hypothesis, word_counts(r.reference, r.hypothesis), None)
               for r in rows()]
    path = tmp_path / "test.tsv"
    path.write_text(utterance_report(results))
    assert read_report(path) == rows()
    (tmp_path / "bad.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(ValueError, match="bad.tsv.*reference"):
        read_report(tmp_path / "bad.tsv")
