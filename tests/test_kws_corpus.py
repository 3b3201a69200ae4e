"""The keyword corpus generator (Speech Commands layout from the project's voices) and its conversion."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from src.data import speech_commands as sc
from utils.corpus import kws_corpus as kc
from utils.corpus.synthetic import ToolMissingError

HAVE_TOOLS = all(shutil.which(t) for t in ("espeak-ng", "sox"))


def _voice_test(fn):
    """Marks of a test that synthesizes speech (espeak-ng and sox, from scripts/common.sh)."""
    fn = pytest.mark.skipif(not HAVE_TOOLS, reason="espeak-ng and sox are needed (scripts/common.sh)")(fn)
    return pytest.mark.needs_tools(fn)


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def quick_corpus(tmp_path_factory) -> Path:
    if not HAVE_TOOLS:
        pytest.skip("espeak-ng and sox are needed")
    return kc.make_kws_corpus(tmp_path_factory.mktemp("kws") / "sc", preset="quick", jobs=2)


# ------------------------------------------------------------------------------ plan (no synthesis)


def test_demo_plan_sizes_and_speaker_splits():
    config = kc.resolve_config("demo")
    assert config.split_sizes() == {"train": 128, "validation": 16, "test": 16}
    plan = kc.plan_corpus(config)
    assert len(plan.speakers) == 160 and sum(len(s.clips) for s in plan.speakers) == 160 * 45
    assert {w for w in sc.V2_WORDS} <= {c.word for s in plan.speakers for c in s.clips}
    ids = [s.speaker_id for s in plan.speakers]
    assert len(set(ids)) == len(ids) and all(len(i) == 8 and int(i, 16) >= 0 for i in ids)
    # The hash rule agrees with the planned split of every speaker.
    assert all(sc.hash_split(f"yes/{s.speaker_id}_nohash_0.wav") == s.split for s in plan.speakers)
    # Held-out speakers are voice settings never used for training; engines follow the demo weights.
    train_voices = {s.voice for s in plan.speakers if s.split == "train"}
    assert not any(s.voice in train_voices for s in plan.speakers if s.split != "train")
    engines = [s.voice.engine for s in plan.speakers]
    assert 0.3 <= engines.count("espeak") / len(engines) <= 0.4
    # Deterministic in the seed.
    assert kc.plan_corpus(config) == plan
    other = kc.plan_corpus(kc.resolve_config("demo", seed=1))
    assert {s.speaker_id for s in other.speakers}.isdisjoint(ids)


def test_settings_are_validated():
    with pytest.raises(ValueError, match="at least 3"):
        kc.resolve_config("quick", speakers=2)
    with pytest.raises(ValueError, match="plain lower-case"):
        kc.resolve_config("quick", words="yes,no2")
    with pytest.raises(ValueError, match="unknown corpus settings"):
        kc.resolve_config("quick", chapters=3)
    with pytest.raises(ValueError, match="unknown voice"):
        kc.resolve_config("quick", voices="nobody")
    config = kc.resolve_config("quick", words="yes,open")
    assert "open" not in config.other_words  # a wanted word is never drawn as an "other" word


def test_place_word_centres_speech_in_one_second_of_continuous_noise():
    rng = np.random.default_rng(0)
    noise = 0.003 * rng.standard_normal(30000).astype(np.float32)
    speech = noise.copy()
    speech[8000:14000] += 0.3 * np.sin(2 * np.pi * 300 * np.arange(6000) / 16000).astype(np.float32)
    for position in (0.0, 0.5, 1.0):
        clip = kc.ClipPlan("yes", 0, 1, 1.0, position, 0.0)
        pcm, squeezed = kc.place_word(speech, clip)
        assert pcm.dtype == np.int16 and pcm.shape == (16000,) and not squeezed
        x = pcm / 32768.0
        start, end = kc.word_bounds(x)
        free = 16000 - (6000 + 2 * 800)
        assert abs(start - (800 + position * free)) <= 320 and abs(end - start - 6000) <= 320
        # Outside the word the level is the rendering's noise floor everywhere (no digital silence).
        quiet = np.concatenate([x[: max(start - 400, 0)], x[end + 400:]])
        blocks = quiet[: len(quiet) // 800 * 800].reshape(-1, 800)
        rms = np.sqrt(np.mean(blocks ** 2, axis=1))
        assert np.all((rms > 0.0015) & (rms < 0.006))
    long_speech = np.concatenate([noise[:2000], 0.3 * np.ones(20000, np.float32), noise[:2000]])
    pcm, squeezed = kc.place_word(long_speech, kc.ClipPlan("backward", 0, 1, 1.0, 0.5, 0.0))
    assert squeezed and pcm.shape == (16000,)


def test_background_noises_are_deterministic_and_distinct():
    noises = {n: kc.background_noise(n, 2.0, seed=0) for n in kc.BACKGROUND_NOISES}
    for name, y in noises.items():
        assert y.dtype == np.float32 and y.shape == (32000,) and np.abs(y).max() < 1.0
        assert 0.03 < np.sqrt(np.mean(y ** 2)) < 0.11, name
        np.testing.assert_array_equal(y, kc.background_noise(name, 2.0, seed=0))
    spectra = {n: np.abs(np.fft.rfft(y)) ** 2 for n, y in noises.items()}
    low = {n: s[: len(s) // 16].sum() / s.sum() for n, s in spectra.items()}  # power share below 500 Hz
    assert low["brown_noise"] > low["pink_noise"] > low["white_noise"]
    assert low["hum"] > 0.9


# ------------------------------------------------------------------------------ generated corpus


@_voice_test
def test_layout_and_clips(quick_corpus):
    root = quick_corpus
    meta = json.loads((root / "corpus.json").read_text())
    words = set(kc.PRESETS["quick"]["words"])
    folders = {p.name for p in root.iterdir() if p.is_dir()}
    assert words <= folders and sc.BACKGROUND_DIR in folders
    others = folders - words - {sc.BACKGROUND_DIR}
    assert others and others <= set(kc.OTHER_WORDS)
    clips = sorted(root.glob("*/*_nohash_*.wav"))
    assert len(clips) == meta["stats"]["train"]["clips"] + meta["stats"]["validation"]["clips"] \
        + meta["stats"]["test"]["clips"] == 6 * 12
    for path in clips:
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 16000, "PCM_16"), path
    noise_files = sorted((root / sc.BACKGROUND_DIR).glob("*.wav"))
    assert [p.stem for p in noise_files] == sorted(kc.BACKGROUND_NOISES)
    assert all(sf.info(p).frames == 6 * 16000 for p in noise_files)
    # Clips are speech, not silence: the word is clearly louder than the rest of the second.
    x, _ = sf.read(root / "yes" / f"{meta['speakers'][0]['id']}_nohash_0.wav")
    db = kc._block_db(x)
    assert db.max() - np.percentile(db, 10) > 20


@_voice_test
def test_splits_are_speaker_disjoint(quick_corpus):
    root = quick_corpus
    meta = json.loads((root / "corpus.json").read_text())
    split_of = {s["id"]: s["split"] for s in meta["speakers"]}
    assert sorted(split_of.values()).count("train") == 4
    listed = {split: (root / name).read_text().split()
              for split, name in (("validation", sc.VALIDATION_LIST), ("test", sc.TESTING_LIST))}
    for split, lines in listed.items():
        assert lines == sorted(lines) and lines
        assert {split_of[sc.speaker_of(line)] for line in lines} == {split}
        assert all((root / line).is_file() for line in lines)
    listed_all = set(listed["validation"]) | set(listed["test"])
    train = [p.relative_to(root).as_posix() for p in root.glob("*/*_nohash_*.wav")
             if p.relative_to(root).as_posix() not in listed_all]
    assert {split_of[sc.speaker_of(t)] for t in train} == {"train"}
    voices = {s["id"]: json.dumps(s["settings"], sort_keys=True) for s in meta["speakers"]}
    train_voices = {v for i, v in voices.items() if split_of[i] == "train"}
    assert not any(v in train_voices for i, v in voices.items() if split_of[i] != "train")


@_voice_test
def test_converter_reads_the_corpus(quick_corpus, tmp_path):
    report = sc.convert_speech_commands(quick_corpus, tmp_path / "lists", progress=False)
    assert report.split_source == "lists" and not any(report.skipped.values())
    assert report.crossing_speakers == {}
    assert report.counts["train"]["yes"] == 4 and report.counts["validation"]["go"] == 1
    assert report.counts["train"]["_silence_"] == 4 and report.counts["train"]["_unknown_"] == 4
    by_hash = sc.convert_speech_commands(quick_corpus, tmp_path / "hash", split_by="hash", progress=False)
    assert by_hash.counts == report.counts  # speaker ids were chosen so that both rules agree
    for split in sc.SPLITS:
        assert (tmp_path / "lists" / f"{split}.json").read_bytes() == (tmp_path / "hash" / f"{split}.json").read_bytes()
    clips = sc.read_keyword_manifest(tmp_path / "lists" / "test.json")
    assert all(sc.load_clip(c).shape == (16000,) for c in clips)


@_voice_test
def test_same_seed_gives_identical_bytes_and_reruns_reuse(quick_corpus, tmp_path):
    again = kc.make_kws_corpus(tmp_path / "sc", preset="quick", jobs=1)  # other worker count
    assert tree_digest(again) == tree_digest(quick_corpus)
    before = {p: p.stat().st_mtime_ns for p in again.rglob("*") if p.is_file()}
    report = kc.generate_kws_corpus(again, kc.resolve_config("quick"), jobs=2, progress=False)
    assert report.made == 0 and report.reused == 72 and not report.failures
    assert {p: p.stat().st_mtime_ns for p in again.rglob("*") if p.is_file()} == before
    # A missing clip is made again, identical.
    victim = next(again.glob("yes/*.wav"))
    data = victim.read_bytes()
    victim.unlink()
    report = kc.generate_kws_corpus(again, kc.resolve_config("quick"), jobs=1, progress=False)
    assert report.made == 1 and victim.read_bytes() == data


@_voice_test
def test_other_settings_and_foreign_folders_are_refused(quick_corpus, tmp_path):
    with pytest.raises(kc.KwsCorpusError, match="other settings.*seed"):
        kc.generate_kws_corpus(quick_corpus, kc.resolve_config("quick", seed=5), progress=False)
    foreign = tmp_path / "real"
    (foreign / "yes").mkdir(parents=True)
    (foreign / "yes" / "a_nohash_0.wav").write_bytes(b"x")
    with pytest.raises(kc.KwsCorpusError, match="not made by this generator"):
        kc.generate_kws_corpus(foreign, kc.resolve_config("quick"), progress=False)
    assert (foreign / "yes" / "a_nohash_0.wav").read_bytes() == b"x"


def test_missing_voice_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda cmd: None)
    with pytest.raises(ToolMissingError, match="espeak-ng"):
        kc.generate_kws_corpus(tmp_path / "sc", kc.resolve_config("quick"), progress=False)
    assert not (tmp_path / "sc").exists()
