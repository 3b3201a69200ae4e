"""Parity with TensorFlow itself: src/audio/mfcc.py against ``tf.raw_ops.AudioSpectrogram`` +
``tf.raw_ops.Mfcc``, and ARM's frozen graphs (run by TensorFlow from the wav bytes) against our MFCC
plus the converted DS-CNN.

The project never imports TensorFlow: it runs in a separate interpreter, ``$TF_PYTHON`` or
``.venv-tf/bin/python`` (``ensure_tensorflow`` in scripts/common.sh creates it), in one subprocess
per test module.  Without it these tests are skipped with the reason.  ARM's graphs are looked for
as in tests/test_dscnn.py (``$ARM_KWS_DIR`` or ``.cache/arm_kws``)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ms = pytest.importorskip("mindspore")
from mindspore import Tensor  # noqa: E402

from src.audio.mfcc import decode_clip, mfcc_features, power_spectrogram  # noqa: E402
from src.config import load_config  # noqa: E402
from src.models import build_model  # noqa: E402
from src.models.convert_tf import convert_pb, read_labels  # noqa: E402
from tests.conftest import speech_like  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARM_DIR = Path(os.environ.get("ARM_KWS_DIR", ROOT / ".cache" / "arm_kws"))
SIZES = ("s", "m", "l")
WORDS = ("yes", "no", "left", "stop", "go")

# (window_size, stride, dct_coefficient_count, filterbank_channel_count, lower, upper): the
# speech_commands settings, then others that move every boundary of the filterbank and the FFT size.
MFCC_SETTINGS = [(640, 320, 10, 40, 20.0, 4000.0), (480, 160, 13, 26, 60.0, 7600.0), (400, 100, 20, 64, 0.0, 8000.0)]

pytestmark = [pytest.mark.usefixtures("graph_mode_on_cpu"), pytest.mark.slow]

# Runs under TensorFlow's interpreter: reads a job (JSON) and writes every result into one .npz.
TF_SIDE = r'''
import json, os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import tensorflow as tf

job = json.load(open(sys.argv[1]))
out = {}
for i, wav in enumerate(job["wavs"]):
    data = tf.io.read_file(wav)
    for name, desired in (("full", -1), ("clip", 16000)):
        audio, rate = tf.audio.decode_wav(data, desired_channels=1, desired_samples=desired)
        out[f"audio_{name}_{i}"] = audio.numpy()[:, 0]
        for j, (window, stride, dct, channels, lower, upper) in enumerate(job["mfcc"]):
            spec = tf.raw_ops.AudioSpectrogram(input=audio, window_size=window, stride=stride, magnitude_squared=True)
            mfcc = tf.raw_ops.Mfcc(spectrogram=spec, sample_rate=rate, upper_frequency_limit=upper,
                                   lower_frequency_limit=lower, filterbank_channel_count=channels,
                                   dct_coefficient_count=dct)
            out[f"mfcc_{name}_{i}_{j}"] = mfcc.numpy()[0]
            if j == 0:
                out[f"spec_{name}_{i}"] = spec.numpy()[0]
for size, pb in job["graphs"].items():
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(open(pb, "rb").read())
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        out[f"probs_{size}"] = np.stack([
            session.run("labels_softmax:0", {"wav_data:0": open(wav, "rb").read()})[0] for wav in job["wavs"]])
np.savez(job["out"], **out)
'''


def tf_python() -> str | None:
    candidate = os.environ.get("TF_PYTHON") or str(ROOT / ".venv-tf" / "bin" / "python")
    return candidate if Path(candidate).is_file() and os.access(candidate, os.X_OK) else None


def _word_wav(word: str, path: Path, tmp: Path) -> bool:
    """A spoken word at 16 kHz (flite's rms voice, else espeak-ng); False without the tools."""
    if not shutil.which("sox"):
        return False
    raw = tmp / f"raw_{word}.wav"
    if shutil.which("flite"):
        cmd = ["flite", "-voice", "rms", "-t", word, "-o", str(raw)]
    elif shutil.which("espeak-ng"):
        cmd = ["espeak-ng", "-w", str(raw), word]
    else:
        return False
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(path)], check=True,
                   capture_output=True, timeout=60)
    return True


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    """Spoken words (about 0.8 s), a 0.45-s and a 1.6-s clip, and two speech-like signals, all 16 kHz PCM."""
    tmp = tmp_path_factory.mktemp("kws_clips")
    paths = []
    for word in WORDS:
        path = tmp / f"{word}.wav"
        if _word_wav(word, path, tmp):
            paths.append(path)
    for name, seconds, seed in (("short", 0.45, 1), ("long", 1.6, 2), ("second", 1.0, 3)):
        path = tmp / f"{name}.wav"
        audio = speech_like(int(16000 * seconds), 16000, seed)
        if paths and name != "second":      # a spoken word cut short or followed by another
            spoken = sf.read(paths[0 if name == "short" else -1], dtype="float32")[0]
            other = sf.read(paths[1 % len(paths)], dtype="float32")[0]
            audio = spoken[:int(16000 * seconds)] if name == "short" else np.concatenate([spoken, other])
        sf.write(path, audio, 16000, subtype="PCM_16")
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def tf_results(clips, tmp_path_factory) -> dict[str, np.ndarray]:
    python = tf_python()
    if python is None:
        pytest.skip("no TensorFlow interpreter: set TF_PYTHON or create .venv-tf (ensure_tensorflow in "
                    "scripts/common.sh)")
    tmp = tmp_path_factory.mktemp("tf_side")
    graphs = {s: str(ARM_DIR / f"DS_CNN_{s.upper()}.pb") for s in SIZES if (ARM_DIR / f"DS_CNN_{s.upper()}.pb").is_file()}
    job = {"wavs": [str(p) for p in clips], "mfcc": MFCC_SETTINGS, "graphs": graphs, "out": str(tmp / "tf.npz")}
    (tmp / "job.json").write_text(json.dumps(job))
    (tmp / "tf_side.py").write_text(TF_SIDE)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    try:
        run = subprocess.run([python, str(tmp / "tf_side.py"), str(tmp / "job.json")], capture_output=True,
                             text=True, timeout=600, env=env)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"TensorFlow interpreter {python} did not run: {e}")
    if run.returncode != 0 and "No module named 'tensorflow'" in run.stderr:
        pytest.skip(f"{python} has no tensorflow (ensure_tensorflow in scripts/common.sh installs it)")
    assert run.returncode == 0, run.stderr[-3000:]
    return dict(np.load(tmp / "tf.npz"))


def _read(path: Path) -> np.ndarray:
    return sf.read(path, dtype="float32")[0]


def test_decoding_and_spectrogram_match_tensorflow(clips, tf_results):
    for i, path in enumerate(clips):
        audio = _read(path)
        np.testing.assert_array_equal(audio, tf_results[f"audio_full_{i}"])
        np.testing.assert_array_equal(decode_clip(audio), tf_results[f"audio_clip_{i}"])
        for name, x in (("full", audio), ("clip", decode_clip(audio))):
            ref = tf_results[f"spec_{name}_{i}"]
            ours = power_spectrogram(x)
            assert ours.shape == ref.shape
            np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6 * ref.max())


def test_mfcc_matches_tensorflow(clips, tf_results):
    """Within 1e-4 relative to the scale of the coefficients (measured: about 1e-16, i.e. equal up
    to float32 rounding), for the clip as decoded with and without desired_samples=16000."""
    worst = 0.0
    for i, path in enumerate(clips):
        audio = _read(path)
        for name, x in (("full", audio), ("clip", decode_clip(audio))):
            for j, (window, stride, dct, channels, lower, upper) in enumerate(MFCC_SETTINGS):
                ref = tf_results[f"mfcc_{name}_{i}_{j}"].T              # TensorFlow: (T, dct)
                ours = mfcc_features(x, 16000, window, stride, dct, channels, lower, upper)
                assert ours.shape == ref.shape == (dct, 1 + (len(x) - window) // stride)
                scale = np.abs(ref).max()
                np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * scale)
                worst = max(worst, float(np.abs(ours - ref).max() / scale))
    assert worst < 1e-4


@pytest.mark.parametrize("size", SIZES)
def test_converted_graph_matches_frozen_graph(size, clips, tf_results):
    """Our MFCC + the converted DS-CNN give the frozen graph's labels_softmax within 1e-4."""
    if f"probs_{size}" not in tf_results:
        pytest.skip(f"ARM's DS_CNN_{size.upper()}.pb is absent from {ARM_DIR} (set ARM_KWS_DIR)")
    config = load_config(ROOT / "src" / "configs" / f"dscnn_{size}.yaml")
    model = build_model(config, num_classes=len(config.kws.labels))
    labels_file = ARM_DIR / "labels.txt"
    params, _ = convert_pb(ARM_DIR / f"DS_CNN_{size.upper()}.pb", config,
                           {p.name: tuple(p.shape) for p in model.get_parameters()},
                           read_labels(labels_file) if labels_file.is_file() else None)
    ms.load_param_into_net(model, {k: ms.Parameter(Tensor(v), name=k) for k, v in params.items()}, strict_load=True)
    model.set_train(False)
    features = np.stack([mfcc_features(decode_clip(_read(p))) for p in clips])
    ours = np.exp(model(Tensor(features)).asnumpy())
    ref = tf_results[f"probs_{size}"]
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    np.testing.assert_array_equal(ours.argmax(axis=1), ref.argmax(axis=1))
