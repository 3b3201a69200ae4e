"""Probe sets re-rendered from a generated corpus's plan (utils/corpus/probe.py, utils/probe_corpus.py)."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from utils.corpus import probe as P
from utils.corpus import synthetic as S
from src.data.manifest import read_manifest

pytestmark = [pytest.mark.needs_tools,
              pytest.mark.skipif(any(shutil.which(t) is None for t in ("sox", "espeak-ng", "bible"))
                                 or not S.DICT_PATH.is_file() or not S.FORTUNES_DIR.is_dir(),
                                 reason="needs sox, espeak-ng, bible-kjv, fortunes and wamerican")]

SCRIPT = Path(__file__).resolve().parents[1] / "utils" / "probe_corpus.py"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A tiny espeak-only corpus: 2 speakers per subset, 2 utterances each."""
    return S.make_corpus(tmp_path_factory.mktemp("probe_corpus"), preset="tiny", seed=3, jobs=2)


def test_config_round_trips_through_corpus_json(corpus: Path):
    meta = json.loads((corpus / "corpus.json").read_text())
    assert S.CorpusConfig.from_json(meta["config"]) == S.resolve_config("tiny", seed=3)
    with pytest.raises(ValueError, match="not a corpus configuration"):
        S.CorpusConfig.from_json({"subsets": []})


def test_seen_set_reproduces_the_training_audio_exactly(corpus: Path, tmp_path: Path):
    manifests = P.write_probe_sets(P.load_plan(corpus.parent), tmp_path, n=3, jobs=1, sets=["seen"], progress=False)
    utts = read_manifest(manifests["seen"])
    assert len(utts) == 3
    for u in utts:
        speaker, chapter, _ = Path(u.audio_path).stem.split("-")
        flac = corpus / "train-clean" / speaker / chapter / f"{Path(u.audio_path).stem}.flac"
        original, _ = sf.read(str(flac), dtype="int16")
        again, sr = sf.read(u.audio_path, dtype="int16")
        assert sr == 16000 and np.array_equal(original, again)
        trans = (flac.parent / f"{speaker}-{chapter}.trans.txt").read_text()
        assert f"{flac.stem} {u.transcript.upper()}\n" in trans


def test_each_set_changes_one_thing():
    plan = S.plan_corpus(S.resolve_config("tiny", seed=3))
    items = P.probe_items(plan, n=4)
    train_voices = {s.voice for s in plan.speakers if s.subset == "train-clean"}
    test_voices = {s.voice for s in plan.speakers if s.subset == "test-clean"}
    test_texts = {u.text for c in plan.chapters if c.subset == "test-clean" for u in c.utterances}
    seen = items["seen"]
    assert len(seen) == 4 and {v for v, _ in seen} == train_voices  # both training speakers contribute
    assert [u for _, u in items["new_voice"]] == [u for _, u in seen]
    assert {v for v, _ in items["new_voice"]} <= test_voices
    assert {u.text for _, u in items["new_text"]} <= test_texts
    assert {v for v, _ in items["new_text"]} <= train_voices
    corpus_texts = {u.text for c in plan.chapters for u in c.utterances}
    open_texts = [u.text for _, u in items["open_text"]]
    assert len(set(open_texts)) == 4 and not set(open_texts) & corpus_texts
    assert {v for v, _ in items["open_text"]} <= test_voices
    for (v0, u0), (v1, u1) in zip(seen, items["pitch"]):
        assert u0 == u1 and abs(v1.pitch_cents - v0.pitch_cents) == P.PITCH_STEP_CENTS
        assert v1 == S.Voice(**{**v0.__dict__, "pitch_cents": v1.pitch_cents})
    for (v0, _), (v1, _) in zip(seen, items["tempo"]):
        assert v1.tempo == pytest.approx(v0.tempo * (1 + P.TEMPO_STEP if v0.tempo < 1 else 1 - P.TEMPO_STEP), abs=1e-3)
    for (v0, _), (v1, _) in zip(seen, items["channel"]):
        assert (v1.pitch_cents, v1.tempo) == (v0.pitch_cents, v0.tempo) and v1 != v0
    with pytest.raises(ValueError, match="unknown probe sets"):
        P.probe_items(plan, 2, sets=["seen", "louder"])
    with pytest.raises(ValueError, match="not in the corpus"):
        P.probe_items(plan, 2, heldout_subset="test-other")


def test_script_writes_manifests_eval_reads_and_reuses_its_audio(corpus: Path, tmp_path: Path, capsys,
                                                                 restore_logging):
    spec = importlib.util.spec_from_file_location("probe_corpus", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "probe"
    argv = ["--corpus_dir", str(corpus.parent), "--output_dir", str(out), "--utterances", "2", "--jobs", "2",
            "--no_progress"]
    assert script.main(argv) == 0
    assert "--manifest" in capsys.readouterr().out
    for name in P.PROBE_SETS:
        utts = read_manifest(out / f"{name}.json")
        assert len(utts) == 2 and all(Path(u.audio_path).is_file() and u.duration > 0.5 for u in utts)
    pitch = sf.read(read_manifest(out / "pitch.json")[0].audio_path)[0]
    seen = sf.read(read_manifest(out / "seen.json")[0].audio_path)[0]
    assert not np.array_equal(pitch[: len(seen)], seen[: len(pitch)])
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/*.wav")}
    assert script.main(argv) == 0  # a second run reuses every file
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/*.wav")} == stamps
    assert script.main(["--corpus_dir", str(tmp_path), "--output_dir", str(out), "--no_progress"]) == 1
    assert "no corpus.json" in capsys.readouterr().err
