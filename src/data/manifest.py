"""Manifests: one JSON list per subset, in NVIDIA Jasper's format so their tools interoperate.

An entry::

    {"transcript": "...", "original_duration": s, "original_num_samples": n,
     "files": [{"fname": relpath, "speed": 1.0, "duration": s, "num_samples": n,
                "sample_rate": 16000, "channels": 1}, ...]}

``fname`` is relative to the folder holding the manifest (NVIDIA's layout when the manifest sits
beside the converted ``<subset>-wav`` folder); ``files`` may hold offline speed-perturbed copies.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from src.fileio import atomic_write_json


class ManifestError(ValueError):
    """A manifest that cannot be read or has a malformed entry."""


@dataclass(frozen=True)
class Utterance:
    """One audio file of a manifest entry, resolved to an absolute path."""
    utt_id: str
    audio_path: Path
    transcript: str
    duration: float
    num_samples: int
    sample_rate: int
    speed: float = 1.0


def audio_file_entry(fname: str, speed: float, num_samples: int, sample_rate: int, channels: int = 1) -> dict:
    return {"fname": fname, "speed": speed, "duration": num_samples / sample_rate,
            "num_samples": num_samples, "sample_rate": sample_rate, "channels": channels}


def manifest_entry(transcript: str, files: Sequence[dict]) -> dict:
    """Build an entry; ``files[0]`` must be the original (speed 1.0) file."""
    return {"transcript": transcript, "original_duration": files[0]["duration"],
            "original_num_samples": files[0]["num_samples"], "files": list(files)}


def utt_id_of(fname: str) -> str:
    """The utterance id: the file name without folder and extension (LibriSpeech's id)."""
    return Path(fname).stem


def write_manifest(path: str | os.PathLike, entries: Iterable[dict]) -> None:
    atomic_write_json(path, list(entries), indent=1)


def load_manifest_entries(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"manifest not found: {path}") from None
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path}: not valid JSON ({e}); re-run the conversion to rewrite it") from None
    if not isinstance(data, list):
        raise ManifestError(f"{path}: expected a JSON list of entries, got {type(data).__name__}")
    return data


def read_manifest(path: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                  speeds: Sequence[float] | None = (1.0,)) -> list[Utterance]:
    """Read a manifest into Utterances.

    ``data_dir``: folder that ``fname`` is relative to (default: the manifest's folder).
    ``speeds``: which files of each entry to keep (default only the original; ``None`` keeps all).
    Raises ManifestError naming the file and entry index for a malformed entry.
    """
    path = Path(path)
    base = Path(data_dir) if data_dir is not None else path.resolve().parent
    out = []
    for i, entry in enumerate(load_manifest_entries(path)):
        try:
            transcript = entry["transcript"]
            files = entry["files"]
            if not isinstance(transcript, str) or not isinstance(files, list) or not files:
                raise TypeError("'transcript' must be a string and 'files' a non-empty list")
            for f in files:
                speed = float(f.get("speed", 1.0))
                if speeds is not None and not any(abs(speed - s) < 1e-6 for s in speeds):
                    continue
                fname = f["fname"]
                out.append(Utterance(
                    utt_id=utt_id_of(fname),
                    audio_path=(base / fname).resolve(), transcript=transcript,
                    duration=float(f["duration"]), num_samples=int(f["num_samples"]),
                    sample_rate=int(f["sample_rate"]), speed=speed))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ManifestError(f"{path}: entry {i} is malformed ({e!r}); expected keys "
                                "transcript, files[{fname, speed, duration, num_samples, sample_rate}]") from None
    return out


def unique_utterances(utts: Sequence[Utterance], problem: Callable[[Utterance], str | None]
                      ) -> tuple[list[Utterance], list[str]]:
    """One utterance per id.  Of copies sharing an id (the same file listed twice, or two manifests
    naming different files alike) the first usable one is kept, so an unreadable first copy does not
    take a good second one down with it; ``problem(u)`` says why ``u`` is unusable (None: usable) and is
    asked only about duplicated ids.  When no copy is usable the first is kept (its writer skips and
    counts it).

    Returns the utterances in the order their ids were first listed, and one message per duplicated id.
    """
    copies: dict[str, list[Utterance]] = {}
    for u in utts:
        copies.setdefault(u.utt_id, []).append(u)
    if len(copies) == len(utts):
        return list(utts), []
    kept, messages = [], []
    for utt_id, group in copies.items():
        if len(group) == 1:
            kept.append(group[0])
            continue
        passed_over = []
        chosen = None
        for u in group:
            why = problem(u)
            if why is None:
                chosen = u
                break
            passed_over.append(why)
        chosen = chosen or group[0]
        dropped = [str(u.audio_path) for u in group if u is not chosen]
        note = (f" (the earlier copy is unusable: {'; '.join(passed_over)})"
                if passed_over and chosen is not group[0] else "")
        messages.append(f"utterance {utt_id} is listed {len(group)} times: kept {chosen.audio_path}{note}; "
                        f"dropped {', '.join(dropped)}")
        kept.append(chosen)
    return kept, messages
