"""LibriSpeech-layout folders → 16 kHz mono wav files + a manifest.

Layout read: ``<input>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` with lines
``<utt_id> TRANSCRIPT`` and the audio ``<utt_id>.flac`` (or .wav/.ogg, in any letter case) beside
it.  Output mirrors the folders under ``dest_dir``.  Each utterance is converted at most once: a wav
already written (atomically, so it is complete) is reused, so an interrupted conversion resumes where
it stopped, and the partial files of a killed run are removed.  Unusable utterances are skipped and
reported with their file and line, never fatal.  Audio at a lower rate than the output is upsampled
with a warning per file (it lacks the upper frequencies the model was trained on), counted in the
summary.
"""
from __future__ import annotations

import collections
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from src.audio.augment import change_speed
from src.audio.io import AudioError, audio_info, load_audio, write_wav
from src.data.manifest import audio_file_entry, manifest_entry, write_manifest
from src.data.mindrecord import worker_pool
from src.text.normalize import TextNormalizationError, normalize_text
from src.fileio import pid_alive

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".flac", ".wav", ".ogg")


@dataclass(frozen=True)
class Job:
    utt_id: str
    source: Path | None        # audio file, None when missing
    transcript: str            # normalized
    where: str                 # "<trans.txt>:<line>" for messages
    outputs: tuple[tuple[float, Path], ...]  # (speed, wav path)


@dataclass
class Report:
    entries: list[dict] = field(default_factory=list)
    converted: int = 0
    reused: int = 0
    skipped: collections.Counter = field(default_factory=collections.Counter)
    seconds_of_audio: float = 0.0
    upsampled: int = 0          # files whose source rate was below the output rate

    def skip(self, reason: str, where: str, detail: str) -> None:
        self.skipped[reason] += 1
        log.warning("skipping %s: %s", where, detail)

    def summary(self) -> str:
        skipped = sum(self.skipped.values())
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped.items()))
        return (f"{len(self.entries)} utterances ({self.converted} converted, {self.reused} reused), "
                f"{self.seconds_of_audio / 3600:.2f} h of audio; skipped {skipped}"
                + (f" ({reasons})" if reasons else "")
                + (f"; {self.upsampled} upsampled from a lower sample rate" if self.upsampled else ""))


def speed_suffix(speed: float) -> str:
    return "" if speed == 1.0 else f"_sp{speed:g}"


def is_audio_file(path: Path) -> bool:
    """An audio file by its extension, in any letter case (``.flac``, ``.FLAC``, ``.Wav``)."""
    return path.suffix.lower() in AUDIO_EXTENSIONS


def _find_audio(folder: Path, utt_id: str, listing: dict[Path, list[Path]]) -> Path | None:
    """``folder/<utt_id>.<ext>`` for an audio extension in any letter case (``listing`` caches folders)."""
    if folder not in listing:
        listing[folder] = sorted(p for p in folder.iterdir() if p.is_file() and is_audio_file(p))
    found = [p for p in listing[folder] if p.stem == utt_id]
    # The preferred extension first, as before: .flac, then .wav, then .ogg
    found.sort(key=lambda p: AUDIO_EXTENSIONS.index(p.suffix.lower()))
    return found[0] if found else None


def plan_jobs(input_dir: Path, dest_dir: Path, speeds: Sequence[float], report: Report) -> list[Job]:
    """Read every trans.txt under ``input_dir``; malformed lines are skipped and reported."""
    trans_files = sorted(input_dir.rglob("*.trans.txt"))
    if not trans_files:
        raise FileNotFoundError(f"no *.trans.txt files under {input_dir}; expected the LibriSpeech layout "
                                "<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt")
    jobs, seen = [], {}
    transcribed: set[Path] = set()
    listing: dict[Path, list[Path]] = {}
    for tf in trans_files:
        rel = tf.parent.relative_to(input_dir)
        for line_no, line in enumerate(tf.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{tf}:{line_no}"
            utt_id, _, raw = line.strip().partition(" ")
            if not raw.strip():
                report.skip("no transcript", where, f"line has an id but no transcript: {line!r}")
                continue
            if utt_id in seen:
                report.skip("duplicate id", where, f"utterance {utt_id} already listed at {seen[utt_id]}")
                continue
            seen[utt_id] = where
            source = _find_audio(tf.parent, utt_id, listing)
            if source is not None:
                transcribed.add(source)
            try:
                text = normalize_text(raw)
            except TextNormalizationError as e:
                report.skip("transcript", where, str(e))
                continue
            if not text:
                report.skip("transcript", where, f"transcript {raw!r} is empty after normalization")
                continue
            outputs = tuple((s, dest_dir / rel / f"{utt_id}{speed_suffix(s)}.wav") for s in speeds)
            jobs.append(Job(utt_id, source, text, where, outputs))
    untranscribed = sorted(p for p in input_dir.rglob("*") if is_audio_file(p) and p.is_file() and p not in transcribed)
    if untranscribed:
        log.warning("%d audio files under %s have no transcript line and are ignored (e.g. %s)",
                    len(untranscribed), input_dir, untranscribed[0])
    return jobs


def remove_stale_temporaries(folder: Path) -> int:
    """Delete half-written wav files (``<name>.<pid>.tmp``, src/fileio.py) that a killed conversion left
    under ``folder``; files of a process still running are kept.  Returns how many were removed."""
    removed = 0
    if folder.is_dir():
        for p in folder.rglob("*.tmp"):
            m = re.match(r"^.+\.(\d+)\.tmp$", p.name)
            if m and p.is_file() and not pid_alive(int(m.group(1))):
                p.unlink(missing_ok=True)
                removed += 1
    if removed:
        log.info("removed %d partial file(s) of an interrupted conversion under %s", removed, folder)
    return removed


def _existing(job: Job, sample_rate: int) -> list[tuple[float, Path, int]] | None:
    """Headers of the job's wavs if all were written before (a resumed run), else None."""
    found = []
    for speed, out in job.outputs:
        if not out.is_file():
            return None
        try:
            info = audio_info(out)
        except AudioError:
            return None
        if info.samplerate != sample_rate or info.channels != 1 or info.frames == 0:
            return None
        found.append((speed, out, info.frames))
    return found


def source_rate(job: Job) -> int | None:
    """The sample rate of the job's source file (None when it has none or its header is unreadable)."""
    if job.source is None:
        return None
    try:
        return int(audio_info(job.source).samplerate)
    except AudioError:
        return None


def convert_one(job: Job, sample_rate: int) -> tuple[str, list[tuple[float, Path, int]] | str]:
    """Worker: returns ("reused"|"converted", [(speed, path, num_samples)]) or ("skip:<reason>", detail)."""
    done = _existing(job, sample_rate)
    if done is not None:
        return "reused", done
    if job.source is None:
        return "skip:missing audio", f"no audio file {job.utt_id}.flac/.wav/.ogg next to the transcript"
    try:
        audio, _ = load_audio(job.source, target_sr=sample_rate)
    except AudioError as e:
        return "skip:unreadable audio", str(e)
    except Exception as e:  # a decoder can fail in unexpected ways on a corrupt file
        return "skip:unreadable audio", f"{job.source}: {e!r}"
    written = []
    for speed, out in job.outputs:
        wav = audio if speed == 1.0 else change_speed(audio, speed, sample_rate)
        write_wav(out, wav, sample_rate)
        written.append((speed, out, len(wav)))
    return "converted", written


def _convert_star(args: tuple[Job, int]) -> tuple[str, list | str, int | None]:
    """convert_one's result and the source's sample rate."""
    status, payload = convert_one(*args)
    return status, payload, source_rate(args[0])


def convert_librispeech(input_dir: str | os.PathLike, dest_dir: str | os.PathLike, output_json: str | os.PathLike,
                        speeds: Sequence[float] = (), parallel: int = 1, sample_rate: int = 16000,
                        progress: bool = True) -> Report:
    """Convert one LibriSpeech-layout folder; write the manifest; return what happened."""
    input_dir, dest_dir, output_json = Path(input_dir), Path(dest_dir), Path(output_json)
    if not input_dir.is_dir():
        raise FileNotFoundError(f"input folder not found: {input_dir}")
    all_speeds = (1.0, *[float(s) for s in speeds if float(s) != 1.0])
    if any(s <= 0 for s in all_speeds):
        raise ValueError(f"speeds must be positive, got {speeds}")
    report = Report()
    remove_stale_temporaries(dest_dir)
    jobs = plan_jobs(input_dir, dest_dir, all_speeds, report)
    manifest_dir = output_json.resolve().parent
    tasks = [(j, sample_rate) for j in jobs]
    with worker_pool(max(1, parallel)) if parallel > 1 else _Serial() as pool:
        results = pool.imap(_convert_star, tasks, chunksize=8)
        for job, (status, payload, rate) in tqdm(zip(jobs, results), total=len(jobs), disable=not progress,
                                                 desc=f"convert {input_dir.name}", unit="utt"):
            if status.startswith("skip:"):
                report.skip(status[5:], job.where, payload)
                continue
            if rate is not None and rate < sample_rate:
                report.upsampled += 1
                log.warning("%s: recorded at %d Hz, upsampled to %d Hz (it holds nothing above %g kHz, which "
                            "the model hears in its training data)", job.source, rate, sample_rate, rate / 2000)
            setattr(report, status, getattr(report, status) + 1)
            files = [audio_file_entry(os.path.relpath(path.resolve(), manifest_dir), speed, n, sample_rate)
                     for speed, path, n in payload]
            report.entries.append(manifest_entry(job.transcript, files))
            report.seconds_of_audio += files[0]["duration"]
    write_manifest(output_json, report.entries)
    return report


class _Serial:
    """Stand-in for a Pool when running in-process (parallel=1): easier to debug and profile."""
    def __enter__(self) -> "_Serial":
        return self

    def __exit__(self, *exc) -> None:
        return None

    @staticmethod
    def imap(fn, items, chunksize: int = 1):
        return map(fn, items)
