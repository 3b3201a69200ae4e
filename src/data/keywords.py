"""Keyword clips in MindRecord and their batches: TensorFlow speech_commands' input pipeline, online.

A keyword manifest (utils/convert_speech_commands.py) becomes one MindRecord folder::

    kws-<k>-of-<N>.mindrecord(.db)   records: utt_id (the manifest path, with @offset for silence crops),
                                     label (int32 class id), audio (int16 PCM bytes, exactly one clip)
    background.npz                   the _background_noise_ recordings the silence entries crop (int16)
    dataset.json                     classes, counts per class, sample rate, clip length (written last)

Batches are ``(features (B, n_mfcc, T) float32, labels (B,) int32, utt_ids (B,))``.  Training draws
afresh every epoch, per clip: a time shift uniform in ±``kws.time_shift_ms`` (zero fill), and with
probability ``kws.background_frequency`` a random crop of a background recording at a volume uniform in
[0, ``kws.background_volume``]; a silence example is its noise crop at a volume uniform in [0, 1].
Evaluation shifts nothing and mixes nothing; a silence example keeps a volume drawn once per clip from
the data seed, so every evaluation of a set sees the same audio.  (The MindSpore zoo's DS-CNN added a
constant offset as "noise", shifted its test clips and froze features offline: none of that here.)
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from src.audio import features
from src.audio.io import AudioError, float_to_int16, load_audio
from src.config import Config
from src.fileio import atomic_write_json

log = logging.getLogger(__name__)

INDEX_FILE = "dataset.json"
BACKGROUND_FILE = "background.npz"
SCHEMA = {"utt_id": {"type": "string"}, "label": {"type": "int32"}, "audio": {"type": "bytes"}}
SCHEMA_VERSION = 2   # 2: dataset.json lists each shard's class ids, so readers need not scan the records
SILENCE, UNKNOWN = "_silence_", "_unknown_"


def clip_samples(config: Config) -> int:
    return config.features.sample_rate * config.kws.clip_duration_ms // 1000


def write_keyword_mindrecord(manifest: str | os.PathLike, output_dir: str | os.PathLike, config: Config,
                             num_shards: int = 1, progress: bool = True) -> dict:
    """Write the clips of a keyword manifest as MindRecord shards; returns the index.  Clips whose label is
    not a class of ``config.kws`` or whose audio cannot be read are skipped and counted."""
    from mindspore.mindrecord import FileWriter

    from src.data.speech_commands import load_clip, read_keyword_manifest

    classes = list(config.kws.labels)
    class_id = {c: i for i, c in enumerate(classes)}
    clips = read_keyword_manifest(manifest)
    n = clip_samples(config)
    out = Path(output_dir)
    tmp = out / ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    num_shards = max(1, min(num_shards, len(clips) or 1))
    names = [f"kws-{k}-of-{num_shards}.mindrecord" for k in range(num_shards)]
    writers = []
    for name in names:
        w = FileWriter(str(tmp / name), shard_num=1, overwrite=True)
        w.add_schema(SCHEMA, "keyword clips")
        writers.append(w)
    skipped: dict[str, list[str]] = {}
    counts = {c: 0 for c in classes}
    background: dict[str, np.ndarray] = {}
    shard_labels: list[list[int]] = [[] for _ in range(num_shards)]
    for i, clip in enumerate(tqdm(clips, desc=f"mindrecord {Path(manifest).name}", unit="clip", disable=not progress)):
        if clip.label not in class_id:
            skipped.setdefault(f"label not in kws classes ({clip.label})", []).append(str(clip.path))
            continue
        try:
            audio = load_clip(clip, n)
            if clip.label == SILENCE and str(clip.path) not in background:
                background[str(clip.path)] = float_to_int16(load_audio(clip.path)[0])
        except (AudioError, FileNotFoundError, OSError) as e:
            skipped.setdefault("unreadable", []).append(f"{clip.path}: {e}")
            continue
        record = {"utt_id": clip_key(clip, manifest), "label": class_id[clip.label],
                  "audio": float_to_int16(audio).tobytes()}
        k = i % num_shards
        writers[k].write_raw_data([record])
        shard_labels[k].append(class_id[clip.label])
        counts[clip.label] += 1
    for w in writers:
        w.commit()
    if background:
        np.savez(tmp / BACKGROUND_FILE, **{f"noise_{j}": a for j, a in enumerate(background.values())})
    for stale in out.glob("kws-*-of-*.mindrecord*"):
        stale.unlink()
    for name in names:
        for suffix in ("", ".db"):
            os.replace(tmp / f"{name}{suffix}", out / f"{name}{suffix}")
    (out / BACKGROUND_FILE).unlink(missing_ok=True)
    if background:
        os.replace(tmp / BACKGROUND_FILE, out / BACKGROUND_FILE)
    shutil.rmtree(tmp, ignore_errors=True)
    for reason, items in skipped.items():
        log.warning("%s: skipped %d clips (%s): %s%s", manifest, len(items), reason, ", ".join(items[:3]),
                    " ..." if len(items) > 3 else "")
    index = {"schema_version": SCHEMA_VERSION, "task": "kws", "classes": classes, "counts": counts,
             "sample_rate": config.features.sample_rate, "clip_samples": n,
             "shards": [{"file": name, "records": len(lab), "labels": lab} for name, lab in zip(names, shard_labels)],
             "records": sum(len(lab) for lab in shard_labels),
             "skipped": sum(len(v) for v in skipped.values()), "background_files": len(background),
             "source": str(Path(manifest).resolve()), "source_mtime": Path(manifest).stat().st_mtime}
    atomic_write_json(out / INDEX_FILE, index)
    log.info("%s: %d clips in %d shard(s) (%s), %d skipped, %d background recordings", out, index["records"],
             num_shards, ", ".join(f"{c} {k}" for c, k in counts.items() if k), index["skipped"], len(background))
    return index


def clip_key(clip, manifest: str | os.PathLike) -> str:
    """A clip's id: its path as the manifest lists it (relative to the manifest's folder unless absolute),
    with ``@offset`` for a silence crop.  Evaluation draws a silence clip's volume from it, so every path
    (eval.py, the 310 preprocess) hears the same clip whatever else the manifest holds."""
    base = Path(manifest).parent
    path = os.path.relpath(clip.path, base) if str(clip.path).startswith(str(base)) else str(clip.path)
    return path + (f"@{clip.offset:.4f}" if clip.label == SILENCE else "")


def eval_silence_gain(seed: int, key: str) -> float:
    """The fixed volume in [0, 1) of an evaluation silence clip, from the data seed and its ``clip_key``."""
    return float(np.random.default_rng([seed, zlib.crc32(key.encode())]).uniform(0, 1))


def keyword_mindrecord_for(source: str | os.PathLike, cache_dir: str | os.PathLike, config: Config) -> Path:
    """A keyword MindRecord folder as is; a manifest is written to ``cache_dir/<stem>`` first (reused while
    the manifest and the classes are unchanged)."""
    p = Path(source)
    if p.is_dir():
        if not (p / INDEX_FILE).is_file():
            raise FileNotFoundError(f"{p} has no {INDEX_FILE}: pass a folder written by create_mindrecord.py "
                                    "or a keyword manifest .json")
        return p
    if p.suffix != ".json" or not p.is_file():
        raise FileNotFoundError(f"{source}: expected a MindRecord folder or a keyword manifest .json file")
    out = Path(cache_dir) / p.stem
    index_path = out / INDEX_FILE
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        if (index.get("source") == str(p.resolve()) and index.get("source_mtime") == p.stat().st_mtime
                and index.get("classes") == list(config.kws.labels)
                and index.get("clip_samples") == clip_samples(config)):
            return out
    write_keyword_mindrecord(p, out, config, progress=False)
    return out


@dataclass(frozen=True)
class _Index:
    files: list[str]
    labels: np.ndarray        # (N,) class id per record, in global row order
    skipped: int


def _read_index(data_dir: Path, config: Config) -> _Index:
    index_path = data_dir / INDEX_FILE
    if not index_path.is_file():
        raise FileNotFoundError(f"{index_path} not found: is {data_dir} a keyword folder from create_mindrecord.py?")
    index = json.loads(index_path.read_text())
    if index.get("task") != "kws":
        raise ValueError(f"{data_dir} holds speech-recognition records; keyword spotting needs a keyword manifest "
                         "written with a keyword-spotting config")
    if index["classes"] != list(config.kws.labels):
        raise ValueError(f"{data_dir} was written for the classes {index['classes']}, the config has "
                         f"{list(config.kws.labels)}; re-run create_mindrecord.py with this config")
    if index.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{data_dir} was written by another version of the keyword writer; re-run create_mindrecord.py")
    if index["clip_samples"] != clip_samples(config) or index["sample_rate"] != config.features.sample_rate:
        raise ValueError(f"{data_dir}: clips of {index['clip_samples']} samples at {index['sample_rate']} Hz, the "
                         "config wants another clip length or rate; re-run create_mindrecord.py")
    shards = [s for s in index["shards"] if s["records"]]
    if not shards:
        raise ValueError(f"{data_dir} holds no clips")
    labels = np.concatenate([np.asarray(s["labels"], dtype=np.int64) for s in shards])
    return _Index([str(data_dir / s["file"]) for s in shards], labels, int(index.get("skipped", 0)))


class KeywordData:
    """A keyword MindRecord folder prepared for training (``train=True``: shuffled, augmented, the last
    partial batch dropped, sharded by rank) or evaluation (every clip exactly once, last batch smaller)."""

    def __init__(self, data_dir: str | os.PathLike, config: Config, train: bool, rank: int = 0, world: int = 1,
                 batch_size: int | None = None) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is outside 0..{world - 1}")
        self.dir, self.config, self.train, self.rank, self.world = Path(data_dir), config, train, rank, world
        self.batch_size = batch_size or config.data.batch_size
        self.index = _read_index(self.dir, config)
        self.skipped = self.index.skipped
        self.silence = config.kws.labels.index(SILENCE)
        self.n = len(self.index.labels)
        if train and self.n < self.batch_size * world:
            raise ValueError(f"{data_dir}: {self.n} clips cannot fill one training batch of {self.batch_size} on each "
                             f"of {world} rank(s); lower data.batch_size")
        background = self.dir / BACKGROUND_FILE
        self.background = []
        if background.is_file():
            with np.load(background) as z:
                self.background = [z[k] for k in sorted(z.files)]

    def plan(self, epoch: int) -> list[np.ndarray]:
        """Record indices per batch this rank reads in ``epoch`` (deterministic in seed, epoch, rank)."""
        bs = self.batch_size
        if not self.train:
            order = np.arange(self.n)
            return [order[i:i + bs] for i in range(0, self.n, bs)]
        rng = np.random.default_rng([self.config.data.seed, epoch])
        order = rng.permutation(self.n) if self.config.data.shuffle else np.arange(self.n)
        batches = list(order[: self.n // bs * bs].reshape(-1, bs))
        per_rank = len(batches) // self.world
        return batches[self.rank * per_rank:(self.rank + 1) * per_rank]

    def steps_per_epoch(self) -> int:
        return len(self.plan(0))

    def augment(self, audio: np.ndarray, label: int, rng: np.random.Generator, key: str) -> np.ndarray:
        """One clip (its ``clip_key``) as the model hears it: (clip_samples,) float32."""
        kc, sr = self.config.kws, self.config.features.sample_rate
        if not self.train:
            if label == self.silence:   # a fixed volume per clip, the same in every evaluation
                return (audio * eval_silence_gain(self.config.data.seed, key)).astype(np.float32)
            return audio
        if label == self.silence:
            return (audio * rng.uniform(0, 1)).astype(np.float32)
        shift = int(round(kc.time_shift_ms * sr / 1000))
        if shift:
            s = int(rng.integers(-shift, shift + 1))
            audio = np.roll(audio, s)
            if s > 0:
                audio[:s] = 0
            elif s < 0:
                audio[s:] = 0
        if self.background and rng.uniform() < kc.background_frequency:
            noise = self.background[int(rng.integers(len(self.background)))]
            start = int(rng.integers(0, max(len(noise) - len(audio), 0) + 1))
            crop = noise[start:start + len(audio)].astype(np.float32) / 32768.0
            crop = np.pad(crop, (0, len(audio) - len(crop)))
            audio = np.clip(audio + crop * rng.uniform(0, kc.background_volume), -1.0, 1.0)
        return audio.astype(np.float32)

    def make_batch(self, epoch: int, batch_num: int, audios: list, labels: list,
                   utt_ids: list) -> tuple[np.ndarray, ...]:
        rng = np.random.default_rng([self.config.data.seed, epoch, self.rank, batch_num, 3])
        clips = [self.augment(np.frombuffer(a, dtype="<i2").astype(np.float32) / 32768.0, int(lab), rng, str(u))
                 for a, lab, u in zip(audios, labels, utt_ids)]
        feats, _ = features.batch_features(clips, self.config.features, pad_to=1, threads=1)
        return (feats.astype(np.float32), np.asarray(labels, dtype=np.int32).reshape(-1),
                np.asarray(utt_ids, dtype=str))

    def pipeline(self, epoch: int, start_batch: int = 0, num_workers: int | None = None):
        """The MindSpore dataset for one epoch from batch ``start_batch`` on; iterate with
        ``create_tuple_iterator(num_epochs=1, output_numpy=True)``."""
        import mindspore.dataset as ds

        plan = self.plan(epoch)
        if not 0 <= start_batch <= len(plan):
            raise ValueError(f"start_batch {start_batch} outside the epoch's {len(plan)} batches")
        indices = [int(i) for b in plan[start_batch:] for i in b] or [0]
        dataset = ds.MindDataset(self.index.files, columns_list=["audio", "label", "utt_id"],
                                 sampler=ds.SubsetSampler(indices))

        def per_batch(audios, labels, utt_ids, info):
            return self.make_batch(epoch, start_batch + info.get_batch_num(), audios, labels, utt_ids)

        # Evaluation's last batch is smaller; MindSpore batches by a fixed size, so the plan's sizes match it.
        dataset = dataset.batch(self.batch_size, drop_remainder=False, per_batch_map=per_batch,
                                input_columns=["audio", "label", "utt_id"],
                                output_columns=["features", "labels", "utt_id"],
                                num_parallel_workers=num_workers or self.config.data.num_parallel_workers)
        return dataset.take(len(plan) - start_batch)
