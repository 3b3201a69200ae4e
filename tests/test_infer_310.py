"""The Ascend-310 inference path: preprocess.py → C++ runner (ascend310_infer/) → postprocess.py.

Without an Ascend the runner is built against the MindSpore Lite 2.0 C++ runtime (same API) and runs a
Jasper converted through ONNX; its outputs must match MindSpore's own for the same inputs, and the WER
of postprocess.py must equal eval's.  The runner must also compile and link against the real
MindSpore-for-Ascend library.  Downloads and builds are cached in git-ignored folders
(third_party/, ascend310_infer/build/).
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from src.audio.features import batch_features, num_frames, padded_frames, valid_frames
from src.audio.io import load_audio
from src.config import FeatureConfig
from src.data.manifest import read_manifest
from src.metrics.wer import ErrorRates
from src.text.labels import load_labels

REPO = Path(__file__).resolve().parents[1]
INFER = REPO / "ascend310_infer"
# Every Jasper feature (strided prologue, dense residuals, dilation, 1x1 epilogue) at a size that
# exports and converts in seconds; no dropout, so inference is deterministic anyway.
TINY_MODEL = {"name": "jasper_310_test", "blocks": [
    {"filters": 32, "kernel": 11, "stride": 2},
    {"filters": 32, "repeat": 2, "kernel": 11, "residual": True},
    {"filters": 48, "repeat": 2, "kernel": 13, "residual": True},
    {"filters": 64, "kernel": 15, "dilation": 2},
    {"filters": 64, "kernel": 1}]}


def run(cmd: list[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "GLOG_v": "3"}
    return subprocess.run([str(c) for c in cmd], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def run_py(script: str, *args) -> subprocess.CompletedProcess:
    return run([sys.executable, REPO / script, *args])


def read_list(preprocess_dir: Path) -> list[list[str]]:
    return [line.split("\t") for line in (preprocess_dir / "utterances.txt").read_text().splitlines()]


# ---------------------------------------------------------------------------------------------
# preprocess.py
# ---------------------------------------------------------------------------------------------

def test_preprocess_files_match_eval_features(mindrecord_dir, tmp_path):
    manifest = mindrecord_dir / "m.json"
    out = tmp_path / "dev"
    r = run_py("preprocess.py", "--manifest", manifest, "--output_dir", out, "--n_frames", 368, "--no_progress")
    assert r.returncode == 0, r.stderr
    assert "preprocessed 22 utterances" in r.stderr
    utts = read_manifest(manifest)
    assert read_list(out) == [[u.utt_id, "368", u.transcript] for u in utts]  # manifest order, references
    for u in utts:
        feats_path, len_path = out / "features" / f"{u.utt_id}.bin", out / "lengths" / f"{u.utt_id}.bin"
        assert feats_path.stat().st_size == 4 * 64 * 368 and len_path.stat().st_size == 4
        feats = np.fromfile(feats_path, "<f4").reshape(1, 64, 368)
        length = int(np.fromfile(len_path, "<i4")[0])
        # eval's front end: the same function, no dither, batched (padded to a multiple of 16)
        audio, _ = load_audio(u.audio_path)
        ref, ref_len = batch_features([audio], FeatureConfig(), dither=0.0)
        assert length == ref_len[0] == valid_frames(u.num_samples)
        np.testing.assert_array_equal(feats[:, :, :ref.shape[2]], ref)
        assert not feats[:, :, length:].any()
    assert not list(out.rglob("*.tmp"))


def test_preprocess_without_n_frames_pads_to_multiple_of_16(mindrecord_dir, tmp_path):
    manifest = mindrecord_dir / "m.json"
    r = run_py("preprocess.py", "--manifest", manifest, "--output_dir", tmp_path, "--no_progress")
    assert r.returncode == 0, r.stderr
    for (utt_id, frames, _), u in zip(read_list(tmp_path), read_manifest(manifest)):
        assert int(frames) == padded_frames(num_frames(u.num_samples), 16)
        assert (tmp_path / "features" / f"{utt_id}.bin").stat().st_size == 4 * 64 * int(frames)


def test_preprocess_refuses_utterance_longer_than_n_frames(mindrecord_dir, tmp_path):
    manifest = mindrecord_dir / "m.json"
    r = run_py("preprocess.py", "--manifest", manifest, "--output_dir", tmp_path, "--n_frames", 16, "--no_progress")
    assert r.returncode == 1
    first = read_manifest(manifest)[0]
    assert f"utterance {first.utt_id} has {valid_frames(first.num_samples)} frames" in r.stderr
    assert "export the model with a larger --n_frames" in r.stderr
    assert not (tmp_path / "utterances.txt").exists()


# ---------------------------------------------------------------------------------------------
# postprocess.py on hand-made runner outputs
# ---------------------------------------------------------------------------------------------

REFERENCES = {"u1": "hello world", "u2": "the quick brown fox", "u3": "a b c"}
HYPOTHESES = {"u1": "hello word", "u2": "the quick brown fox", "u3": "a c"}


def fake_runner_outputs(pre: Path, res: Path, write_lengths: bool = True) -> None:
    """Log-probs whose best path spells HYPOTHESES: each character then a blank, then blanks; the frames
    after the output length spell junk that must not be decoded."""
    labels = load_labels()
    pre.mkdir(parents=True)
    res.mkdir(parents=True)
    (pre / "lengths").mkdir()
    lines = []
    for utt_id, text in HYPOTHESES.items():
        best = [i for c in text for i in (labels.encode(c)[0], labels.blank)]
        out_frames = len(best) + 10
        best += [labels.encode("z")[0]] * 10
        log_probs = np.full((1, out_frames, labels.num_classes), -9.0, np.float32)
        log_probs[0, np.arange(out_frames), best] = -0.01
        log_probs.tofile(res / f"{utt_id}_0.bin")
        if write_lengths:
            np.array([out_frames - 10], np.int32).tofile(res / f"{utt_id}_1.bin")
        # stride 2: 2 * (out_frames - 10) valid input frames give out_frames - 10 output frames
        np.array([2 * (out_frames - 10)], np.int32).tofile(pre / "lengths" / f"{utt_id}.bin")
        lines.append(f"{utt_id}\t{2 * out_frames}\t{REFERENCES[utt_id]}\n")
    (pre / "utterances.txt").write_text("".join(lines))


@pytest.mark.parametrize("write_lengths", [True, False], ids=["with_lengths", "lengths_from_frames"])
def test_postprocess_scores_with_the_shared_wer(tmp_path, write_lengths):
    pre, res = tmp_path / "dev-clean", tmp_path / "result"
    fake_runner_outputs(pre, res, write_lengths)
    r = run_py("postprocess.py", "--result_dir", res, "--preprocess_dir", pre)
    assert r.returncode == 0, r.stderr
    expected = ErrorRates.of(list(REFERENCES.values()), list(HYPOTHESES.values())).as_dict()
    assert json.loads((res / "metrics.json").read_text()) == {"dev-clean": expected}
    assert expected["wer"] == pytest.approx(100 * 2 / 9, abs=1e-4)  # 1 substitution + 1 deletion in 9 words
    assert "dev-clean\tWER 22.22 %" in r.stdout
    with open(res / "report.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [(x["utt_id"], x["reference"], x["hypothesis"], x["word_errors"]) for x in rows] == [
        ("u1", "hello world", "hello word", "1"), ("u2", "the quick brown fox", "the quick brown fox", "0"),
        ("u3", "a b c", "a c", "1")]


def test_postprocess_output_lengths_from_the_config_model(tmp_path):
    pre, res = tmp_path / "dev", tmp_path / "result"
    fake_runner_outputs(pre, res, write_lengths=False)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"model": TINY_MODEL}))
    r = run_py("postprocess.py", "--result_dir", res, "--preprocess_dir", pre, "--config", config,
               "--dataset_name", "custom")
    assert r.returncode == 0, r.stderr
    metrics = json.loads((res / "metrics.json").read_text())
    assert metrics == {"custom": ErrorRates.of(list(REFERENCES.values()), list(HYPOTHESES.values())).as_dict()}


def test_postprocess_names_a_missing_result_file(tmp_path):
    pre, res = tmp_path / "dev", tmp_path / "result"
    fake_runner_outputs(pre, res)
    (res / "u2_0.bin").unlink()
    r = run_py("postprocess.py", "--result_dir", res, "--preprocess_dir", pre)
    assert r.returncode == 1
    assert f"missing runner output {res / 'u2_0.bin'}" in r.stderr
    assert not (res / "metrics.json").exists()


def test_postprocess_rejects_a_truncated_result_file(tmp_path):
    pre, res = tmp_path / "dev", tmp_path / "result"
    fake_runner_outputs(pre, res)
    data = (res / "u1_0.bin").read_bytes()
    (res / "u1_0.bin").write_bytes(data[:-8])
    r = run_py("postprocess.py", "--result_dir", res, "--preprocess_dir", pre)
    assert r.returncode == 1 and "u1_0.bin" in r.stderr and "not a multiple of the 29 classes" in r.stderr


# ---------------------------------------------------------------------------------------------
# The C++ runner on the MindSpore Lite CPU runtime (slow: fetch, build, export, convert)
# ---------------------------------------------------------------------------------------------

def build(backend: str) -> Path:
    r = run(["bash", INFER / "build.sh", backend], timeout=1800)
    assert r.returncode == 0, f"build.sh {backend} failed:\n{r.stderr[-4000:]}"
    return Path(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def lite_build() -> Path:
    """The runner and the converter tool built against MindSpore Lite 2.0 (fetched and cached)."""
    return build("lite")


@pytest.fixture(scope="module")
def exported(mindrecord_dir, tmp_path_factory):
    """A random-weight tiny Jasper, exported by export.py's function as MindIR and ONNX (fixed shape)."""
    import mindspore as ms

    import export
    from src.config import load_config
    from src.models.jasper import build_model

    tmp = tmp_path_factory.mktemp("model")
    config_path = tmp / "tiny.yaml"
    config_path.write_text(yaml.safe_dump({"model": TINY_MODEL}))
    config = load_config(config_path)
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(7)
    model = build_model(config)
    model.set_train(False)
    longest = max(num_frames(u.num_samples) for u in read_manifest(mindrecord_dir / "m.json"))
    n_frames = int(padded_frames(longest, 16)) + 16
    for fmt in ("MINDIR", "ONNX"):
        export.export(model, str(tmp / "jasper"), fmt, n_frames, 1, config.features.n_mels)
    return {"model": model, "config": config, "config_path": config_path, "mindir": tmp / "jasper.mindir",
            "n_frames": n_frames}


def run_infer_310(mindir: Path, work_dir: Path, manifest: Path, config: Path, need_preprocess: str = "y"):
    return run(["bash", REPO / "scripts" / "run_infer_310.sh", mindir, need_preprocess, 0, "--device_target", "CPU",
                "--manifest", manifest, "--work_dir", work_dir, "--config", config], timeout=1800)


def mindspore_reference(model, pre: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """MindSpore's own outputs on exactly the runner's input files."""
    from src.inference import predict

    out = {}
    for utt_id, frames, _ in read_list(pre):
        feats = np.fromfile(pre / "features" / f"{utt_id}.bin", "<f4").reshape(1, 64, int(frames))
        lengths = np.fromfile(pre / "lengths" / f"{utt_id}.bin", "<i4")
        out[utt_id] = predict(model, feats, lengths)
    return out


def assert_runner_matches(result: Path, reference: dict) -> None:
    worst = 0.0
    for utt_id, (log_probs, out_lengths) in reference.items():
        got = np.fromfile(result / f"{utt_id}_0.bin", "<f4")
        assert got.size == log_probs.size, utt_id
        worst = max(worst, float(np.abs(got.reshape(log_probs.shape) - log_probs).max()))
        np.testing.assert_array_equal(np.fromfile(result / f"{utt_id}_1.bin", "<i4"), out_lengths)
    assert worst < 1e-4, f"runner log-probs differ from MindSpore's by up to {worst}"


@pytest.fixture(scope="module")
def cpu_run(lite_build, exported, mindrecord_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("infer")
    r = run_infer_310(exported["mindir"], work, mindrecord_dir / "m.json", exported["config_path"])
    assert r.returncode == 0, r.stderr[-4000:]
    return {"work": work, "pre": work / "preprocess" / "m", "result": work / "result", "stdout": r.stdout}


@pytest.mark.slow
def test_runner_on_cpu_matches_mindspore_and_eval_wer(cpu_run, exported, mindrecord_dir):
    from src.data.dataset import SpeechData
    from src.decoding.greedy import greedy_decode
    from src.inference import evaluate

    pre, result, model = cpu_run["pre"], cpu_run["result"], exported["model"]
    assert [int(frames) for _, frames, _ in read_list(pre)] == [exported["n_frames"]] * 22
    reference = mindspore_reference(model, pre)
    assert_runner_matches(result, reference)

    # The same decoding and WER functions on MindSpore's outputs give postprocess.py's numbers.
    labels = load_labels()
    references = {utt_id: text for utt_id, _, text in read_list(pre)}
    totals, hypotheses = ErrorRates(), {}
    for utt_id, (log_probs, out_lengths) in reference.items():
        hypotheses[utt_id] = greedy_decode(log_probs, out_lengths, labels)[0]
        totals.add(references[utt_id], hypotheses[utt_id])
    metrics = json.loads((result / "metrics.json").read_text())
    assert metrics == {"m": totals.as_dict()}
    with open(result / "report.tsv", newline="") as f:
        assert {x["utt_id"]: x["hypothesis"] for x in csv.DictReader(f, delimiter="\t")} == hypotheses
    assert "m\tWER" in cpu_run["stdout"]

    # ... and eval's own path (MindRecord, bucketed batches) on the same utterances agrees.
    rates, _ = evaluate(model, SpeechData(mindrecord_dir / "mr", exported["config"], train=False), labels)
    assert rates.as_dict() == metrics["m"]

    timing = (result / "timing.tsv").read_text().splitlines()
    assert timing[0] == "utt_id\tframes\tpredict_ms" and len(timing) == 23
    assert not list(result.glob("*.tmp"))


@pytest.mark.slow
def test_runner_converts_a_mindir_without_onnx(exported, lite_build, mindrecord_dir, tmp_path):
    """Only the MindIR at hand: the script re-exports its graph to ONNX, converts and runs it."""
    mindir = tmp_path / "alone" / "jasper.mindir"
    mindir.parent.mkdir()
    shutil.copy(exported["mindir"], mindir)
    r = run_infer_310(mindir, tmp_path / "work", mindrecord_dir / "m.json", exported["config_path"])
    assert r.returncode == 0, r.stderr[-4000:]
    assert "exporting its graph to" in r.stderr and (tmp_path / "work" / "model" / "jasper.onnx").is_file()
    pre = tmp_path / "work" / "preprocess" / "m"
    assert_runner_matches(tmp_path / "work" / "result", mindspore_reference(exported["model"], pre))


def run_runner(lite_build: Path, model: Path, pre: Path, result: Path, *extra) -> subprocess.CompletedProcess:
    env_lib = (lite_build / "mindspore_lib_dir").read_text().strip()
    return run(["env", f"LD_LIBRARY_PATH={env_lib}", lite_build / "jasper_infer", "--mindir_path", model,
                "--input_dir", pre, "--result_dir", result, "--device_target", "CPU", *extra])


@pytest.mark.slow
def test_runner_reports_clear_errors(cpu_run, lite_build, exported, tmp_path):
    model = cpu_run["work"] / "model" / "jasper_lite.mindir"
    n = exported["n_frames"]
    pre = tmp_path / "pre"
    shutil.copytree(cpu_run["pre"], pre)
    first = read_list(pre)[0][0]

    r = run_runner(lite_build, tmp_path / "missing.mindir", pre, tmp_path / "r1")
    assert r.returncode == 1 and f"model file not found: {tmp_path / 'missing.mindir'}" in r.stderr

    r = run_runner(lite_build, model, tmp_path / "nowhere", tmp_path / "r2")
    assert r.returncode == 1 and "utterances.txt" in r.stderr and "run preprocess.py first" in r.stderr

    r = run_runner(lite_build, model, pre, tmp_path / "r3", "--device_target", "GPU")
    assert r.returncode == 2 and "--device_target must be Ascend310, Ascend or CPU" in r.stderr

    features = pre / "features" / f"{first}.bin"
    features.write_bytes(features.read_bytes()[:-4])
    r = run_runner(lite_build, model, pre, tmp_path / "r4")
    assert r.returncode == 1
    assert f"{features} holds {4 * 64 * n - 4} bytes, but the model needs {4 * 64 * n} bytes" in r.stderr

    # Features of another length: a fixed-shape model cannot be resized, and the error says what to do.
    np.zeros((1, 64, n + 16), np.float32).tofile(features)
    lines = (pre / "utterances.txt").read_text().splitlines()
    lines[0] = lines[0].replace(f"\t{n}\t", f"\t{n + 16}\t")
    (pre / "utterances.txt").write_text("\n".join(lines) + "\n")
    r = run_runner(lite_build, model, pre, tmp_path / "r5")
    assert r.returncode == 1 and f"cannot be resized to [1, 64, {n + 16}]" in r.stderr
    assert f"preprocess with --n_frames {n}" in r.stderr


@pytest.mark.slow
def test_runner_compiles_and_links_against_mindspore_ascend():
    """The same sources against libmindspore.so of mindspore-ascend 1.10 (CANN itself is absent here)."""
    build_dir = build("ascend-sdk")
    binary = build_dir / "jasper_infer"
    assert binary.is_file()
    dynamic = run(["readelf", "-d", binary]).stdout
    assert "[libmindspore.so]" in dynamic
    symbols = run(["nm", "-DC", "--undefined-only", binary]).stdout
    for used in ("mindspore::Model::Build(mindspore::GraphCell", "mindspore::Model::Predict(",
                 "mindspore::Model::Resize(", "mindspore::AscendDeviceInfo::SetDeviceID("):
        assert used in symbols
