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


# --- word pieces -------------------------------------------------------------------------------

def _pieces(texts, size):
    from src.text.pieces import learn_pieces

    return learn_pieces(texts, load_labels(), size)


def test_learned_pieces_follow_the_alphabet_in_learning_order():
    labels = _pieces(["the cat the hat the that"] * 3, 32)
    assert labels.symbols[:28] == load_labels().symbols
    # "th" occurs 12 times (3 x [the, the, the, that]), more than any other pair, so it comes first.
    assert labels.pieces[0] == "th" and "the" in labels.pieces
    assert len(labels.symbols) <= 32 and labels.num_classes == len(labels.symbols) + 1


def test_pieces_round_trip_and_spell_unseen_words():
    labels = _pieces(["the cat sat on the mat", "the hat that the cat had"] * 4, 48)
    for text in ["the cat sat on the mat", "a zebra's quiz", "that", "x"]:
        ids = labels.encode(text)
        assert labels.decode(ids) == text
    assert len(labels.encode("the cat")) < len("the cat")       # frequent words are fewer tokens
    tokens = [labels.symbols[i] for i in labels.encode("the zebra")]
    assert tokens[0] == "the" and tokens[1] == " " and "".join(tokens[2:]) == "zebra"


def test_pieces_encoding_is_byte_pair_order_not_longest_match():
    # "ab" learned before "bc": "abc" → ab + c even though "bc" is also a piece.
    labels = Labels(load_labels().symbols + ["ab", "bc"])
    assert [labels.symbols[i] for i in labels.encode("abc")] == ["ab", "c"]
    labels = Labels(load_labels().symbols + ["bc", "ab"])
    assert [labels.symbols[i] for i in labels.encode("abc")] == ["a", "bc"]


def test_pieces_learning_stops_when_no_pair_repeats():
    labels = _pieces(["abc def"], 100)
    assert labels.pieces == []


@pytest.mark.parametrize("symbols, match", [
    ([" ", "a", "b", "a b"], "word separator"),
    ([" ", "a", "b", "ac"], "single-character"),
    (["a", "b", "ab"], "need the word separator"),
    (["a", ""], "non-empty"),
])
def test_bad_piece_vocabularies_are_rejected(symbols, match):
    with pytest.raises(ValueError, match=match):
        Labels(symbols)


def test_pieces_reject_text_outside_the_alphabet_and_small_sizes():
    from src.text.pieces import learn_pieces

    with pytest.raises(ValueError, match="transcript 1"):
        learn_pieces(["ok", "not ok!"], load_labels(), 64)
    with pytest.raises(ValueError, match="smaller than the base alphabet"):
        learn_pieces(["ok"], load_labels(), 10)


def test_pieces_command_writes_a_labels_file(tmp_path, restore_logging):
    import json

    from src.text.pieces import main

    manifest = tmp_path / "train.json"
    manifest.write_text(json.dumps([{"transcript": t, "files": []} for t in ["the cat", "the hat", "the mat"]]))
    out = tmp_path / "pieces.json"
    assert main(["--input", str(manifest), "--output", str(out), "--size", "40"]) == 0
    labels = load_labels(out)
    assert "the" in labels.pieces and labels.decode(labels.encode("the cat")) == "the cat"
    assert main(["--input", str(tmp_path / "missing.json"), "--output", str(out)]) == 1


def test_pieces_command_names_the_file_with_unusable_text(tmp_path, capsys, restore_logging):
    from src.text.pieces import main

    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    good.write_text("the cat\nthe hat\n")
    bad.write_text("fine text\nnot fine!\n")
    assert main(["--input", str(good), str(bad), "--output", str(tmp_path / "p.json")]) == 1
    err = capsys.readouterr().err
    assert "bad.txt: transcript 1" in err and "'!'" in err
    assert not (tmp_path / "p.json").exists()
