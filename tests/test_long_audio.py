"""Long recordings in overlapping chunks (src/tasks/long_audio.py): the same features, log-probabilities
and text as one pass when the overlap covers the model's receptive field; wired into transcribe.py."""
import argparse
import dataclasses
import json

import numpy as np
import pytest

from src.audio import features as fe
from src.audio.features import batch_features
from src.config import FeatureConfig, config_from_dict
from src.tasks import long_audio
from src.tasks.long_audio import _FrameSource, chunked_log_probs, plan_chunks, receptive_half_frames
from tests.conftest import speech_like

SR = 16000
LOGMEL = FeatureConfig()
SPECTROGRAM = FeatureConfig(kind="spectrogram", n_fft=320, win_length=320, window="hamming")


def recording(seconds: float, seed: int = 0) -> np.ndarray:
    """Speech-like sound with pauses of near silence (and silent edges, for the trim)."""
    x = speech_like(int(seconds * SR), SR, seed)
    x *= np.repeat(np.random.default_rng(seed).uniform(0.05, 1.0, int(seconds) + 1), SR)[:len(x)]
    x[:SR // 2] *= 0.001
    x[-SR // 2:] *= 0.001
    return x


@pytest.mark.parametrize("cfg", [LOGMEL, SPECTROGRAM], ids=["logmel", "spectrogram"])
@pytest.mark.parametrize("seconds", [7.3, 12.00625])
def test_frames_normalised_with_streamed_statistics_equal_one_pass(cfg, seconds):
    audio = recording(seconds, 1)
    one_pass = batch_features([audio], cfg, pad_to=1)[0][0]
    source = _FrameSource(audio, cfg)
    shift, scale = source.statistics(piece_frames=173)           # many pieces, odd boundaries
    got = np.concatenate([(source.raw(a, min(a + 97, source.frames)) - shift) / scale
                          for a in range(0, source.frames, 97)], axis=1)
    assert got.shape[1] == source.frames == int(fe.valid_frame_count(len(audio), cfg))
    np.testing.assert_allclose(got, one_pass[:, :source.frames], atol=2e-5)


def test_chunk_plan_tiles_the_recording_and_respects_a_fixed_window():
    plan = plan_chunks(1001, 3, 200, 50)
    assert (plan.chunk, plan.overlap) == (198, 51)
    starts = [c0 for _, _, c0 in plan.windows()]
    assert starts == list(range(0, 1001, 198)) and all(c0 % 3 == 0 for c0 in starts)
    assert all(w1 - w0 <= plan.window for w0, w1, _ in plan.windows())
    fixed = plan_chunks(1001, 3, 200, 50, max_window=160)
    assert fixed.chunk + 2 * fixed.overlap <= 160 and fixed.chunk % 3 == 0
    with pytest.raises(ValueError, match="--n_frames"):
        plan_chunks(1001, 3, 200, 50, max_window=100)
    assert receptive_half_frames([(11, 2, 1, 5), (3, 1, 1, 1), (5, 1, 2, 4)]) == (10 + 2 * 2 + 8 * 2) // 2


def numpy_model(feature_dim: int, kernel: int = 9, stride: int = 3, classes: int = 29, seed: int = 0):
    """A CTC-shaped model in numpy: masked mean over ``kernel`` frames centred on every ``stride``-th frame,
    a random linear map, log-softmax.  Its receptive field is ``kernel`` frames."""
    w = np.random.default_rng(seed).standard_normal((classes, feature_dim)).astype(np.float32)

    def predict(feats, lengths):
        x = feats * (np.arange(feats.shape[2]) < lengths[:, None, None])
        xp = np.pad(x, ((0, 0), (0, 0), (kernel // 2, kernel // 2)))
        out_t = -(-feats.shape[2] // stride)
        y = np.stack([xp[:, :, j * stride:j * stride + kernel].mean(-1) for j in range(out_t)], -1)
        logits = np.einsum("cf,bft->btc", w, y) * 3
        logits -= logits.max(-1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(-1, keepdims=True)), -(-lengths // stride)
    return predict


def one_pass(predict, audio, cfg):
    feats, lengths = batch_features([audio], cfg)
    log_probs, out_lengths = predict(feats, lengths)
    return log_probs[0, :out_lengths[0]]


@pytest.mark.parametrize("cfg", [LOGMEL, dataclasses.replace(LOGMEL, trim_db=35.0), SPECTROGRAM],
                         ids=["logmel", "trimmed", "spectrogram"])
def test_chunked_log_probs_equal_one_pass(cfg):
    audio = recording(95.3, 2)
    predict = numpy_model(cfg.feature_dim)
    want = one_pass(predict, audio, cfg)
    got = chunked_log_probs(predict, audio, cfg, stride=3, chunk_seconds=20, overlap_seconds=0.5)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=2e-4)
    # a fixed-shape model: smaller chunks, the same result
    fixed = chunked_log_probs(predict, audio, cfg, stride=3, chunk_seconds=20, overlap_seconds=0.5, max_window=800)
    np.testing.assert_allclose(fixed, want, atol=2e-4)


def test_too_little_overlap_is_noticed():
    """The comparison above can fail: with no context at the chunk edges the output there differs."""
    audio = recording(45, 3)
    predict = numpy_model(LOGMEL.feature_dim, kernel=31)
    want = one_pass(predict, audio, LOGMEL)
    got = chunked_log_probs(predict, audio, LOGMEL, stride=3, chunk_seconds=10, overlap_seconds=0)
    assert got.shape == want.shape and np.abs(got - want).max() > 1e-2


# ------------------------------------------------------------------------------------------------
# A random-weight Jasper through transcribe.py's transcriber

JASPER = {"model": {"name": "jasper", "blocks": [
    {"filters": 48, "kernel": 11, "stride": 3},
    {"filters": 48, "repeat": 2, "kernel": 5, "residual": True},
    {"filters": 64, "kernel": 7, "dilation": 2},
    {"filters": 64, "kernel": 1}]}}


@pytest.fixture(scope="module")
def random_jasper(graph_mode_on_cpu):
    import mindspore as ms
    from mindspore import Tensor

    from src.models import build_model

    config = config_from_dict(JASPER)
    ms.set_seed(7)
    model = build_model(config)
    rng = np.random.default_rng(0)
    for p in model.get_parameters():        # non-trivial BatchNorm statistics: varied outputs
        if "moving_variance" in p.name:
            p.set_data(Tensor(rng.uniform(0.5, 2.0, p.shape).astype(np.float32)))
        elif "moving_mean" in p.name:
            p.set_data(Tensor(rng.normal(0, 0.3, p.shape).astype(np.float32)))
    model.set_train(False)
    return config, model


def transcriber(config, model, chunk_seconds):
    from src.tasks.asr import TASK
    args = argparse.Namespace(decoder="greedy", lm_path=None, alpha=0.0, beta=0.0, beam_width=8, decoder_workers=1,
                              lm_vocab=None, lexicon=None, batch_size=4, chunk_seconds=chunk_seconds, mindir=None)
    return TASK.transcriber(model, config, args)


def test_chunked_jasper_gives_the_one_pass_text(random_jasper, monkeypatch):
    config, model = random_jasper
    assert receptive_half_frames(model.length_convs) * 0.01 < long_audio.DEFAULT_OVERLAP_SECONDS
    audio = {"long.wav": recording(150, 4), "short.wav": recording(6, 5)}
    calls = []
    real = long_audio.chunked_log_probs
    monkeypatch.setattr(long_audio, "chunked_log_probs", lambda *a, **k: calls.append(1) or real(*a, **k))
    chunked, errors = transcriber(config, model, 20)(audio)
    assert not errors and calls == [1]                        # only the long recording went in chunks
    whole, errors = transcriber(config, model, 1000)(audio)
    assert not errors and calls == [1]
    assert len(whole["long.wav"][0]) > 50                     # random weights, but not a blank output
    assert chunked == whole


def test_bad_chunk_seconds_is_refused(random_jasper):
    config, model = random_jasper
    with pytest.raises(ValueError, match="--chunk_seconds must be > 0"):
        transcriber(config, model, -5)


def test_model_geometry_of_a_registry_model_and_a_sidecar(random_jasper, tmp_path):
    config, model = random_jasper
    stride, convs, window = long_audio.model_geometry(model)
    assert stride == 3 and convs == list(model.length_convs) and window is None

    class Exported:             # what load_mindir_model returns for a fixed-shape export
        n_frames = 640

    sidecar = tmp_path / "j.mindir.json"
    from src.deploy.sidecar import FORMAT
    sidecar.write_text(json.dumps({"format": FORMAT, "family": "jasper", "task": "asr", "inputs": [], "outputs": [],
                                   "batch_size": 1, "n_frames": 640, "dynamic": False,
                                   "length_convs": [list(c) for c in model.length_convs], "classes": [],
                                   "config": {}}))
    assert long_audio.model_geometry(Exported(), str(tmp_path / "j.mindir")) == (3, [list(c) for c in
                                                                                      model.length_convs], 640)
