"""src/audio/trim.py and features.trim_db: edge silence is cut on the frame grid, the same way in the
front end and in the shards, and trimming twice changes nothing."""
import dataclasses

import numpy as np
import pytest
import soundfile as sf

from src.audio.features import batch_features
from src.audio.trim import speech_bounds, trim_silence
from src.config import FeatureConfig

SR, HOP = 16000, 160
TRIM = FeatureConfig(trim_db=35.0, trim_margin=0.1)


def padded_tone(lead: float, speech: float, tail: float, seed: int = 0) -> np.ndarray:
    """A tone burst in noise about 57 dB under it: (lead + speech + tail) seconds."""
    rng = np.random.default_rng(seed)
    n_lead, n_speech, n_tail = (int(s * SR) for s in (lead, speech, tail))
    x = 3e-4 * rng.standard_normal(n_lead + n_speech + n_tail).astype(np.float32)
    t = np.arange(n_speech) / SR
    x[n_lead:n_lead + n_speech] += 0.3 * np.sin(2 * np.pi * 220 * t) * np.hanning(n_speech) ** 0.1
    return x


def test_cut_points_are_the_loud_part_plus_the_margin():
    x = padded_tone(0.5, 1.0, 0.7)
    start, end = speech_bounds(x, TRIM)
    assert start % HOP == 0
    assert abs(start - (0.5 - 0.1) * SR) <= 2 * HOP
    assert abs(end - (1.5 + 0.1) * SR) <= 2 * HOP
    assert len(trim_silence(x, TRIM)) == end - start


def test_trimming_twice_changes_nothing():
    for seed, (lead, tail) in enumerate([(0.5, 0.7), (0.02, 0.33), (0.3, 0.0), (0.123, 0.457)]):
        once = trim_silence(padded_tone(lead, 0.8, tail, seed), TRIM)
        np.testing.assert_array_equal(trim_silence(once, TRIM), once)


def test_off_by_default_and_bad_settings_are_refused():
    x = padded_tone(0.5, 1.0, 0.7)
    assert speech_bounds(x, FeatureConfig()) == (0, len(x))
    assert speech_bounds(x[:100], TRIM) == (0, 100)          # shorter than one frame: kept
    with pytest.raises(ValueError, match="trim_db"):
        speech_bounds(x, dataclasses.replace(TRIM, trim_db=-1.0))


def test_front_end_features_are_those_of_the_trimmed_audio():
    x = padded_tone(0.6, 1.2, 0.4)
    feats, lengths = batch_features([x], TRIM)
    ref, ref_lengths = batch_features([trim_silence(x, TRIM)], FeatureConfig())
    np.testing.assert_array_equal(lengths, ref_lengths)
    np.testing.assert_array_equal(feats, ref)
    assert lengths[0] < batch_features([x], FeatureConfig())[1][0]


def test_shards_store_trimmed_audio_and_refuse_another_trim(tmp_path):
    from src.config import load_config
    from src.data.dataset import SpeechData
    from src.data.librispeech import convert_librispeech
    from src.data.manifest import read_manifest
    from src.data.mindrecord import read_index, write_mindrecord
    from src.text.labels import load_labels
    from tests.conftest import write_librispeech_folder

    audios = [padded_tone(0.2 + 0.1 * i, 0.8 + 0.2 * i, 0.4 - 0.05 * i, i) for i in range(4)]
    folder = write_librispeech_folder(tmp_path / "LibriSpeech" / "dev-clean", [
        (f"7-{10 + i // 2}-{i:04d}", "a tone", (a * 32767).astype(np.int16), SR) for i, a in enumerate(audios)])
    convert_librispeech(folder, tmp_path / "wav", tmp_path / "dev.json", progress=False)
    utts = read_manifest(tmp_path / "dev.json")
    plain = write_mindrecord(utts, tmp_path / "mr", 1, load_labels(), progress=False)
    trimmed = write_mindrecord(utts, tmp_path / "mr", 1, load_labels(), feature_cfg=TRIM, progress=False)
    assert plain["trim"] is None and trimmed["trim"] == {"trim_db": 35.0, "trim_margin": 0.1}
    # The fingerprint covers the trim, so the shard was rewritten with shorter audio.
    index = read_index(tmp_path / "mr")
    assert index.trim == trimmed["trim"]
    for u, n in zip(utts, index.num_samples):
        audio = sf.read(u.audio_path, dtype="float32")[0]
        assert n == len(trim_silence(audio, TRIM)) < len(audio)
    config = load_config(None, ["data.batch_size=2", "features.trim_db=35"])
    assert len(SpeechData(tmp_path / "mr", config, train=False).keep) == len(utts)
    with pytest.raises(ValueError, match="edge-silence trim.*re-run create_mindrecord.py"):
        SpeechData(tmp_path / "mr", load_config(None, ["data.batch_size=2"]), train=False)
