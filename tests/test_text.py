import numpy as np
import pytest

from src.text.labels import Labels, load_labels
from src.text.normalize import TextNormalizationError, normalize_text


def test_labels_file_is_the_english_set_with_blank_last():
    labels = load_labels()
    assert labels.symbols == [" "] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["'"]
    assert labels.blank == 28 and labels.num_classes == 29


def test_encode_decode_round_trip():
    labels = load_labels()
    text = "it's a test of the labels"
    ids = labels.encode(text)
    assert ids.dtype == np.int32 and ids.max() < labels.blank
    assert labels.decode(ids) == text
    assert labels.decode(list(ids) + [labels.blank]) == text  # blank decodes to nothing


def test_encode_names_unknown_characters():
    with pytest.raises(ValueError, match=r"\['A', '!'\]"):
        load_labels().encode("A test!")


def test_labels_reject_duplicates():
    with pytest.raises(ValueError):
        Labels(["a", "a"])


@pytest.mark.parametrize("raw, expected", [
    ("HELLO   WORLD", "hello world"),
    ("Mr. Smith paid $3.50 on the 2nd of May, 1984!",
     "mister smith paid three dollars and fifty cents on the second of may nineteen eighty four"),
    ("Dr Who met St. John at No. 10", "doctor who met saint john at number ten"),
    ("I said no.", "i said no"),
    ("50% of 1,000,000", "fifty percent of one million"),
    ("pi is 3.14", "pi is three point one four"),
    ("the 21st and 101st", "the twenty first and one hundred first"),
    ("in 1900, 2005 and 1066", "in nineteen hundred two thousand five and ten sixty six"),
    ("£1 and $0.01", "one pound and one cent"),
    ("naïve café — très bien", "naive cafe tres bien"),
    ("'Quoted' words, don't stop", "quoted words don't stop"),
    ("ROCK & ROLL", "rock and roll"),
    ("well-known; (really) \"so\"?", "well known really so"),
    ("O'CLOCK", "o'clock"),
])
def test_normalize(raw, expected):
    assert normalize_text(raw) == expected


@pytest.mark.parametrize("raw, bad", [("a*b", "*"), ("snake_case", "_"), ("smile 😀", "😀"), ("x ~ y", "~")])
def test_characters_without_spoken_form_are_reported_not_dropped(raw, bad):
    with pytest.raises(TextNormalizationError) as err:
        normalize_text(raw)
    assert bad in err.value.chars and bad in str(err.value)


def test_normalized_text_encodes():
    text = normalize_text("On Jan. 3rd, 2019 the price rose 12% to $1,250.75 — wow!")
    load_labels().encode(text)  # only label characters remain
    assert "  " not in text and text == text.strip()
