"""src/models/jasper.py: sizes and names of the presets, lengths, masking, a numpy reference, training."""
from __future__ import annotations

import math
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from src.config import Config, config_from_dict, load_config
from src.models.jasper import JasperConfig as ModelConfig
from src.models.jasper import Jasper, build_model, count_parameters, exported_form
from src.text.labels import load_labels

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "configs"
BN_PARAMS = ("gamma", "beta", "moving_mean", "moving_variance")


pytestmark = pytest.mark.usefixtures("graph_mode_on_cpu")


def small_config(dense: bool = True) -> Config:
    """Every feature of the real presets at toy size: strided prologue, residual blocks of repeat 2
    and 3 (the second also widens), a dilated epilogue, a 1×1 layer."""
    return config_from_dict({"features": {"n_mels": 16}, "model": {"dense_residual": dense, "blocks": [
        {"filters": 16, "kernel": 5, "stride": 2, "dropout": 0.1},
        {"filters": 16, "repeat": 2, "kernel": 3, "residual": True, "dropout": 0.1},
        {"filters": 24, "repeat": 3, "kernel": 5, "residual": True},
        {"filters": 32, "kernel": 7, "dilation": 2},
        {"filters": 32, "kernel": 1},
    ]}})


def residual_sources(model: ModelConfig) -> list[list[int]]:
    """Channels of the residual inputs of each block under NVIDIA's rule: the list of outputs starts
    with the block input and grows with each dense residual block; any other block restarts it."""
    sources, result = [], []
    for i, block in enumerate(model.blocks):
        listed = sources if i else [None]  # None: the input features
        result.append(list(listed) if block.residual else [])
        keep = block.residual and model.dense_residual
        sources = (list(listed) + [block.filters]) if keep else [block.filters]
    return result


def expected_count(config: Config) -> int:
    """Trainable parameters by formula: conv k·C_in·C_out (no bias), BN 2·C, projections C_src·C,
    decoder C·classes + classes."""
    n_mels, classes = config.features.n_mels, load_labels(config.labels_path).num_classes
    total, channels = 0, n_mels
    for block, sources in zip(config.model.blocks, residual_sources(config.model)):
        for _ in range(block.repeat):
            total += block.kernel * channels * block.filters + 2 * block.filters
            channels = block.filters
        total += sum((n_mels if s is None else s) * block.filters + 2 * block.filters for s in sources)
    return total + channels * classes + classes


def nvidia_10x5dr_names(config: Config) -> dict[str, tuple[int, ...]]:
    """NVIDIA's tensor names (without num_batches_tracked) with MindSpore's suffixes and conv weight
    layout (C_out, C_in, 1, k). Layer i = 1..10 has i projections res.0..res.{i-1}."""
    names: dict[str, tuple[int, ...]] = {}
    channels, outputs = config.features.n_mels, []
    for i, block in enumerate(config.model.blocks):
        for r in range(block.repeat):
            names[f"encoder.layers.{i}.conv.{4 * r}.weight"] = (block.filters, channels, 1, block.kernel)
            for p in BN_PARAMS:
                names[f"encoder.layers.{i}.conv.{4 * r + 1}.{p}"] = (block.filters,)
            channels = block.filters
        if 1 <= i <= 10:
            for r in range(i):
                names[f"encoder.layers.{i}.res.{r}.0.weight"] = (block.filters, outputs[r], 1, 1)
                for p in BN_PARAMS:
                    names[f"encoder.layers.{i}.res.{r}.1.{p}"] = (block.filters,)
        outputs.append(block.filters)
    names["decoder.layers.0.weight"] = (29, 1024, 1, 1)
    names["decoder.layers.0.bias"] = (29,)
    return names


def test_jasper10x5dr_size_and_nvidia_names():
    config = load_config(CONFIGS / "jasper10x5dr.yaml")
    model = build_model(config)
    assert count_parameters(model) == (332_632_349, 542)
    assert expected_count(config) == 332_632_349
    got = {p.name: tuple(p.shape) for p in model.get_parameters()}
    assert got == nvidia_10x5dr_names(config)
    assert model.time_stride == 2
    bn = model.encoder.layers[3].conv[9]
    assert bn.eps == pytest.approx(1e-3)
    moving = [p for p in model.get_parameters() if "moving_" in p.name]
    assert len(moving) == 2 * 108 and not any(p.requires_grad for p in moving)  # 108 conv + BN pairs


@pytest.mark.parametrize("name,stride", [("jasper5x3", 2), ("jasper_tiny", 3)])
def test_preset_parameter_counts(name, stride):
    config = load_config(CONFIGS / f"{name}.yaml")
    model = build_model(config)
    trainable, tensors = count_parameters(model)
    print(f"{name}: {trainable:,} trainable parameters, {tensors} tensors")
    assert trainable == expected_count(config)
    convs = sum(b.repeat + len(s) for b, s in zip(config.model.blocks, residual_sources(config.model)))
    assert tensors == 5 * convs + 2  # weight + 4 BN tensors per conv; decoder weight + bias
    assert model.time_stride == stride


def test_residual_block_must_keep_length():
    bad = config_from_dict({"model": {"blocks": [
        {"filters": 8, "kernel": 3},
        {"filters": 8, "repeat": 2, "kernel": 3, "stride": 2, "residual": True}]}})
    with pytest.raises(ValueError, match="residual block"):
        build_model(bad)


# --- behaviour on a small network ---------------------------------------------------------------

def randomize_batch_norm(model: nn.Cell, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine terms, so padded frames would leak if unmasked."""
    rng = np.random.default_rng(seed)
    for p in model.get_parameters():
        leaf = p.name.rsplit(".", 1)[-1]
        if leaf in BN_PARAMS:
            value = {"gamma": rng.uniform(0.5, 1.5, p.shape), "beta": rng.normal(0, 0.5, p.shape),
                     "moving_mean": rng.normal(0, 0.5, p.shape), "moving_variance": rng.uniform(0.5, 2, p.shape)}
            p.set_data(Tensor(value[leaf].astype(np.float32)))
        elif p.name == "decoder.layers.0.bias":
            p.set_data(Tensor(rng.normal(0, 0.5, p.shape).astype(np.float32)))


@pytest.fixture(scope="module")
def eval_model() -> Jasper:
    ms.set_seed(1)
    model = build_model(small_config())
    randomize_batch_norm(model)
    model.set_train(False)
    return model


LENGTHS = np.array([37, 64, 50], np.int32)


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    """(3, 16, 64) features, zero beyond LENGTHS."""
    x = np.random.default_rng(2).normal(size=(3, 16, 64)).astype(np.float32)
    return x * (np.arange(64) < LENGTHS[:, None])[:, None, :]


def run(model: nn.Cell, x: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    log_probs, out_lengths = model(Tensor(x), Tensor(lengths.astype(np.int32)))
    return log_probs.asnumpy(), out_lengths.asnumpy()


def reference_forward(model: ModelConfig, params: dict[str, np.ndarray], x: np.ndarray,
                      lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inference of NVIDIA's Jasper in float64 numpy: each conv masks its input with the current
    lengths; residual projections mask their inputs with the block's input lengths."""

    def masked(y, lens):
        return y * (np.arange(y.shape[-1]) < lens[:, None])[:, None, :]

    def conv(y, w, stride=1, dilation=1):
        w = w[:, :, 0, :].astype(np.float64)
        k = w.shape[-1]
        pad = (k // 2) * dilation
        y = np.pad(y, ((0, 0), (0, 0), (pad, pad)))
        t_out = (y.shape[-1] - dilation * (k - 1) - 1) // stride + 1
        return sum(np.einsum("oi,bit->bot", w[:, :, j], y[:, :, j * dilation::stride][:, :, :t_out])
                   for j in range(k))

    def bn(y, prefix):
        g, b, m, v = (params[f"{prefix}.{n}"].astype(np.float64)[:, None] for n in BN_PARAMS)
        return (y - m) / np.sqrt(v + 1e-3) * g + b

    relu = lambda y: np.maximum(y, 0)  # noqa: E731
    outputs, lens = [x.astype(np.float64)], lengths.astype(np.int64)
    for i, block in enumerate(model.blocks):
        y, lens_in = outputs[-1], lens
        for r in range(block.repeat):
            y = conv(masked(y, lens), params[f"encoder.layers.{i}.conv.{4 * r}.weight"], block.stride, block.dilation)
            pad = (block.kernel // 2) * block.dilation
            lens = (lens + 2 * pad - block.dilation * (block.kernel - 1) - 1) // block.stride + 1
            y = bn(y, f"encoder.layers.{i}.conv.{4 * r + 1}")
            if r < block.repeat - 1:
                y = relu(y)
        if block.residual:
            for j, source in enumerate(outputs):
                res = conv(masked(source, lens_in), params[f"encoder.layers.{i}.res.{j}.0.weight"])
                y = y + bn(res, f"encoder.layers.{i}.res.{j}.1")
        y = relu(y)
        outputs = outputs + [y] if block.residual and model.dense_residual else [y]
    logits = conv(outputs[-1], params["decoder.layers.0.weight"]) + params["decoder.layers.0.bias"][:, None]
    logits = logits.transpose(0, 2, 1)
    logits = logits - logits.max(-1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True)), lens


def test_matches_numpy_reference(eval_model, batch):
    log_probs, out_lengths = run(eval_model, batch, LENGTHS)
    params = {p.name: p.asnumpy() for p in eval_model.get_parameters()}
    ref, ref_lengths = reference_forward(small_config().model, params, batch, LENGTHS)
    assert log_probs.dtype == np.float32 and log_probs.shape == ref.shape == (3, 32, 29)
    np.testing.assert_array_equal(out_lengths, ref_lengths)
    for b, n in enumerate(out_lengths):
        np.testing.assert_allclose(log_probs[b, :n], ref[b, :n], atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(np.exp(log_probs).sum(-1), 1.0, atol=1e-5)  # a distribution per frame


def test_exported_form_computes_the_same(eval_model, batch):
    """exported_form (explicit Pad + 'valid' convolutions, what MindIR and ONNX files hold) against the
    convolutions that pad themselves (training and checkpoint inference)."""
    exported = build_model(small_config())
    ms.load_param_into_net(exported, {p.name: p for p in eval_model.get_parameters()}, strict_load=True)
    exported.set_train(False)
    convs = [c for _, c in exported.cells_and_names() if hasattr(c, "explicit_pad")]
    with exported_form(exported):
        assert convs and all(c.explicit_pad for c in convs)
        b, b_len = run(exported, batch, LENGTHS)
    assert not any(c.explicit_pad for c in convs)
    a, a_len = run(eval_model, batch, LENGTHS)
    np.testing.assert_array_equal(a_len, b_len)
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_padding_invariance(eval_model, batch):
    together, out_lengths = run(eval_model, batch, LENGTHS)
    for b, n in enumerate(LENGTHS):
        padded = -(-n // 16) * 16  # each alone, padded only to a multiple of 16
        alone, alone_lengths = run(eval_model, batch[b:b + 1, :, :padded], LENGTHS[b:b + 1])
        assert alone_lengths[0] == out_lengths[b] == math.ceil(n / 2)
        np.testing.assert_allclose(alone[0, :out_lengths[b]], together[b, :out_lengths[b]], atol=1e-5, rtol=0)


def test_garbage_in_padding_is_ignored(eval_model, batch):
    clean, out_lengths = run(eval_model, batch, LENGTHS)
    noise = np.random.default_rng(3).normal(0, 1e3, batch.shape).astype(np.float32)
    dirty = np.where(np.arange(64) < LENGTHS[:, None, None], batch, noise)
    garbage, garbage_lengths = run(eval_model, dirty, LENGTHS)
    np.testing.assert_array_equal(garbage_lengths, out_lengths)
    for b, n in enumerate(out_lengths):
        np.testing.assert_allclose(garbage[b, :n], clean[b, :n], atol=1e-5, rtol=0)
    # The same frames declared valid do change the first utterance's outputs: the lengths are what protect it.
    declared, _ = run(eval_model, dirty, np.full(3, 64, np.int32))
    assert np.abs(declared[0, :out_lengths[0]] - clean[0, :out_lengths[0]]).max() > 0.1


@pytest.mark.parametrize("frames", [17, 32, 45])
def test_output_lengths(eval_model, frames):
    lengths = np.array([frames, frames - 1, max(1, frames // 3)], np.int32)
    x = np.random.default_rng(frames).normal(size=(3, 16, frames)).astype(np.float32)
    log_probs, out_lengths = run(eval_model, x, lengths)
    assert log_probs.shape == (3, math.ceil(frames / 2), 29)
    np.testing.assert_array_equal(out_lengths, [math.ceil(n / 2) for n in lengths])
    np.testing.assert_array_equal(eval_model.output_lengths(lengths), out_lengths)
    assert eval_model.output_lengths(frames) == math.ceil(frames / 2)


def test_mixed_precision_o2(batch):
    ms.set_seed(1)
    model = build_model(small_config())
    randomize_batch_norm(model)
    model.set_train(False)
    full, _ = run(model, batch, LENGTHS)
    half = ms.amp.auto_mixed_precision(model, "O2")
    log_probs, out_lengths = run(half, batch, LENGTHS)
    assert log_probs.dtype == np.float32 and out_lengths.dtype == np.int32
    for b, n in enumerate(out_lengths):
        np.testing.assert_allclose(log_probs[b, :n], full[b, :n], atol=0.05)


def test_training_step_gradients_and_bn_momentum(batch):
    ms.set_seed(4)
    config = small_config()
    model = build_model(config)
    model.set_train(True)
    targets = Tensor(np.random.default_rng(5).integers(0, 28, (3, 6)).astype(np.int32))
    target_lengths = Tensor(np.array([6, 4, 5], np.int32))

    def loss_fn(x, lengths):
        log_probs, out_lengths = model(x, lengths)
        loss, _ = ops.ctc_loss(log_probs.transpose(1, 0, 2), targets, out_lengths, target_lengths,
                               blank=28, reduction="mean", zero_infinity=True)
        return loss

    grad_fn = ms.value_and_grad(loss_fn, None, model.trainable_params())

    class Step(nn.Cell):
        def __init__(self):
            super().__init__()
            self.model = model

        def construct(self, x, lengths):
            return grad_fn(x, lengths)

    prologue_weight = model.encoder.layers[0].conv[0].weight.asnumpy()
    loss, grads = Step()(Tensor(batch), Tensor(LENGTHS))
    assert np.isfinite(loss.asnumpy()) and loss.asnumpy() > 0
    assert len(grads) == len(model.trainable_params()) == count_parameters(model)[1] - 2 * 11
    for p, g in zip(model.trainable_params(), grads):
        g = g.asnumpy()
        assert g.shape == p.shape and np.isfinite(g).all(), p.name
    assert sum(np.abs(g.asnumpy()).sum() > 0 for g in grads) == len(grads)

    # BN statistics moved with PyTorch momentum 0.1 (batch statistics include padded frames, as NVIDIA's).
    x = batch * (np.arange(64) < LENGTHS[:, None])[:, None, :]
    w = prologue_weight[:, :, 0, :]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (2, 2)))
    y = sum(np.einsum("oi,bit->bot", w[:, :, j], xp[:, :, j::2][:, :, :32]) for j in range(5))
    moving_mean = model.encoder.layers[0].conv[1].moving_mean.asnumpy()
    np.testing.assert_allclose(moving_mean, 0.1 * y.mean(axis=(0, 2)), rtol=1e-4, atol=1e-6)
