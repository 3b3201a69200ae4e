"""Keyword MindRecord and batches: every clip once in evaluation, labels from the index, and silence clips
heard alike by eval.py and the 310 preprocess even when the manifest holds clips the writer skips."""
import json

import numpy as np
import soundfile as sf

from src.config import load_config
from src.data.keywords import KeywordData, write_keyword_mindrecord
from src.tasks.kws import TASK


def keyword_folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "sc"
    entries = []
    for i, word in enumerate(["yes", "no", "left", "bogus", "go"]):     # "bogus" is no class: skipped
        (root / word).mkdir(parents=True)
        sf.write(root / word / f"s{i}_nohash_0.wav", 0.1 * rng.standard_normal(16000), 16000, subtype="PCM_16")
        entries.append({"path": f"sc/{word}/s{i}_nohash_0.wav", "label": word, "speaker": f"s{i}", "duration": 1.0})
    (root / "_background_noise_").mkdir()
    sf.write(root / "_background_noise_" / "n.wav", 0.3 * rng.standard_normal(48000), 16000, subtype="PCM_16")
    entries.append({"path": "sc/_background_noise_/n.wav", "label": "_silence_", "speaker": "_background_noise_",
                    "duration": 1.0, "offset": 0.5})
    manifest = tmp_path / "test.json"
    manifest.write_text(json.dumps(entries))
    return manifest


def test_evaluation_batches_and_the_310_preprocess_hear_the_same_clips(tmp_path):
    config = load_config("src/configs/dscnn_s.yaml", ["data.batch_size=4", "data.num_parallel_workers=1"])
    manifest = keyword_folder(tmp_path)
    index = write_keyword_mindrecord(manifest, tmp_path / "mr", config, num_shards=2, progress=False)
    assert index["records"] == 5 and index["skipped"] == 1
    data = KeywordData(tmp_path / "mr", config, train=False)
    classes = list(config.kws.labels)
    seen = {}
    for feats, labels, ids in data.pipeline(0).create_tuple_iterator(num_epochs=1, output_numpy=True):
        assert feats.shape[1:] == (10, 49)
        seen.update({str(u): (classes[int(lab)], f) for u, lab, f in zip(ids, labels, feats)})
    assert sorted(label for label, _ in seen.values()) == sorted(["yes", "no", "left", "go", "_silence_"])
    # the 310 preprocess computes the features from its own reading of the manifest: the same numbers
    from src.audio.features import batch_features
    for utt_id, label, load in TASK.preprocess_items(str(manifest), config):
        feats, _ = batch_features([load()], config.features, pad_to=1)
        match = [f for lab, f in seen.values() if lab == label]
        assert len(match) == 1
        np.testing.assert_allclose(feats[0], match[0], atol=1e-4)
