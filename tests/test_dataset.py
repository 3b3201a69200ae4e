"""src.data.dataset: length buckets, epoch plans, rank sharding, and the MindSpore batch pipeline."""
import itertools

import numpy as np
import soundfile as sf

from src.audio.features import batch_features, num_frames, valid_frames
from src.config import load_config
from src.data.dataset import SpeechData, bucket_boundaries, perturbed_num_samples
from src.data.manifest import read_manifest
from src.data.mindrecord import ShardIndex
from src.text.labels import load_labels


def librispeech_like_index(n: int, seed: int = 0) -> ShardIndex:
    """Durations shaped like LibriSpeech training data: most 11–17 s, a tail down to 1.5 s."""
    rng = np.random.default_rng(seed)
    dur = np.where(rng.random(n) < 0.75, rng.uniform(11, 16.7, n), rng.uniform(1.5, 11, n))
    samples = (dur * 16000).astype(np.int64)
    return ShardIndex([], "audio", 16000, [f"u{i}" for i in range(n)], samples, (dur * 15).astype(np.int64))


def test_bucket_boundaries_are_optimal():
    rng = np.random.default_rng(1)
    frames = rng.integers(50, 400, 60)
    padded = -(-frames // 16) * 16
    got = bucket_boundaries(frames, 3, 16)

    def waste(bounds):
        return sum(bounds[np.searchsorted(bounds, p)] - p for p in padded)

    candidates = np.unique(padded)
    best = min(waste(np.array(sorted(c) + [candidates[-1]]))
               for c in itertools.combinations(candidates[:-1], 2))
    assert len(got) == 3 and got[-1] == padded.max() and np.all(got % 16 == 0)
    assert waste(got) == best


def test_padding_overhead_and_shapes_on_librispeech_like_lengths():
    config = load_config(None, ["data.batch_size=32", "data.num_buckets=8"])
    data = SpeechData(librispeech_like_index(4000), config, train=True)
    assert data.padding_overhead(0) <= 0.10
    assert len(data.shapes()) <= 8


def test_training_plan_is_deterministic_and_equal_across_ranks():
    config = load_config(None, ["data.batch_size=8"])
    index = librispeech_like_index(203)
    ranks = [SpeechData(index, config, train=True, rank=r, world=3) for r in range(3)]
    plans = [d.plan(5) for d in ranks]
    assert len({len(p.batches) for p in plans}) == 1                       # every rank steps together
    assert len({len(d.plan(e).batches) for d in ranks[:1] for e in range(4)}) == 1  # constant per epoch
    seen = np.concatenate([np.concatenate(p.batches) for p in plans])
    assert len(seen) == len(set(seen.tolist()))                           # ranks read disjoint data
    assert len(seen) >= len(index.utt_ids) - 8 * 3                        # at most a batch per rank unused
    again = SpeechData(index, config, train=True, rank=1, world=3).plan(5)
    assert all(np.array_equal(a, b) for a, b in zip(plans[1].batches, again.batches))
    assert not all(np.array_equal(a, b) for a, b in zip(plans[1].batches, ranks[1].plan(6).batches))
    for p, d in zip(plans, ranks):
        for b, s, t in zip(p.batches, p.speeds, p.frames):
            assert len(b) == 8 and t in d.boundaries
            assert num_frames(perturbed_num_samples(index.num_samples[b], s)).max() <= t
            assert np.all((s >= 0.85) & (s <= 1.15))


def test_sortagrad_epochs_go_shortest_first_on_every_rank():
    config = load_config(None, ["data.batch_size=8", "data.sortagrad=1"])
    index = librispeech_like_index(203)
    ranks = [SpeechData(index, config, train=True, rank=r, world=2) for r in range(2)]
    first = [d.plan(0) for d in ranks]
    for p in first:
        assert np.all(np.diff(p.frames) >= 0)                              # shortest batches first
    assert len(first[0].batches) == len(first[1].batches)
    # ranks take turns, so a step's batches are alike in length on both ranks
    assert np.all(np.abs(first[0].frames - first[1].frames) <= np.diff(ranks[0].boundaries).max())
    seen = np.concatenate([np.concatenate(p.batches) for p in first])
    assert len(seen) == len(set(seen.tolist()))
    later = ranks[0].plan(1).frames                                        # then shuffled again
    assert np.any(np.diff(later) < 0)


def test_training_skips_long_and_unalignable_utterances():
    index = librispeech_like_index(100)
    index.num_samples[:3] = 20 * 16000          # longer than max_duration
    index.num_tokens[3:5] = 10_000               # more tokens than output frames
    data = SpeechData(index, load_config(None, ["data.batch_size=4"]), train=True)
    assert set(range(5)).isdisjoint(data.keep.tolist()) and len(data.keep) == 95
    everything = SpeechData(index, load_config(None, ["data.batch_size=4"]), train=False)
    assert sorted(everything.plan(0).indices) == list(range(100))       # evaluation keeps all


def batches(data, epoch=0):
    it = data.pipeline(epoch).create_tuple_iterator(num_epochs=1, output_numpy=True)
    return [tuple(b) for b in it]


def test_eval_pipeline_scores_every_utterance_once_with_exact_features(mindrecord_dir):
    config = load_config(None, ["data.batch_size=4", "data.num_buckets=3"])
    data = SpeechData(mindrecord_dir / "mr", config, train=False)
    utts = {u.utt_id: u for u in read_manifest(mindrecord_dir / "m.json")}
    out = batches(data)
    ids = [str(i) for b in out for i in b[4]]
    assert sorted(ids) == sorted(utts) and len(out) == 6 and len(out[-1][4]) == 2
    labels = load_labels()
    for feats, lengths, tokens, token_lengths, batch_ids in out:
        assert (feats.shape[0], feats.shape[2]) in data.shapes() and feats.dtype == np.float32
        audios = [sf.read(utts[str(i)].audio_path, dtype="float32")[0] for i in batch_ids]
        expected, expected_len = batch_features(audios, config.features)
        np.testing.assert_array_equal(lengths, expected_len)
        np.testing.assert_allclose(feats[:, :, :expected.shape[2]], expected, atol=1e-6)
        assert not feats[:, :, expected.shape[2]:].any()
        for row, n, i in zip(tokens, token_lengths, batch_ids):
            assert labels.decode(row[:n]) == utts[str(i)].transcript and np.all(row[n:] == labels.blank)


def test_training_pipeline_augments_and_pads_to_planned_shapes(mindrecord_dir):
    config = load_config(None, ["data.batch_size=4", "data.num_buckets=3"])
    data = SpeechData(mindrecord_dir / "mr", config, train=True)
    out = batches(data, epoch=1)
    plan = data.plan(1)
    assert len(out) == len(plan.batches) == data.steps_per_epoch() == 5
    masked_somewhere = False
    for (feats, lengths, tokens, token_lengths, ids), b, s, t in zip(out, plan.batches, plan.speeds, plan.frames):
        assert feats.shape == (4, 64, t) and tokens.shape == (4, t // 2)
        np.testing.assert_array_equal(lengths, valid_frames(perturbed_num_samples(data.index.num_samples[b], s)))
        assert [str(i) for i in ids] == [data.index.utt_ids[i] for i in b]
        for f, n in zip(feats, lengths):
            assert not f[:, n:].any()                                      # padding stays zero
            masked_somewhere |= bool((np.abs(f[:, :n]).sum(axis=1) == 0).any())  # a SpecAugment freq mask
    assert masked_somewhere
    again = batches(SpeechData(mindrecord_dir / "mr", config, train=True), epoch=1)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(out, again))   # reproducible from the seed
    # masks only from augment.spec_augment_from_epoch on: epoch 1 of such a run has none
    later = load_config(None, ["data.batch_size=4", "data.num_buckets=3", "augment.spec_augment_from_epoch=2"])
    unmasked = batches(SpeechData(mindrecord_dir / "mr", later, train=True), epoch=1)
    assert not any((np.abs(f[:, :n]).sum(axis=1) == 0).any() for b in unmasked for f, n in zip(b[0], b[1]))


def test_freq_warp_changes_training_features_only(mindrecord_dir):
    base = ["data.batch_size=4", "data.num_buckets=3", "augment.spec_augment=false"]
    warp = base + ["augment.freq_warp=0.2"]
    plain, warped = (batches(SpeechData(mindrecord_dir / "mr", load_config(None, o), train=True), epoch=1)
                     for o in (base, warp))
    for a, b in zip(plain, warped):
        np.testing.assert_array_equal(a[1], b[1])                  # same utterances, speeds and lengths
        assert a[0].shape == b[0].shape and not np.allclose(a[0], b[0], atol=1e-3)
        assert all(not f[:, n:].any() for f, n in zip(b[0], b[1]))  # padding stays zero
    plain, warped = (batches(SpeechData(mindrecord_dir / "mr", load_config(None, o), train=False))
                     for o in (base, warp))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(plain, warped))


def test_resumed_epoch_continues_with_the_same_batches(mindrecord_dir):
    config = load_config(None, ["data.batch_size=4", "data.num_buckets=3"])
    data = SpeechData(mindrecord_dir / "mr", config, train=True)
    full = batches(data, epoch=2)
    it = data.pipeline(2, start_batch=3).create_tuple_iterator(num_epochs=1, output_numpy=True)
    rest = [tuple(b) for b in it]
    assert len(rest) == len(full) - 3
    for a, b in zip(full[3:], rest):
        assert list(a[4]) == list(b[4])
        np.testing.assert_array_equal(a[0], b[0])   # same speeds, dither and masks: keyed by batch number
