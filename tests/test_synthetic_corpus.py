"""The synthetic LibriSpeech-layout corpus generator (utils/corpus/synthetic.py, utils/make_synthetic_corpus.py)."""
from __future__ import annotations

import dataclasses
import importlib.util
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from utils.corpus import synthetic as S

TOOLS = ("sox", "espeak-ng", "bible")
needs_tools = [pytest.mark.needs_tools,
               pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS) or not S.DICT_PATH.is_file()
                                  or not S.FORTUNES_DIR.is_dir(),
                                  reason="needs sox, espeak-ng, bible-kjv, fortunes and wamerican")]
pytestmark = needs_tools

SCRIPT = Path(__file__).resolve().parents[1] / "utils" / "make_synthetic_corpus.py"
UTT_FILE = re.compile(r"^(\d+)-(\d+)-(\d{4})\.flac$")
TRANSCRIPT = re.compile(r"^[A-Z']+( [A-Z']+)*$")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """The tiny preset, made once for this module (LibriSpeech root).  Tests must not modify it."""
    return S.make_corpus(tmp_path_factory.mktemp("tiny"), preset="tiny", seed=0, jobs=2)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _mtimes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*")}


def _table(path: Path) -> list[list[str]]:
    return [[c.strip() for c in line.split("|")] for line in path.read_text().splitlines()
            if line.strip() and not line.startswith(";")]


def _transcripts(root: Path) -> dict[str, str]:
    out = {}
    for trans in root.glob("*/*/*/*.trans.txt"):
        for line in trans.read_text().splitlines():
            utt_id, text = line.split(" ", 1)
            out[utt_id] = text
    return out


def _copy(root: Path, dest: Path) -> Path:
    shutil.copytree(root.parent, dest)
    return dest / "LibriSpeech"


# ------------------------------------------------------------------------------------------------
# Layout and content


def test_layout_is_librispeech(tiny: Path):
    config = S.resolve_config("tiny")
    names = [s.name for s in config.subsets]
    assert sorted(p.name for p in tiny.iterdir()) == sorted(names + ["CHAPTERS.TXT", "SPEAKERS.TXT", "corpus.json"])
    n_utts = 0
    for spec in config.subsets:
        speakers = list((tiny / spec.name).iterdir())
        assert len(speakers) == spec.speakers and all(p.is_dir() and p.name.isdigit() for p in speakers)
        for spk in speakers:
            chapters = list(spk.iterdir())
            assert len(chapters) == spec.chapters_per_speaker
            for chap in chapters:
                assert chap.is_dir() and chap.name.isdigit()
                trans = chap / f"{spk.name}-{chap.name}.trans.txt"
                flacs = sorted(p.name for p in chap.iterdir() if p != trans)
                lines = trans.read_text().splitlines()
                ids = [line.split(" ", 1)[0] for line in lines]
                assert len(lines) == spec.utts_per_chapter
                assert ids == sorted(ids)
                assert flacs == [f"{i}.flac" for i in ids]  # one-to-one, nothing else in the folder
                for name in flacs:
                    m = UTT_FILE.match(name)
                    assert m and (m.group(1), m.group(2)) == (spk.name, chap.name)
                n_utts += len(ids)
    assert n_utts == sum(s.utterances for s in config.subsets) == 12


def test_speakers_and_chapters_txt(tiny: Path):
    on_disk = {p.name: p.parent.name for p in tiny.glob("*/*/*") if p.is_dir()}  # chapter → speaker
    subset_of = {p.name: p.parent.name for p in tiny.glob("*/*") if p.is_dir()}
    speakers = _table(tiny / "SPEAKERS.TXT")
    assert {row[0]: row[2] for row in speakers} == subset_of
    for spk, sex, _, minutes, name in speakers:
        assert sex in ("M", "F") and float(minutes) > 0 and name
    chapters = _table(tiny / "CHAPTERS.TXT")
    assert {row[0]: row[1] for row in chapters} == on_disk
    for row in chapters:
        assert len(row) == 8 and row[3] == subset_of[row[1]] and float(row[2]) > 0
    assert "SEX" in (tiny / "SPEAKERS.TXT").read_text().splitlines()[2]


def test_subsets_are_speaker_disjoint_with_distinct_ids(tiny: Path):
    per_subset = [{p.name for p in (tiny / s.name).iterdir()} for s in S.resolve_config("tiny").subsets]
    all_ids = [i for ids in per_subset for i in ids]
    assert len(all_ids) == len(set(all_ids)) == 6
    chapters = [p.name for p in tiny.glob("*/*/*")]
    assert len(chapters) == len(set(chapters))


def test_transcripts_use_the_label_alphabet_and_never_repeat(tiny: Path):
    texts = _transcripts(tiny)
    assert len(texts) == 12
    for text in texts.values():
        assert TRANSCRIPT.match(text), text
        assert 4 <= len(text.split()) <= 8
    assert len(set(texts.values())) == len(texts)


def test_audio_is_16k_mono_16bit_flac_and_plausible(tiny: Path):
    texts = _transcripts(tiny)
    for flac in tiny.glob("*/*/*/*.flac"):
        info = sf.info(str(flac))
        assert (info.samplerate, info.channels, info.format, info.subtype) == (16000, 1, "FLAC", "PCM_16")
        audio, _ = sf.read(str(flac), dtype="float32")
        rms_db = 20 * np.log10(np.sqrt(np.mean(audio ** 2)) + 1e-12)
        assert -45 < rms_db < -10, (flac.name, rms_db)
        words_per_second = len(texts[flac.stem].split()) / (len(audio) / 16000)
        assert 1.0 < words_per_second < 4.5, (flac.name, words_per_second)
    assert sum(p.stat().st_size for p in tiny.rglob("*")) < 1_000_000


# ------------------------------------------------------------------------------------------------
# Determinism and caching


def test_same_seed_gives_identical_files_whatever_the_jobs(tiny: Path, tmp_path: Path):
    again = S.make_corpus(tmp_path, preset="tiny", seed=0, jobs=1)
    assert _files(again) == _files(tiny)


def test_second_run_is_a_fast_no_op(tiny: Path):
    before = _mtimes(tiny)
    start = time.perf_counter()
    S.make_corpus(tiny.parent, preset="tiny", seed=0, jobs=2)
    assert time.perf_counter() - start < 1.0
    assert _mtimes(tiny) == before


def test_damaged_chapter_is_regenerated_identically(tiny: Path, tmp_path: Path):
    root = _copy(tiny, tmp_path / "copy")
    victim = sorted(root.glob("dev-clean/*/*/*.flac"))[0]
    original = victim.read_bytes()
    victim.unlink()
    before = {k: v for k, v in _mtimes(root).items() if victim.parent.name not in k and k != "corpus.json"}
    S.make_corpus(root.parent, preset="tiny", seed=0, jobs=2)
    assert victim.read_bytes() == original
    after = _mtimes(root)
    assert all(after[k] == v for k, v in before.items())  # other chapters untouched
    assert _files(root) == _files(tiny)


def test_changed_settings_are_refused_and_force_regenerates(tiny: Path, tmp_path: Path):
    with pytest.raises(S.CorpusMismatchError, match="seed: 0 -> 1"):
        S.make_corpus(tiny.parent, preset="tiny", seed=1)
    root = _copy(tiny, tmp_path / "copy")
    S.make_corpus(root.parent, preset="tiny", seed=1, jobs=2, force=True)
    old, new = _transcripts(tiny), _transcripts(root)
    assert len(new) == 12 and set(new.values()).isdisjoint(old.values())
    assert not set(old) & set(new)  # the seed-0 files are gone
    assert sorted(p.name for p in root.glob("*/*")) == sorted(row[0] for row in _table(root / "SPEAKERS.TXT"))


def test_a_folder_not_made_by_the_generator_is_left_alone(tmp_path: Path):
    (tmp_path / "LibriSpeech" / "dev-clean").mkdir(parents=True)
    with pytest.raises(S.CorpusMismatchError, match="not made by this generator"):
        S.make_corpus(tmp_path, preset="tiny", force=True)
    assert (tmp_path / "LibriSpeech" / "dev-clean").is_dir()


def test_failed_utterance_is_retried_once_then_skipped_and_reported(tmp_path: Path, monkeypatch):
    plan = S.plan_corpus(S.resolve_config("tiny"))
    target = plan.chapters[0].utterances[0]
    calls = []
    real = S._synth_one

    def flaky(voice, text, wav):
        if text == target.text:
            calls.append(text)
            raise S.SynthesisError("simulated failure")
        return real(voice, text, wav)

    monkeypatch.setattr(S, "_synth_one", flaky)
    config = S.resolve_config("tiny")
    report = S.generate_corpus(tmp_path, config, jobs=1, progress=False)  # in-process: the patch applies
    assert len(calls) == 2
    assert [u for u, _ in report.failures] == [target.utt_id]
    chapter_dir = report.root / plan.chapters[0].rel_dir
    assert not (chapter_dir / f"{target.utt_id}.flac").exists()
    assert target.utt_id not in _transcripts(report.root)
    assert report.subsets["train-clean"]["utterances"] == 3

    monkeypatch.setattr(S, "_synth_one", real)  # the next run heals the gap
    report = S.generate_corpus(tmp_path, config, jobs=1, progress=False)
    assert report.generated == 1 and not report.failures
    assert (chapter_dir / f"{target.utt_id}.flac").is_file()


def test_mixed_voices(tmp_path: Path):
    if any(shutil.which(t) is None for t in ("flite", "festival")) or not S.FESTIVAL_VOICE_DIR.is_dir():
        pytest.skip("needs flite, festival and festvox-kallpc16k")
    root = S.make_corpus(tmp_path, preset="tiny", jobs=2, subsets="train-clean", speakers=4,
                         voices="flite-rms,flite-kal16,festival-kal,espeak")
    names = [row[4] for row in _table(root / "SPEAKERS.TXT")]
    for engine in ("flite rms", "flite kal16", "festival kal", "espeak-ng"):
        assert sum(n.startswith(engine) for n in names) == 1, names
    flacs = list(root.glob("train-clean/*/*/*.flac"))
    assert len(flacs) == 8
    for flac in flacs:
        audio, sr = sf.read(str(flac), dtype="float32")
        assert sr == 16000 and audio.ndim == 1 and np.sqrt(np.mean(audio ** 2)) > 0.005


# ------------------------------------------------------------------------------------------------
# Planning, text filtering, settings


def test_demo_plan_follows_the_voice_and_split_rules():
    plan = S.plan_corpus(S.resolve_config("demo"))
    by_subset: dict[str, list[S.Speaker]] = {}
    for spk in plan.speakers:
        by_subset.setdefault(spk.subset, []).append(spk)
    assert len(by_subset["train-clean"]) >= 40
    assert [len(by_subset[s]) for s in ("dev-clean", "test-clean")] == [10, 10]
    ids = [s.speaker for s in plan.speakers]
    assert len(ids) == len(set(ids))
    for speakers in by_subset.values():
        engines = [s.voice.engine for s in speakers]
        assert engines.count("espeak") / len(engines) <= S.MAX_ESPEAK_SHARE
        if len(speakers) >= 6:
            assert {"flite-rms", "espeak"} <= set(engines)
    utts = {c.subset: [] for c in plan.chapters}
    for c in plan.chapters:
        utts[c.subset] += [u.text for u in c.utterances]
    assert 90 <= len(utts["dev-clean"]) <= 110 and 90 <= len(utts["test-clean"]) <= 110
    texts = [t for ts in utts.values() for t in ts]
    assert len(texts) == len(set(texts))
    assert all(5 <= len(t.split()) <= 20 for t in texts)
    vocab = S._source_vocabulary(plan.config.texts, 5, 20, 1000)
    assert len(vocab) == 1000 and all(vocab.issuperset(t.split()) for t in texts)


def test_voice_settings_stay_in_range():
    for i in range(50):
        rng = S._rng(7, 99, i)
        for engine in S.ENGINES:
            v = S.draw_voice(engine, rng)
            assert 0 <= v.highpass_hz <= 120 and (v.lowpass_hz == 0 or 5000 <= v.lowpass_hz <= 7600)
            assert -3 <= v.treble_db <= 3 and 25 <= v.snr_db <= 40
            if engine == "espeak":
                accent, _, variant = v.espeak_voice.partition("+")
                assert accent in S.ESPEAK_ACCENTS and variant in S.ESPEAK_VARIANTS
                assert 32 <= v.espeak_pitch <= 68 and 140 <= v.espeak_speed <= 190 and 0 <= v.espeak_gap <= 2
            elif engine in S.NEURAL_ENGINES:
                low, high = (-400, 300) if v.sex == "F" else (-300, 500)
                assert low <= v.pitch_cents <= high and 0.88 <= v.tempo <= 1.12
                if engine == "kokoro":
                    assert 0 <= float(v.neural_voice) <= 1 and v.sex == ("M" if float(v.neural_voice) >= 0.5 else "F")
                else:
                    assert v.neural_voice == {"hibari": "heart", "piper": "joe"}[engine]
            else:
                assert -300 <= v.pitch_cents <= 500
                assert 0.88 <= v.tempo <= 1.12 and 1 / 1.12 - 1e-3 <= v.duration_stretch <= 1 / 0.88 + 1e-3


def test_split_sentences_keeps_abbreviations_and_initials():
    text = 'Mr. Smith met J. R. Jones. "Fine," he said! Was it? Yes.'
    assert S.split_sentences(text) == ["Mr. Smith met J. R. Jones.", '"Fine," he said!', "Was it?", "Yes."]


@pytest.mark.parametrize("sentence, expected", [
    ("He paid $3 for 2 apples.", "he paid three dollars for two apples"),
    ("Mr. Smith went to Washington today.", "mister smith went to washington today"),
    ("The NASA probe flew far away.", None),             # acronym
    ("See www.example.com for the details.", None),      # URL
    ("The cat sat on teh mat today.", None),             # unknown lower-case word
    ("It weighs about ten lb in all.", None),            # abbreviation a synthesizer expands
    ("Caf\u00e9 au lait is very nice.", None),           # non-ASCII
    ("Set x_max to the value now.", None),               # symbol with no single reading
    ("Too short.", None),
])
def test_sentence_filter(sentence: str, expected: str | None):
    assert S.SentenceFilter(4, 12)(sentence) == expected


def test_resolve_config_overrides_and_validation():
    c = S.resolve_config("demo", speakers="40,5,5", utts_per_chapter=10, voices="rms:1,espeak:1", seed=3)
    assert [s.speakers for s in c.subsets] == [40, 5, 5] and {s.utts_per_chapter for s in c.subsets} == {10}
    assert c.voices == (("flite-rms", 0.5), ("espeak", 0.5)) and c.seed == 3
    c = S.resolve_config("demo", subsets="train,dev")
    assert [(s.name, s.speakers) for s in c.subsets] == [("train", 120), ("dev", 10)]
    assert S.resolve_config("demo", vocabulary=0).vocabulary == 0
    for bad in (dict(voices="mbrola"), dict(speakers="1,2"), dict(min_words=9, max_words=4),
                dict(subsets="a,a"), dict(subsets="../x"), dict(texts="news"), dict(colour=1),
                dict(vocabulary=-1), dict(vocabulary="many")):
        with pytest.raises(ValueError):
            S.resolve_config("tiny", **bad)
    assert S.assign_engines(S.parse_voices("rms:0.3,kal16:0.2,festival:0.15,espeak:0.35"), 6,
                            S._rng(0, 1)).count("espeak") == 2


def test_missing_tool_names_the_debian_package(monkeypatch):
    real = shutil.which
    monkeypatch.setattr(S.shutil, "which", lambda cmd: None if cmd == "espeak-ng" else real(cmd))
    with pytest.raises(S.ToolMissingError, match="apt-get install espeak-ng"):
        S.check_tools(S.resolve_config("tiny"))


# ------------------------------------------------------------------------------------------------
# Command line


def _load_script():
    spec = importlib.util.spec_from_file_location("make_synthetic_corpus", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # must do nothing but define things
    return module


def test_script_interface(tiny: Path, capsys, restore_logging):
    script = _load_script()
    assert script.__doc__.startswith("Usage:")
    args = script.parse_args(["--output_dir", "x", "--preset", "tiny", "--speakers", "3", "--voices", "espeak"])
    assert (args.preset, args.speakers, args.voices, args.seed) == ("tiny", "3", "espeak", None)
    before = _mtimes(tiny)
    assert script.main(["--output_dir", str(tiny.parent), "--preset", "tiny", "--no_progress"]) == 0
    assert _mtimes(tiny) == before
    assert script.main(["--output_dir", str(tiny.parent), "--preset", "tiny", "--seed", "5", "--no_progress"]) == 1
    assert "--force" in capsys.readouterr().err


def test_vocabulary_keeps_sentences_of_the_most_frequent_words():
    # counts: the 5, cat 5, sat 4, down 3, ran 2, then dog, off, a once each
    texts = ["The cat sat.", "The cat sat down.", "Down the cat sat.", "The dog ran off.", "A cat sat down.",
             "The cat ran."]
    passages = [S.Passage(f"p{i}", t) for i, t in enumerate(texts)]
    assert S.common_words(["b a c", "a b", "a"], 2) == {"a", "b"}
    assert S.common_words(["y x", "x y"], 1) == {"x"}               # ties go alphabetically
    config = S.resolve_config("tiny", subsets="train", speakers=1, utts_per_chapter=2, min_words=3, max_words=5,
                              text_pools="shared", vocabulary=4)
    chosen = S.select_sentences(config, passages)[0]
    assert len(chosen) == 2 and all({"the", "cat", "sat", "down"}.issuperset(t.split()) for t in chosen)
    with pytest.raises(S.SyntheticCorpusError, match="vocabulary 2"):
        S.select_sentences(dataclasses.replace(config, vocabulary=2), passages)
    old = {k: v for k, v in config.to_json().items() if k != "vocabulary"}   # a corpus.json from before the option
    assert S.CorpusConfig.from_json(old).vocabulary == 0
