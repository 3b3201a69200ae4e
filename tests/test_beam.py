"""Beam search with and without a KenLM language model, the ARPA writer and LM-weight tuning, on
log-probability matrices built here (no acoustic model needed)."""
import argparse
import gzip
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from src.decoding.arpa import write_arpa
from src.decoding.beam import (BeamSearchDecoder, DecoderOptions, add_decoder_args, lm_format, make_decoder,
                               options_from_args, read_arpa_unigrams)
from src.decoding.greedy import greedy_decode
from src.metrics.wer import ErrorRates
from src.text.labels import load_labels

REPO = Path(__file__).resolve().parents[1]
LABELS = load_labels()

# Training transcripts of the LM: a small world in which many words have a twin one letter apart, also
# a word of the LM (seen in other contexts), so only the context tells which of the two was said.
SUBJECTS = ["the cat", "the dog", "a big dog", "the red fox", "my old hen", "the bad rat"]
VERBS = ["sat on", "ran to", "hid in", "slept on", "looked at"]
PLACES = ["the mat", "the bed", "a log", "the pen", "the hut", "a box"]
TWINS = {"cat": "cut", "dog": "dug", "big": "bag", "red": "rod", "hen": "ten", "bad": "bed", "rat": "rot",
         "sat": "set", "ran": "run", "hid": "had", "mat": "met", "bed": "bad", "log": "lug", "pen": "pin",
         "hut": "hat"}
OTHER_CONTEXTS = ["we cut the bread", "he dug a hole", "a bag of rice", "a rod of iron", "ten men came home",
                  "the rot set in", "we set the table", "they run home", "we had tea", "we met him",
                  "a lug nut", "a pin and a needle", "his hat is new", "a bad day"]
TRAIN_TEXT = [f"{s} {v} {p}" for s in SUBJECTS for v in VERBS for p in PLACES] + OTHER_CONTEXTS * 3
# Acoustically close letters: an ambiguous frame favours the partner slightly.
PARTNER = {"a": "e", "e": "a", "i": "e", "o": "u", "u": "o", "t": "d", "d": "t", "b": "p", "p": "b",
           "m": "n", "n": "m", "g": "k", "c": "k", "x": "s", "h": "n", "l": "r", "r": "l", "s": "z", "f": "v"}


def peaked_log_probs(text: str, rng: np.random.Generator, peak: float = 0.98) -> np.ndarray:
    """(T', C) log-probabilities spelling ``text``: each symbol 1-2 frames, then 0-2 blanks (1-2 between
    repeated symbols), the frame's symbol at ``peak`` and the rest spread at random."""
    rows = []

    def frame(k: int) -> None:
        rest = rng.dirichlet(np.ones(LABELS.num_classes - 1)) * (1 - peak)
        rows.append(np.insert(rest, k, peak))

    for i, ch in enumerate(text):
        for _ in range(rng.integers(1, 3)):
            frame(int(LABELS.encode(ch)[0]))
        repeat = i + 1 < len(text) and text[i + 1] == ch
        for _ in range(rng.integers(1 if repeat else 0, 3)):
            frame(LABELS.blank)
    return np.log(np.array(rows, dtype=np.float32))


def ambiguous_log_probs(text: str, rng: np.random.Generator, rate: float = 0.5) -> np.ndarray:
    """(T', C): each letter 2 frames + 1 blank, peaked at 0.98, except ambiguous letters: the partner
    letter gets 0.48 and the true one 0.42, so best-path decoding picks the partner.  Words with a twin
    are made ambiguous towards the twin with probability ``rate``; other letters with a partner with
    probability ``rate / 4`` (mostly giving non-words)."""
    c = LABELS.num_classes
    wrong: dict[int, str] = {}  # character position → the letter the frames favour
    position = 0
    for word in text.split(" "):
        twin = TWINS.get(word)
        if twin is not None and rng.random() < rate:
            i = next(i for i, (a, b) in enumerate(zip(word, twin)) if a != b)
            wrong[position + i] = twin[i]
        else:
            wrong.update({position + i: PARTNER[ch] for i, ch in enumerate(word)
                          if ch in PARTNER and rng.random() < rate / 4})
        position += len(word) + 1
    rows = []
    for i, ch in enumerate(text):
        k = int(LABELS.encode(ch)[0])
        p = np.full(c, 0.02 / (c - 1))
        p[k] = 0.98
        if i in wrong:
            p = np.full(c, 0.10 / (c - 2))
            p[int(LABELS.encode(wrong[i])[0])], p[k] = 0.48, 0.42
        blank = np.full(c, 0.02 / (c - 1))
        blank[LABELS.blank] = 0.98
        rows += [p, p, blank]
    return np.log(np.array(rows, dtype=np.float32))


@pytest.fixture(scope="module")
def lm_path(tmp_path_factory) -> Path:
    return write_arpa(tmp_path_factory.mktemp("lm") / "train.arpa", TRAIN_TEXT, order=3)


@pytest.fixture(scope="module")
def ambiguous_set() -> tuple[list[np.ndarray], list[str]]:
    rng = np.random.default_rng(7)
    texts = [TRAIN_TEXT[i] for i in rng.choice(len(SUBJECTS) * len(VERBS) * len(PLACES), 24, replace=False)]
    return [ambiguous_log_probs(t, rng) for t in texts], texts


def test_arpa_is_normalised_and_kenlm_reads_it(lm_path):
    """For several histories the LM's probabilities over the vocabulary, </s> and <unk> sum to one, as
    KenLM computes them from the file."""
    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import Dictionary

    words = [w for w, _ in read_arpa_unigrams(lm_path)]
    assert lm_format(lm_path) == "arpa" and "</s>" in words and "<unk>" in words and "cat" in words
    vocab = [w for w in words if w not in ("<s>", "<unk>")]
    dictionary = Dictionary()
    for w in ["<unk>", *vocab]:
        dictionary.add_entry(w)
    dictionary.set_default_index(0)
    lm = KenLM(str(lm_path), dictionary)
    for history in ([], ["the"], ["the", "cat"], ["sat", "on"], ["a", "big"], ["on", "the"]):
        state = lm.start(False)
        for w in history:
            state, _ = lm.score(state, dictionary.get_index(w))
        total = sum(10 ** lm.score(state, dictionary.get_index(w))[1] for w in vocab if w != "</s>")
        total += 10 ** lm.finish(state)[1] + 10 ** lm.score(state, 0)[1]  # </s> and <unk>
        assert total == pytest.approx(1.0, abs=1e-4), history
    # Seen continuations are likelier than unseen ones.
    state, _ = lm.score(lm.start(False), dictionary.get_index("sat"))
    assert lm.score(state, dictionary.get_index("on"))[1] > lm.score(state, dictionary.get_index("cat"))[1]


@pytest.mark.parametrize("beam_width", [1, 4, 16])
def test_beam_without_lm_equals_greedy_on_peaked_distributions(beam_width):
    rng = np.random.default_rng(beam_width)
    texts = ["hello world", "it's a fine day", "aa bb  cc", " leading and trailing ", "x", "committee",
             *(" ".join(rng.choice(["ab", "ba", "all", "see", "zoo", "o'", "'tis"], 5)) for _ in range(6))]
    decoder = BeamSearchDecoder(LABELS, beam_width=beam_width)
    for text in texts:
        lp = peaked_log_probs(text, rng)
        lp = np.concatenate([lp, np.zeros((5, LABELS.num_classes), np.float32)])  # padding beyond the length
        want = greedy_decode(lp[None], [len(lp) - 5], LABELS)[0]
        assert want == text
        assert decoder.decode(lp, len(lp) - 5) == want
    assert decoder.decode(lp, 0) == ""


def test_lm_beam_search_corrects_ambiguous_letters(lm_path, ambiguous_set):
    log_probs, texts = ambiguous_set
    lengths = [len(lp) for lp in log_probs]
    greedy = ErrorRates.of(texts, [greedy_decode(lp[None], [n], LABELS)[0] for lp, n in zip(log_probs, lengths)])
    plain = ErrorRates.of(texts, BeamSearchDecoder(LABELS, beam_width=16).decode_batch(log_probs, lengths))
    lexicon_only = ErrorRates.of(texts, BeamSearchDecoder(LABELS, beam_width=16, lm_path=lm_path, alpha=0.0)
                                 .decode_batch(log_probs, lengths))
    fused = ErrorRates.of(texts, BeamSearchDecoder(LABELS, beam_width=16, lm_path=lm_path).decode_batch(
        log_probs, lengths))
    assert greedy.wer > 25 and plain.wer == greedy.wer  # without an LM the misspellings stay
    # Spelling words of the LM fixes the non-words; only the LM's context picks the right twin.
    assert greedy.wer > lexicon_only.wer > 5, (greedy.wer, lexicon_only.wer)
    assert fused.wer < lexicon_only.wer / 2 and fused.wer < greedy.wer / 4, (greedy.wer, fused.wer)


def test_gzipped_arpa_and_batch_workers_give_the_same_transcripts(lm_path, ambiguous_set, tmp_path):
    log_probs, _ = ambiguous_set
    padded = np.zeros((len(log_probs), max(map(len, log_probs)), LABELS.num_classes), np.float32)
    for i, lp in enumerate(log_probs):
        padded[i, :len(lp)] = lp
    lengths = np.array([len(lp) for lp in log_probs])
    serial = BeamSearchDecoder(LABELS, beam_width=8, lm_path=lm_path).decode_batch(padded, lengths)
    gz = tmp_path / "train.arpa.gz"
    gz.write_bytes(gzip.compress(lm_path.read_bytes()))
    with BeamSearchDecoder(LABELS, beam_width=8, lm_path=gz) as decoder:
        assert decoder.decode_batch(padded, lengths, num_workers=2, progress=True) == serial
        pool = decoder._pool
        assert decoder.decode_batch(padded[:3], lengths[:3], num_workers=2) == serial[:3]
        assert decoder._pool is pool  # started once, kept between calls
    assert decoder._pool is None


def test_hotwords_add_and_favour_words(lm_path):
    rng = np.random.default_rng(3)
    lp = peaked_log_probs("the cat sat on the zebra", rng)
    plain = BeamSearchDecoder(LABELS, beam_width=16, lm_path=lm_path)
    assert "zebra" not in plain.decode(lp)  # not in the LM's vocabulary: cannot be produced
    boosted = BeamSearchDecoder(LABELS, beam_width=16, lm_path=lm_path, hotwords=["zebra"], hotword_weight=10)
    assert boosted.decode(lp) == "the cat sat on the zebra"
    # An ambiguous 'e'/'a' that the LM resolves to "bed" goes to "bad" when that is a strong hotword (the LM
    # dislikes "on the bad" and "bad </s>", about 6 nats of weighted LM score).
    lp = ambiguous_log_probs("the cat sat on the bed", np.random.default_rng(0), rate=0.0)
    i = 3 * len("the cat sat on the b")  # the two frames of the 'e' of "bed"
    k = np.arange(LABELS.num_classes)
    lp[i:i + 2] = np.log(np.where(k == LABELS.encode("a")[0], 0.48, np.where(k == LABELS.encode("e")[0], 0.42,
                                                                             0.10 / 27)))
    assert greedy_decode(lp[None], [len(lp)], LABELS)[0] == "the cat sat on the bad"
    assert plain.decode(lp) == "the cat sat on the bed"
    favour_bad = BeamSearchDecoder(LABELS, beam_width=16, lm_path=lm_path, hotwords=["bad"], hotword_weight=20)
    assert favour_bad.decode(lp) == "the cat sat on the bad"


def test_lexicon_spells_words_the_lm_lacks(lm_path, tmp_path):
    lp = peaked_log_probs("the cat sat on the zebra", np.random.default_rng(3))
    words = tmp_path / "words.txt"
    words.write_text("Zebra\nzebra's\ncat\nnaïve\n")          # case folded; unspellable words ignored
    wide = BeamSearchDecoder(LABELS, beam_width=16, lm_path=lm_path, lexicon=words)
    assert wide.decode(lp) == "the cat sat on the zebra"
    # the LM still decides between words it knows
    lp = ambiguous_log_probs("the cat sat on the bed", np.random.default_rng(0), rate=0.0)
    assert wide.decode(lp) == BeamSearchDecoder(LABELS, beam_width=16, lm_path=lm_path).decode(lp)
    with pytest.raises(ValueError, match="lexicon needs a language model"):
        BeamSearchDecoder(LABELS, lexicon=words)
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        BeamSearchDecoder(LABELS, lm_path=lm_path, lexicon=tmp_path / "nowhere.txt")


def test_bad_language_model_paths_are_reported_with_the_file(tmp_path, lm_path):
    with pytest.raises(FileNotFoundError, match="missing.arpa"):
        BeamSearchDecoder(LABELS, lm_path=tmp_path / "missing.arpa")
    with pytest.raises(ValueError, match=str(tmp_path)):
        BeamSearchDecoder(LABELS, lm_path=tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("just some words\n")
    with pytest.raises(ValueError, match=r"notes\.txt: not a language model"):
        BeamSearchDecoder(LABELS, lm_path=text)
    data = lm_path.read_bytes()
    cut = tmp_path / "cut.arpa"
    cut.write_bytes(data[:int(len(data) * 0.8)])  # the 1-grams are whole; KenLM finds the rest cut short
    with pytest.raises(ValueError, match=r"cut\.arpa: KenLM cannot load it"):
        BeamSearchDecoder(LABELS, lm_path=cut)
    fake = tmp_path / "fake.binary"
    fake.write_bytes(b"mmap lm http://kheafield.com/code format version 5\n\0" + bytes(range(256)) * 40)
    with pytest.raises(ValueError, match=r"fake\.binary: a KenLM binary.*lm_vocab"):
        BeamSearchDecoder(LABELS, lm_path=fake)
    with pytest.raises(ValueError, match=r"fake\.binary: KenLM cannot load it"):
        BeamSearchDecoder(LABELS, lm_path=fake, lm_vocab=lm_path)
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        BeamSearchDecoder(LABELS, lm_path=fake, lm_vocab=tmp_path / "nowhere.txt")
    with pytest.raises(ValueError, match="hotwords need a language model"):
        BeamSearchDecoder(LABELS, hotwords=["cat"])


def test_decoder_options_and_command_line(lm_path, ambiguous_set):
    parser = argparse.ArgumentParser()
    add_decoder_args(parser)
    args = parser.parse_args(["--decoder", "beam", "--lm_path", str(lm_path), "--alpha", "0.8", "--beta", "1.5",
                              "--beam_width", "8", "--decoder_workers", "1"])
    options = options_from_args(args)
    assert options == DecoderOptions("beam", str(lm_path), 0.8, 1.5, 8, 1)
    assert options_from_args(parser.parse_args([])) == DecoderOptions()
    with pytest.raises(ValueError, match="needs --decoder beam"):
        DecoderOptions(decoder="greedy", lm_path=str(lm_path))
    with pytest.raises(ValueError):
        DecoderOptions(decoder="viterbi")
    log_probs, texts = ambiguous_set
    batch = np.zeros((4, max(len(lp) for lp in log_probs[:4]), LABELS.num_classes), np.float32)
    for i, lp in enumerate(log_probs[:4]):
        batch[i, :len(lp)] = lp
    lengths = [len(lp) for lp in log_probs[:4]]
    greedy = make_decoder(DecoderOptions(), LABELS)
    assert greedy(batch, lengths) == greedy_decode(batch, lengths, LABELS)
    beam = make_decoder(options, LABELS)
    assert beam(batch, lengths) == BeamSearchDecoder(LABELS, 8, lm_path, 0.8, 1.5).decode_batch(batch, lengths)


def test_tune_lm_search_and_cache(lm_path, ambiguous_set, tmp_path):
    import tune_lm

    log_probs, texts = ambiguous_set
    dev = tune_lm.DevSet([f"u{i}" for i in range(len(texts))], log_probs, texts,
                         {"model": "synthetic", "data": "synthetic", "labels": LABELS.symbols})
    cache = tmp_path / "logprobs.npz"
    tune_lm.save_devset(cache, dev)
    loaded = tune_lm.load_devset(cache)
    assert loaded.utt_ids == dev.utt_ids and loaded.references == texts and loaded.meta == dev.meta
    assert all(np.array_equal(a, b) for a, b in zip(loaded.log_probs, log_probs))

    defaults = DecoderOptions()
    decoder = BeamSearchDecoder(LABELS, beam_width=8, lm_path=lm_path)
    points = tune_lm.search_weights(decoder, loaded, alphas=[0.0, 1.0], betas=[0.0, 2.0], refine=1,
                                    extra=[(defaults.alpha, defaults.beta)])
    best = tune_lm.best_point(points)
    at = {(p.alpha, p.beta): p for p in points}
    assert best.wer <= at[(defaults.alpha, defaults.beta)].wer
    assert best.wer < at[(0.0, 0.0)].wer and best.alpha > 0  # the LM weight matters on this set
    assert len(points) > 5 and best.wer < 5

    r = subprocess.run([sys.executable, str(REPO / "tune_lm.py"), "--cache", str(cache), "--lm_path", str(lm_path),
                        "--alphas", "0", "1", "--betas", "0", "1", "--refine", "0", "--beam_width", "8",
                        "--output_dir", str(tmp_path / "out"), "--no_progress"],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["utterances"] == len(texts) and len(result["points"]) == 5  # 2 × 2 grid + the default pair
    assert result["best"]["wer"] <= result["reference_pair"]["wer"] and result["greedy"]["wer"] > 25
    assert "best, alpha" in r.stdout and math.isfinite(result["best"]["wer"])

    r = subprocess.run([sys.executable, str(REPO / "tune_lm.py"), "--cache", str(tmp_path / "none.npz"),
                        "--lm_path", str(lm_path), "--output_dir", str(tmp_path / "out")],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 1 and "--checkpoint or --mindir" in r.stderr


@pytest.mark.slow
def test_tune_lm_runs_the_acoustic_model_once(mindrecord_dir, tmp_path):
    """From a checkpoint (random weights) and a manifest: log-probabilities cached with references,
    a second run reuses the cache, and a cache of another model is refused."""
    import mindspore as ms
    import yaml

    import tune_lm
    from src.config import config_from_dict
    from src.data.manifest import read_manifest
    from src.decoding.arpa import read_sentences
    from src.models.jasper import build_model
    from src.runtime import configure_device

    tiny = {"model": {"name": "jasper", "blocks": [{"filters": 16, "kernel": 11, "stride": 2},
                                                      {"filters": 16, "kernel": 1}]}, "data": {"batch_size": 4}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    configure_device("CPU")
    ms.set_seed(1)
    ms.save_checkpoint(build_model(config_from_dict(tiny)), str(tmp_path / "tiny.ckpt"))
    manifest = mindrecord_dir / "m.json"
    lm = write_arpa(tmp_path / "lm.arpa", read_sentences(manifest))
    common = ["--lm_path", str(lm), "--alphas", "0", "1", "--betas", "0", "--refine", "0", "--beam_width", "4",
              "--output_dir", str(tmp_path / "out"), "--no_progress"]

    def tune(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(REPO / "tune_lm.py"), *args, *common], capture_output=True,
                              text=True, cwd=REPO)

    r = tune("--config", str(tmp_path / "tiny.yaml"), "--checkpoint", str(tmp_path / "tiny.ckpt"),
             "--manifest", str(manifest))
    assert r.returncode == 0, r.stderr[-3000:]
    dev = tune_lm.load_devset(tmp_path / "out" / "logprobs.npz")
    want = {u.utt_id: u.transcript for u in read_manifest(manifest)}
    assert sorted(dev.utt_ids) == sorted(want) and all(want[u] == ref for u, ref in zip(dev.utt_ids, dev.references))
    assert all(lp.shape[1] == LABELS.num_classes and np.isfinite(lp).all() for lp in dev.log_probs)
    assert tune().returncode == 0  # cache only: no model needed
    (tmp_path / "other.ckpt").write_bytes((tmp_path / "tiny.ckpt").read_bytes())
    r = tune("--config", str(tmp_path / "tiny.yaml"), "--checkpoint", str(tmp_path / "other.ckpt"))
    assert r.returncode == 1 and "--recompute" in r.stderr


def test_word_piece_labels_decode_with_and_without_the_lm(lm_path, tmp_path):
    from src.text.pieces import learn_pieces

    pieces = learn_pieces(TRAIN_TEXT, LABELS, 80)
    text = "the red fox hid in the zebra's hut"
    ids = pieces.encode(text)
    assert len(ids) < len(text)
    rng = np.random.default_rng(5)
    rows = []
    for i, k in enumerate(ids):   # each token 1-2 frames, a blank between repeats
        for _ in range(rng.integers(1, 3)):
            p = rng.dirichlet(np.ones(pieces.num_classes)) * 0.02
            p[k] += 0.98
            rows.append(p)
        if i + 1 < len(ids) and ids[i + 1] == k:
            p = np.full(pieces.num_classes, 0.02 / pieces.num_classes)
            p[pieces.blank] += 0.98
            rows.append(p)
    lp = np.log(np.array(rows, dtype=np.float32))
    assert greedy_decode(lp[None], [len(lp)], pieces)[0] == text
    assert BeamSearchDecoder(pieces, beam_width=8).decode(lp) == text
    words = tmp_path / "words.txt"
    words.write_text("zebra's\n")
    assert BeamSearchDecoder(pieces, beam_width=8, lm_path=lm_path, lexicon=words).decode(lp) == text
