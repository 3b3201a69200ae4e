"""Speech Commands → keyword manifests (train / validation / test), as TensorFlow's example splits it.

Input: a folder in Speech Commands layout, ``<word>/<speaker>_nohash_<n>.wav`` (16 kHz mono, at most
1 s), ``_background_noise_/*.wav`` (long noise recordings) and, from v0.02 on,
``validation_list.txt`` / ``testing_list.txt`` (paths ``<word>/<file>.wav``).

Output: one JSON list per split, ``train.json``, ``validation.json``, ``test.json``; each entry is
one 1-s example::

    {"path": "../sc/yes/0a7c2a8d_nohash_0.wav", "label": "yes", "speaker": "0a7c2a8d", "duration": 1.0}
    {"path": "../sc/bed/0a7c2a8d_nohash_0.wav", "label": "_unknown_", "speaker": "0a7c2a8d",
     "duration": 0.896, "word": "bed"}
    {"path": "../sc/_background_noise_/pink_noise.wav", "label": "_silence_",
     "speaker": "_background_noise_", "duration": 1.0, "offset": 23.4375}

- ``path`` is relative to the folder holding the manifest (as in the ASR manifests of
  ``src.data.manifest``); :func:`read_keyword_manifest` resolves it.
- ``_silence_`` entries are 1-s crops of a background file starting at ``offset`` seconds (a whole
  number of samples); ``_unknown_`` entries keep the spoken ``word``.
- Splits: the dataset's lists when present (clips in neither list are training), otherwise
  TensorFlow's rule (:func:`hash_split`): the sha1 of the file name without its ``_nohash_`` part,
  so all clips of one speaker land in the same split.  Either way, speakers found in more than one
  split are reported.
- Classes: ``_silence_``, ``_unknown_`` and the wanted words.  Per split, as TensorFlow's
  ``prepare_data_index`` counts them, ``ceil(n_wanted * silence_percentage / 100)`` silence crops and
  ``ceil(n_wanted * unknown_percentage / 100)`` clips of the other words (drawn without replacement),
  ``n_wanted`` being the split's number of wanted-word clips: with the defaults (10, 10) each is
  about 8.3 % of the split.  All draws are seeded: the same input and seed give identical files.
- Clips that cannot be used are skipped and reported by reason (``unreadable``, ``empty``,
  ``sample_rate``, ``channels``, ``too_long``), never dropped silently.
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import logging
import math
import multiprocessing as mp
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from src.audio.io import AudioError, audio_info, load_audio
from src.fileio import atomic_write_json

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000
SILENCE_LABEL = "_silence_"
UNKNOWN_LABEL = "_unknown_"
BACKGROUND_DIR = "_background_noise_"
BACKGROUND_SPEAKER = BACKGROUND_DIR
VALIDATION_LIST = "validation_list.txt"
TESTING_LIST = "testing_list.txt"
SPLITS = ("train", "validation", "test")
REPORT_NAME = "conversion_report.json"

DEFAULT_WANTED_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
# The 35 words of v0.02 (v0.01 has the first 30).
V2_WORDS = DEFAULT_WANTED_WORDS + (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
    "backward", "forward", "follow", "learn", "visual")

# TensorFlow's bucket count for the hash split (2**27 - 1, "max number of wavs per class").
_HASH_BUCKETS = 2 ** 27 - 1
_NOHASH = re.compile(r"_nohash_.*$")
SKIP_REASONS = ("unreadable", "empty", "sample_rate", "channels", "too_long")
_SHOW = 5            # file names shown per skip reason in the log
_PARALLEL_FROM = 2000  # clips; fewer are read in this process


class SpeechCommandsError(ValueError):
    """The input cannot be converted as asked (no clips, unknown wanted word, no background noise)."""


# --------------------------------------------------------------------------------------------------
# Names and splits


def speaker_of(filename: str) -> str:
    """Speaker id of a clip: its file name up to ``_nohash_`` (the stem when there is none)."""
    base = os.path.basename(filename)
    if "_nohash_" in base:
        return base.split("_nohash_", 1)[0]
    return os.path.splitext(base)[0]


def hash_split(filename: str, validation_percentage: float = 10.0, testing_percentage: float = 10.0) -> str:
    """TensorFlow speech_commands' stable split of a clip: ``train``, ``validation`` or ``test``.

    The file name without folder and without everything from ``_nohash_`` on is hashed with sha1;
    the digest modulo 2**27 scaled to [0, 100] picks the split (validation below
    ``validation_percentage``, then test), so every clip of a speaker shares one split and adding
    files never moves existing ones.
    """
    key = _NOHASH.sub("", os.path.basename(filename))
    digest = int(hashlib.sha1(key.encode("utf-8")).hexdigest(), 16)
    score = (digest % (_HASH_BUCKETS + 1)) * (100.0 / _HASH_BUCKETS)
    if score < validation_percentage:
        return "validation"
    if score < validation_percentage + testing_percentage:
        return "test"
    return "train"


def _norm_rel(line: str) -> str:
    rel = line.strip().replace("\\", "/")
    while rel.startswith("./"):
        rel = rel[2:]
    return rel


def read_split_lists(root: Path) -> dict[str, list[str]] | None:
    """``{"validation": [...], "test": [...]}`` from the dataset's lists, or None when it has neither."""
    found = {}
    for split, name in (("validation", VALIDATION_LIST), ("test", TESTING_LIST)):
        path = root / name
        if path.is_file():
            found[split] = [r for r in (_norm_rel(x) for x in path.read_text(encoding="utf-8").splitlines()) if r]
    if not found:
        return None
    for split in ("validation", "test"):
        found.setdefault(split, [])
    return found


def scan_clips(root: Path) -> tuple[list[str], list[str]]:
    """(word clips, background files): paths ``<folder>/<file>.wav`` relative to ``root``, sorted."""
    clips, background = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        wavs = sorted(f"{folder.name}/{w.name}" for w in folder.iterdir()
                      if w.suffix.lower() == ".wav" and w.is_file())
        (background if folder.name == BACKGROUND_DIR else clips).extend(wavs)
    return clips, background


# --------------------------------------------------------------------------------------------------
# Reading clips


def probe_clip(path: str | os.PathLike, max_samples: int | None, sample_rate: int = SAMPLE_RATE,
               min_samples: int = 1) -> tuple[int, str | None]:
    """(number of samples, None) for a usable clip, or (0, reason) with a reason of SKIP_REASONS.

    The header is checked first (rate, channels, length), then the audio is decoded in full so a
    truncated or damaged file is caught here rather than in training.  ``max_samples`` None: no limit.
    """
    try:
        info = audio_info(path)
    except AudioError:
        return 0, "unreadable"
    if info.frames == 0:
        return 0, "empty"
    if info.samplerate != sample_rate:
        return 0, "sample_rate"
    if info.channels != 1:
        return 0, "channels"
    if max_samples is not None and info.frames > max_samples:
        return 0, "too_long"
    try:
        audio, _ = load_audio(path)
    except AudioError as e:
        return 0, "empty" if "no audio samples" in str(e) else "unreadable"
    if len(audio) < min_samples:
        return 0, "empty" if len(audio) == 0 else "too_short"
    return len(audio), None


def _probe_task(args: tuple[str, int | None, int]) -> tuple[int, str | None]:
    path, max_samples, min_samples = args
    return probe_clip(path, max_samples, min_samples=min_samples)


def probe_all(paths: Sequence[str], max_samples: int | None, *, min_samples: int = 1, jobs: int | None = None,
              progress: bool = True, desc: str = "reading clips") -> list[tuple[int, str | None]]:
    """``probe_clip`` for every path, in order; in ``jobs`` processes for large sets, with a progress bar."""
    jobs = max(1, jobs or os.cpu_count() or 1)
    tasks = [(p, max_samples, min_samples) for p in paths]
    bar = tqdm(total=len(tasks), unit="clip", desc=desc, disable=None if progress else True, leave=False)
    try:
        if jobs == 1 or len(tasks) < _PARALLEL_FROM:
            results = []
            for t in tasks:
                results.append(_probe_task(t))
                bar.update()
            return results
        with cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context("fork")) as pool:
            results = []
            for r in pool.map(_probe_task, tasks, chunksize=256):
                results.append(r)
                bar.update()
            return results
    finally:
        bar.close()


# --------------------------------------------------------------------------------------------------
# Conversion


@dataclass
class ConversionReport:
    """What a conversion found and wrote (also saved as ``conversion_report.json``)."""

    split_source: str                                   # "lists" or "hash"
    counts: dict[str, dict[str, int]]                   # split → label → entries
    skipped: dict[str, list[str]]                       # reason → clips (paths relative to the input)
    background: list[str]                               # background files used for silence
    crossing_speakers: dict[str, list[str]] = field(default_factory=dict)   # speaker → splits
    list_problems: dict[str, list[str]] = field(default_factory=dict)      # problem → list entries
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in ("split_source", "counts", "skipped", "background",
                                               "crossing_speakers", "list_problems", "seconds")}

    def summary(self) -> str:
        parts = []
        for split in SPLITS:
            c = self.counts.get(split, {})
            total = sum(c.values())
            words = total - c.get(SILENCE_LABEL, 0) - c.get(UNKNOWN_LABEL, 0)
            parts.append(f"{split} {total} ({words} wanted, {c.get(UNKNOWN_LABEL, 0)} unknown, "
                         f"{c.get(SILENCE_LABEL, 0)} silence)")
        skipped = sum(len(v) for v in self.skipped.values())
        detail = ", ".join(f"{k} {len(v)}" for k, v in self.skipped.items() if v)
        return (f"keyword manifests: {'; '.join(parts)} | split by {self.split_source} | skipped {skipped}"
                + (f" ({detail})" if detail else "")
                + f" | {len(self.crossing_speakers)} speakers in more than one split | {self.seconds:.1f} s")


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(key)))


def _assign_splits(clips: Sequence[str], lists: Mapping[str, list[str]] | None, validation_percentage: float,
                   testing_percentage: float, problems: dict[str, list[str]]) -> dict[str, str]:
    """clip → split, by the lists (clips in neither are train) or by the hash rule."""
    if lists is None:
        return {c: hash_split(c, validation_percentage, testing_percentage) for c in clips}
    known = set(clips)
    where: dict[str, str] = {}
    for split in ("validation", "test"):
        for rel in lists[split]:
            if rel not in known:
                problems.setdefault(f"{split} list entry without a clip", []).append(rel)
            elif where.get(rel, split) != split:
                # In both lists: test wins, so the clip is never trained or tuned on by accident.
                problems.setdefault("in both lists (kept in test)", []).append(rel)
                where[rel] = "test"
            else:
                where[rel] = split
    return {c: where.get(c, "train") for c in clips}


def _silence_entries(n: int, background: Sequence[tuple[str, int]], rng: np.random.Generator,
                     clip_samples: int) -> list[tuple[str, int]]:
    """``n`` (file, start sample) crops: a file drawn uniformly, then a start uniformly within it."""
    out = []
    for _ in range(n):
        rel, length = background[int(rng.integers(len(background)))]
        out.append((rel, int(rng.integers(0, length - clip_samples + 1))))
    return out


def _log_skipped(skipped: Mapping[str, list[str]], what: str) -> None:
    for reason, files in skipped.items():
        if files:
            shown = ", ".join(files[:_SHOW]) + (f" and {len(files) - _SHOW} more" if len(files) > _SHOW else "")
            log.warning("skipped %d %s (%s): %s", len(files), what, reason, shown)


def convert_speech_commands(input_dir: str | os.PathLike, output_dir: str | os.PathLike,
                            wanted_words: Sequence[str] = DEFAULT_WANTED_WORDS, *,
                            silence_percentage: float = 10.0, unknown_percentage: float = 10.0,
                            validation_percentage: float = 10.0, testing_percentage: float = 10.0,
                            split_by: str = "auto", seed: int = 0, max_duration: float = 1.0,
                            duration_tolerance: float = 0.01, jobs: int | None = None,
                            progress: bool = True) -> ConversionReport:
    """Write ``output_dir/{train,validation,test}.json`` and ``conversion_report.json``; return the report.

    ``split_by``: ``lists`` (the dataset's validation/testing lists), ``hash`` (TensorFlow's rule with
    the given percentages) or ``auto`` (lists when the dataset has them).  Clips longer than
    ``max_duration + duration_tolerance`` seconds are skipped.  Outputs are written atomically, and
    only once everything has been read.
    Raises SpeechCommandsError for an input that cannot give the asked manifests.
    """
    start = time.perf_counter()
    root, out = Path(input_dir), Path(output_dir)
    wanted = [w.strip().lower() for w in wanted_words if w.strip()]
    if not wanted or len(set(wanted)) != len(wanted):
        raise SpeechCommandsError(f"wanted words must be distinct and non-empty, got {list(wanted_words)}")
    if any(w.startswith("_") for w in wanted):
        raise SpeechCommandsError(f"wanted words cannot start with '_' (reserved for {SILENCE_LABEL} and "
                                  f"{UNKNOWN_LABEL}), got {wanted}")
    for name, value in (("silence_percentage", silence_percentage), ("unknown_percentage", unknown_percentage),
                        ("validation_percentage", validation_percentage),
                        ("testing_percentage", testing_percentage)):
        if not (0 <= value <= 100 and math.isfinite(value)):
            raise SpeechCommandsError(f"{name} must be in [0, 100], got {value}")
    if validation_percentage + testing_percentage >= 100:
        raise SpeechCommandsError("validation_percentage + testing_percentage must stay below 100")
    if split_by not in ("auto", "lists", "hash"):
        raise SpeechCommandsError(f"split_by must be auto, lists or hash, got {split_by!r}")
    if not root.is_dir():
        raise SpeechCommandsError(f"{root} is not a folder")

    clips, background_files = scan_clips(root)
    if not clips:
        raise SpeechCommandsError(f"no clips found as {root}/<word>/*.wav; is this a Speech Commands folder?")
    words_found = sorted({c.split("/", 1)[0].lower() for c in clips})
    missing = [w for w in wanted if w not in words_found]
    if missing:
        raise SpeechCommandsError(f"wanted word(s) {', '.join(missing)} not found in {root}; "
                                  f"its words: {', '.join(words_found)}")

    lists = None if split_by == "hash" else read_split_lists(root)
    if split_by == "lists" and lists is None:
        raise SpeechCommandsError(f"split_by='lists' but {root} has neither {VALIDATION_LIST} nor {TESTING_LIST}")
    problems: dict[str, list[str]] = {}
    split_of = _assign_splits(clips, lists, validation_percentage, testing_percentage, problems)
    for problem, entries in problems.items():
        log.warning("%d %s: %s%s", len(entries), problem, ", ".join(entries[:_SHOW]),
                    " ..." if len(entries) > _SHOW else "")

    max_samples = int(round((max_duration + duration_tolerance) * SAMPLE_RATE))
    log.info("reading %d clips of %d words in %s", len(clips), len(words_found), root)
    results = probe_all([str(root / c) for c in clips], max_samples, jobs=jobs, progress=progress)
    skipped: dict[str, list[str]] = {r: [] for r in SKIP_REASONS}
    usable: dict[str, int] = {}
    for rel, (n, reason) in zip(clips, results):
        if reason:
            skipped.setdefault(reason, []).append(rel)
        else:
            usable[rel] = n
    _log_skipped(skipped, "clips")

    # Background noise: long files, any length of at least one clip.
    bg_skipped: dict[str, list[str]] = {}
    background: list[tuple[str, int]] = []
    if silence_percentage > 0:
        bg_results = probe_all([str(root / b) for b in background_files], None, min_samples=CLIP_SAMPLES,
                               jobs=1, progress=False)
        for rel, (n, reason) in zip(background_files, bg_results):
            if reason:
                bg_skipped.setdefault(reason, []).append(rel)
            else:
                background.append((rel, n))
        _log_skipped(bg_skipped, "background files")
        if not background:
            raise SpeechCommandsError(
                f"no usable {BACKGROUND_DIR}/*.wav (16 kHz mono, at least 1 s) in {root} for {SILENCE_LABEL}; "
                "add noise files or pass silence_percentage 0")
    for reason, files in bg_skipped.items():
        skipped.setdefault(f"background_{reason}", []).extend(files)

    # Speakers must stay within one split.
    splits_of_speaker: dict[str, set[str]] = {}
    for rel in usable:
        splits_of_speaker.setdefault(speaker_of(rel), set()).add(split_of[rel])
    crossing = {s: sorted(v, key=SPLITS.index) for s, v in sorted(splits_of_speaker.items()) if len(v) > 1}
    if crossing:
        shown = ", ".join(f"{s} ({'/'.join(v)})" for s, v in list(crossing.items())[:_SHOW])
        log.warning("%d speakers have clips in more than one split (the lists disagree with the speaker ids): %s",
                    len(crossing), shown)

    out.mkdir(parents=True, exist_ok=True)
    out_abs = out.resolve()
    root_abs = root.resolve()

    def rel_to_out(rel: str) -> str:
        return Path(os.path.relpath(root_abs / rel, out_abs)).as_posix()

    wanted_set = set(wanted)
    manifests: dict[str, list[dict]] = {}
    counts: dict[str, dict[str, int]] = {}
    for s_index, split in enumerate(SPLITS):
        known = [c for c in usable if split_of[c] == split and c.split("/", 1)[0].lower() in wanted_set]
        others = [c for c in usable if split_of[c] == split and c.split("/", 1)[0].lower() not in wanted_set]
        n_silence = math.ceil(len(known) * silence_percentage / 100)
        n_unknown = math.ceil(len(known) * unknown_percentage / 100)
        if n_unknown > len(others):
            log.warning("%s: %d unknown clips wanted but only %d clips of other words exist; using all of them",
                        split, n_unknown, len(others))
            n_unknown = len(others)
        if not known:
            log.warning("%s: no clip of a wanted word", split)
        picked = sorted(others[i] for i in _rng(seed, s_index, 1).permutation(len(others))[:n_unknown])
        entries = []
        for rel in sorted(known + picked):
            word = rel.split("/", 1)[0].lower()
            entry = {"path": rel_to_out(rel), "label": word if word in wanted_set else UNKNOWN_LABEL,
                     "speaker": speaker_of(rel), "duration": usable[rel] / SAMPLE_RATE}
            if word not in wanted_set:
                entry["word"] = word
            entries.append(entry)
        for rel, offset in _silence_entries(n_silence, background, _rng(seed, s_index, 2), CLIP_SAMPLES):
            entries.append({"path": rel_to_out(rel), "label": SILENCE_LABEL, "speaker": BACKGROUND_SPEAKER,
                            "duration": CLIP_SAMPLES / SAMPLE_RATE, "offset": offset / SAMPLE_RATE})
        manifests[split] = entries
        label_counts = {w: 0 for w in (SILENCE_LABEL, UNKNOWN_LABEL, *wanted)}
        for e in entries:
            label_counts[e["label"]] += 1
        counts[split] = label_counts

    report = ConversionReport(split_source="hash" if lists is None else "lists", counts=counts,
                              skipped=skipped, background=[b for b, _ in background],
                              crossing_speakers=crossing, list_problems=problems)
    for split in SPLITS:
        atomic_write_json(out / f"{split}.json", manifests[split], indent=1)
    report.seconds = round(time.perf_counter() - start, 3)
    atomic_write_json(out / REPORT_NAME, report.to_json())
    log.info("%s", report.summary())
    return report


# --------------------------------------------------------------------------------------------------
# Reading the manifests back


@dataclass(frozen=True)
class KeywordClip:
    """One manifest entry with its audio path resolved."""

    path: Path
    label: str
    speaker: str
    duration: float
    offset: float = 0.0          # seconds into ``path`` where the clip starts (silence crops)
    word: str | None = None      # the spoken word of an _unknown_ clip


def read_keyword_manifest(path: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> list[KeywordClip]:
    """The entries of a keyword manifest; ``path`` entries are relative to ``data_dir`` (default: the
    manifest's folder) unless absolute.  Raises SpeechCommandsError naming the entry when one is malformed."""
    path = Path(path)
    base = Path(data_dir) if data_dir is not None else path.parent
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise SpeechCommandsError(f"{path}: cannot read the keyword manifest ({e})") from None
    if not isinstance(data, list):
        raise SpeechCommandsError(f"{path}: expected a JSON list of entries")
    clips = []
    for i, e in enumerate(data):
        try:
            clips.append(KeywordClip(base / e["path"], str(e["label"]), str(e["speaker"]), float(e["duration"]),
                                     float(e.get("offset", 0.0)), e.get("word")))
        except (KeyError, TypeError, ValueError) as err:
            raise SpeechCommandsError(f"{path}: entry {i} is malformed ({err!r}): {e}") from None
    return clips


def load_clip(clip: KeywordClip, clip_samples: int = CLIP_SAMPLES) -> np.ndarray:
    """The example's audio, float32 (clip_samples,): the crop at ``offset`` for silence, otherwise the
    clip cut or zero-padded at the end (as TensorFlow's ``decode_wav(desired_samples=...)``)."""
    audio, sr = load_audio(clip.path)
    if sr != SAMPLE_RATE:
        raise AudioError(f"{clip.path}: sample rate {sr}, expected {SAMPLE_RATE}")
    start = int(round(clip.offset * SAMPLE_RATE))
    audio = audio[start:start + clip_samples]
    if len(audio) < clip_samples:
        audio = np.pad(audio, (0, clip_samples - len(audio)))
    return audio


def label_counts(clips: Iterable[KeywordClip]) -> dict[str, int]:
    """Entries per label, in first-seen order."""
    counts: dict[str, int] = {}
    for c in clips:
        counts[c.label] = counts.get(c.label, 0) + 1
    return counts
