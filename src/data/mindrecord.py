"""MindRecord shards: the schema (defined only here), writing, and the shard index.

Schema of every record::

    utt_id       string
    transcript   string                  normalized text
    tokens       int32  [L]              label ids (labels.json), no blank
    duration     float32                 seconds
    num_samples  int32                   audio samples at sample_rate
    sample_rate  int32
    audio        bytes                   int16 little-endian PCM, mono   (--store audio, default)
    features     float32 [n_mels * T]    log-mel, row-major (n_mels, T)  (--store features)
    n_frames     int32                   T of ``features``               (--store features)

MindRecord has no int16 type, so PCM travels as bytes (``np.frombuffer(b, '<i2')``).  Audio is
stored by default so dither, speed perturbation and SpecAugment are drawn afresh every epoch.
Nothing is cropped, except edge silence when the config's ``features.trim_db`` asks the front end to
cut it (src/audio/trim.py): the audio is then stored trimmed, so durations and length buckets count
only what the model will see, and the front end's own trim leaves it unchanged.

Files in the output folder::

    <prefix>-<k>-of-<N>.mindrecord(.db)   shard k, written into .tmp/ and moved into place when complete
    <prefix>-<k>-of-<N>.json              shard metadata: fingerprint, utt_ids, num_samples, token counts,
                                          what was skipped and the byte sizes of the two files
    dataset.json                          the shard list, totals (records, skipped, duplicates) and the store mode
                                          (written last)

A shard whose metadata fingerprint matches its inputs, and whose files still have the sizes recorded
in its metadata, is not written again, so an interrupted run resumes with the shards it had not
finished (a truncated or damaged shard is written again).  (MindRecord files keep their own name
inside their index, so a shard is written under its final name in .tmp/ and moved, never renamed.)

What cannot be stored is reported, never silently dropped: unreadable or missing audio is skipped and
counted (``skipped``: a reader of the folder, e.g. eval.py, reports it), an utterance id listed twice
keeps its first usable copy (``duplicates``), an empty transcript is stored with a warning.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from src.audio.io import AudioError, float_to_int16, load_audio
from src.audio.trim import trim_silence
from src.config import Config, FeatureConfig
from src.data.manifest import Utterance, read_manifest, unique_utterances
from src.fileio import atomic_write_json
from src.text.labels import Labels

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
INDEX_FILE = "dataset.json"
STORES = ("audio", "features")

_COMMON_FIELDS = {
    "utt_id": {"type": "string"},
    "transcript": {"type": "string"},
    "tokens": {"type": "int32", "shape": [-1]},
    "duration": {"type": "float32"},
    "num_samples": {"type": "int32"},
    "sample_rate": {"type": "int32"},
}
_STORE_FIELDS = {
    "audio": {"audio": {"type": "bytes"}},
    "features": {"features": {"type": "float32", "shape": [-1]}, "n_frames": {"type": "int32"}},
}


def schema(store: str) -> dict:
    """The MindRecord schema for ``store`` ('audio' or 'features')."""
    if store not in STORES:
        raise ValueError(f"store must be one of {STORES}, got {store!r}")
    return {**_COMMON_FIELDS, **_STORE_FIELDS[store]}


def shard_name(prefix: str, k: int, num_shards: int) -> str:
    return f"{prefix}-{k:03d}-of-{num_shards:03d}.mindrecord"


def split_into_shards(utts: Sequence[Utterance], num_shards: int) -> list[list[Utterance]]:
    """Contiguous blocks of (nearly) equal size, in the given order."""
    bounds = np.linspace(0, len(utts), num_shards + 1).round().astype(int)
    return [list(utts[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def trim_settings(feature_cfg: FeatureConfig) -> dict | None:
    """The front end's edge-silence trim as recorded with shards; None when it is off."""
    return {"trim_db": feature_cfg.trim_db, "trim_margin": feature_cfg.trim_margin} if feature_cfg.trim_db else None


def _fingerprint(utts: Sequence[Utterance], store: str, feature_cfg: FeatureConfig, labels: Labels) -> str:
    h = hashlib.sha256()
    # Audio shards depend on the front end only through its trim (left out when off, so shards
    # written before it existed stay current).
    front_end = feature_cfg.__dict__ if store == "features" else trim_settings(feature_cfg)
    h.update(json.dumps([SCHEMA_VERSION, store, labels.symbols, front_end]).encode())
    for u in utts:
        h.update(f"{u.utt_id}\t{u.audio_path}\t{u.transcript}\t{u.num_samples}\t{u.speed}\n".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class ShardJob:
    path: Path
    utts: tuple[Utterance, ...]
    store: str
    feature_cfg: FeatureConfig
    labels: Labels
    fingerprint: str


def _record(u: Utterance, job: ShardJob) -> dict:
    sr = job.feature_cfg.sample_rate
    if not u.audio_path.is_file():
        raise AudioError(f"{u.audio_path}: not found")
    audio, _ = load_audio(u.audio_path, target_sr=sr)
    audio = trim_silence(audio, job.feature_cfg)
    rec = {"utt_id": u.utt_id, "transcript": u.transcript, "tokens": job.labels.encode(u.transcript),
           "duration": np.float32(len(audio) / sr), "num_samples": np.int32(len(audio)),
           "sample_rate": np.int32(sr)}
    if job.store == "audio":
        rec["audio"] = float_to_int16(audio).astype("<i2").tobytes()
    else:
        from src.audio.features import filterbank_features
        feats = filterbank_features(audio, sr, job.feature_cfg)
        rec["features"] = feats.reshape(-1)
        rec["n_frames"] = np.int32(feats.shape[1])
    return rec


def _unusable(u: Utterance, job: ShardJob) -> str | None:
    """Why ``u`` could not be stored (None when it can): what write_shard would skip it for."""
    try:
        _record(u, job)
    except (AudioError, ValueError) as e:
        return str(e)
    return None


def write_shard(job: ShardJob) -> dict:
    """Write one shard (into .tmp/, then moved into place) and its metadata; returns the metadata.

    Unreadable audio is skipped and listed under "skipped" in the metadata.
    """
    from mindspore.mindrecord import FileWriter

    tmp_dir = job.path.parent / ".tmp"
    tmp_dir.mkdir(exist_ok=True)
    tmp = tmp_dir / job.path.name
    for p in (tmp, Path(f"{tmp}.db")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    writer = FileWriter(str(tmp), shard_num=1, overwrite=True)
    writer.add_schema(schema(job.store), "speech")
    meta = {"schema_version": SCHEMA_VERSION, "store": job.store, "fingerprint": job.fingerprint,
            "utt_ids": [], "num_samples": [], "num_tokens": [], "skipped": [], "empty_transcripts": []}
    batch: list[dict] = []
    for u in job.utts:
        try:
            rec = _record(u, job)
        except (AudioError, ValueError) as e:
            meta["skipped"].append(f"{u.utt_id}: {e}")
            continue
        if len(rec["tokens"]) == 0:
            meta["empty_transcripts"].append(u.utt_id)
        batch.append(rec)
        meta["utt_ids"].append(u.utt_id)
        meta["num_samples"].append(int(rec["num_samples"]))
        meta["num_tokens"].append(len(rec["tokens"]))
        if len(batch) >= 64:
            writer.write_raw_data(batch)
            batch = []
    if batch:
        writer.write_raw_data(batch)
    writer.commit()
    meta["bytes"] = _file_sizes(tmp)
    os.replace(tmp, job.path)
    os.replace(f"{tmp}.db", f"{job.path}.db")
    atomic_write_json(job.path.with_suffix(".json"), meta, indent=None)
    return meta


def _file_sizes(path: Path) -> list[int]:
    """Byte sizes of a shard's two files (``.mindrecord``, ``.mindrecord.db``)."""
    return [os.path.getsize(path), os.path.getsize(f"{path}.db")]


def shard_problem(path: Path, meta: dict) -> str | None:
    """Why the shard files at ``path`` do not match their metadata (None when they do).  The files'
    sizes are recorded at writing: a truncated or partly copied shard has another size (MindRecord's
    own header still reports every row of it)."""
    if not (path.is_file() and Path(f"{path}.db").is_file()):
        return "missing"
    expected = meta.get("bytes")
    if expected is None:
        return None
    actual = _file_sizes(path)
    if actual != list(expected):
        return (f"truncated or damaged: {actual[0]} + {actual[1]} bytes on disk, its metadata recorded "
                f"{expected[0]} + {expected[1]}")
    return None


def _shard_is_current(path: Path, fingerprint: str) -> dict | None:
    meta_path = path.with_suffix(".json")
    if not (path.is_file() and Path(f"{path}.db").is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if meta.get("fingerprint") != fingerprint:
        return None
    if "bytes" not in meta:   # written before sizes were recorded: its completeness cannot be checked
        log.info("%s: rewriting (its metadata predates size checks)", path.name)
        return None
    problem = shard_problem(path, meta)
    if problem:
        log.warning("%s is %s; writing it again", path, problem)
        return None
    return meta


def quiet_worker() -> None:
    """Initializer of worker processes: Ctrl-C is the parent's to handle (it terminates the pool), and a
    worker ends at once when its parent is killed, instead of finishing its task and printing a
    BrokenPipeError traceback when it reports back.  (Linux: the kernel's parent-death signal.  A
    Python-level SIGTERM handler is no option: ``Pool.terminate`` relies on SIGTERM's default action, and
    a worker unwinding while it holds the task queue's lock hangs the pool.)  What the worker was
    writing is in a temporary file (or ``.tmp/``) that the next run replaces."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    if os.getppid() == 1:   # the parent died before the line above took effect
        os._exit(0)


def worker_pool(workers: int):
    """A fork pool of ``workers`` :func:`quiet_worker` processes."""
    return mp.get_context("fork").Pool(workers, initializer=quiet_worker)


def write_mindrecord(utts: Sequence[Utterance], output_dir: str | os.PathLike, num_shards: int,
                     labels: Labels, store: str = "audio", feature_cfg: FeatureConfig = FeatureConfig(),
                     prefix: str = "data", parallel: int = 1, progress: bool = True) -> dict:
    """Write ``utts`` into ``num_shards`` shards under ``output_dir``; returns the dataset index.

    Shards already written for the same inputs are kept.  Raises ValueError for bad arguments.
    """
    schema(store)  # validates store
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    utts, duplicates = unique_utterances(
        utts, lambda u: _unusable(u, ShardJob(output_dir, (), store, feature_cfg, labels, "")))
    for msg in duplicates:
        log.warning("%s", msg)
    if len(utts) < num_shards:
        raise ValueError(f"{len(utts)} distinct utterances cannot fill {num_shards} shards; "
                         f"use --num_shards {max(1, len(utts))}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    jobs, metas = [], {}
    for k, block in enumerate(split_into_shards(utts, num_shards)):
        path = output_dir / shard_name(prefix, k, num_shards)
        fp = _fingerprint(block, store, feature_cfg, labels)
        current = _shard_is_current(path, fp)
        if current is not None:
            metas[path.name] = current
        else:
            jobs.append(ShardJob(path, tuple(block), store, feature_cfg, labels, fp))
    if metas:
        log.info("%d of %d shards are up to date and kept", len(metas), num_shards)
    if jobs:
        workers = min(parallel, len(jobs))
        pool = worker_pool(workers) if workers > 1 else None
        results = pool.imap(write_shard, jobs) if pool else map(write_shard, jobs)
        try:
            for job, meta in tqdm(zip(jobs, results), total=len(jobs), desc="mindrecord shards",
                                  unit="shard", disable=not progress):
                metas[job.path.name] = meta
                for msg in meta["skipped"]:
                    log.warning("skipping %s", msg)
                for utt_id in meta.get("empty_transcripts", []):
                    log.warning("%s: empty transcript, stored (training skips it; evaluation counts every "
                                "word of its hypothesis as an insertion)", utt_id)
        except BaseException:
            if pool:
                pool.terminate()
            raise
        finally:
            if pool:
                pool.close()
                pool.join()
    shutil.rmtree(output_dir / ".tmp", ignore_errors=True)
    shards = [shard_name(prefix, k, num_shards) for k in range(num_shards)]
    index = {
        "schema_version": SCHEMA_VERSION, "store": store, "labels": labels.symbols,
        "sample_rate": feature_cfg.sample_rate, "n_mels": feature_cfg.n_mels, "trim": trim_settings(feature_cfg),
        "shards": [{"file": s, "records": len(metas[s]["utt_ids"])} for s in shards],
        "records": sum(len(metas[s]["utt_ids"]) for s in shards),
        "skipped": sum(len(metas[s]["skipped"]) for s in shards),
        "duplicates": len(duplicates),
        "hours": sum(sum(metas[s]["num_samples"]) for s in shards) / feature_cfg.sample_rate / 3600,
    }
    # Shards from an earlier run with another shard count would be picked up by a glob: remove them.
    for stale in output_dir.glob(f"{prefix}-*-of-*.mindrecord*"):
        if stale.name.split(".mindrecord")[0] + ".mindrecord" not in shards:
            stale.unlink()
    for stale in output_dir.glob(f"{prefix}-*-of-*.json"):
        if stale.with_suffix(".mindrecord").name not in shards:
            stale.unlink()
    atomic_write_json(output_dir / INDEX_FILE, index)
    return index


@dataclass(frozen=True)
class ShardIndex:
    """What the reader needs: shard files in order and per-record metadata (global row order)."""
    files: list[str]
    store: str
    sample_rate: int
    utt_ids: list[str]
    num_samples: np.ndarray   # (N,) int64
    num_tokens: np.ndarray    # (N,) int64
    labels: list[str] | None = None  # the labels the tokens were written with (None: not recorded)
    trim: dict | None = None         # the edge-silence trim the audio was stored with (None: untrimmed)
    skipped: int = 0                 # utterances left out when the folder was written (unreadable or missing audio)


def read_index(data_dir: str | os.PathLike) -> ShardIndex:
    """Load dataset.json and the shard metadata of a MindRecord folder written by write_mindrecord."""
    data_dir = Path(data_dir)
    index_path = data_dir / INDEX_FILE
    if not index_path.is_file():
        raise FileNotFoundError(f"{index_path} not found: is {data_dir} a folder written by create_mindrecord.py?")
    index = json.loads(index_path.read_text())
    if index.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{index_path}: schema version {index.get('schema_version')} (expected {SCHEMA_VERSION}); "
                         "re-run create_mindrecord.py")
    files, utt_ids, ns, nt = [], [], [], []
    for shard in index["shards"]:
        path = data_dir / shard["file"]
        meta_path = path.with_suffix(".json")
        if not (path.is_file() and Path(f"{path}.db").is_file() and meta_path.is_file()):
            raise FileNotFoundError(f"shard {path} (or its .db / .json) is missing; re-run create_mindrecord.py")
        meta = json.loads(meta_path.read_text())
        problem = shard_problem(path, meta)
        if problem:
            raise ValueError(f"shard {path} is {problem}; re-run create_mindrecord.py")
        files.append(str(path))
        utt_ids += meta["utt_ids"]
        ns += meta["num_samples"]
        nt += meta["num_tokens"]
    return ShardIndex(files, index["store"], index["sample_rate"], utt_ids,
                      np.asarray(ns, dtype=np.int64), np.asarray(nt, dtype=np.int64), index.get("labels"),
                      index.get("trim"), int(index.get("skipped", 0)))


def mindrecord_for(path: str | os.PathLike, cache_dir: str | os.PathLike, config: Config) -> Path:
    """A MindRecord folder as is; a manifest JSON is first written to ``cache_dir/<stem>`` (kept and
    reused while the manifest's utterances are unchanged)."""
    from src.text.labels import load_labels

    p = Path(path)
    if p.is_dir():
        if not (p / INDEX_FILE).is_file():
            raise FileNotFoundError(f"{p} has no {INDEX_FILE}: pass a folder written by create_mindrecord.py "
                                    "or a manifest JSON")
        return p
    if p.suffix != ".json" or not p.is_file():
        raise FileNotFoundError(f"{path}: expected a MindRecord folder or a manifest .json file")
    out = Path(cache_dir) / p.stem
    write_mindrecord(read_manifest(p), out, 1, load_labels(config.labels_path), feature_cfg=config.features,
                     progress=False)
    return out
