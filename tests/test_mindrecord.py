"""create_mindrecord.py / src.data.mindrecord: shards round-trip audio and tokens exactly; resume."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from src.audio.features import filterbank_features
from src.data.librispeech import convert_librispeech
from src.data.manifest import read_manifest
from src.data.mindrecord import read_index, schema, write_mindrecord
from src.text.labels import load_labels

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def manifest(small_corpus, tmp_path):
    convert_librispeech(small_corpus, tmp_path / "wav", tmp_path / "dev.json", progress=False)
    return tmp_path / "dev.json"


def read_all(data_dir, columns):
    import mindspore.dataset as ds
    index = read_index(data_dir)
    rows = ds.MindDataset(index.files, columns_list=columns, shuffle=False)
    return index, list(rows.create_dict_iterator(num_epochs=1, output_numpy=True))


def test_schema_fields():
    assert set(schema("audio")) == {"utt_id", "transcript", "tokens", "duration", "num_samples", "sample_rate", "audio"}
    assert {"features", "n_frames"} <= set(schema("features"))
    with pytest.raises(ValueError):
        schema("spectrogram")


def test_audio_round_trip_is_exact(manifest, tmp_path):
    utts = read_manifest(manifest)
    index = write_mindrecord(utts, tmp_path / "mr", 3, load_labels(), progress=False)
    assert index["records"] == 8 and len(index["shards"]) == 3
    shard_index, rows = read_all(tmp_path / "mr", ["utt_id", "transcript", "tokens", "audio", "num_samples"])
    # Reading the shards in order gives the index's global row order (the loader relies on it).
    assert [str(r["utt_id"]) for r in rows] == shard_index.utt_ids
    labels, by_id = load_labels(), {u.utt_id: u for u in utts}
    for r in rows:
        u = by_id[str(r["utt_id"])]
        pcm = np.frombuffer(r["audio"].tobytes(), dtype="<i2")
        assert np.array_equal(pcm, sf.read(u.audio_path, dtype="int16")[0])
        assert labels.decode(r["tokens"]) == u.transcript == str(r["transcript"])
        assert int(r["num_samples"]) == len(pcm)
    assert list(shard_index.num_tokens) == [len(by_id[i].transcript) for i in shard_index.utt_ids]


def test_feature_store_matches_front_end(manifest, tmp_path):
    utts = read_manifest(manifest)
    write_mindrecord(utts, tmp_path / "mr", 1, load_labels(), store="features", progress=False)
    _, rows = read_all(tmp_path / "mr", ["utt_id", "features", "n_frames"])
    by_id = {u.utt_id: u for u in utts}
    for r in rows:
        audio = sf.read(by_id[str(r["utt_id"])].audio_path, dtype="float32")[0]
        expected = filterbank_features(audio)
        np.testing.assert_array_equal(r["features"].reshape(64, int(r["n_frames"])), expected)


def test_rerun_keeps_shards_and_rewrites_only_changed(manifest, tmp_path):
    utts = read_manifest(manifest)
    write_mindrecord(utts, tmp_path / "mr", 2, load_labels(), progress=False)
    shards = sorted((tmp_path / "mr").glob("*.mindrecord"))
    mtimes = [p.stat().st_mtime_ns for p in shards]
    write_mindrecord(utts, tmp_path / "mr", 2, load_labels(), progress=False)
    assert [p.stat().st_mtime_ns for p in shards] == mtimes
    changed = utts[:-1] + [utts[-1].__class__(**{**utts[-1].__dict__, "transcript": "changed text"})]
    write_mindrecord(changed, tmp_path / "mr", 2, load_labels(), progress=False)
    assert shards[0].stat().st_mtime_ns == mtimes[0] and shards[1].stat().st_mtime_ns != mtimes[1]
    # A new shard count replaces the old shards instead of mixing with them.
    write_mindrecord(utts, tmp_path / "mr", 4, load_labels(), progress=False)
    assert len(list((tmp_path / "mr").glob("*.mindrecord"))) == 4 and read_index(tmp_path / "mr").files
    assert not (tmp_path / "mr" / ".tmp").exists()


def test_unreadable_audio_is_skipped_and_counted(manifest, tmp_path):
    utts = read_manifest(manifest)
    utts[2].audio_path.write_bytes(b"broken")
    index = write_mindrecord(utts, tmp_path / "mr", 2, load_labels(), progress=False)
    assert index["records"] == 7 and index["skipped"] == 1
    assert utts[2].utt_id not in read_index(tmp_path / "mr").utt_ids


def test_missing_shard_is_a_clear_error(manifest, tmp_path):
    write_mindrecord(read_manifest(manifest), tmp_path / "mr", 2, load_labels(), progress=False)
    next((tmp_path / "mr").glob("*.mindrecord.db")).unlink()
    with pytest.raises(FileNotFoundError, match="re-run create_mindrecord.py"):
        read_index(tmp_path / "mr")


def test_cli(manifest, tmp_path):
    run = subprocess.run([sys.executable, str(REPO / "create_mindrecord.py"), "--manifest", str(manifest),
                          "--output_dir", str(tmp_path / "mr"), "--num_shards", "2", "--no_progress"],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp_path / "mr" / "dataset.json").read_text())["records"] == 8
    bad = subprocess.run([sys.executable, str(REPO / "create_mindrecord.py"), "--manifest", str(tmp_path / "no.json"),
                          "--output_dir", str(tmp_path / "mr2")], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 1 and "manifest not found" in bad.stderr and "Traceback" not in bad.stderr


def test_word_piece_tokens_round_trip_and_other_labels_are_refused(manifest, tmp_path):
    from src.config import load_config
    from src.data.dataset import SpeechData
    from src.text.pieces import learn_pieces

    utts = read_manifest(manifest)
    pieces = learn_pieces([u.transcript for u in utts], load_labels(), 40)
    assert pieces.pieces, "the fixture's transcripts should repeat some letter pairs"
    labels_file = tmp_path / "pieces.json"
    labels_file.write_text(json.dumps(pieces.symbols))
    write_mindrecord(utts, tmp_path / "mr", 1, load_labels(labels_file), progress=False)
    index, rows = read_all(tmp_path / "mr", ["utt_id", "tokens"])
    by_id = {u.utt_id: u for u in utts}
    for r in rows:
        assert pieces.decode(r["tokens"]) == by_id[str(r["utt_id"])].transcript
    assert sum(index.num_tokens) < sum(len(u.transcript) for u in utts)
    config = load_config(None, [f"labels_path={labels_file}", "data.batch_size=2"])
    assert len(SpeechData(tmp_path / "mr", config, train=False).keep) == len(utts)
    with pytest.raises(ValueError, match="other labels.*re-run create_mindrecord.py"):
        SpeechData(tmp_path / "mr", load_config(None, ["data.batch_size=2"]), train=False)
