"""Keyword corpora in Speech Commands' exact layout, spoken by the project's synthetic voices.

Speech Commands cannot be downloaded everywhere, so tests and the DS-CNN demo generate::

    <root>/<word>/<speaker>_nohash_<n>.wav   16 kHz mono 16-bit, exactly 16,000 samples
    <root>/validation_list.txt, testing_list.txt   "<word>/<speaker>_nohash_<n>.wav" lines
    <root>/_background_noise_/*.wav                white, pink and brown noise, mains hum, babble
    <root>/corpus.json                             settings, speakers and their voices

so the real conversion code (src/data/speech_commands.py) runs on it unchanged.

- Words: the 35 words of Speech Commands v0.02 and, per speaker, a few more drawn from
  ``OTHER_WORDS`` so that ``_unknown_`` has variety even when all 35 words are wanted.
- Speakers: a speaker is one synthetic voice of utils/corpus/synthetic.py — an engine (the same
  pool and weights as the LibriSpeech-layout demo corpus) with its own drawn settings: pitch, rate,
  channel filters, reverb, noise colour and level.  Its id is 8 hex digits, as in the real data.
  Every clip of a speaker uses that voice; clips differ by their own noise, a speed change of
  ±``SPEED_RANGE``, a level change and the word's position within the second.
- Splits are speaker-disjoint: each speaker's id is chosen so that TensorFlow's hash rule puts it in
  its split, so the lists and the hash fallback agree.  Validation and test speakers are voice
  settings never used for training; the base engines (flite rms and kal16, festival kal, espeak-ng)
  are few and appear in every split, so "unseen speaker" here means unseen settings of a known
  synthesizer, an easier test than new people.
- Clips: the synthesized word (leading and trailing silence found by energy) is placed at a random
  offset within one second; the rest of the second is the clip's own background noise (a noise of
  the same spectrum and level), never digital zeros.  A word longer than the second is sped up to fit.
- Everything is planned from the seed, so the files are identical whatever the number of worker
  processes; a re-run with the same settings reuses every file already made.
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import logging
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import soundfile as sf
from scipy.signal import lfilter
from tqdm import tqdm

from src.audio.io import float_to_int16, resample, write_wav
from src.data.speech_commands import (BACKGROUND_DIR, DEFAULT_WANTED_WORDS, SPLITS, TESTING_LIST, V2_WORDS,
                                      VALIDATION_LIST, hash_split)
from src.fileio import atomic_write_json, atomic_write_text
from utils.corpus import synthetic

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
CLIP_SAMPLES = SAMPLE_RATE
# Bump when a change here changes the audio made for the same settings.
GENERATOR_VERSION = 1
META_NAME = "corpus.json"

# Extra words for _unknown_: everyday words, some close to a keyword ("back", "start", "three").
OTHER_WORDS = ("hello", "water", "light", "music", "paper", "window", "green", "table", "apple", "orange",
               "yellow", "chair", "number", "please", "thanks", "morning", "river", "market", "pencil", "garden",
               "kitchen", "basket", "winter", "summer", "purple", "doctor", "rabbit", "silver", "button", "candle",
               "open", "close", "start", "turn", "move", "play", "pause", "back", "help", "cancel")
BACKGROUND_NOISES = ("white_noise", "pink_noise", "brown_noise", "hum", "babble")
SPEED_RANGE = 0.06           # per clip, uniform in 1 ± this (pitch and rate together)
GAIN_RANGE_DB = 3.0          # per clip, uniform in ± this
_BLOCK = 160                 # 10 ms energy blocks for finding the word
_MARGIN = 800                # 50 ms kept around the word when placing it
_MAX_WORD = CLIP_SAMPLES - 2 * _MARGIN

PRESETS: dict[str, dict[str, Any]] = {
    # Seconds to make: 6 espeak-ng speakers (4 train, 1 validation, 1 test), the 10 commands and two
    # other words each; 6-s background files.  A test fixture.
    "quick": dict(speakers=6, repeats=1, words=DEFAULT_WANTED_WORDS, others_per_speaker=2,
                  voices={"espeak": 1.0}, background_seconds=6.0, seed=0),
    # The DS-CNN demo: 160 speakers (128 / 16 / 16) × (35 words + 10 others) = 7,200 clips, the voice
    # mix of the LibriSpeech-layout demo corpus, five 60-s background files.
    "demo": dict(speakers=160, repeats=1, words=V2_WORDS, others_per_speaker=10,
                 voices=dict(synthetic.PRESETS.get("demo", {}).get("voices", {"espeak": 1.0})),
                 background_seconds=60.0, seed=0),
}

# SeedSequence spawn keys, one per kind of decision.
_KEY_IDS, _KEY_ENGINES, _KEY_VOICE, _KEY_WORDS, _KEY_CLIP, _KEY_NOISE = range(6)


class KwsCorpusError(RuntimeError):
    """The corpus cannot be made as asked (bad settings, missing tool, another corpus in the folder)."""


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(key)))


# --------------------------------------------------------------------------------------------------
# Settings and plan


@dataclass(frozen=True)
class KwsCorpusConfig:
    """Everything that determines the corpus content."""

    speakers: int
    repeats: int
    words: tuple[str, ...]
    others_per_speaker: int
    voices: tuple[tuple[str, float], ...]
    background_seconds: float
    seed: int
    validation_percentage: float = 10.0
    testing_percentage: float = 10.0
    other_words: tuple[str, ...] = OTHER_WORDS
    version: int = GENERATOR_VERSION
    voice_version: int = synthetic.GENERATOR_VERSION   # the voices' own audio version

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["words"], d["other_words"] = list(self.words), list(self.other_words)
        d["voices"] = {k: w for k, w in self.voices}
        return d

    def split_sizes(self) -> dict[str, int]:
        """Speakers per split: validation and test get their percentage (at least one each)."""
        n_val = max(1, round(self.speakers * self.validation_percentage / 100))
        n_test = max(1, round(self.speakers * self.testing_percentage / 100))
        return {"train": self.speakers - n_val - n_test, "validation": n_val, "test": n_test}


def _word_list(value: str | Sequence[str]) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    words = tuple(w.strip().lower() for w in items if w.strip())
    bad = [w for w in words if not w.isascii() or not w.isalpha()]
    if bad:
        raise ValueError(f"words must be plain lower-case letters, got {bad}")
    if len(set(words)) != len(words):
        raise ValueError(f"words must be distinct, got {list(words)}")
    return words


def resolve_config(preset: str = "demo", **overrides: Any) -> KwsCorpusConfig:
    """A preset with explicit values on top (``None`` values are ignored).

    Overrides: speakers, repeats, words, others_per_speaker, voices, background_seconds, seed.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    unknown = set(overrides) - set(PRESETS[preset])
    if unknown:
        raise ValueError(f"unknown corpus settings {sorted(unknown)}; known: {sorted(PRESETS[preset])}")
    s = dict(PRESETS[preset])
    s.update({k: v for k, v in overrides.items() if v is not None})
    words = _word_list(s["words"])
    if not words:
        raise ValueError("words: need at least one word")
    others = tuple(w for w in OTHER_WORDS if w not in words)
    config = KwsCorpusConfig(speakers=int(s["speakers"]), repeats=int(s["repeats"]), words=words,
                             others_per_speaker=int(s["others_per_speaker"]),
                             voices=synthetic.parse_voices(s["voices"]),
                             background_seconds=float(s["background_seconds"]), seed=int(s["seed"]),
                             other_words=others)
    if config.speakers < 3:
        raise ValueError(f"speakers: need at least 3 (one per split), got {config.speakers}")
    if config.split_sizes()["train"] < 1:
        raise ValueError(f"speakers: {config.speakers} leave no training speaker")
    if not 1 <= config.repeats <= 100:
        raise ValueError(f"repeats: 1..100, got {config.repeats}")
    if not 0 <= config.others_per_speaker <= len(others):
        raise ValueError(f"others_per_speaker: 0..{len(others)}, got {config.others_per_speaker}")
    if not 1.0 <= config.background_seconds <= 3600:
        raise ValueError(f"background_seconds: 1..3600, got {config.background_seconds}")
    return config


def check_tools(config: KwsCorpusConfig) -> None:
    """Raise synthetic.ToolMissingError naming the package of any voice or tool the corpus needs."""
    base = synthetic.resolve_config("tiny", voices=dict(config.voices), seed=config.seed)
    synthetic.check_tools(dataclasses.replace(base, texts=()))


@dataclass(frozen=True)
class ClipPlan:
    word: str
    repeat: int
    seed: int            # render noise and silences (synthetic.Utterance.seed), fill noise
    speed: float         # > 1: faster and higher
    position: float      # 0..1: where the word sits in the free part of the second
    gain_db: float

    def rel_path(self, speaker_id: str) -> str:
        return f"{self.word}/{speaker_id}_nohash_{self.repeat}.wav"


@dataclass(frozen=True)
class KwsSpeaker:
    speaker_id: str
    split: str
    voice: synthetic.Voice
    clips: tuple[ClipPlan, ...]


@dataclass(frozen=True)
class KwsPlan:
    config: KwsCorpusConfig
    speakers: tuple[KwsSpeaker, ...]

    def clips(self) -> Iterable[tuple[KwsSpeaker, ClipPlan]]:
        return ((s, c) for s in self.speakers for c in s.clips)


def speaker_ids(config: KwsCorpusConfig) -> dict[str, list[str]]:
    """Distinct 8-hex-digit ids per split, each one that TensorFlow's hash rule puts in its split."""
    need = config.split_sizes()
    got: dict[str, list[str]] = {s: [] for s in SPLITS}
    seen: set[str] = set()
    rng = _rng(config.seed, _KEY_IDS)
    while any(len(got[s]) < need[s] for s in SPLITS):
        sid = f"{int(rng.integers(2 ** 32)):08x}"
        if sid in seen:
            continue
        seen.add(sid)
        split = hash_split(f"{sid}_nohash_0.wav", config.validation_percentage, config.testing_percentage)
        if len(got[split]) < need[split]:
            got[split].append(sid)
    return got


def plan_corpus(config: KwsCorpusConfig) -> KwsPlan:
    """Every decision of the corpus, from the seed alone."""
    ids = speaker_ids(config)
    speakers: list[KwsSpeaker] = []
    voices_seen: set[synthetic.Voice] = set()
    for s_index, split in enumerate(SPLITS):
        engines = synthetic.assign_engines(config.voices, len(ids[split]), _rng(config.seed, _KEY_ENGINES, s_index))
        for k, (sid, engine) in enumerate(zip(ids[split], engines)):
            attempt = 0
            voice = synthetic.draw_voice(engine, _rng(config.seed, _KEY_VOICE, s_index, k))
            while voice in voices_seen:  # no two speakers share settings (practically never needed)
                attempt += 1
                voice = synthetic.draw_voice(engine, _rng(config.seed, _KEY_VOICE, s_index, k, attempt))
            voices_seen.add(voice)
            rng = _rng(config.seed, _KEY_WORDS, s_index, k)
            others = [config.other_words[i] for i in sorted(rng.choice(len(config.other_words),
                                                                       config.others_per_speaker, replace=False))]
            clips = []
            for w_index, word in enumerate((*config.words, *others)):
                for r in range(config.repeats):
                    c_rng = _rng(config.seed, _KEY_CLIP, s_index, k, w_index, r)
                    clips.append(ClipPlan(word, r, int(c_rng.integers(2 ** 63)),
                                          round(float(c_rng.uniform(1 - SPEED_RANGE, 1 + SPEED_RANGE)), 4),
                                          round(float(c_rng.random()), 4),
                                          round(float(c_rng.uniform(-GAIN_RANGE_DB, GAIN_RANGE_DB)), 2)))
            speakers.append(KwsSpeaker(sid, split, voice, tuple(clips)))
    return KwsPlan(config, tuple(speakers))


# --------------------------------------------------------------------------------------------------
# One clip


def _block_db(x: np.ndarray) -> np.ndarray:
    n = len(x) // _BLOCK
    blocks = x[: n * _BLOCK].reshape(n, _BLOCK).astype(np.float64)
    return 10 * np.log10(np.mean(blocks ** 2, axis=1) + 1e-12)


def word_bounds(x: np.ndarray) -> tuple[int, int]:
    """Sample range ``[start, end)`` of the spoken word in ``x`` (T,): blocks within 30 dB of the
    loudest and at least 12 dB above the noise floor (the 10th percentile of block levels)."""
    db = _block_db(x)
    if db.size == 0:
        return 0, len(x)
    threshold = max(db.max() - 30.0, np.percentile(db, 10) + 12.0)
    loud = np.flatnonzero(db >= threshold)
    if loud.size == 0:
        return 0, len(x)
    return int(loud[0]) * _BLOCK, min(len(x), (int(loud[-1]) + 1) * _BLOCK)


def matched_noise(reference: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of Gaussian noise with the average spectrum and RMS of ``reference`` (float32)."""
    if n <= 0:
        return np.zeros(0, np.float32)
    rms = float(np.sqrt(np.mean(reference.astype(np.float64) ** 2))) if len(reference) else 0.0
    if rms == 0.0:
        return np.zeros(n, np.float32)
    frame = 256
    if len(reference) >= frame:
        k = len(reference) // frame
        frames = reference[: k * frame].reshape(k, frame) * np.hanning(frame)
        psd = np.mean(np.abs(np.fft.rfft(frames, axis=1)) ** 2, axis=0)
    else:
        psd = np.ones(frame // 2 + 1)
    white = rng.standard_normal(n)
    spec = np.fft.rfft(white)
    shape = np.sqrt(np.interp(np.linspace(0, 1, len(spec)), np.linspace(0, 1, len(psd)), psd))
    y = np.fft.irfft(spec * shape, n)
    y *= rms / (np.sqrt(np.mean(y ** 2)) + 1e-12)
    return y.astype(np.float32)


def place_word(speech: np.ndarray, clip: ClipPlan) -> tuple[np.ndarray, bool]:
    """A rendered utterance (T,) float32 → the clip, int16 (16000,); True when it had to be sped up.

    The word keeps ``_MARGIN`` samples either side and sits at ``clip.position`` of the free space;
    samples the rendering does not cover are filled with noise matching its pre-word noise.
    """
    rng = np.random.default_rng(clip.seed)
    x = speech.astype(np.float32)
    if clip.speed != 1.0:
        x = resample(x, SAMPLE_RATE * clip.speed, SAMPLE_RATE)
    start, end = word_bounds(x)
    squeezed = False
    if end - start > _MAX_WORD:
        factor = (end - start) / _MAX_WORD
        x = resample(x, SAMPLE_RATE * factor, SAMPLE_RATE)
        start, end = int(start / factor), min(len(x), int(np.ceil(end / factor)))
        squeezed = True
    start, end = max(0, start - _MARGIN), min(len(x), end + _MARGIN)
    length = min(end - start, CLIP_SAMPLES)
    lead = int(round(clip.position * (CLIP_SAMPLES - length)))
    w0 = start - lead                       # window start in x's coordinates
    out = np.empty(CLIP_SAMPLES, np.float32)
    lo, hi = max(w0, 0), min(w0 + CLIP_SAMPLES, len(x))
    out[lo - w0: hi - w0] = x[lo:hi]
    before, after = lo - w0, w0 + CLIP_SAMPLES - hi
    if before or after:
        reference = x[: max(start, 0)]
        if len(reference) < 400:            # too little pre-word noise: use what follows the word
            reference = x[end:] if len(x) - end >= 400 else x[: max(len(x) // 10, 1)]
        fill = matched_noise(reference, before + after, rng)
        out[:before] = fill[:before]
        out[CLIP_SAMPLES - after:] = fill[before:]
    out *= 10 ** (clip.gain_db / 20)
    peak = float(np.abs(out).max())
    if peak > 0.99:
        out *= 0.99 / peak
    return float_to_int16(out), squeezed


# --------------------------------------------------------------------------------------------------
# Background noise


def _shaped_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with power ∝ f^-exponent above 20 Hz, unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spec *= np.maximum(f, 20.0) ** (-exponent / 2)
    spec[0] = 0
    y = np.fft.irfft(spec, n)
    return y / (np.sqrt(np.mean(y ** 2)) + 1e-12)


def _smooth_random(n: int, rate_hz: float, rng: np.random.Generator) -> np.ndarray:
    """A slowly varying random curve (T,), about unit amplitude, changing ``rate_hz`` times a second."""
    knots = max(2, int(n / SAMPLE_RATE * rate_hz) + 2)
    return np.interp(np.arange(n), np.linspace(0, n, knots), rng.uniform(-1, 1, knots))


# (F1, F2, F3) in Hz of a few vowels; babble moves between them.
_VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (660, 1720, 2410),
           (570, 840, 2410), (440, 1020, 2240), (490, 1350, 1690), (390, 1990, 2550), (640, 1190, 2390))


def _resonators(formants: Sequence[float], bandwidth: float = 90.0) -> np.ndarray:
    """Denominator of a cascade of two-pole resonators at ``formants`` Hz."""
    a = np.array([1.0])
    for f in formants:
        r = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
        a = np.convolve(a, [1.0, -2 * r * np.cos(2 * np.pi * f / SAMPLE_RATE), r * r])
    return a


def _talker(n: int, rng: np.random.Generator) -> np.ndarray:
    """One formant-synthesized voice babbling vowel-like syllables with pauses (T,)."""
    f0 = rng.uniform(95, 230) * (1 + 0.1 * _smooth_random(n, 2.0, rng))
    phase = np.cumsum(f0) / SAMPLE_RATE
    pulses = np.diff(np.floor(phase), prepend=0.0)          # one impulse per glottal period
    excitation = lfilter([1.0], [1.0, -0.95], pulses) + 0.02 * rng.standard_normal(n)
    out = np.zeros(n)
    zi = np.zeros(6)
    pos = 0
    while pos < n:
        length = int(rng.uniform(0.12, 0.3) * SAMPLE_RATE)
        seg = slice(pos, min(pos + length, n))
        m = seg.stop - seg.start
        formants = np.asarray(_VOWELS[int(rng.integers(len(_VOWELS)))]) * rng.uniform(0.9, 1.15)
        y, zi = lfilter([1.0], _resonators(formants), excitation[seg], zi=zi)
        if rng.random() < 0.2:
            envelope = np.zeros(m)                            # a pause
        else:
            envelope = np.sin(np.pi * np.arange(m) / m) ** 0.7
        out[seg] = y * envelope
        pos += m
    return out / (np.sqrt(np.mean(out ** 2)) + 1e-12)


def background_noise(name: str, seconds: float, seed: int) -> np.ndarray:
    """One background recording (T,) float32: white/pink/brown noise, mains hum or babble."""
    index = BACKGROUND_NOISES.index(name)
    rng = _rng(seed, _KEY_NOISE, index)
    n = int(round(seconds * SAMPLE_RATE))
    if name in ("white_noise", "pink_noise", "brown_noise"):
        y = _shaped_noise(n, {"white_noise": 0.0, "pink_noise": 1.0, "brown_noise": 2.0}[name], rng)
    elif name == "hum":
        mains = float(rng.choice([50.0, 60.0]))
        t = np.arange(n) / SAMPLE_RATE
        y = sum(h ** -1.2 * (1 + 0.2 * _smooth_random(n, 0.5, rng)) * np.sin(2 * np.pi * mains * h * t + rng.uniform(0, 6.3))
                for h in range(1, 9))
        y = y / np.sqrt(np.mean(y ** 2)) + 0.05 * _shaped_noise(n, 1.0, rng)
    elif name == "babble":
        talkers = [_talker(n, rng) * rng.uniform(0.5, 1.0) for _ in range(6)]
        y = np.sum(talkers, axis=0) + 0.05 * _shaped_noise(n, 1.0, rng)
    else:  # pragma: no cover - guarded by BACKGROUND_NOISES.index
        raise ValueError(name)
    level_db = rng.uniform(-28.0, -20.0)
    y = y * (10 ** (level_db / 20) / (np.sqrt(np.mean(y ** 2)) + 1e-12))
    peak = float(np.abs(y).max())
    if peak > 0.99:
        y *= 0.99 / peak
    return y.astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Synthesis (runs in worker processes)


@dataclass
class SpeakerResult:
    speaker_id: str
    made: list[str] = field(default_factory=list)        # paths relative to the corpus root
    reused: list[str] = field(default_factory=list)
    squeezed: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


def make_speaker(speaker: KwsSpeaker, root: Path) -> SpeakerResult:
    """Make a speaker's missing clips: one synthesizer batch, then placement into 1-s clips."""
    result = SpeakerResult(speaker.speaker_id)
    todo = []
    for clip in speaker.clips:
        rel = clip.rel_path(speaker.speaker_id)
        if (root / rel).is_file():  # written atomically: a file that exists is complete
            result.reused.append(rel)
        else:
            todo.append(clip)
    if not todo:
        return result
    utts = tuple(synthetic.Utterance(f"1-1-{i:04d}", clip.word, clip.seed) for i, clip in enumerate(todo))
    # The synthesizers read whole chapters most efficiently (festival's start-up is paid once).
    chapter = synthetic.Chapter("kws", 1, 1, speaker.voice, utts)
    with tempfile.TemporaryDirectory(prefix="kws-") as tmp:
        rendered = synthetic.synthesize_chapter(chapter, Path(tmp))
        reasons = dict(rendered.failures)
        folder = Path(tmp) / chapter.rel_dir
        for utt, clip in zip(utts, todo):
            rel = clip.rel_path(speaker.speaker_id)
            if utt.utt_id not in rendered.durations:
                result.failures.append((rel, reasons.get(utt.utt_id, "not synthesized")))
                continue
            try:
                speech, sr = sf.read(str(folder / f"{utt.utt_id}.flac"), dtype="float32")
                if sr != SAMPLE_RATE:
                    raise ValueError(f"rendered at {sr} Hz")
                pcm, squeezed = place_word(speech, clip)
                write_wav(root / rel, pcm, SAMPLE_RATE)
            except (OSError, ValueError, RuntimeError) as e:
                result.failures.append((rel, str(e)))
                continue
            result.made.append(rel)
            if squeezed:
                result.squeezed.append(rel)
    return result


def _make_speaker_task(args: tuple[KwsSpeaker, Path]) -> SpeakerResult:
    return make_speaker(*args)


# --------------------------------------------------------------------------------------------------
# Driver


@dataclass
class KwsCorpusReport:
    root: Path
    stats: dict[str, dict[str, int]]        # split → speakers, clips
    words: int
    other_words: int
    background: list[str]
    made: int
    reused: int
    squeezed: int
    failures: list[tuple[str, str]]
    seconds: float

    def summary(self) -> str:
        parts = [f"{s} {v['speakers']} speakers / {v['clips']} clips" for s, v in self.stats.items()]
        return (f"keyword corpus {self.root}: {'; '.join(parts)}; {self.words} words + {self.other_words} other "
                f"words; {len(self.background)} background files | {self.made} made, {self.reused} cached, "
                f"{self.squeezed} sped up to fit, {len(self.failures)} failed | {self.seconds:.1f} s")


def _read_meta(root: Path) -> dict[str, Any]:
    try:
        meta = json.loads((root / META_NAME).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return meta if isinstance(meta, dict) else {}


# Settings added after corpora were made, with the value those corpora implicitly had.
_IMPLIED_SETTINGS = {"voice_version": 1}


def _prepare_root(root: Path, config: KwsCorpusConfig, force: bool) -> None:
    """Check corpus.json against the config; with ``force`` remove a corpus made with other settings."""
    new = config.to_json()
    if (root / META_NAME).is_file():
        old = _read_meta(root)
        if isinstance(old.get("config"), dict) and {**_IMPLIED_SETTINGS, **old["config"]} == new:
            return
        if old.get("generator") != "utils/make_kws_corpus.py":
            raise KwsCorpusError(f"{root}/{META_NAME} was not written by this generator; choose another folder")
        diff = [f"{k}: {old.get('config', {}).get(k)} -> {v}" for k, v in new.items()
                if old.get("config", {}).get(k) != v]
        if not force:
            raise KwsCorpusError(f"{root} holds a keyword corpus made with other settings ({'; '.join(diff)}); "
                                 "use another --output_dir, or --force to delete and regenerate it")
        log.warning("settings changed (%s): regenerating %s", "; ".join(diff), root)
        for child in root.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            elif child.suffix in (".txt", ".json") or child.name == META_NAME:
                child.unlink()
    elif root.is_dir() and any(root.iterdir()):
        # Perhaps the real dataset: never write into or delete it.
        raise KwsCorpusError(f"{root} exists and was not made by this generator (no {META_NAME}); "
                             "choose another --output_dir")
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(root / META_NAME, {"generator": "utils/make_kws_corpus.py", "complete": False, "config": new})


def _write_if_changed(path: Path, text: str) -> None:
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        atomic_write_text(path, text)


def generate_kws_corpus(output_dir: str | os.PathLike, config: KwsCorpusConfig, jobs: int | None = None,
                        force: bool = False, progress: bool = True) -> KwsCorpusReport:
    """Make (or finish, or confirm) the corpus in ``output_dir`` (the Speech Commands root itself)."""
    start = time.perf_counter()
    root = Path(output_dir)
    check_tools(config)
    _prepare_root(root, config, force)
    plan = plan_corpus(config)

    background = []
    for name in BACKGROUND_NOISES:
        path = root / BACKGROUND_DIR / f"{name}.wav"
        if not path.is_file():
            write_wav(path, float_to_int16(background_noise(name, config.background_seconds, config.seed)),
                      SAMPLE_RATE)
        background.append(f"{BACKGROUND_DIR}/{name}.wav")

    made: list[str] = []
    reused: list[str] = []
    squeezed: list[str] = []
    failures: list[tuple[str, str]] = []
    tasks = []
    for spk in plan.speakers:
        rels = [c.rel_path(spk.speaker_id) for c in spk.clips]
        if all((root / rel).is_file() for rel in rels):
            reused += rels
        else:
            tasks.append((spk, root))
    if tasks:
        n_clips = sum(len(s.clips) for s, _ in tasks)
        jobs = max(1, min(jobs or os.cpu_count() or 1, len(tasks)))
        log.info("synthesizing %d speakers (%d clips) with %d processes into %s", len(tasks), n_clips, jobs, root)
        bar = tqdm(total=n_clips, unit="clip", desc="synthesizing", disable=None if progress else True)
        pool = None
        if jobs == 1:
            results: Iterable[SpeakerResult] = map(_make_speaker_task, tasks)
        else:
            pool = cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context("fork"))
            results = (f.result() for f in cf.as_completed([pool.submit(_make_speaker_task, t) for t in tasks]))
        try:
            for r in results:
                made += r.made
                reused += r.reused
                squeezed += r.squeezed
                failures += r.failures
                for rel, reason in r.failures:
                    log.warning("skipped %s: %s", rel, reason)
                bar.update(len(r.made) + len(r.reused) + len(r.failures))
        finally:
            bar.close()
            if pool is not None:
                pool.shutdown(cancel_futures=True)

    failed = {rel for rel, _ in failures}
    lists: dict[str, list[str]] = {s: [] for s in SPLITS}
    stats = {s: {"speakers": 0, "clips": 0} for s in SPLITS}
    for spk in plan.speakers:
        stats[spk.split]["speakers"] += 1
        for clip in spk.clips:
            rel = clip.rel_path(spk.speaker_id)
            if rel not in failed:
                lists[spk.split].append(rel)
                stats[spk.split]["clips"] += 1
    _write_if_changed(root / VALIDATION_LIST, "".join(f"{r}\n" for r in sorted(lists["validation"])))
    _write_if_changed(root / TESTING_LIST, "".join(f"{r}\n" for r in sorted(lists["test"])))
    speakers = [{"id": s.speaker_id, "split": s.split, "engine": s.voice.engine, "sex": s.voice.sex,
                 "voice": s.voice.label(), "settings": dataclasses.asdict(s.voice)} for s in plan.speakers]
    _write_if_changed(root / META_NAME, json.dumps(
        {"generator": "utils/make_kws_corpus.py", "complete": not failed, "config": config.to_json(),
         "stats": stats, "background": background, "failed": sorted(failed), "speakers": speakers},
        indent=1) + "\n")
    other_words = {c.word for s in plan.speakers for c in s.clips} - set(config.words)
    report = KwsCorpusReport(root, stats, len(config.words), len(other_words),
                             background, len(made), len(reused), len(squeezed), failures,
                             time.perf_counter() - start)
    log.info("%s", report.summary())
    return report


def make_kws_corpus(output_dir: str | os.PathLike, preset: str = "quick", jobs: int | None = 2, force: bool = False,
                    progress: bool = False, **overrides: Any) -> Path:
    """Generate (or reuse) a keyword corpus and return its root (``output_dir``)."""
    config = resolve_config(preset, **overrides)
    return generate_kws_corpus(output_dir, config, jobs=jobs, force=force, progress=progress).root

