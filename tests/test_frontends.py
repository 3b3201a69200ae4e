"""The config's front end is the one the data pipeline computes: frame counts from features.hop_length
(not a module default), features from features.kind, small evaluation sets scored in full."""
import numpy as np
import pytest

from src.audio.features import batch_features, frame_count, valid_frame_count
from src.config import ConfigError, load_config
from src.data.dataset import SpeechData


def plan_and_first_batch(mindrecord_dir, overrides, train):
    config = load_config(None, ["data.batch_size=4", "data.num_buckets=2", "data.num_parallel_workers=1",
                                "augment.speed_perturb=false", "augment.spec_augment=false", *overrides])
    data = SpeechData(mindrecord_dir / "mr", config, train=train)
    feats, lengths, *_ = next(data.pipeline(0).create_tuple_iterator(num_epochs=1, output_numpy=True))
    return config, data, feats, lengths


@pytest.mark.parametrize("hop", [160, 320])
def test_batches_follow_the_configured_hop(mindrecord_dir, hop):
    config, data, feats, lengths = plan_and_first_batch(mindrecord_dir, [f"features.hop_length={hop}"], False)
    plan = data.plan(0)
    n = data.index.num_samples[plan.batches[0]]
    # the longest bucket fits the longest utterance at the configured hop, rounded up to pad_to, no more
    longest = 1 + data.index.num_samples.max() // hop
    assert data.boundaries[-1] == -(-longest // config.features.pad_to) * config.features.pad_to
    assert plan.frames[0] >= 1 + n.max() // hop
    # the batch's valid lengths and its padded width are the plan's, at the configured hop
    np.testing.assert_array_equal(lengths, -(-n // hop))
    assert feats.shape[2] == plan.frames[0]


def test_training_skips_by_the_configured_hop(mindrecord_dir):
    """With a long hop an utterance has fewer frames, so fewer tokens fit: the feasibility check must see it."""
    _, short_hop, _, _ = plan_and_first_batch(mindrecord_dir, [], True)
    config = load_config(None, ["data.batch_size=2", "features.hop_length=480", "features.n_fft=512",
                                "features.win_length=480", "augment.speed_perturb=false"])
    long_hop = SpeechData(mindrecord_dir / "mr", config, train=True, output_stride=2)
    assert len(long_hop.keep) < len(short_hop.keep)
    fewest = valid_frame_count(long_hop.index.num_samples[long_hop.keep], config.features)
    assert np.all(long_hop.index.num_tokens[long_hop.keep] <= fewest // 2)


def test_evaluation_scores_sets_smaller_than_a_batch(mindrecord_dir):
    config = load_config(None, ["data.batch_size=64"])
    data = SpeechData(mindrecord_dir / "mr", config, train=False)
    seen = [u for *_, ids in data.pipeline(0).create_tuple_iterator(num_epochs=1, output_numpy=True) for u in ids]
    assert sorted(seen) == sorted(data.index.utt_ids) and len(seen) == len(set(seen))
    with pytest.raises(ValueError, match="lower data.batch_size"):
        SpeechData(mindrecord_dir / "mr", config, train=True)


def test_front_end_kinds_give_their_shapes():
    rng = np.random.default_rng(0)
    audio = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (16000, 12345)]
    for preset, rows in (("jasper_tiny", 64), ("deepspeech2_tiny", 161), ("dscnn_s", 10)):
        fc = load_config(f"src/configs/{preset}.yaml").features
        feats, lengths = batch_features(audio, fc, pad_to=1)
        assert feats.shape[:2] == (2, rows), preset
        assert feats.shape[2] == frame_count(16000, fc)
        np.testing.assert_array_equal(lengths, [valid_frame_count(16000, fc), valid_frame_count(12345, fc)])
    assert frame_count(16000, load_config("src/configs/dscnn_s.yaml").features) == 49


@pytest.mark.parametrize("override, key", [("data.batch_size=0", "data.batch_size"), ("train.epochs=-3", "train.epochs"),
                                           ("features.kind=cepstrum", "features.kind"),
                                           ("optim.lr=0", "optim.lr")])
def test_out_of_range_settings_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])
