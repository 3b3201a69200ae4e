"""DeepSpeech2 (src/models/deepspeech2.py) and its spectrogram front end (src/audio/spectrogram.py):
deepspeech.pytorch's parameter counts, padding invariance, output lengths, BatchNorm statistics in
training, the exported forms against the training form, MindIR reload and ONNX export, config errors,
and the spectrogram against librosa."""
from __future__ import annotations

from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from src.audio.spectrogram import batch_spectrograms, periodic_window, spectrogram_features
from src.config import ConfigError, config_from_dict, load_config
from src.models import build_model, count_parameters
from src.models.deepspeech2 import DeepSpeech2, DeepSpeech2Config, Recurrence, build, rnn_input_size

pytestmark = pytest.mark.usefixtures("graph_mode_on_cpu")

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "configs"
SPECTROGRAM = {"kind": "spectrogram", "n_fft": 320, "win_length": 320, "hop_length": 160, "window": "hamming"}
LENGTHS = (61, 44, 17)          # frames of the three utterances of the test batch


def small(**model) -> DeepSpeech2Config:
    """A toy network with every part of the real one (161 spectrogram rows, both convolutions)."""
    return DeepSpeech2Config(**{"hidden_size": 12, "hidden_layers": 2, "conv_channels": 3, **model})


def copy_of(model: DeepSpeech2, cfg: DeepSpeech2Config) -> DeepSpeech2:
    """A second instance with ``model``'s parameters (a compiled graph keeps its form: compare forms
    on separate instances)."""
    other = build(cfg, model.in_features, model.num_classes)
    ms.load_param_into_net(other, {p.name: ms.Parameter(Tensor(p.asnumpy()), name=p.name)
                                   for p in model.get_parameters()}, strict_load=True)
    return other


def randomise_batch_norm(model: DeepSpeech2, seed: int = 0) -> None:
    """Running statistics and affine parameters away from their identity initial values."""
    rng = np.random.default_rng(seed)
    for p in model.get_parameters():
        leaf = p.name.rsplit(".", 1)[-1]
        value = {"moving_mean": lambda n: rng.normal(0, 0.3, n), "moving_variance": lambda n: rng.uniform(0.5, 2, n),
                 "gamma": lambda n: rng.uniform(0.5, 1.5, n), "beta": lambda n: rng.normal(0, 0.2, n)}.get(leaf)
        if value is not None:
            p.set_data(Tensor(value(p.shape[0]).astype(np.float32)))


def batch(lengths=LENGTHS, rows: int = 161, seed: int = 0, total: int | None = None,
          padding: str = "zeros") -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    total = total or max(lengths)
    feats = rng.standard_normal((len(lengths), rows, total)).astype(np.float32)
    for b, n in enumerate(lengths):
        feats[b, :, n:] = 0 if padding == "zeros" else 7 * rng.standard_normal((rows, total - n))
    return feats, np.asarray(lengths, np.int32)


def run(model, feats, lengths):
    log_probs, out_lengths = model(Tensor(feats), Tensor(lengths))
    return log_probs.asnumpy(), out_lengths.asnumpy()


def assert_valid_frames_close(a, b, lengths, atol=1e-5):
    for row_a, row_b, n in zip(a, b, lengths):
        np.testing.assert_allclose(row_a[:n], row_b[:n], atol=atol, rtol=0)


@pytest.fixture(scope="module")
def lstm_model():
    ms.set_seed(3)
    model = build(small(), 161, 29)
    randomise_batch_norm(model)
    model.set_train(False)
    return model


# ---------------------------------------------------------------------------------------------
# Structure
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model, expected", [
    ({}, 86_618_400),                                                # deepspeech.pytorch's default: BiLSTM 5 x 1024
    ({"rnn_type": "gru"}, 65_036_576),
    ({"rnn_type": "gru", "hidden_size": 800}, 41_187_968),
    ({"bidirectional": False}, 43_475_232),                          # + lookahead convolution
])
def test_parameter_counts_are_deepspeech_pytorchs(model, expected):
    assert count_parameters(build(DeepSpeech2Config(**model), 161, 29))[0] == expected


def test_presets_load_and_build():
    full = load_config(CONFIGS / "deepspeech2.yaml")
    assert full.model.name == "deepspeech2" and full.features.kind == "spectrogram"
    assert full.features.feature_dim == 161 and rnn_input_size(161) == 1312
    assert (full.model.rnn_type, full.model.hidden_size, full.model.hidden_layers, full.model.bidirectional) == \
        ("lstm", 1024, 5, True)
    tiny = load_config(CONFIGS / "deepspeech2_tiny.yaml")
    model = build_model(tiny)
    assert isinstance(model, DeepSpeech2) and model.num_classes == 29 and model.in_features == 161
    assert count_parameters(model)[0] == 4_052_624


def test_parameter_names_are_deepspeech_pytorchs():
    names = {p.name for p in build(small(bidirectional=False, hidden_layers=3), 161, 29).get_parameters()}
    for name in ("conv.seq_module.0.weight", "conv.seq_module.0.bias", "conv.seq_module.1.moving_variance",
                 "conv.seq_module.3.weight", "conv.seq_module.4.gamma", "rnns.0.rnn.weight_ih_l0",
                 "rnns.2.rnn.bias_hh_l0", "rnns.1.batch_norm.module.beta", "lookahead.0.conv.weight",
                 "fc.0.module.0.moving_mean", "fc.0.module.1.weight"):
        assert name in names, name
    assert not any(n.startswith("rnns.0.batch_norm") or n.endswith("_reverse") for n in names)
    bi = {p.name for p in build(small(), 161, 29).get_parameters()}
    assert "rnns.1.rnn.weight_hh_l0_reverse" in bi and not any(n.startswith("lookahead") for n in bi)


@pytest.mark.parametrize("key, value, message", [
    ("rnn_type", "transformer", r"model\.rnn_type='transformer' must be one of"),
    ("hidden_size", 0, r"model\.hidden_size=0 must be >= 1"),
    ("hidden_layers", 0, r"model\.hidden_layers=0"),
    ("lookahead_context", 0, r"model\.lookahead_context=0"),
    ("conv_channels", 0, r"model\.conv_channels=0"),
    ("bn_momentum", 1.5, r"model\.bn_momentum=1\.5 must be within \(0, 1\]"),
    ("bn_eps", 0.0, r"model\.bn_eps=0\.0 must be > 0"),
    ("bn_stats", "some", r"model\.bn_stats='some'"),
    ("rnn_impl", "cudnn", r"model\.rnn_impl='cudnn'"),
    ("export_rnn", "scan", r"model\.export_rnn='scan'"),
    ("unknown_key", 1, r"unknown key\(s\) \['unknown_key'\]"),
])
def test_config_errors_name_the_key(key, value, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"features": SPECTROGRAM, "model": {"name": "deepspeech2", key: value}})


def test_config_refuses_impossible_combinations():
    with pytest.raises(ValueError, match=r"model\.rnn_impl='fused' has no kernel for model\.rnn_type='rnn'"):
        DeepSpeech2Config(rnn_type="rnn", rnn_impl="fused").validate()
    with pytest.raises(ValueError, match=r"model\.export_rnn='fused' exists for model\.rnn_type='lstm' only"):
        DeepSpeech2Config(rnn_type="gru", export_rnn="fused").validate()
    with pytest.raises(ValueError, match="ONNX"):
        build(small(export_rnn="loop"), 161, 29).export_recurrence("ONNX")


def test_export_recurrence_per_format():
    lstm = build(small(hidden_size=16), 161, 29)
    assert [lstm.export_recurrence(f) for f in ("MINDIR", "AIR", "ONNX", None)] == ["loop", "loop", "fused", "fused"]
    gru = build(small(rnn_type="gru"), 161, 29)
    assert [gru.export_recurrence(f) for f in ("mindir", "onnx", None)] == ["loop", "unrolled", "unrolled"]
    assert build(small(export_rnn="fused"), 161, 29).export_recurrence("MINDIR") == "fused"


# ---------------------------------------------------------------------------------------------
# Behaviour
# ---------------------------------------------------------------------------------------------

def test_output_lengths_and_log_probabilities(lstm_model):
    feats, lengths = batch()
    log_probs, out_lengths = run(lstm_model, feats, lengths)
    expected = (lengths - 1) // 2 + 1
    np.testing.assert_array_equal(out_lengths, expected)
    np.testing.assert_array_equal(lstm_model.output_lengths(lengths), expected)
    assert [lstm_model.output_lengths(n) for n in (1, 2, 3, 160, 161)] == [1, 1, 2, 80, 81]
    assert log_probs.shape == (3, (max(LENGTHS) - 1) // 2 + 1, 29) and log_probs.dtype == np.float32
    np.testing.assert_allclose(np.exp(log_probs).sum(-1), 1.0, atol=1e-5)
    assert lstm_model.time_stride == 2


@pytest.mark.parametrize("model_cfg, alone", [
    ({}, (0, 1, 2)),                                                # BiLSTM, fused kernel
    ({"rnn_type": "gru", "rnn_impl": "loop"}, (2,)),                # BiGRU in a graph loop
    ({"rnn_type": "rnn", "bidirectional": False, "lookahead_context": 4, "rnn_impl": "loop"}, (2,)),
], ids=["lstm", "gru", "rnn-lookahead"])
def test_an_utterance_gives_the_same_outputs_alone_and_in_a_padded_batch(model_cfg, alone):
    """The backward direction starts at each utterance's own last frame, convolutions see zeros beyond
    it, whatever the batch's padding holds."""
    ms.set_seed(5)
    model = build(small(**model_cfg), 161, 29)
    randomise_batch_norm(model, 1)
    model.set_train(False)
    feats, lengths = batch(total=max(LENGTHS) + 9, padding="noise")
    together, out_lengths = run(model, feats, lengths)
    for b in alone:
        n = LENGTHS[b]
        single, single_len = run(model, feats[b:b + 1, :, :n], lengths[b:b + 1])
        assert single_len[0] == out_lengths[b]
        np.testing.assert_allclose(single[0, :single_len[0]], together[b, :single_len[0]], atol=1e-5, rtol=0)


@pytest.mark.parametrize("bn_stats", ["valid", "all"])
def test_training_batch_statistics(bn_stats):
    """bn_stats=valid: a training step's outputs and running statistics do not depend on how far the
    batch is padded; bn_stats=all (deepspeech.pytorch) counts the padded zeros."""
    ms.set_seed(7)
    first = build(small(bn_stats=bn_stats), 161, 29)
    second = copy_of(first, small(bn_stats=bn_stats))
    first.set_train(True)
    second.set_train(True)
    feats, lengths = batch()
    short, out_lengths = run(first, feats, lengths)
    padded, _ = run(second, np.pad(feats, ((0, 0), (0, 0), (0, 30))), lengths)
    np.testing.assert_allclose(np.exp(short).sum(-1), 1.0, atol=1e-5)   # log-probabilities in training too
    means = [{p.name: p.asnumpy() for p in m.get_parameters() if p.name.endswith("moving_mean")}
             for m in (first, second)]
    assert any(np.abs(v).max() > 0 for v in means[0].values())        # the running statistics moved
    if bn_stats == "valid":
        assert_valid_frames_close(short, padded, out_lengths, atol=1e-5)
        for name, value in means[0].items():
            np.testing.assert_allclose(value, means[1][name], atol=1e-6, err_msg=name)
    else:
        assert max(np.abs(a[:n] - b[:n]).max() for a, b, n in zip(short, padded, out_lengths)) > 1e-3


def test_gradients_reach_every_trainable_parameter():
    from src.tasks.asr import CTCLoss

    ms.set_seed(11)
    model = build(small(rnn_type="gru", rnn_impl="loop", bidirectional=False, lookahead_context=3), 161, 29)
    model.set_train(True)
    loss = CTCLoss(model, 28)
    grad_fn = ms.value_and_grad(loss, None, model.trainable_params())

    class Step(nn.Cell):
        def __init__(self):
            super().__init__()
            self.loss = loss

        def construct(self, *inputs):
            return grad_fn(*inputs)

    feats, lengths = batch()
    tokens = np.random.default_rng(0).integers(0, 28, (3, 6)).astype(np.int32)
    value, grads = Step()(Tensor(feats), Tensor(lengths), Tensor(tokens), Tensor(np.full(3, 6, np.int32)))
    assert np.isfinite(value.asnumpy())
    for p, g in zip(model.trainable_params(), grads):
        g = g.asnumpy()
        assert np.isfinite(g).all() and np.abs(g).max() > 0, p.name


# ---------------------------------------------------------------------------------------------
# Exported forms
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model_cfg, file_format, form", [
    ({"export_rnn": "auto"}, "MINDIR", "loop"),
    ({"export_rnn": "auto", "hidden_size": 16}, "ONNX", "fused"),
    ({"export_rnn": "unrolled"}, "MINDIR", "unrolled"),
    ({"rnn_type": "gru", "export_rnn": "auto"}, "ONNX", "unrolled"),
    ({"rnn_type": "rnn", "bidirectional": False, "lookahead_context": 4, "export_rnn": "loop"}, "MINDIR", "loop"),
], ids=["lstm-mindir", "lstm-onnx", "lstm-unrolled", "gru-onnx", "rnn-loop"])
def test_exported_form_computes_the_training_forms_numbers(model_cfg, file_format, form):
    cfg = small(**model_cfg)
    ms.set_seed(13)
    trained = build(cfg, 161, 29)
    randomise_batch_norm(trained, 2)
    exported = copy_of(trained, cfg)
    trained.set_train(False)
    exported.set_train(False)
    assert exported.export_recurrence(file_format) == form
    feats, lengths = batch((15, 9))
    recurrences = [cell for _, cell in exported.cells_and_names() if isinstance(cell, Recurrence)]
    training_forms = [r.impl for r in recurrences]
    with exported.exported_form(file_format):
        assert all(r.impl == form for r in recurrences)
        got, got_len = run(exported, feats, lengths)
    assert [r.impl for r in recurrences] == training_forms
    want, want_len = run(trained, feats, lengths)
    np.testing.assert_array_equal(got_len, want_len)
    assert_valid_frames_close(got, want, want_len, atol=1e-5)


def test_mindir_reloads_with_fixed_and_open_lengths(lstm_model, tmp_path):
    """The exported MindIR (recurrence in primitive ops: no LSTM primitive) reproduces the checkpoint
    model through mindspore.load + nn.GraphCell, for a fixed input shape and an open one."""
    cfg = small()
    exported = copy_of(lstm_model, cfg)
    exported.set_train(False)
    feats, lengths = batch((30, 19), total=32)
    want, want_len = run(lstm_model, feats, lengths)
    with exported.exported_form("MINDIR"):
        ms.export(exported, *exported.export_inputs(2, 32), file_name=str(tmp_path / "fixed"), file_format="MINDIR")
        ms.export(exported, *exported.export_inputs(None, None), file_name=str(tmp_path / "open"),
                  file_format="MINDIR")
    graph = (tmp_path / "fixed.mindir").read_bytes()
    assert b"LSTM" not in graph and b"Sigmoid" in graph
    got, got_len = run(nn.GraphCell(ms.load(str(tmp_path / "fixed.mindir"))), feats, lengths)
    np.testing.assert_array_equal(got_len, want_len)
    assert_valid_frames_close(got, want, want_len, atol=1e-5)
    for lengths_, total in (((30, 19), 32), ((25, 9, 20), 27)):
        feats, lengths = batch(lengths_, total=total, seed=1)
        want, want_len = run(lstm_model, feats, lengths)
        # A graph loop in a MindIR with open shapes runs one shape per GraphCell in MindSpore 2.10
        # (a second shape fails with "The actor already exists"): load it per shape.
        got, got_len = run(nn.GraphCell(ms.load(str(tmp_path / "open.mindir"))), feats, lengths)
        np.testing.assert_array_equal(got_len, want_len)
        assert_valid_frames_close(got, want, want_len, atol=1e-5)


def onnx_op_types(path: Path) -> list[str]:
    """op_type of every node of an ONNX file's main graph (ModelProto.graph = field 7, GraphProto.node =
    field 1, NodeProto.op_type = field 4), read with a minimal protobuf walker."""
    def fields(buf: bytes):
        i = 0
        while i < len(buf):
            key, i = varint(buf, i)
            number, wire = key >> 3, key & 7
            if wire == 0:
                _, i = varint(buf, i)
                yield number, None
            elif wire == 2:
                size, i = varint(buf, i)
                yield number, buf[i:i + size]
                i += size
            elif wire in (1, 5):
                i += 8 if wire == 1 else 4
                yield number, None
            else:
                raise ValueError(f"unexpected wire type {wire}")

    def varint(buf: bytes, i: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = buf[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value, i

    graph = next(v for n, v in fields(path.read_bytes()) if n == 7)
    return [next(v for n, v in fields(node) if n == 4).decode() for n, node in fields(graph) if n == 1]


@pytest.mark.parametrize("model_cfg, present, absent", [
    ({"hidden_size": 16}, {"LSTM", "Gather"}, set()),                         # auto → ONNX LSTM
    ({"rnn_type": "gru"}, {"MatMul", "Sigmoid", "Tanh"}, {"LSTM", "GRU"}),    # auto → unrolled cells
], ids=["lstm", "gru"])
def test_onnx_export(model_cfg, present, absent, tmp_path):
    model = build(small(**model_cfg), 161, 29)
    model.set_train(False)
    with model.exported_form("ONNX"):
        ms.export(model, *model.export_inputs(1, 32), file_name=str(tmp_path / "m"), file_format="ONNX")
    ops = set(onnx_op_types(tmp_path / "m.onnx"))
    assert present <= ops and not ops & absent, sorted(ops)
    assert "Pad" in ops and "LogSoftmax" in ops


# ---------------------------------------------------------------------------------------------
# Spectrogram front end
# ---------------------------------------------------------------------------------------------

def test_window_is_scipys_periodic_hamming():
    scipy_signal = pytest.importorskip("scipy.signal")
    np.testing.assert_allclose(periodic_window("hamming", 320, 320), scipy_signal.get_window("hamming", 320),
                               atol=1e-12)
    padded = periodic_window("hann", 200, 320)
    np.testing.assert_allclose(padded[60:260], scipy_signal.get_window("hann", 200), atol=1e-12)
    assert not padded[:60].any() and not padded[260:].any()


@pytest.mark.filterwarnings("ignore:n_fft=320 is too large")
@pytest.mark.parametrize("num_samples", [16000, 12345, 161, 479])
def test_spectrogram_matches_librosa(num_samples):
    librosa = pytest.importorskip("librosa")
    audio = (0.1 * np.random.default_rng(num_samples).standard_normal(num_samples)).astype(np.float32)
    spect = np.log1p(np.abs(librosa.stft(audio, n_fft=320, hop_length=160, win_length=320, window="hamming")))
    want = (spect - spect.mean()) / spect.std(ddof=1)
    got = spectrogram_features(audio)
    assert got.shape == want.shape == (161, 1 + num_samples // 160) and got.dtype == np.float32
    assert np.abs(got - want).mean() < 1e-5 and np.abs(got - want).max() < 1e-4


def test_spectrogram_normalisation_and_silence():
    audio = (0.3 * np.sin(np.arange(8000) * 0.05)).astype(np.float32)
    s = spectrogram_features(audio)
    assert abs(float(s.mean())) < 1e-5 and abs(float(s.std(ddof=1)) - 1) < 1e-5
    silent = spectrogram_features(np.zeros(1600, np.float32))
    assert silent.shape == (161, 11) and np.isfinite(silent).all() and not silent.any()
    with pytest.raises(ValueError, match="window"):
        spectrogram_features(audio, window="blackman")


def test_batch_spectrograms_pads_with_zeros():
    rng = np.random.default_rng(0)
    audios = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (4000, 1600, 2500)]
    feats, lengths = batch_spectrograms(audios, pad_to=16)
    np.testing.assert_array_equal(lengths, [26, 11, 16])
    assert feats.shape == (3, 161, 32) and feats.dtype == np.float32
    for row, audio, n in zip(feats, audios, lengths):
        np.testing.assert_array_equal(row[:, :n], spectrogram_features(audio))
        assert not row[:, n:].any()


@pytest.mark.slow
def test_lite_runner_reproduces_the_exported_model(tmp_path):
    """The 310 path on CPU: MindIR (graph loop) + ONNX (ONNX LSTM) beside it → scripts/common.sh's
    conversion for MindSpore Lite 2.0 → the C++ runner, against the checkpoint model."""
    import os
    import subprocess

    ms.set_seed(17)
    lstm_model = build(small(hidden_size=16), 161, 29)
    randomise_batch_norm(lstm_model, 3)
    lstm_model.set_train(False)
    assert lstm_model.export_recurrence("ONNX") == "fused"
    assert build(small(), 161, 29).export_recurrence("ONNX") == "unrolled"    # hidden 12: Lite's LSTM is wrong

    repo = Path(__file__).resolve().parents[1]
    r = subprocess.run(["bash", str(repo / "ascend310_infer" / "build.sh"), "lite"], capture_output=True, text=True,
                       cwd=repo, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    build_dir = Path(r.stdout.strip().splitlines()[-1])
    exported = copy_of(lstm_model, small(hidden_size=16))
    exported.set_train(False)
    for fmt in ("MINDIR", "ONNX"):
        with exported.exported_form(fmt):
            ms.export(exported, *exported.export_inputs(1, 48), file_name=str(tmp_path / "ds2"), file_format=fmt)
    r = subprocess.run(["bash", "-c", 'source scripts/common.sh && prepare_lite_model "$1" "$2" "$3"', "_",
                        str(tmp_path / "ds2.mindir"), str(tmp_path / "lite"), str(build_dir)],
                       capture_output=True, text=True, cwd=repo, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    lite_model = r.stdout.strip().splitlines()[-1]
    pre, result = tmp_path / "pre", tmp_path / "result"
    pre.mkdir()
    lines = ["#utt_id\tfeatures\tlengths"]
    want = {}
    for i, n in enumerate((48, 31, 5)):
        feats, lengths = batch((n,), total=48, seed=i)
        feats.tofile(pre / f"u{i}_f.bin")
        lengths.tofile(pre / f"u{i}_l.bin")
        lines.append(f"u{i}\tu{i}_f.bin:float32:1x161x48\tu{i}_l.bin:int32:1")
        want[f"u{i}"] = run(lstm_model, feats, lengths)
    (pre / "inputs.txt").write_text("\n".join(lines) + "\n")
    lib = (build_dir / "mindspore_lib_dir").read_text().strip()
    r = subprocess.run([str(build_dir / "zoo_infer"), "--mindir_path", lite_model, "--input_dir", str(pre),
                        "--result_dir", str(result), "--device_target", "CPU"], capture_output=True, text=True,
                       env={**os.environ, "LD_LIBRARY_PATH": lib, "GLOG_v": "3"}, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    for utt, (log_probs, out_lengths) in want.items():
        got = np.fromfile(result / f"{utt}_0.bin", np.float32).reshape(log_probs.shape)
        np.testing.assert_array_equal(np.fromfile(result / f"{utt}_1.bin", np.int32), out_lengths)
        n = out_lengths[0]
        np.testing.assert_allclose(got[0, :n], log_probs[0, :n], atol=2e-5, rtol=0)
