"""The Ascend-310 inference path: preprocess.py → C++ runner (ascend310_infer/, zoo_infer) → postprocess.py.

Without an Ascend the runner is built against the MindSpore Lite 2.0 C++ runtime (same API) and runs
models converted through ONNX: a one-input/one-output classifier and a two-input/two-output Jasper,
fed through hand-written input lists and through the whole script.  Its outputs must match MindSpore's
own for the same input files, and the WER of postprocess.py must equal eval's.  The runner must also
compile and link against the real MindSpore-for-Ascend library.  Downloads and builds are cached in
git-ignored folders (third_party/, ascend310_infer/build/).
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
from src.data.manifest import read_manifest
from src.metrics.wer import ErrorRates
from src.text.labels import load_labels

REPO = Path(__file__).resolve().parents[1]
INFER = REPO / "ascend310_infer"
# Every Jasper feature (strided prologue, dense residuals, dilation, 1x1 epilogue) at a size that
# exports and converts in seconds; no dropout, so inference is deterministic anyway.
TINY_MODEL = {"name": "jasper", "blocks": [
    {"filters": 32, "kernel": 11, "stride": 2},
    {"filters": 32, "repeat": 2, "kernel": 11, "residual": True},
    {"filters": 48, "repeat": 2, "kernel": 13, "residual": True},
    {"filters": 64, "kernel": 15, "dilation": 2},
    {"filters": 64, "kernel": 1}]}
NUMPY_DTYPES = {"float32": "<f4", "float16": "<f2", "int32": "<i4", "int64": "<i8"}


def run(cmd: list, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "GLOG_v": "3", "PY": sys.executable}
    return subprocess.run([str(c) for c in cmd], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def run_py(script: str, *args) -> subprocess.CompletedProcess:
    return run([sys.executable, REPO / script, *args])


def read_items(preprocess_dir: Path) -> list[list[str]]:
    """utterances.txt: [utt_id, frames, reference] per item."""
    return [line.split("\t") for line in (preprocess_dir / "utterances.txt").read_text().splitlines()]


def read_input_list(preprocess_dir: Path) -> tuple[list[str], dict[str, list[tuple[str, str, tuple[int, ...]]]]]:
    """inputs.txt: (input names of the header, {utt_id: [(path, dtype, shape) per input]})."""
    header, *lines = (preprocess_dir / "inputs.txt").read_text(encoding="utf-8").splitlines()
    assert header.startswith("#utt_id\t")
    rows = {}
    for line in lines:
        utt_id, *fields = line.split("\t")
        rows[utt_id] = []
        for field in fields:
            path, dtype, shape = field.rsplit(":", 2)
            rows[utt_id].append((path, dtype, tuple(int(d) for d in shape.split("x"))))
    return header.split("\t")[1:], rows


def load_listed_inputs(preprocess_dir: Path) -> dict[str, list[np.ndarray]]:
    """Every item's input arrays, read as the runner reads them."""
    _, rows = read_input_list(preprocess_dir)
    return {utt_id: [np.fromfile(preprocess_dir / path, NUMPY_DTYPES[dtype]).reshape(shape)
                     for path, dtype, shape in fields]
            for utt_id, fields in rows.items()}


def write_input_list(folder: Path, names: list[str], items: dict[str, list[np.ndarray]]) -> None:
    """A hand-written inputs.txt (the format the runner defines) and the .bin files it lists."""
    lines = ["#utt_id\t" + "\t".join(names)]
    for utt_id, arrays in items.items():
        fields = []
        for name, array in zip(names, arrays):
            rel = f"{name}/{utt_id}.bin"
            (folder / name).mkdir(parents=True, exist_ok=True)
            array.tofile(folder / rel)
            fields.append(f"{rel}:{array.dtype.name}:{'x'.join(map(str, array.shape))}")
        lines.append(utt_id + "\t" + "\t".join(fields))
    (folder / "inputs.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Models: a tiny Jasper through export.py's function, a one-input classifier by hand
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(mindrecord_dir, tmp_path_factory):
    """A random-weight tiny Jasper exported as MindIR and ONNX (fixed shape) with its sidecar."""
    import mindspore as ms

    from src.config import load_config
    from src.deploy.export import export_model
    from src.models import build_model
    from src.tasks import get_task

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
    classes = get_task(config).class_names(config)
    for fmt in ("MINDIR", "ONNX"):
        export_model(model, config, classes, str(tmp / "jasper"), fmt, n_frames)
    return {"model": model, "config": config, "config_path": config_path, "mindir": tmp / "jasper.mindir",
            "n_frames": n_frames}


def one_input_classifier():
    """features (1, 10, 49) float32 → log-probabilities (1, 12): a DS-CNN's interface in one layer."""
    import mindspore as ms
    from mindspore import nn, ops

    class Classifier(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.dense = nn.Dense(10 * 49, 12)

        def construct(self, x):
            return ops.log_softmax(self.dense(x.reshape(x.shape[0], -1)), -1)

    ms.set_seed(11)
    net = Classifier()
    net.set_train(False)
    return net


def export_cell(net, stem: Path, shape: tuple[int, ...], formats=("MINDIR", "ONNX")) -> Path:
    import mindspore as ms

    stem.parent.mkdir(parents=True, exist_ok=True)
    for fmt in formats:
        ms.export(net, ms.Tensor(np.zeros(shape, np.float32)), file_name=str(stem), file_format=fmt)
    return stem.with_suffix(".mindir")


# ---------------------------------------------------------------------------------------------
# preprocess.py: the model's inputs from its sidecar
# ---------------------------------------------------------------------------------------------

def test_preprocess_writes_the_runner_list_from_the_sidecar(exported, mindrecord_dir, tmp_path):
    manifest, n = mindrecord_dir / "m.json", exported["n_frames"]
    out = tmp_path / "dev"
    r = run_py("preprocess.py", "--manifest", manifest, "--output_dir", out, "--mindir", exported["mindir"],
               "--no_progress")
    assert r.returncode == 0, r.stderr
    utts = read_manifest(manifest)
    names, rows = read_input_list(out)
    assert names == ["features", "lengths"]
    assert list(rows) == [u.utt_id for u in utts]  # manifest order
    assert [[x[0], x[2]] for x in read_items(out)] == [[u.utt_id, u.transcript] for u in utts]
    assert json.loads((out / "model.json").read_text()) == json.loads(
        Path(f"{exported['mindir']}.json").read_text())
    inputs = load_listed_inputs(out)
    for u in utts:
        assert rows[u.utt_id] == [(f"features/{u.utt_id}.bin", "float32", (1, 64, n)),
                                  (f"lengths/{u.utt_id}.bin", "int32", (1,))]
        feats, length = inputs[u.utt_id][0], int(inputs[u.utt_id][1][0])
        # eval's front end: the same function, no dither, batched (padded to a multiple of 16)
        audio, _ = load_audio(u.audio_path)
        ref, ref_len = batch_features([audio], exported["config"].features, dither=0.0)
        assert length == ref_len[0] == valid_frames(u.num_samples)
        np.testing.assert_array_equal(feats[:, :, :ref.shape[2]], ref)
        assert not feats[:, :, length:].any()
    assert not list(out.rglob("*.tmp"))


def test_preprocess_refuses_a_config_that_disagrees_with_the_model(exported, mindrecord_dir, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"model": TINY_MODEL, "features": {"n_mels": 80}}))
    r = run_py("preprocess.py", "--manifest", mindrecord_dir / "m.json", "--output_dir", tmp_path / "dev",
               "--mindir", exported["mindir"], "--config", other, "--no_progress")
    assert r.returncode == 1 and "disagrees" in r.stderr and "n_mels" in r.stderr
    assert not (tmp_path / "dev" / "inputs.txt").exists()


def test_preprocess_refuses_utterance_longer_than_n_frames(mindrecord_dir, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"model": TINY_MODEL}))
    r = run_py("preprocess.py", "--manifest", mindrecord_dir / "m.json", "--output_dir", tmp_path / "dev",
               "--config", config, "--n_frames", 16, "--no_progress")
    assert r.returncode == 1
    first = read_manifest(mindrecord_dir / "m.json")[0]
    assert first.utt_id in r.stderr and "--n_frames" in r.stderr
    assert not (tmp_path / "dev" / "inputs.txt").exists()


# ---------------------------------------------------------------------------------------------
# postprocess.py on hand-made runner outputs
# ---------------------------------------------------------------------------------------------

REFERENCES = {"u1": "hello world", "u2": "the quick brown fox", "u3": "a b c"}
HYPOTHESES = {"u1": "hello word", "u2": "the quick brown fox", "u3": "a c"}


@pytest.fixture(scope="module")
def tiny_model_json(tmp_path_factory) -> dict:
    """What preprocess.py copies into PRE/model.json, for the tiny Jasper (output stride 2)."""
    from src.config import config_to_dict, load_config
    from src.models import build_model

    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump({"model": TINY_MODEL}))
    config = load_config(path)
    return {"task": "asr", "classes": list(load_labels().symbols), "config": config_to_dict(config),
            "length_convs": [list(c) for c in build_model(config).length_convs]}


def fake_runner_outputs(pre: Path, res: Path, model_json: dict, write_lengths: bool = True) -> None:
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
    (pre / "model.json").write_text(json.dumps(model_json))


@pytest.mark.parametrize("write_lengths", [True, False], ids=["with_lengths", "lengths_from_the_model_rule"])
def test_postprocess_scores_with_the_shared_wer(tmp_path, tiny_model_json, write_lengths):
    pre, res = tmp_path / "dev-clean", tmp_path / "result"
    fake_runner_outputs(pre, res, tiny_model_json, write_lengths)
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


def test_postprocess_names_a_missing_result_file(tmp_path, tiny_model_json):
    pre, res = tmp_path / "dev", tmp_path / "result"
    fake_runner_outputs(pre, res, tiny_model_json)
    (res / "u2_0.bin").unlink()
    r = run_py("postprocess.py", "--result_dir", res, "--preprocess_dir", pre)
    assert r.returncode == 1 and str(res / "u2_0.bin") in r.stderr
    assert not (res / "metrics.json").exists()


def test_postprocess_rejects_a_truncated_result_file(tmp_path, tiny_model_json):
    pre, res = tmp_path / "dev", tmp_path / "result"
    fake_runner_outputs(pre, res, tiny_model_json)
    data = (res / "u1_0.bin").read_bytes()
    (res / "u1_0.bin").write_bytes(data[:-8])
    r = run_py("postprocess.py", "--result_dir", res, "--preprocess_dir", pre)
    assert r.returncode == 1 and "u1_0.bin" in r.stderr and "29 classes" in r.stderr
    assert not (res / "metrics.json").exists()


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


def prepare_lite_model(mindir: Path, out: Path, build_dir: Path) -> subprocess.CompletedProcess:
    """scripts/common.sh's conversion (ONNX beside the MindIR → Lite MindIR v1), as run_infer_310.sh does it."""
    return run(["bash", "-c", 'source scripts/common.sh && prepare_lite_model "$1" "$2" "$3"', "_",
                mindir, out, build_dir])


def run_runner(lite_build: Path, model: Path, pre: Path, result: Path, *extra) -> subprocess.CompletedProcess:
    env_lib = (lite_build / "mindspore_lib_dir").read_text().strip()
    return run(["env", f"LD_LIBRARY_PATH={env_lib}", lite_build / "zoo_infer", "--mindir_path", model,
                "--input_dir", pre, "--result_dir", result, "--device_target", "CPU", *extra])


@pytest.fixture(scope="module")
def classifier(lite_build, tmp_path_factory):
    """The one-input classifier exported (MindIR + ONNX) and converted for MindSpore Lite."""
    tmp = tmp_path_factory.mktemp("classifier")
    net = one_input_classifier()
    mindir = export_cell(net, tmp / "kws", (1, 10, 49))
    r = prepare_lite_model(mindir, tmp / "lite", lite_build)
    assert r.returncode == 0, r.stderr[-4000:]
    return {"net": net, "lite": Path(r.stdout.strip().splitlines()[-1]), "tmp": tmp}


@pytest.mark.slow
def test_runner_runs_a_one_input_one_output_model(lite_build, classifier, tmp_path):
    import mindspore as ms

    rng = np.random.default_rng(3)
    items = {f"clip{i}": [rng.standard_normal((1, 10, 49)).astype(np.float32)] for i in range(3)}
    pre, res = tmp_path / "pre", tmp_path / "result"
    write_input_list(pre, ["features"], items)
    r = run_runner(lite_build, classifier["lite"], pre, res)
    assert r.returncode == 0, r.stderr
    assert "ERROR" not in r.stderr, r.stderr  # no misleading runtime log line on a good run
    assert "model file route" in r.stdout
    for utt_id, (x,) in items.items():
        expected = classifier["net"](ms.Tensor(x)).asnumpy()
        got = np.fromfile(res / f"{utt_id}_0.bin", "<f4")
        assert got.size == expected.size == 12
        np.testing.assert_allclose(got.reshape(expected.shape), expected, rtol=0, atol=1e-5)
    assert sorted(p.name for p in res.iterdir()) == sorted([f"{u}_0.bin" for u in items] + ["timing.tsv"])
    timing = (res / "timing.tsv").read_text().splitlines()
    assert timing[0] == "utt_id\tinput_shapes\tpredict_ms"
    assert [line.split("\t")[:2] for line in timing[1:]] == [[u, "1x10x49"] for u in items]


@pytest.mark.slow
def test_runner_reports_clear_errors(lite_build, classifier, tmp_path):
    model = classifier["lite"]
    pre = tmp_path / "pre"
    x = np.zeros((1, 10, 49), np.float32)
    write_input_list(pre, ["features"], {"a": [x], "b": [x]})
    good = (pre / "inputs.txt").read_text()
    listed = pre / "inputs.txt"

    def runner_error(list_text: str | None = None, expect: int = 1, **kwargs) -> str:
        listed.write_text(good if list_text is None else list_text)
        r = run_runner(lite_build, kwargs.get("model", model), kwargs.get("pre", pre), tmp_path / "out",
                       *kwargs.get("extra", ()))
        assert r.returncode == expect, r.stdout + r.stderr
        return r.stderr

    assert f"model file not found: {tmp_path / 'missing.mindir'}" in runner_error(model=tmp_path / "missing.mindir")
    err = runner_error(pre=tmp_path / "nowhere")
    assert "inputs.txt" in err and "run preprocess.py first" in err
    err = runner_error(expect=2, extra=("--device_target", "GPU"))
    assert "--device_target must be Ascend310, Ascend or CPU" in err

    # The header must describe the model's inputs: the count is checked, both sides named.
    err = runner_error(good.replace("#utt_id\tfeatures", "#utt_id\tfeatures\tlengths", 1)
                       .replace("1x10x49\n", "1x10x49\tfeatures/a.bin:int32:1\n"))
    assert f"{listed}:1: the header lists 2 inputs (features, lengths)" in err and "takes 1 (" in err
    # Every field is checked where it is read, with the list's file and line.
    err = runner_error(good.replace("features/b.bin", "../b.bin"))
    assert f"{listed}:3: input path '../b.bin' must not contain '..'" in err
    err = runner_error(good.replace("features/b.bin", str(pre / "features" / "b.bin")))
    assert f"{listed}:3: input path" in err and "must be relative" in err
    err = runner_error(good.replace("b.bin:float32", "b.bin:float64"))
    assert f"{listed}:3: input 'features' has dtype 'float64'" in err
    err = runner_error(good.replace("b.bin:float32", "b.bin:int32"))
    assert f"{listed}:3: input " in err and "is listed as int32, but the model takes float32" in err
    err = runner_error(good + "a\tfeatures/a.bin:float32:1x10x49\n")
    assert f"{listed}:4: utterance 'a' is listed twice" in err
    # The file must hold what its line says: the error names the file and the size expected.
    (pre / "features" / "b.bin").write_bytes(x.tobytes()[:-4])
    err = runner_error()
    assert f"{pre / 'features' / 'b.bin'} holds {4 * 490 - 4} bytes; expected {4 * 490} bytes" in err
    assert f"as listed at {listed}:3" in err
    # Another shape: this fixed-shape model cannot be resized, and the error says what to do.
    np.zeros((1, 10, 60), np.float32).tofile(pre / "features" / "b.bin")
    err = runner_error(good.replace("b.bin:float32:1x10x49", "b.bin:float32:1x10x60"))
    assert f"{listed}:3: utterance b: the model takes inputs [1, 10, 49] and cannot be resized to [1, 10, 60]" in err
    assert "--n_frames/--batch_size" in err and "preprocess.py --mindir" in err
    assert not list((tmp_path / "out").glob("*.tmp"))


@pytest.mark.slow
def test_prepare_lite_model_refuses_an_onnx_of_another_shape(lite_build, classifier, tmp_path):
    """Every input's shape of the ONNX must be the MindIR's: here the batch differs."""
    mindir = export_cell(classifier["net"], tmp_path / "m" / "kws", (1, 10, 49), formats=("MINDIR",))
    export_cell(classifier["net"], tmp_path / "m" / "kws", (2, 10, 49), formats=("ONNX",))
    r = prepare_lite_model(mindir, tmp_path / "lite", lite_build)
    assert r.returncode != 0
    assert "takes inputs of shapes (2x10x49)" in r.stderr and "(1x10x49)" in r.stderr


@pytest.fixture(scope="module")
def jasper_lite(lite_build, exported, tmp_path_factory) -> Path:
    r = prepare_lite_model(exported["mindir"], tmp_path_factory.mktemp("jasper_lite"), lite_build)
    assert r.returncode == 0, r.stderr[-4000:]
    return Path(r.stdout.strip().splitlines()[-1])


def mindspore_reference(model, pre: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """MindSpore's own outputs on exactly the runner's input files."""
    from src.tasks.asr import predict

    return {utt_id: predict(model, *arrays) for utt_id, arrays in load_listed_inputs(pre).items()}


def assert_runner_matches(result: Path, reference: dict) -> None:
    worst = 0.0
    for utt_id, (log_probs, out_lengths) in reference.items():
        got = np.fromfile(result / f"{utt_id}_0.bin", "<f4")
        assert got.size == log_probs.size, utt_id
        worst = max(worst, float(np.abs(got.reshape(log_probs.shape) - log_probs).max()))
        np.testing.assert_array_equal(np.fromfile(result / f"{utt_id}_1.bin", "<i4"), out_lengths)
    assert worst < 1e-4, f"runner log-probs differ from MindSpore's by up to {worst}"


@pytest.mark.slow
def test_runner_matches_mindspore_on_a_two_input_model(lite_build, exported, jasper_lite, tmp_path):
    """Features and valid lengths through a hand-written list: both outputs of every item as MindSpore's."""
    n = exported["n_frames"]
    rng = np.random.default_rng(5)
    items = {}
    for i, valid in enumerate((n, n // 2, 17)):
        feats = np.zeros((1, 64, n), np.float32)
        feats[:, :, :valid] = rng.standard_normal((1, 64, valid))
        items[f"utt{i}"] = [feats, np.array([valid], np.int32)]
    pre, res = tmp_path / "pre", tmp_path / "result"
    write_input_list(pre, ["features", "lengths"], items)
    r = run_runner(lite_build, jasper_lite, pre, res)
    assert r.returncode == 0, r.stderr
    assert "ERROR" not in r.stderr, r.stderr
    assert_runner_matches(res, mindspore_reference(exported["model"], pre))
    assert sorted(p.name for p in res.glob("*.bin")) == sorted(f"{u}_{k}.bin" for u in items for k in (0, 1))


def run_infer_310(mindir: Path, work_dir: Path, manifest: Path, *extra, need_preprocess: str = "y"):
    return run(["bash", REPO / "scripts" / "run_infer_310.sh", mindir, need_preprocess, 0, "--device_target", "CPU",
                "--manifest", manifest, "--work_dir", work_dir, *extra], timeout=1800)


@pytest.fixture(scope="module")
def cpu_run(lite_build, exported, mindrecord_dir, tmp_path_factory):
    """The whole script on the exported model, settings from its sidecar alone."""
    work = tmp_path_factory.mktemp("infer")
    r = run_infer_310(exported["mindir"], work, mindrecord_dir / "m.json")
    assert r.returncode == 0, r.stderr[-4000:]
    return {"work": work, "pre": work / "preprocess" / "m", "result": work / "result", "stdout": r.stdout}


@pytest.mark.slow
def test_runner_on_cpu_matches_mindspore_and_eval_wer(cpu_run, exported, mindrecord_dir):
    from src.data.dataset import SpeechData
    from src.decoding.greedy import greedy_decode
    from src.tasks.asr import evaluate

    pre, result, model = cpu_run["pre"], cpu_run["result"], exported["model"]
    _, rows = read_input_list(pre)
    assert {fields[0][2] for fields in rows.values()} == {(1, 64, exported["n_frames"])} and len(rows) == 22
    reference = mindspore_reference(model, pre)
    assert_runner_matches(result, reference)

    # The same decoding and WER functions on MindSpore's outputs give postprocess.py's numbers.
    labels = load_labels()
    references = {utt_id: text for utt_id, _, text in read_items(pre)}
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
    assert timing[0] == "utt_id\tinput_shapes\tpredict_ms" and len(timing) == 23
    assert not list(result.glob("*.tmp"))


@pytest.mark.slow
def test_runner_converts_a_mindir_without_onnx(exported, lite_build, mindrecord_dir, tmp_path):
    """Only the MindIR (and its sidecar) at hand: the script re-exports its graph to ONNX, converts and
    runs it; a --config that agrees with the sidecar is accepted."""
    mindir = tmp_path / "alone" / "jasper.mindir"
    mindir.parent.mkdir()
    shutil.copy(exported["mindir"], mindir)
    shutil.copy(f"{exported['mindir']}.json", f"{mindir}.json")
    r = run_infer_310(mindir, tmp_path / "work", mindrecord_dir / "m.json", "--config", exported["config_path"])
    assert r.returncode == 0, r.stderr[-4000:]
    assert "exporting its graph to" in r.stderr and (tmp_path / "work" / "model" / "jasper.onnx").is_file()
    pre = tmp_path / "work" / "preprocess" / "m"
    assert_runner_matches(tmp_path / "work" / "result", mindspore_reference(exported["model"], pre))
    assert (tmp_path / "work" / "result" / "metrics.json").is_file()


@pytest.mark.slow
def test_runner_compiles_and_links_against_mindspore_ascend():
    """The same sources against libmindspore.so of mindspore-ascend 1.10 (CANN itself is absent here)."""
    build_dir = build("ascend-sdk")
    binary = build_dir / "zoo_infer"
    assert binary.is_file()
    dynamic = run(["readelf", "-d", binary]).stdout
    assert "[libmindspore.so]" in dynamic
    symbols = run(["nm", "-DC", "--undefined-only", binary]).stdout
    for used in ("mindspore::Model::Build(mindspore::GraphCell", "mindspore::Model::Predict(",
                 "mindspore::Model::Resize(", "mindspore::AscendDeviceInfo::SetDeviceID("):
        assert used in symbols
