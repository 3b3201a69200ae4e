"""Batches from MindRecord shards: online features and augmentation, length buckets, rank sharding.

Every epoch gets a *plan* computed up front from the shard metadata (pure numpy, deterministic in
(seed, epoch)): a speed factor per utterance, length buckets, the batches and their padded frame
count, and each rank's share.  The MindSpore pipeline then reads exactly the planned records
(``MindDataset`` + ``SubsetSampler``) and ``per_batch_map`` turns each batch of PCM into padded
features.  Planning ahead gives what a streaming bucketer cannot:

* a bounded set of shapes (one padded length per bucket, fixed for the whole run), so graph
  compilations are bounded;
* the same number of steps per epoch on every rank (data-parallel ranks must step together);
* a constant number of steps per epoch for LR schedules, since leftover utterances of different
  buckets are batched together instead of dropped.

Training skips (and counts) utterances longer than ``data.max_duration`` or with more tokens than
the model can emit (CTC needs ``tokens <= frames // output_stride``); evaluation keeps every
utterance exactly once, in length order, with a smaller last batch.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
import numpy as np

from src.audio import augment, features
from src.config import Config
from src.data.mindrecord import ShardIndex, read_index, trim_settings
from src.text.labels import load_labels

log = logging.getLogger(__name__)

OUTPUT_COLUMNS = ["features", "feature_lengths", "tokens", "token_lengths", "utt_id"]


def perturbed_num_samples(num_samples: np.ndarray, speeds: np.ndarray) -> np.ndarray:
    """Length after playing ``num_samples`` ``speeds``× faster (what the resampler returns)."""
    return np.rint(num_samples / speeds).astype(np.int64)


def bucket_boundaries(frames: np.ndarray, num_buckets: int, multiple: int) -> np.ndarray:
    """Padded lengths (multiples of ``multiple``) that minimise the total padding of ``frames``.

    Exact dynamic programme over the distinct padded lengths: choosing boundaries c_1 < ... < c_K
    (c_K = the longest), every length pads up to the first boundary at or above it.
    Returns (K',) int64 with K' <= num_buckets.
    """
    padded = features.padded_frames(np.asarray(frames), multiple)
    values, counts = np.unique(padded, return_counts=True)
    m, k = len(values), min(num_buckets, len(values))
    # cost(i, j): padding when values[i..j] all pad to values[j]
    csum = np.concatenate([[0], np.cumsum(counts)])
    wsum = np.concatenate([[0], np.cumsum(counts * values)])

    def cost(i: np.ndarray, j: int) -> np.ndarray:
        return values[j] * (csum[j + 1] - csum[i]) - (wsum[j + 1] - wsum[i])

    best = np.full((k + 1, m), np.inf)
    arg = np.zeros((k + 1, m), dtype=np.int64)
    best[1] = [cost(np.array(0), j) for j in range(m)]
    for b in range(2, k + 1):
        for j in range(b - 1, m):
            i = np.arange(b - 1, j + 1)          # the last bucket covers values[i..j]
            total = best[b - 1][i - 1] + cost(i, j)
            arg[b, j] = i[np.argmin(total)]
            best[b, j] = total.min()
    bounds, j, b = [], m - 1, k
    while b >= 1:
        bounds.append(values[j])
        j, b = arg[b, j] - 1, b - 1
    return np.array(sorted(bounds), dtype=np.int64)


@dataclass(frozen=True)
class EpochPlan:
    """What one rank reads in one epoch.  ``batches[i]``: record indices; ``frames[i]``: padded T."""
    batches: list[np.ndarray]
    speeds: list[np.ndarray]
    frames: np.ndarray

    @property
    def indices(self) -> list[int]:
        return [int(i) for b in self.batches for i in b]


class SpeechData:
    """A MindRecord folder prepared for training (``train=True``) or evaluation.

    ``output_stride``: the model's time reduction (frames per output step), to skip utterances CTC
    cannot align.  ``rank``/``world``: this process's share in data-parallel training.
    """

    def __init__(self, data: str | os.PathLike | ShardIndex, config: Config, train: bool, rank: int = 0,
                 world: int = 1, output_stride: int = 2, batch_size: int | None = None) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is outside 0..{world - 1}")
        self.config, self.train, self.rank, self.world = config, train, rank, world
        self.batch_size = batch_size or config.data.batch_size
        self.output_stride = output_stride
        self.index: ShardIndex = data if isinstance(data, ShardIndex) else read_index(data)
        #: utterances left out when the folder was written (unreadable or missing audio); reported by evaluation
        self.skipped: int = self.index.skipped
        data_dir = "<in-memory index>" if isinstance(data, ShardIndex) else data
        self.labels = load_labels(config.labels_path)
        fc, ac = config.features, config.augment
        if self.index.labels is not None and self.index.labels != self.labels.symbols:
            raise ValueError(f"{data_dir}: its tokens were written with other labels than {config.labels_path} "
                             f"({len(self.index.labels)} against {len(self.labels.symbols)} symbols); re-run "
                             "create_mindrecord.py with the training config's labels_path")
        if self.index.trim is not None and self.index.trim != trim_settings(fc):
            # Stored audio already lost what the config's front end would keep (or trims otherwise).
            raise ValueError(f"{data_dir}: its audio was stored with the edge-silence trim {self.index.trim}, but the "
                             f"config's front end has trim_db={fc.trim_db}, trim_margin={fc.trim_margin}; re-run "
                             "create_mindrecord.py with this config")
        if self.index.sample_rate != fc.sample_rate:
            raise ValueError(f"{data_dir}: stored at {self.index.sample_rate} Hz but the config expects "
                             f"{fc.sample_rate} Hz; re-run create_mindrecord.py")
        self.speed_range = (ac.min_speed, ac.max_speed) if (
            train and ac.speed_perturb and self.index.store == "audio") else (1.0, 1.0)
        self.keep = self._select()
        if not len(self.keep):
            raise ValueError(f"{data_dir}: no usable utterances")
        if train and len(self.keep) < self.batch_size * world:
            raise ValueError(f"{data_dir}: {len(self.keep)} usable utterances cannot fill one training batch of "
                             f"{self.batch_size} on each of {world} rank(s); lower data.batch_size")
        self.boundaries = self._boundaries()

    # --- planning (pure numpy) -------------------------------------------------------------------
    def _select(self) -> np.ndarray:
        """Indices of the records used: all for evaluation; for training, those CTC can learn from."""
        n = len(self.index.num_samples)
        if not self.train:
            return np.arange(n)
        sr = self.index.sample_rate
        too_long = self.index.num_samples > self.config.data.max_duration * sr
        # Worst case for alignment: the fastest speed gives the fewest frames.
        fewest = features.valid_frame_count(
            perturbed_num_samples(self.index.num_samples, np.float64(self.speed_range[1])), self.config.features)
        infeasible = ~too_long & (self.index.num_tokens > fewest // self.output_stride)
        empty = self.index.num_tokens == 0
        if too_long.any() or infeasible.any() or empty.any():
            log.warning("training skips %d of %d utterances: %d longer than data.max_duration=%.1f s, "
                        "%d with more tokens than output frames, %d with empty transcripts",
                        int((too_long | infeasible | empty).sum()), n, int(too_long.sum()),
                        self.config.data.max_duration, int(infeasible.sum()), int(empty.sum()))
        return np.flatnonzero(~(too_long | infeasible | empty))

    def _boundaries(self) -> np.ndarray:
        """Fixed for the run: fitted to lengths under random speeds, covering the slowest speed."""
        rng = np.random.default_rng(self.config.data.seed)
        n = self.index.num_samples[self.keep]
        lo, hi = self.speed_range
        sampled = perturbed_num_samples(n, rng.uniform(lo, hi, len(n)))
        longest = perturbed_num_samples(n.max(keepdims=True), np.float64(lo))
        frames = features.frame_count(np.concatenate([sampled, longest]), self.config.features)
        return bucket_boundaries(frames, self.config.data.num_buckets, self.config.features.pad_to)

    def _bucket_frames(self, frames: np.ndarray) -> np.ndarray:
        return self.boundaries[np.searchsorted(self.boundaries, frames)]

    def plan(self, epoch: int) -> EpochPlan:
        """The batches this rank reads in ``epoch`` (deterministic in seed, epoch, rank, world)."""
        bs, fc = self.batch_size, self.config.features
        if not self.train:
            order = self.keep[np.argsort(self.index.num_samples[self.keep], kind="stable")]
            batches = [order[i:i + bs] for i in range(0, len(order), bs)]
            speeds = [np.ones(len(b)) for b in batches]
            frames = np.array([self._bucket_frames(features.frame_count(self.index.num_samples[b].max(), fc))
                               for b in batches], dtype=np.int64)
            return EpochPlan(batches, speeds, frames)
        rng = np.random.default_rng([self.config.data.seed, epoch])
        speed = np.ones(len(self.index.num_samples))
        speed[self.keep] = rng.uniform(*self.speed_range, len(self.keep))
        n_frames = features.frame_count(perturbed_num_samples(self.index.num_samples, speed), self.config.features)
        bucket_of = np.searchsorted(self.boundaries, n_frames[self.keep])
        batches, leftovers = [], []
        for b in range(len(self.boundaries)):
            members = self.keep[bucket_of == b]
            members = members[rng.permutation(len(members))] if self.config.data.shuffle else members
            full = len(members) // bs * bs
            batches += list(members[:full].reshape(-1, bs))
            leftovers.append(members[full:])
        # Leftovers of all buckets, in length order, make mixed batches padded to their longest member.
        rest = np.concatenate(leftovers)
        rest = rest[np.argsort(n_frames[rest], kind="stable")]
        batches += list(rest[: len(rest) // bs * bs].reshape(-1, bs))
        per_rank = len(batches) // self.world
        if epoch < self.config.data.sortagrad:
            # Short utterances first: CTC finds its alignments sooner.  Ranks take turns so that
            # each step's batches have similar lengths on every rank.
            batches = sorted(batches, key=lambda b: int(n_frames[b].max()))
            mine = batches[self.rank:per_rank * self.world:self.world]
        else:
            if self.config.data.shuffle:
                batches = [batches[i] for i in rng.permutation(len(batches))]
            mine = batches[self.rank * per_rank:(self.rank + 1) * per_rank]
        return EpochPlan(mine, [speed[b] for b in mine],
                         np.array([self._bucket_frames(n_frames[b].max()) for b in mine], dtype=np.int64))

    def steps_per_epoch(self) -> int:
        return len(self.plan(0).batches)

    def shapes(self) -> list[tuple[int, int]]:
        """Every (batch, frames) shape the loader can emit: bounded by the number of buckets."""
        shapes = {(self.batch_size, int(t)) for t in self.boundaries}
        if not self.train:
            shapes |= {(len(b), int(t)) for b, t in zip(self.plan(0).batches, self.plan(0).frames)}
        return sorted(shapes)

    def padding_overhead(self, epoch: int = 0) -> float:
        """Padded frames / real (valid) frames − 1 for this rank's batches in ``epoch``."""
        p = self.plan(epoch)
        real = sum(int(features.valid_frame_count(perturbed_num_samples(self.index.num_samples[b], s),
                                                  self.config.features).sum())
                   for b, s in zip(p.batches, p.speeds))
        padded = sum(len(b) * int(t) for b, t in zip(p.batches, p.frames))
        return padded / real - 1.0

    # --- turning records into padded batches -----------------------------------------------------
    def make_batch(self, plan: EpochPlan, epoch: int, batch_num: int, audio_or_feats: list,
                   tokens: list, utt_ids: list) -> tuple[np.ndarray, ...]:
        """Records of one planned batch → (features (B, n_mels, T), lengths (B,), tokens (B, S),
        token lengths (B,), utt_ids (B,)), with T the batch's bucket length; S = T // stride in
        training, the longest transcript of the batch in evaluation."""
        fc, t_pad = self.config.features, int(plan.frames[batch_num])
        rng = np.random.default_rng([self.config.data.seed, epoch, self.rank, batch_num, 1])
        if self.index.store == "audio":
            audios = [np.frombuffer(a, dtype="<i2").astype(np.float32) / 32768.0 for a in audio_or_feats]
            audios = [augment.change_speed(a, s, fc.sample_rate) if s != 1.0 else a
                      for a, s in zip(audios, plan.speeds[batch_num])]
            # One thread per batch: the pipeline's workers already run batches in parallel.
            feats, lengths = features.batch_features(audios, fc, dither=fc.dither if self.train else 0.0,
                                                     rng=rng, pad_to=fc.pad_to, threads=1)
        else:
            feats, lengths = self._stack_stored(audio_or_feats, plan.batches[batch_num])
        if feats.shape[2] > t_pad:
            raise AssertionError(f"batch {batch_num}: {feats.shape[2]} frames exceed the planned {t_pad}")
        feats = np.pad(feats, ((0, 0), (0, 0), (0, t_pad - feats.shape[2])))
        ac = self.config.augment
        if self.train and ac.freq_warp > 0:
            feats = augment.freq_warp(feats, rng, ac.freq_warp, fc.sample_rate)
        if self.train and ac.spec_augment and epoch >= ac.spec_augment_from_epoch:
            feats = augment.spec_augment(feats, lengths, rng, ac)
        tok_len = np.array([len(t) for t in tokens], dtype=np.int32)
        # Training: a fixed width per bucket (one compiled shape; planning guarantees the tokens fit).
        # Evaluation: the batch's longest transcript, so nothing is ever cut.
        s_pad = t_pad // self.output_stride if self.train else max(int(tok_len.max()), 1)
        tok = np.full((len(tokens), s_pad), self.labels.blank, dtype=np.int32)
        for i, t in enumerate(tokens):
            tok[i, :len(t)] = t
        return feats.astype(np.float32), lengths.astype(np.int32), tok, tok_len, np.asarray(utt_ids, dtype=str)

    def _stack_stored(self, flat_feats: list, records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stored (n_mels * T,) feature rows → (B, n_mels, T_max) zero-padded, valid lengths (B,)."""
        rows = self.config.features.feature_dim
        mats = [f.reshape(rows, -1) for f in flat_feats]
        out = np.zeros((len(mats), rows, max(m.shape[1] for m in mats)), np.float32)
        for i, m in enumerate(mats):
            out[i, :, :m.shape[1]] = m
        return out, features.valid_frame_count(self.index.num_samples[records], self.config.features)

    def pipeline(self, epoch: int, start_batch: int = 0, num_workers: int | None = None):
        """The MindSpore dataset for one epoch, from batch ``start_batch`` on (a resumed run continues
        mid-epoch with the very batches it would have seen).  Iterate with
        ``create_tuple_iterator(num_epochs=1, output_numpy=True)``."""
        import mindspore.dataset as ds

        plan = self.plan(epoch)
        if not 0 <= start_batch <= len(plan.batches):
            raise ValueError(f"start_batch {start_batch} outside the epoch's {len(plan.batches)} batches")
        data_col = "audio" if self.index.store == "audio" else "features"
        indices = [int(i) for b in plan.batches[start_batch:] for i in b] or plan.indices[:1]
        dataset = ds.MindDataset(self.index.files, columns_list=[data_col, "tokens", "utt_id"],
                                 sampler=ds.SubsetSampler(indices))

        def per_batch(data, tokens, utt_ids, info):
            return self.make_batch(plan, epoch, start_batch + info.get_batch_num(), data, tokens, utt_ids)

        dataset = dataset.batch(self.batch_size, drop_remainder=False, per_batch_map=per_batch,
                                input_columns=[data_col, "tokens", "utt_id"], output_columns=OUTPUT_COLUMNS,
                                num_parallel_workers=num_workers or self.config.data.num_parallel_workers)
        return dataset.take(len(plan.batches) - start_batch)
