"""DS-CNN (ARM's keyword spotter), TensorFlow's MFCC front end and the frozen-graph converter, without
TensorFlow: a numpy reference of TensorFlow's semantics (NHWC, HWIO kernels, SAME padding) checks the
network and the tensor layouts; tests/test_dscnn_tf.py compares against TensorFlow itself.

ARM's graphs are looked for in ``$ARM_KWS_DIR`` or ``.cache/arm_kws`` (utils/arm_kws.csv lists them);
the tests that need them are skipped, with the reason, when they are absent."""
from __future__ import annotations

import os
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")
from mindspore import Tensor, nn  # noqa: E402

from src.audio.mfcc import (FILTERBANK_FLOOR, decode_clip, fft_length_for, mfcc_batch, mfcc_features,  # noqa: E402
                            mfcc_from_config, mfcc_num_frames, tf_mel_matrix)
from src.config import ConfigError, config_from_dict, load_config  # noqa: E402
from src.models import build_model, count_parameters  # noqa: E402
from src.models.convert_tf import (ConversionError, GraphArchitecture, GraphConv, check_architecture,  # noqa: E402
                                   check_labels, convert_graph, convert_pb, describe_graph, parse_graph,
                                   read_graph, read_labels)
from src.models.dscnn import DSCNNConfig, parse_model_size_info, same_padding  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "src" / "configs"
ARM_DIR = Path(os.environ.get("ARM_KWS_DIR", ROOT / ".cache" / "arm_kws"))
SIZES = {"s": 23_180, "m": 136_580, "l": 413_736}   # ARM's trainable parameters for 12 classes
ARM_INFO = {"s": [5, 64, 10, 4, 2, 2] + [64, 3, 3, 1, 1] * 4,
            "m": [5, 172, 10, 4, 2, 1, 172, 3, 3, 2, 2] + [172, 3, 3, 1, 1] * 3,
            "l": [6, 276, 10, 4, 2, 1, 276, 3, 3, 2, 2] + [276, 3, 3, 1, 1] * 4}

pytestmark = pytest.mark.usefixtures("graph_mode_on_cpu")


def arm_graph(size: str) -> Path:
    path = ARM_DIR / f"DS_CNN_{size.upper()}.pb"
    if not path.is_file():
        pytest.skip(f"ARM's frozen graph {path} is absent (set ARM_KWS_DIR, files in utils/arm_kws.csv)")
    return path


def preset(size: str, *overrides: str):
    return load_config(CONFIGS / f"dscnn_{size}.yaml", overrides)


# ---------------------------------------------------------------------------------------------
# A numpy reference of TensorFlow's semantics (written from TensorFlow's documented rules)
# ---------------------------------------------------------------------------------------------

def tf_same_conv(x: np.ndarray, kernel: np.ndarray, stride: tuple[int, int], depthwise: bool) -> np.ndarray:
    """x (B, H, W, C) NHWC; kernel HWIO (depthwise: (kh, kw, C, 1)); TensorFlow's SAME padding:
    ceil(n / s) outputs, the odd zero of the padding at the end."""
    kh, kw = kernel.shape[:2]
    (sh, sw), (_, h, w, _) = stride, x.shape
    oh, ow = -(-h // sh), -(-w // sw)
    th, tw = max((oh - 1) * sh + kh - h, 0), max((ow - 1) * sw + kw - w, 0)
    xp = np.pad(x, ((0, 0), (th // 2, th - th // 2), (tw // 2, tw - tw // 2), (0, 0)))
    out = 0.0
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :]
            out = out + (patch * kernel[i, j, :, 0] if depthwise else patch @ kernel[i, j])
    return out


def tf_layer(x: np.ndarray, layer: GraphConv, eps: float) -> np.ndarray:
    y = tf_same_conv(x, layer.kernel.astype(np.float64), layer.stride, layer.depthwise) + layer.bias
    bn = layer.bn
    y = (y - bn["moving_mean"]) / np.sqrt(bn["moving_variance"] + eps) * bn["gamma"] + bn["beta"]
    return np.maximum(y, 0)


def tf_reference(arch: GraphArchitecture, features: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    """features (B, F, T) → softmax probabilities (B, classes), computed as the frozen graph does."""
    x = features.transpose(0, 2, 1)[..., None].astype(np.float64)     # (B, T, F, 1): time is the height
    x = tf_layer(x, arch.first, eps)
    for dw, pw in arch.blocks:
        x = tf_layer(tf_layer(x, dw, eps), pw, eps)
    logits = x.mean(axis=(1, 2)) @ arch.fc_weight + arch.fc_bias
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def random_architecture(model: DSCNNConfig, in_features: int, classes: int, seed: int) -> GraphArchitecture:
    """Random TensorFlow-layout tensors for ``model`` (BN statistics and offsets far from identity)."""
    rng = np.random.default_rng(seed)

    def conv(c_in: int, c_out: int, kernel, stride, depthwise: bool) -> GraphConv:
        shape = (*kernel, c_in, 1 if depthwise else c_out)
        c = c_in if depthwise else c_out
        bn = {"gamma": np.ones(c, np.float32), "beta": rng.normal(0, 0.3, c).astype(np.float32),
              "moving_mean": rng.normal(0, 0.5, c).astype(np.float32),
              "moving_variance": rng.uniform(0.5, 2, c).astype(np.float32)}
        return GraphConv("random", rng.normal(0, 0.4, shape).astype(np.float32), tuple(stride),
                         rng.normal(0, 0.2, c).astype(np.float32), bn, model.bn_eps, depthwise)

    first = conv(1, model.first.filters, model.first.kernel, model.first.stride, False)
    blocks, channels = [], model.first.filters
    for b in model.blocks:
        blocks.append((conv(channels, channels, b.kernel, b.stride, True), conv(channels, b.filters, (1, 1), (1, 1), False)))
        channels = b.filters
    return GraphArchitecture({}, (model.input_frames, in_features), first, blocks, (0, 0),
                             rng.normal(0, 0.5, (channels, classes)).astype(np.float32),
                             rng.normal(0, 0.1, classes).astype(np.float32), "labels_softmax")


def load(model: nn.Cell, params: dict[str, np.ndarray]) -> nn.Cell:
    not_loaded = ms.load_param_into_net(model, {k: ms.Parameter(Tensor(v), name=k) for k, v in params.items()},
                                        strict_load=True)
    assert not_loaded == ([], [])
    model.set_train(False)
    return model


def probabilities(model: nn.Cell, features: np.ndarray) -> np.ndarray:
    return np.exp(model(Tensor(features.astype(np.float32))).asnumpy())


# ---------------------------------------------------------------------------------------------
# Config and structure
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", ["s", "m", "l"])
def test_presets_have_arms_parameter_counts(size):
    config = preset(size)
    assert config.task == "kws" and config.features.kind == "mfcc" and config.features.feature_dim == 10
    assert list(config.model.model_size_info) == ARM_INFO[size]
    model = build_model(config, num_classes=len(config.kws.labels))
    trainable, _ = count_parameters(model)
    assert len(config.kws.labels) == 12 and trainable == SIZES[size]
    # BatchNorm has no trainable scale (TF-slim): every gamma is frozen at 1
    gammas = [p for p in model.get_parameters() if p.name.endswith(".gamma")]
    assert gammas and not any(p.requires_grad for p in gammas)
    assert all(np.all(p.asnumpy() == 1) for p in gammas)


def test_model_size_info_round_trip_and_config_errors():
    first, blocks = parse_model_size_info(ARM_INFO["m"])
    assert first.filters == 172 and first.kernel == (10, 4) and first.stride == (2, 1)
    assert blocks[0].stride == (2, 2) and len(blocks) == 4
    assert list(DSCNNConfig(first=first, blocks=blocks).model_size_info) == ARM_INFO["m"]
    with pytest.raises(ValueError, match="model_size_info"):
        parse_model_size_info([2, 64, 10, 4, 2])
    for override, key in [("model.first.kernel=[3]", "model.first.kernel"),
                          ("model.blocks=[{filters: 0}]", "model.blocks[0].filters"),
                          ("model.bn_momentum=0", "model.bn_momentum"),
                          ("model.input_frames=0", "model.input_frames")]:
        with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
            preset("s", override)
    # YAML reads a bare yes/no as a boolean: the presets quote the words
    assert preset("s").kws.wanted_words[:2] == ("yes", "no")


def test_same_padding_is_tensorflows():
    # (output, before, after): the odd zero goes after, as in TensorFlow
    assert same_padding(49, 10, 2) == (25, 4, 5)
    assert same_padding(10, 4, 2) == (5, 1, 1)
    assert same_padding(10, 4, 1) == (10, 1, 2)
    assert same_padding(25, 3, 2) == (13, 1, 1)
    assert same_padding(10, 3, 2) == (5, 0, 1)
    assert same_padding(13, 3, 1) == (13, 1, 1)
    assert same_padding(5, 1, 1) == (5, 0, 0)


def test_forward_matches_numpy_reference_with_asymmetric_padding():
    """Even kernels and stride 2 on odd and even sizes: every kind of asymmetric SAME padding."""
    mfcc = {"kind": "mfcc", "n_mfcc": 10, "n_fft": 1024, "win_length": 640, "hop_length": 320}
    config = config_from_dict({"task": "kws", "features": mfcc, "kws": {"clip_duration_ms": 440}, "model": {
        "name": "dscnn", "input_frames": 21,
        "first": {"filters": 6, "kernel": [4, 4], "stride": [2, 1]},
        "blocks": [{"filters": 8, "kernel": [3, 2], "stride": [2, 2]},
                   {"filters": 5, "kernel": [2, 3], "stride": [1, 2]},
                   {"filters": 7, "kernel": [3, 3], "stride": [1, 1]}]}})
    model = build_model(config, num_classes=4)
    arch = random_architecture(config.model, 10, 4, seed=0)
    load(model, convert_graph(arch, {p.name: tuple(p.shape) for p in model.get_parameters()}))
    x = np.random.default_rng(1).normal(size=(3, 10, 21)).astype(np.float32)
    ours, ref = probabilities(model, x), tf_reference(arch, x)
    assert ours.shape == (3, 4)
    np.testing.assert_allclose(ours, ref, atol=2e-6)
    np.testing.assert_allclose(ours.sum(axis=1), 1, atol=1e-5)
    # the same network with symmetric padding would differ: the test can fail
    assert same_padding(21, 4, 2)[1:] == (1, 2)


def test_wrong_frame_count_is_refused():
    model = build_model(preset("s"), num_classes=12)
    model.set_train(False)
    with pytest.raises(ValueError, match="fixed_frames"):
        model(Tensor(np.zeros((1, 10, 50), np.float32)))


def test_training_mode_updates_batchnorm_with_decay_096():
    """One training-mode forward: moving mean = 0.96 · 0 + 0.04 · batch mean (TF-slim decay 0.96)."""
    mfcc = {"kind": "mfcc", "n_fft": 1024, "win_length": 640, "hop_length": 320}
    config = config_from_dict({"task": "kws", "features": mfcc, "model": {
        "name": "dscnn", "first": {"filters": 4, "kernel": [10, 4], "stride": [2, 2]}, "blocks": []}})
    model = build_model(config, num_classes=3)
    arch = random_architecture(config.model, 10, 3, seed=2)
    for key in ("moving_mean", "beta"):
        arch.first.bn[key] = np.zeros_like(arch.first.bn[key])
    arch.first.bn["moving_variance"] = np.ones_like(arch.first.bn["moving_variance"])
    load(model, convert_graph(arch, {p.name: tuple(p.shape) for p in model.get_parameters()}))
    model.set_train(True)
    x = np.random.default_rng(3).normal(size=(4, 10, 49)).astype(np.float32)
    model(Tensor(x))
    pre_bn = tf_same_conv(x.transpose(0, 2, 1)[..., None].astype(np.float64), arch.first.kernel, (2, 2), False)
    batch_mean = (pre_bn + arch.first.bias).mean(axis=(0, 1, 2))
    np.testing.assert_allclose(model.first.bn.moving_mean.asnumpy(), 0.04 * batch_mean, rtol=1e-4, atol=1e-6)
    assert np.all(model.first.bn.gamma.asnumpy() == 1)


# ---------------------------------------------------------------------------------------------
# MFCC front end (TensorFlow parity itself: tests/test_dscnn_tf.py)
# ---------------------------------------------------------------------------------------------

def test_mfcc_shapes_and_frame_rule():
    rng = np.random.default_rng(0)
    for n, frames in [(16000, 49), (15999, 48), (16319, 49), (16320, 50), (640, 1), (639, 0), (0, 0)]:
        assert mfcc_num_frames(n) == frames
        out = mfcc_features(rng.uniform(-0.5, 0.5, n).astype(np.float32))
        assert out.shape == (10, frames) and out.dtype == np.float32
    assert fft_length_for(640) == 1024 and fft_length_for(512) == 512 and fft_length_for(480) == 512


def test_decode_clip_pads_at_the_end_or_cuts():
    short = np.linspace(-0.5, 0.5, 9000, dtype=np.float32)
    clip = decode_clip(short)
    assert clip.shape == (16000,) and clip.dtype == np.float32
    assert np.array_equal(clip[:9000], short) and not clip[9000:].any()
    long = np.random.default_rng(0).uniform(-1, 1, 23456).astype(np.float32)
    assert np.array_equal(decode_clip(long), long[:16000])
    assert mfcc_features(decode_clip(short)).shape == (10, 49)
    assert mfcc_features(decode_clip(long)).shape == (10, 49)
    # a longer clip's first second gives the same frames as the cut clip (no centring, no padding)
    np.testing.assert_array_equal(mfcc_features(long)[:, :49], mfcc_features(decode_clip(long)))


def test_mfcc_of_silence_is_the_floor_through_the_dct():
    """All-zero audio: every channel is log(1e-12); the DCT-II with scale sqrt(2/40) gives
    c0 = sqrt(2/40) · 40 · log(1e-12) and zeros elsewhere."""
    out = mfcc_features(np.zeros(16000, np.float32))
    np.testing.assert_allclose(out[0], np.sqrt(2 / 40) * 40 * np.log(FILTERBANK_FLOOR), rtol=1e-6)
    np.testing.assert_allclose(out[1:], 0, atol=1e-4)


def test_mfcc_filterbank_and_batch():
    mel = tf_mel_matrix(513, 16000.0, 40, 20.0, 4000.0)
    assert mel.shape == (40, 513) and (mel >= 0).all()
    hz_per_bin = 8000 / 512
    used = np.flatnonzero(mel.sum(axis=0))
    assert used[0] == int(1.5 + 20 / hz_per_bin) and used[-1] <= int(4000 / hz_per_bin)
    # a bin between the first and the last centre splits its magnitude between two channels
    centre_bins = mel.argmax(axis=1)
    inner = np.arange(centre_bins[0] + 1, centre_bins[-1])
    np.testing.assert_allclose(mel[:, inner].sum(axis=0), 1, atol=1e-12)
    clips = np.random.default_rng(4).uniform(-0.3, 0.3, (3, 16000)).astype(np.float32)
    batch = mfcc_batch(clips)
    for i in range(3):
        np.testing.assert_array_equal(batch[i], mfcc_features(clips[i]))
    config = preset("s")
    np.testing.assert_array_equal(mfcc_from_config(clips[0], config.features), batch[0])
    with pytest.raises(ValueError, match="n_fft"):
        mfcc_from_config(clips[0], replace(config.features, n_fft=512))


# ---------------------------------------------------------------------------------------------
# The protobuf reader on hand-encoded messages
# ---------------------------------------------------------------------------------------------

def _key(number: int, wire: int) -> bytes:
    return bytes([number << 3 | wire])


def _ld(number: int, payload: bytes) -> bytes:
    assert len(payload) < 128
    return _key(number, 2) + bytes([len(payload)]) + payload


def test_graph_reader_decodes_constants_and_attributes():
    shape = _ld(2, _ld(2, _key(1, 0) + bytes([3])) + _ld(2, _key(1, 0) + bytes([1])))  # dims [3, 1]
    filled = _key(1, 0) + bytes([1]) + shape + _ld(5, struct.pack("<f", 2.5))          # float_val [2.5] → fill
    content = _key(1, 0) + bytes([1]) + shape + _ld(4, struct.pack("<3f", 1, -2, 3))
    ints = _key(1, 0) + bytes([3]) + _ld(2, _ld(2, _key(1, 0) + bytes([2]))) + _ld(7, bytes([5, 0x7F]))
    node = lambda name, op, attr: _ld(1, _ld(1, name) + _ld(2, op) + _ld(5, _ld(1, b"value") + _ld(2, _ld(8, attr))))
    strides = _ld(1, _ld(1, b"c") + _ld(2, b"Conv2D") + _ld(3, b"a:0") + _ld(3, b"b:1")
                  + _ld(5, _ld(1, b"strides") + _ld(2, _ld(1, _ld(3, bytes([1, 2, 1, 1])))))
                  + _ld(5, _ld(1, b"padding") + _ld(2, _ld(2, b"SAME"))))
    nodes = parse_graph(node(b"a", b"Const", filled) + node(b"b", b"Const", content)
                        + node(b"i", b"Const", ints) + strides)
    assert [n.name for n in nodes] == ["a", "b", "i", "c"]
    np.testing.assert_array_equal(nodes[0].attrs["value"], np.full((3, 1), 2.5, np.float32))
    np.testing.assert_array_equal(nodes[1].attrs["value"], np.array([[1], [-2], [3]], np.float32))
    assert nodes[2].attrs["value"].dtype == np.int32 and list(nodes[2].attrs["value"]) == [5, 127]
    assert nodes[3].inputs == ["a", "b:1"] and nodes[3].attrs == {"strides": [1, 2, 1, 1], "padding": "SAME"}
    with pytest.raises(ConversionError):
        parse_graph(b"\x0a\x05ab")                 # truncated


# ---------------------------------------------------------------------------------------------
# ARM's frozen graphs
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", ["s", "m", "l"])
def test_arm_graph_converts_and_matches_reference(size):
    config = preset(size)
    model = build_model(config, num_classes=12)
    labels = read_labels(ARM_DIR / "labels.txt") if (ARM_DIR / "labels.txt").is_file() else None
    params, arch = convert_pb(arm_graph(size), config, {p.name: tuple(p.shape) for p in model.get_parameters()},
                              labels)
    assert list(arch.model_size_info) == ARM_INFO[size] and arch.num_classes == 12
    assert arch.front_end["window_size"] == 640 and arch.front_end["dct_coefficient_count"] == 10
    load(model, params)
    audio = np.random.default_rng(5).normal(0, 0.05, (2, 16000)).astype(np.float32)
    features = mfcc_batch(audio)
    np.testing.assert_allclose(probabilities(model, features), tf_reference(arch, features), atol=1e-5)


def test_arm_graph_refused_for_another_preset_or_front_end():
    path = arm_graph("m")
    arch = describe_graph(read_graph(path))
    with pytest.raises(ConversionError) as e:
        check_architecture(arch, preset("s"), num_classes=12)
    assert "model.first.filters: graph 172, config 64" in str(e.value)
    assert "model.blocks[0].stride: graph (2, 2), config (1, 1)" in str(e.value)
    with pytest.raises(ConversionError, match="number of layers: graph 5"):
        check_architecture(describe_graph(read_graph(arm_graph("m"))), preset("l"), num_classes=12)
    with pytest.raises(ConversionError) as e:
        check_architecture(arch, preset("m", "features.n_mfcc=13", "features.fmax=8000",   # a consistent config
                                         "features.hop_length=160", "model.input_frames=97"), num_classes=12)
    for what in ("features.n_mfcc", "features.fmax", "features.hop_length", "model input (frames, mfcc)"):
        assert what in str(e.value)
    with pytest.raises(ConversionError, match="number of classes"):
        check_architecture(arch, preset("m"), num_classes=11)
    check_architecture(arch, preset("m"), num_classes=12)


def test_labels_order_is_checked():
    arm = ["_silence_", "_unknown_", "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
    config = preset("s")
    check_labels(arm, config.kws.labels)
    with pytest.raises(ConversionError, match="kws.labels"):
        check_labels(arm, preset("s", 'kws.wanted_words=["no", "yes", "up", "down", "left", "right", "on", '
                                      '"off", "stop", "go"]').kws.labels)
    if (ARM_DIR / "labels.txt").is_file():
        assert read_labels(ARM_DIR / "labels.txt") == arm


def test_tf2mind_cli(tmp_path, restore_logging):
    import tf2mind

    pb = arm_graph("s")
    with pytest.raises(SystemExit) as e:
        tf2mind.parse_args(["--help"])
    assert e.value.code == 0
    out = tmp_path / "arm_s.ckpt"
    assert tf2mind.main(["--pb", str(pb), "--config", str(CONFIGS / "dscnn_s.yaml"), "--output", str(out)]) == 0
    model = build_model(preset("s"), num_classes=12)
    ms.load_param_into_net(model, ms.load_checkpoint(str(out)), strict_load=True)
    assert np.array_equal(model.fc.bias.asnumpy(), describe_graph(read_graph(pb)).fc_bias)
    bad = tmp_path / "wrong.ckpt"
    assert tf2mind.main(["--pb", str(pb), "--config", str(CONFIGS / "dscnn_m.yaml"), "--output", str(bad)]) == 1
    assert tf2mind.main(["--pb", str(pb), "--config", str(CONFIGS / "jasper_tiny.yaml"), "--output", str(bad)]) == 1
    assert tf2mind.main(["--pb", str(tmp_path / "missing.pb"), "--output", str(bad)]) == 1
    assert not bad.exists() and not list(tmp_path.glob("*.tmp"))


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [2, None])
def test_mindir_export_reload_parity(tmp_path, batch):
    config = preset("s")
    model = build_model(config, num_classes=12)
    arch = random_architecture(config.model, 10, 12, seed=6)
    load(model, convert_graph(arch, {p.name: tuple(p.shape) for p in model.get_parameters()}))
    example = model.export_inputs(batch, None)
    assert len(example) == 1 and tuple(example[0].shape)[1:] == (10, 49)
    with model.exported_form():
        ms.export(model, *example, file_name=str(tmp_path / "dscnn"), file_format="MINDIR")
    graph = nn.GraphCell(ms.load(str(tmp_path / "dscnn.mindir")))
    x = np.random.default_rng(7).normal(size=(2, 10, 49)).astype(np.float32)
    reloaded = graph(Tensor(x)).asnumpy()
    np.testing.assert_allclose(reloaded, model(Tensor(x)).asnumpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.exp(reloaded), tf_reference(arch, x), atol=2e-6)
