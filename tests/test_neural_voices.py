"""Neural voices, acoustic variety and the new_engine probe set of the corpus generator
(utils/corpus/neural.py, utils/corpus/acoustics.py, utils/corpus/synthetic.py, utils/corpus/probe.py)."""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from utils.corpus import acoustics as A
from utils.corpus import neural as N
from utils.corpus import probe as P
from utils.corpus import synthetic as S

HAVE_TEXT_TOOLS = (all(shutil.which(t) for t in ("sox", "espeak-ng", "bible")) and S.DICT_PATH.is_file()
                   and S.FORTUNES_DIR.is_dir())
needs_tools = [pytest.mark.needs_tools,
               pytest.mark.skipif(not HAVE_TEXT_TOOLS, reason="needs sox, espeak-ng, bible-kjv, fortunes and wamerican")]
needs_sox = pytest.mark.skipif(shutil.which("sox") is None, reason="needs sox with libsox-fmt-all")
needs_rooms = pytest.mark.skipif(importlib.util.find_spec("pyroomacoustics") is None,
                                 reason="pyroomacoustics not installed (requirements-voices.txt: ensure_voices)")


def needs_engine(engine: str) -> pytest.MarkDecorator:
    gone = N.missing_modules(engine)
    return pytest.mark.skipif(bool(gone), reason=f"{engine} voice not installed ({', '.join(gone)}): "
                                                 f"requirements-voices.txt, `{N.INSTALL_COMMAND}`")


TEXT = "yes it is"
ENGINE_VOICES = {"hibari": "heart", "kokoro": "0.4", "piper": "joe"}
MAKE_SCRIPT = Path(__file__).resolve().parents[1] / "utils" / "make_synthetic_corpus.py"


def _voice(engine: str, **kw) -> S.Voice:
    return dataclasses.replace(S.draw_voice(engine, S._rng(0, 123)), **kw)


def _band_energy(x: np.ndarray, low: float, high: float, sr: int = 16000) -> float:
    power = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / sr)
    return float(power[(f >= low) & (f < high)].sum() / power.sum())


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """1.5 s of voiced, syllable-like sound with energy up to 8 kHz, between silences (16 kHz)."""
    sr, rng = 16000, np.random.default_rng(0)
    t = np.arange(int(1.5 * sr)) / sr
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.8 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 50))
    x = (voiced + 0.3 * rng.standard_normal(len(t))) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) ** 2
    x = 0.1 * x / np.sqrt(np.mean(x ** 2))
    return np.concatenate([np.zeros(4000), x, np.zeros(4000)]).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# Neural engines (skipped with a reason when the optional packages are missing)


@pytest.mark.parametrize("engine", list(N.NEURAL_ENGINES))
def test_engine_is_deterministic_and_resampled_to_16k(engine: str):
    if N.missing_modules(engine):
        pytest.skip(f"{engine} voice not installed ({', '.join(N.missing_modules(engine))}): `{N.INSTALL_COMMAND}`")
    raw1, rate = N.synthesize_raw(engine, TEXT, ENGINE_VOICES[engine])
    raw2, _ = N.synthesize_raw(engine, TEXT, ENGINE_VOICES[engine])
    assert rate in (22050, 24000) and np.array_equal(raw1, raw2)
    if engine == "kokoro":
        return  # slow (about 1.5 audio-s per CPU-s); the corpus path is the same for every engine
    voice = _voice(engine)
    a = S.synthesize(voice, TEXT, seed=5, allow_piper=True)
    b = S.synthesize(voice, TEXT, seed=5, allow_piper=True)
    assert a.dtype == np.float32 and a.ndim == 1 and np.array_equal(a, b)
    assert 0.5 < len(a) / 16000 < 4.0 and np.abs(a).max() <= 1.0
    other = S.synthesize(dataclasses.replace(voice, pitch_cents=voice.pitch_cents + 200), TEXT, seed=5,
                         allow_piper=True)
    assert not np.array_equal(a[: len(other)], other[: len(a)])  # the pitch draw applies to neural voices too


@needs_engine("kokoro")
def test_kokoro_blends_differ_from_their_styles():
    kumo, _ = N.synthesize_raw("kokoro", TEXT, "jm_kumo")
    blend, _ = N.synthesize_raw("kokoro", TEXT, "0.5")
    assert len(kumo) != len(blend) or not np.allclose(kumo, blend, atol=1e-3)


def test_neural_corpus_is_identical_whatever_the_jobs(tmp_path: Path):
    # Kokoro only when it is the one installed: it is slow, and its path through the corpus is the same.
    engines = [e for e in ("hibari", "piper") if not N.missing_modules(e)] or [
        e for e in ("kokoro",) if not N.missing_modules(e)]
    if not engines or not HAVE_TEXT_TOOLS:
        pytest.skip("needs at least one neural voice (requirements-voices.txt) and the text tools")
    kw = dict(preset="tiny", subsets="train", speakers=len(engines), utts_per_chapter=1, voices=",".join(engines),
              allow_piper=True, acoustics=0.6 if importlib.util.find_spec("pyroomacoustics") else 0.0)
    one = S.make_corpus(tmp_path / "a", jobs=1, **kw)
    two = S.make_corpus(tmp_path / "b", jobs=2, **kw)
    files = sorted(p.relative_to(one).as_posix() for p in one.rglob("*.flac"))
    assert len(files) == len(engines)
    assert all((one / f).read_bytes() == (two / f).read_bytes() for f in files)
    names = [line.split("|")[-1].strip() for line in (one / "SPEAKERS.TXT").read_text().splitlines()
             if not line.startswith(";")]
    assert sorted(n.split()[0] for n in names) == sorted(engines)


# ------------------------------------------------------------------------------------------------
# Refusals and the optional install


@pytest.mark.parametrize("name", ["jf_nezumi", "kokoro-jf_nezumi", "nezumi", "slt", "flite-slt", "awb", "ked",
                                  "festival-slt", "jf_alpha"])
def test_reserved_voices_are_refused(name: str):
    with pytest.raises(N.ReservedVoiceError, match="reserved|unintelligible"):
        S.parse_voices(f"flite-rms,{name}:0.5")
    with pytest.raises(ValueError):
        S.resolve_config("tiny", voices=name)


def test_reserved_kokoro_styles_are_refused_before_any_model_loads(monkeypatch):
    monkeypatch.setattr(N, "get_engine", lambda engine: pytest.fail("an engine was loaded"))
    for style in ("jf_nezumi", "jf_tebukuro", "jf_alpha", "someone"):
        with pytest.raises(N.ReservedVoiceError):
            N.synthesize_raw("kokoro", TEXT, style)
    with pytest.raises(N.ReservedVoiceError, match="reserved for independent evaluation"):
        N.check_style("jf_nezumi")
    with pytest.raises(N.ReservedVoiceError):
        S.synthesize(_voice("kokoro", neural_voice="jf_nezumi"), TEXT)
    with pytest.raises(ValueError):
        N.synthesize_raw("kokoro", TEXT, "1.5")


@pytest.mark.parametrize("engine", list(N.NEURAL_ENGINES))
def test_missing_package_names_the_install_command(engine: str, monkeypatch):
    module = N.REQUIRED_MODULES[engine][-1]
    monkeypatch.setitem(sys.modules, module, None)   # what a blocked or absent import looks like
    monkeypatch.setattr(N, "_LOADED", {})
    config = S.resolve_config("tiny", voices=f"{engine},espeak")
    with pytest.raises(S.ToolMissingError, match="ensure_voices") as info:
        S.check_tools(config, allow_piper=True)
    assert module in str(info.value) and "requirements-voices.txt" in str(info.value)
    with pytest.raises(N.VoicesNotInstalledError, match="ensure_voices"):
        N.get_engine(engine)
    with pytest.raises(S.ToolMissingError, match="ensure_voices"):
        S.synthesize(_voice(engine), TEXT, allow_piper=True)


def test_piper_is_refused_without_the_explicit_option(tmp_path: Path, capsys, restore_logging):
    config = S.resolve_config("tiny", voices="piper:1,espeak:1")
    with pytest.raises(S.PiperNotAllowedError, match="--allow_piper"):
        S.check_tools(config)
    with pytest.raises(S.PiperNotAllowedError):
        S.make_corpus(tmp_path, preset="tiny", voices="joe")
    assert not (tmp_path / "LibriSpeech").exists()
    with pytest.raises(S.PiperNotAllowedError, match="GPL"):
        S.synthesize(_voice("piper"), TEXT)
    spec = importlib.util.spec_from_file_location("make_synthetic_corpus", MAKE_SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--output_dir", str(tmp_path), "--preset", "tiny", "--voices", "piper", "--no_progress"]) == 1
    assert "--allow_piper" in capsys.readouterr().err


def test_allow_piper_help_states_the_licence_caveat(capsys):
    spec = importlib.util.spec_from_file_location("make_synthetic_corpus", MAKE_SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with pytest.raises(SystemExit):
        script.parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--allow_piper" in out and "GPL-3.0-or-later" in out and "research use only" in out


# ------------------------------------------------------------------------------------------------
# Acoustic variety


def test_acoustic_draws_are_deterministic_and_scale_with_strength():
    def draws(strength: float, seed: int = 0) -> list[A.Acoustics]:
        return [A.draw_acoustics(S._rng(seed, 5, i), strength) for i in range(400)]

    assert draws(0.5) == draws(0.5) and draws(0.5) != draws(0.5, seed=1)
    assert all(a.is_clean for a in draws(0.0))
    for strength in (0.5, 1.0):
        d = draws(strength)
        clean = sum(a.is_clean for a in d) / len(d)
        assert 0.02 < clean < 0.6, clean
        assert {a.channel for a in d} == {"", *A.CHANNELS}
        for attr, p in (("room", A.P_ROOM), ("snr_db", A.P_NOISE), ("gain_db", A.P_LEVEL), ("channel", A.P_CHANNEL)):
            share = sum(bool(getattr(a, attr)) if attr != "snr_db" else a.snr_db is not None for a in d) / len(d)
            assert abs(share - p * strength) < 0.08, (attr, share)
        snrs = [a.snr_db for a in d if a.snr_db is not None]
        assert 35 - 30 * strength - 1e-6 <= min(snrs) and max(snrs) <= 35
        rt60s = [a.room[3] for a in d if a.room]
        assert min(rt60s) >= 0.15 and max(rt60s) <= 0.15 + 0.75 * strength + 1e-3


def test_plan_draws_acoustics_per_utterance_only_when_asked():
    if not HAVE_TEXT_TOOLS:
        pytest.skip("needs the text tools")
    plain = S.plan_corpus(S.resolve_config("tiny", utts_per_chapter=6))
    assert all(u.acoustics is None for c in plain.chapters for u in c.utterances)
    varied = S.plan_corpus(S.resolve_config("tiny", utts_per_chapter=6, acoustics=0.8))
    for c0, c1 in zip(plain.chapters, varied.chapters):
        assert [(u.utt_id, u.text, u.seed) for u in c0.utterances] == [(u.utt_id, u.text, u.seed) for u in c1.utterances]
        labels = {u.acoustics.label() for u in c1.utterances}
        assert len(labels) > 1   # a speaker is heard through several conditions, not one channel
    config = S.resolve_config("tiny", acoustics=0.8)
    assert config.to_json()["acoustics"] == 0.8 and S.CorpusConfig.from_json(config.to_json()) == config
    assert "acoustics" not in S.resolve_config("tiny").to_json()
    for bad in (-0.1, 1.5, "loud"):
        with pytest.raises(ValueError, match="acoustics"):
            S.resolve_config("tiny", acoustics=bad)


@needs_sox
def test_telephone_channel_removes_the_band_above_3400_hz(speech: np.ndarray):
    assert _band_energy(speech, 3400, 8000) > 0.05
    for name in ("telephone", "gsm"):
        y = A.codec(speech, name)
        assert len(y) == len(speech)
        assert _band_energy(y, 3600, 8000) < 1e-3 and _band_energy(y, 0, 250) < 0.02, name
        assert _band_energy(y, 3400, 8000) < 0.01
        assert np.array_equal(y, A.codec(speech, name))


@needs_sox
@pytest.mark.parametrize("name, param", [("amr", 4.75), ("amr", 12.2), ("mp3", 16.0), ("mp3", 32.0),
                                         ("lowpass", 4000.0)])
def test_codecs_keep_length_and_alignment_and_are_deterministic(speech: np.ndarray, name: str, param: float):
    y = A.codec(speech, name, param)
    assert len(y) == len(speech) and np.array_equal(y, A.codec(speech, name, param))
    assert not np.allclose(y, speech, atol=1e-3)
    reference = A.codec(speech, "lowpass", 3400.0)      # what an 8 kHz channel can keep
    corr = float(np.corrcoef(reference, A.codec(y, "lowpass", 3400.0))[0, 1])
    assert corr > 0.5, corr                            # aligned (a shift would decorrelate), same polarity
    if name == "lowpass":
        assert _band_energy(y, 4500, 8000) < 1e-3
    if name == "amr":
        assert _band_energy(y, 4100, 8000) < 1e-3      # narrow-band codec


@pytest.mark.parametrize("snr", [5.0, 17.5, 30.0])
def test_noise_is_added_at_the_drawn_snr(speech: np.ndarray, snr: float):
    for tilt, hum, modulation in ((0.0, 0.0, 0.0), (1.5, 50.0, 0.4)):
        y = A.add_noise(speech, snr, np.random.default_rng(3), tilt, hum, modulation)
        added = y - speech
        measured = 20 * np.log10(A.active_rms(speech) / np.sqrt(np.mean(added.astype(np.float64) ** 2)))
        assert abs(measured - snr) < 0.1, (tilt, measured)
        assert np.array_equal(y, A.add_noise(speech, snr, np.random.default_rng(3), tilt, hum, modulation))


def test_gain_changes_the_level_by_the_drawn_amount(speech: np.ndarray):
    y = A.apply_acoustics(speech, A.Acoustics(gain_db=-12.0))
    assert 20 * np.log10(A.active_rms(y) / A.active_rms(speech)) == pytest.approx(-12.0, abs=0.01)
    assert np.array_equal(A.apply_acoustics(speech, A.Acoustics()), speech)


@needs_rooms
def test_room_reverberation_adds_a_decaying_tail(speech: np.ndarray):
    room = (6.0, 5.0, 3.0, 0.6, 1.5, 2.0, 1.6, 4.5, 3.5, 1.2)
    rir = A.room_impulse_response(room)
    assert np.array_equal(rir, A.room_impulse_response(room))
    import pyroomacoustics as pra
    assert pra.experimental.measure_rt60(rir, fs=16000) == pytest.approx(0.6, rel=0.35)
    y = A.apply_acoustics(speech, A.Acoustics(room=room))
    assert len(y) == len(speech) and A.active_rms(y) == pytest.approx(A.active_rms(speech), rel=1e-3)
    end = len(speech) - 4000                                   # the last 0.25 s were silence
    tail = slice(end + 400, end + 2400)
    assert np.sqrt(np.mean(y[tail] ** 2)) > 100 * np.sqrt(np.mean(speech[tail] ** 2) + 1e-20)
    short = A.apply_acoustics(speech, A.Acoustics(room=(*room[:3], 0.2, *room[4:])))
    assert np.mean(short[tail] ** 2) < np.mean(y[tail] ** 2)  # longer RT60, longer tail


@needs_sox
@needs_rooms
def test_every_effect_together_is_deterministic(speech: np.ndarray):
    a = A.Acoustics(room=(4.0, 3.5, 2.7, 0.4, 1.0, 1.0, 1.5, 3.0, 2.5, 1.3), snr_db=15.0, noise_tilt=1.0, hum_hz=60.0,
                    gain_db=-6.0, channel="mp3", channel_param=24.0, seed=11)
    y = A.apply_acoustics(speech, a)
    assert len(y) == len(speech) and np.array_equal(y, A.apply_acoustics(speech, a))
    assert not np.array_equal(y, A.apply_acoustics(speech, dataclasses.replace(a, seed=12)))


# ------------------------------------------------------------------------------------------------
# Presets and the demo corpus


pytest_demo = pytest.mark.skipif(not HAVE_TEXT_TOOLS, reason="needs the text tools")


@pytest_demo
@pytest.mark.needs_tools
def test_generalize_preset_is_richer_and_keeps_hibari_out():
    config = S.resolve_config("generalize")
    voices = dict(config.voices)
    assert config.vocabulary == 0 and config.acoustics > 0 and config.texts == S.TEXT_SOURCES
    assert 0 < voices["kokoro"] <= S.MAX_KOKORO_SHARE and voices["espeak"] <= S.MAX_ESPEAK_SHARE
    assert "hibari" not in voices and "piper" not in voices
    plan = S.plan_corpus(config)
    train = [s for s in plan.speakers if s.subset == "train-clean"]
    assert len(train) >= 150 and sum(s.voice.engine == "kokoro" for s in train) / len(train) <= S.MAX_KOKORO_SHARE
    utts = [u for c in plan.chapters for u in c.utterances]
    assert sum(u.acoustics.is_clean for u in utts) / len(utts) < 0.6
    assert P.new_engine_for(plan, allow_piper=False, engine="hibari") == "hibari" or N.missing_modules("hibari")


def test_demo_settings_are_unchanged():
    """The demo's numbers depend on its exact corpus: the neural voices and acoustics stay out of it."""
    config = S.resolve_config("demo")
    assert config.to_json() == {
        "subsets": [{"name": "train-clean", "speakers": 120, "chapters_per_speaker": 1, "utts_per_chapter": 16},
                    {"name": "dev-clean", "speakers": 10, "chapters_per_speaker": 1, "utts_per_chapter": 10},
                    {"name": "test-clean", "speakers": 10, "chapters_per_speaker": 1, "utts_per_chapter": 10}],
        "min_words": 5, "max_words": 20,
        "voices": {"flite-rms": 0.3, "flite-kal16": 0.2, "festival-kal": 0.15, "espeak": 0.35},
        "texts": ["fortunes", "bible"], "text_pools": "disjoint", "seed": 0, "vocabulary": 1000, "version": 1}


# Digest of the demo plan (every speaker's settings, text and seed) as made before the neural voices and
# acoustics existed.  It also changes when the Debian text packages (fortunes, bible-kjv, wamerican) do.
DEMO_PLAN_SHA256 = "1314982665258e623ae372d6b69e6380e76c2ab705634e3dfff445e63d6a4e1d"


@pytest.mark.slow
@pytest_demo
def test_demo_plan_is_the_one_made_before():
    plan = S.plan_corpus(S.resolve_config("demo"))
    h = hashlib.sha256()
    for c in plan.chapters:
        v = {k: x for k, x in dataclasses.asdict(c.voice).items() if k != "neural_voice"}
        for u in c.utterances:
            assert u.acoustics is None
            h.update(json.dumps([c.subset, c.speaker, c.chapter, v, u.utt_id, u.text, u.seed], sort_keys=True).encode())
    assert h.hexdigest() == DEMO_PLAN_SHA256


# ------------------------------------------------------------------------------------------------
# The new_engine probe set


@pytest_demo
@pytest.mark.needs_tools
def test_new_engine_set_uses_an_engine_absent_from_training(monkeypatch):
    plan = S.plan_corpus(S.resolve_config("tiny", seed=3))          # espeak-only training
    train_engines = {s.voice.engine for s in plan.speakers if s.subset == "train-clean"}
    items = P.probe_items(plan, n=4, sets=["seen", "new_engine"])
    engine = P.new_engine_for(plan)
    assert engine is not None and engine not in train_engines
    voices = {v for v, _ in items["new_engine"]}
    assert {v.engine for v in voices} == {engine} and len(voices) > 1
    assert [u for _, u in items["new_engine"]] == [u for _, u in items["seen"]]
    assert not voices & {s.voice for s in plan.speakers}
    assert "new_engine" in P.available_sets(plan)
    # without the neural packages the first Debian family training left out is taken
    monkeypatch.setattr(N, "is_installed", lambda engine: False)
    fallback = P.new_engine_for(plan)
    assert fallback not in N.NEURAL_ENGINES and fallback not in train_engines
    with pytest.raises(ValueError, match="not new"):
        P.probe_items(plan, n=2, sets=["new_engine"], new_engine="espeak")
    with pytest.raises(ValueError, match="allow_piper"):
        P.probe_items(plan, n=2, sets=["new_engine"], new_engine="piper")
    monkeypatch.setattr(P, "engine_available", lambda engine, allow_piper=False: engine == "espeak")
    assert P.new_engine_for(plan) is None and "new_engine" not in P.available_sets(plan)
    with pytest.raises(ValueError, match="ensure_voices"):
        P.probe_items(plan, n=2, sets=["new_engine"])


@pytest_demo
@pytest.mark.needs_tools
def test_new_engine_set_is_written_and_redone_when_its_engine_changes(tmp_path: Path):
    plan = S.plan_corpus(S.resolve_config("tiny", seed=3))
    if P.new_engine_for(plan) is None:
        pytest.skip("no engine outside training installed")
    out = tmp_path / "probe"
    manifests = P.write_probe_sets(plan, out, n=2, jobs=1, sets=["new_engine"], progress=False)
    entries = json.loads(manifests["new_engine"].read_text())
    assert len(entries) == 2 and all((out / e["files"][0]["fname"]).is_file() for e in entries)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("new_engine/*.wav")}
    P.write_probe_sets(plan, out, n=2, jobs=1, sets=["new_engine"], progress=False)
    assert {p: p.stat().st_mtime_ns for p in out.glob("new_engine/*.wav")} == stamps
    if shutil.which("flite") and P.new_engine_for(plan) != "flite-rms":
        P.write_probe_sets(plan, out, n=2, jobs=1, sets=["new_engine"], progress=False, new_engine="flite-rms")
        assert {p: p.stat().st_mtime_ns for p in out.glob("new_engine/*.wav")} != stamps


# ------------------------------------------------------------------------------------------------
# The synthesis interface other generators use


@pytest.mark.needs_tools
@pytest.mark.skipif(not all(shutil.which(t) for t in ("sox", "espeak-ng")), reason="needs sox and espeak-ng")
def test_synthesize_interface_for_other_generators():
    voice = S.draw_voice("espeak", S._rng(1, 2))
    speech = S.synthesize_speech(voice, "yes")
    assert speech.dtype == np.float32 and speech.ndim == 1 and 0.1 < len(speech) / 16000 < 1.5
    assert 0 < np.abs(speech).max() <= 0.9 + 1e-6
    full = S.synthesize(voice, "yes", seed=4)
    assert full.dtype == np.float32 and len(full) > len(speech) and np.array_equal(full, S.synthesize(voice, "yes", 4))
    noisy = S.synthesize(voice, "yes", seed=4, acoustics=A.Acoustics(snr_db=10.0, seed=1))
    assert len(noisy) == len(full) and not np.array_equal(noisy, full)
    pcm = S.synthesize_utterance(voice, S.Utterance("x", "yes", 4))
    assert np.array_equal(full, pcm.astype(np.float32) / 32768)
    with pytest.raises(S.SynthesisError):
        S.synthesize(dataclasses.replace(voice, engine="mbrola"), "yes")
