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


# ------------------------------------------------------------------------------------------------
# Nothing is lost or kept without a word


def test_truncated_shard_is_written_again_not_kept_as_up_to_date(manifest, tmp_path, caplog):
    utts = read_manifest(manifest)
    write_mindrecord(utts, tmp_path / "mr", 2, load_labels(), progress=False)
    shards = sorted((tmp_path / "mr").glob("*.mindrecord"))
    size = shards[0].stat().st_size
    with open(shards[0], "r+b") as f:       # a copy or a disk that stopped half-way
        f.truncate(size // 2)
    with pytest.raises(ValueError, match="truncated or damaged.*re-run create_mindrecord.py"):
        read_index(tmp_path / "mr")
    mtime1 = shards[1].stat().st_mtime_ns
    with caplog.at_level("INFO", logger="src.data.mindrecord"):
        write_mindrecord(utts, tmp_path / "mr", 2, load_labels(), progress=False)
    assert shards[0].stat().st_size == size and shards[1].stat().st_mtime_ns == mtime1
    assert "truncated" in caplog.text and "1 of 2 shards are up to date" in caplog.text
    assert len(read_index(tmp_path / "mr").utt_ids) == 8


def test_missing_audio_is_reported_as_not_found_and_exposed_as_skipped(manifest, tmp_path):
    from src.config import load_config
    from src.data.dataset import SpeechData

    utts = read_manifest(manifest)
    utts[3].audio_path.unlink()
    write_mindrecord(utts, tmp_path / "mr", 1, load_labels(), progress=False)
    meta = json.loads(next((tmp_path / "mr").glob("data-*.json")).read_text())
    assert meta["skipped"] == [f"{utts[3].utt_id}: {utts[3].audio_path}: not found"]
    data = SpeechData(tmp_path / "mr", load_config(None, ["data.batch_size=2"]), train=False)
    assert data.skipped == 1 and len(data.keep) == 7


def write_json(path: Path, entries: list) -> Path:
    path.write_text(json.dumps(entries))
    return path


def test_a_duplicated_id_keeps_its_good_second_copy(manifest, tmp_path, capfd, restore_logging):
    """The first manifest names a broken file for an id, the second a good one: the good one is stored."""
    import create_mindrecord

    entries = json.loads(manifest.read_text())
    wav = manifest.parent / entries[0]["files"][0]["fname"]
    broken = tmp_path / "broken" / wav.name
    broken.parent.mkdir()
    broken.write_bytes(b"not audio")
    first = write_json(tmp_path / "first.json", [{**entries[0], "files": [{**entries[0]["files"][0],
                                                                            "fname": str(broken)}]}])
    code = create_mindrecord.main(["--manifest", str(first), str(manifest), "--output_dir", str(tmp_path / "mr"),
                                   "--no_progress", "--parallel", "1"])
    assert code == 0
    index = json.loads((tmp_path / "mr" / "dataset.json").read_text())
    assert index["records"] == 8 and index["skipped"] == 0 and index["duplicates"] == 1
    assert wav.stem in read_index(tmp_path / "mr").utt_ids
    err = capfd.readouterr().err
    assert f"kept {wav.resolve()}" in err and "unusable" in err and "1 duplicate ids dropped" in err


def test_empty_transcript_is_stored_with_a_warning(manifest, tmp_path, caplog):
    entries = json.loads(manifest.read_text())
    entries[1]["transcript"] = ""
    m = write_json(manifest.parent / "empty.json", entries)
    index = write_mindrecord(read_manifest(m), tmp_path / "mr", 1, load_labels(), progress=False)
    assert index["records"] == 8
    empty_id = Path(entries[1]["files"][0]["fname"]).stem
    assert any(empty_id in r.getMessage() and "empty transcript" in r.getMessage() and r.levelname == "WARNING"
               for r in caplog.records)


def test_pool_workers_end_quietly_when_their_parent_is_killed(tmp_path):
    """Before, each worker printed a BrokenPipeError traceback when it reported its result."""
    script = ("import os, time\n"
              "from src.data.mindrecord import worker_pool\n"
              "def job(seconds):\n"
              "    os.write(1, b'started\\n')\n"
              "    time.sleep(seconds)\n"
              "pool = worker_pool(2)\n"
              "pool.map_async(job, [2, 2], chunksize=1)\n"
              "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert [proc.stdout.readline().strip() for _ in range(2)] == ["started", "started"]
    proc.kill()                             # while both workers are busy
    # stderr reaches its end when the last worker holding it has exited
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
