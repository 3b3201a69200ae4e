"""export.py, eval.py and transcribe.py on a small model: exported graphs reproduce the checkpoint,
every utterance is scored once, and all paths give the same transcripts."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
import soundfile as sf
import yaml
from mindspore import Tensor

from src.audio.features import batch_features
from src.config import config_from_dict
from src.deploy.loading import load_checkpoint_model, load_mindir_model
from src.tasks.asr import predict
from src.models.jasper import build_model
from src.runtime import configure_device

REPO = Path(__file__).resolve().parents[1]
SMALL = {"model": {"name": "jasper", "blocks": [
    {"filters": 32, "kernel": 11, "stride": 2},
    {"filters": 32, "repeat": 2, "kernel": 11, "residual": True},
    {"filters": 48, "kernel": 13, "dilation": 2},
    {"filters": 48, "kernel": 1}]}, "data": {"batch_size": 4}}


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """A config file and a checkpoint of randomly initialised weights (BN statistics made non-trivial)."""
    configure_device("CPU")
    tmp = tmp_path_factory.mktemp("export")
    config_path = tmp / "small.yaml"
    config_path.write_text(yaml.safe_dump(SMALL))
    ms.set_seed(5)
    model = build_model(config_from_dict(SMALL))
    rng = np.random.default_rng(0)
    for p in model.get_parameters():
        if "moving_variance" in p.name:
            p.set_data(Tensor(rng.uniform(0.5, 2.0, p.shape).astype(np.float32)))
        elif "moving_mean" in p.name:
            p.set_data(Tensor(rng.normal(0, 0.3, p.shape).astype(np.float32)))
    ms.save_checkpoint(model, str(tmp / "small.ckpt"))
    return config_path, tmp / "small.ckpt"


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / script), *args], capture_output=True, text=True, cwd=REPO)


def utterances(n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Three utterances of different lengths, features padded to n_frames: (3, 64, n_frames), (3,)."""
    rng = np.random.default_rng(1)
    audio = [rng.standard_normal(160 * t).astype(np.float32) * 0.1 for t in (n_frames - 5, 97, 40)]
    feats, lengths = batch_features(audio)
    return np.pad(feats, ((0, 0), (0, 0), (0, n_frames - feats.shape[2]))), lengths


@pytest.mark.parametrize("dynamic", [False, True])
def test_exported_mindir_reproduces_the_checkpoint(small_model, tmp_path, dynamic):
    config_path, ckpt = small_model
    extra = ["--dynamic"] if dynamic else ["--n_frames", "160", "--batch_size", "3"]
    r = run("export.py", "--config", str(config_path), "--checkpoint", str(ckpt), "--file_name",
            str(tmp_path / "jasper"), "--file_format", "MINDIR", *extra)
    assert r.returncode == 0, r.stderr[-2000:]
    info = json.loads((tmp_path / "jasper.mindir.json").read_text())
    assert info["dynamic"] is dynamic and (dynamic or info["n_frames"] == 160)
    reference = load_checkpoint_model(config_from_dict(SMALL), ckpt)
    exported = load_mindir_model(tmp_path / "jasper.mindir")
    feats, lengths = utterances(160)
    want, want_len = predict(reference, feats, lengths)
    got, got_len = predict(exported, feats, lengths)
    np.testing.assert_array_equal(got_len, want_len)
    for lp_a, lp_b, n in zip(got, want, want_len):
        np.testing.assert_allclose(lp_a[:n], lp_b[:n], atol=1e-5)
    # Each utterance alone, padded to the export length, gives the same as in the batch.
    single, _ = predict(exported, feats[1:2], lengths[1:2])
    np.testing.assert_allclose(single[0][:want_len[1]], want[1][:want_len[1]], atol=1e-5)


def test_fixed_mindir_refuses_longer_input_and_onnx_air_rules(small_model, tmp_path):
    config_path, ckpt = small_model
    base = ["--config", str(config_path), "--checkpoint", str(ckpt), "--file_name", str(tmp_path / "j")]
    assert run("export.py", *base, "--file_format", "MINDIR", "--n_frames", "64").returncode == 0
    with pytest.raises(ValueError, match="larger --n_frames"):
        predict(load_mindir_model(tmp_path / "j.mindir"), *utterances(160))
    r = run("export.py", *base, "--file_format", "ONNX", "--n_frames", "64")
    assert r.returncode == 0 and (tmp_path / "j.onnx").stat().st_size > 10_000
    r = run("export.py", *base, "--file_format", "AIR")
    assert r.returncode == 1 and "Ascend" in r.stderr
    r = run("export.py", *base[:2], "--checkpoint", str(tmp_path / "missing.ckpt"), "--file_name", "x")
    assert r.returncode == 1 and "checkpoint not found" in r.stderr and "Traceback" not in r.stderr


def read_report(path: Path) -> dict[str, dict]:
    with open(path) as f:
        return {row["utt_id"]: row for row in csv.DictReader(f, delimiter="\t")}


def test_eval_checkpoint_and_mindir_agree_on_every_utterance(small_model, mindrecord_dir, tmp_path):
    config_path, ckpt = small_model
    manifest = mindrecord_dir / "m.json"
    r = run("eval.py", "--config", str(config_path), "--checkpoint", str(ckpt), "--manifest", str(manifest),
            str(mindrecord_dir / "mr"), "--output_dir", str(tmp_path / "ckpt_eval"), "--no_progress")
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((tmp_path / "ckpt_eval" / "metrics.json").read_text())
    assert set(metrics) == {"m", "mr"}
    assert metrics["m"]["utterances"] == 22 and metrics["m"]["words"] == 66
    assert metrics["m"]["wer"] == metrics["mr"]["wer"]
    report = read_report(tmp_path / "ckpt_eval" / "m.tsv")
    assert len(report) == 22                                   # each utterance exactly once
    transcripts = {json.loads(manifest.read_text())[0]["transcript"]}
    assert transcripts <= {row["reference"] for row in report.values()}

    assert run("export.py", "--config", str(config_path), "--checkpoint", str(ckpt), "--file_name",
               str(tmp_path / "j"), "--n_frames", "352", "--batch_size", "3").returncode == 0
    r = run("eval.py", "--config", str(config_path), "--mindir", str(tmp_path / "j.mindir"), "--manifest",
            str(manifest), "--output_dir", str(tmp_path / "mindir_eval"), "--no_progress")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "mindir_eval" / "metrics.json").read_text())["m"] == metrics["m"]
    mindir_report = read_report(tmp_path / "mindir_eval" / "m.tsv")
    assert {k: v["hypothesis"] for k, v in mindir_report.items()} == {k: v["hypothesis"] for k, v in report.items()}


def test_transcribe_any_audio_and_report_bad_files(small_model, mindrecord_dir, tmp_path):
    config_path, ckpt = small_model
    entries = json.loads((mindrecord_dir / "m.json").read_text())[:3]
    wavs = [mindrecord_dir / e["files"][0]["fname"] for e in entries]
    r = run("eval.py", "--config", str(config_path), "--checkpoint", str(ckpt), "--manifest",
            str(mindrecord_dir / "m.json"), "--output_dir", str(tmp_path / "ev"), "--no_progress")
    expected = {k: v["hypothesis"] for k, v in read_report(tmp_path / "ev" / "m.tsv").items()}
    # The same audio as 44.1 kHz stereo FLAC: resampled and down-mixed on the way in.
    audio, sr = sf.read(wavs[0], dtype="float32")
    import soxr
    stereo = np.stack([soxr.resample(audio, sr, 44100)] * 2, axis=1)
    sf.write(tmp_path / "stereo.flac", stereo, 44100)
    (tmp_path / "broken.wav").write_bytes(b"RIFF nonsense")
    r = run("transcribe.py", "--config", str(config_path), "--checkpoint", str(ckpt), *map(str, wavs),
            str(tmp_path / "broken.wav"), str(tmp_path / "stereo.flac"))
    assert r.returncode == 1 and "broken.wav" in r.stderr and "cannot read audio" in r.stderr
    lines = dict(line.split("\t", 1) for line in r.stdout.splitlines())
    assert list(lines) == [*map(str, wavs), str(tmp_path / "stereo.flac")]   # order given, bad one left out
    for wav in wavs:
        assert lines[str(wav)] == expected[wav.stem]
    assert str(tmp_path / "stereo.flac") in lines
