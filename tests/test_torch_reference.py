"""bench/torch_jasper.py is the same network as src/models/jasper.py, so the training benchmark compares
like with like: NVIDIA's tensor names, one-to-one weight transfer, equal outputs, losses, gradients,
BatchNorm statistics and NovoGrad updates."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ms = pytest.importorskip("mindspore")
from mindspore import Tensor, nn  # noqa: E402

from bench.torch_jasper import (NovoGrad, TrainStep, build_torch_model,  # noqa: E402
                                mindspore_state_from_torch)
from src.config import Config, config_from_dict, load_config  # noqa: E402
from src.models.jasper import build_model  # noqa: E402
from src.training.optim import build_optimizer  # noqa: E402
from src.tasks.asr import CTCLoss  # noqa: E402
from src.training.train_step import TrainStep as MsTrainStep, make_loss_scaler  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "configs"
BLANK = 28


pytestmark = pytest.mark.usefixtures("graph_mode_on_cpu")


def small_config(dropout: float = 0.1) -> Config:
    """Strided prologue, dense residual blocks of repeat 2 and 3 (the second widens), a dilated
    epilogue and a 1×1 layer, at toy size."""
    return config_from_dict({"features": {"n_mels": 16}, "model": {"dense_residual": True, "blocks": [
        {"filters": 16, "kernel": 5, "stride": 2, "dropout": dropout},
        {"filters": 16, "repeat": 2, "kernel": 3, "residual": True, "dropout": dropout},
        {"filters": 24, "repeat": 3, "kernel": 5, "residual": True, "dropout": dropout},
        {"filters": 32, "kernel": 7, "dilation": 2, "dropout": dropout},
        {"filters": 32, "kernel": 1},
    ]}, "optim": {"decay": "constant", "lr": 0.01}})


def features(batch: int, n_mels: int, frames: int, lengths: np.ndarray, seed: int) -> np.ndarray:
    """(B, n_mels, T) float32 with large garbage beyond each length (both models must ignore it)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, n_mels, frames)).astype(np.float32)
    garbage = rng.normal(0, 100, size=x.shape).astype(np.float32)
    return np.where(np.arange(frames) < lengths[:, None, None], x, garbage)


def calibrate(model: torch.nn.Module, x: np.ndarray, lengths: np.ndarray, seed: int) -> None:
    """Give every BatchNorm the statistics of this batch (so activations stay well scaled through deep
    presets) and random affine terms; a random decoder bias too."""
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: after one batch, exactly its statistics
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(x), torch.from_numpy(lengths))
        for bn in bns:
            bn.momentum = 0.1
            bn.weight.uniform_(0.5, 1.5, generator=gen)
            bn.bias.normal_(0.0, 0.3, generator=gen)
        model.decoder.layers[0].bias.normal_(0.0, 0.5, generator=gen)


def twin_models(config: Config, seed: int) -> tuple[torch.nn.Module, nn.Cell]:
    """A PyTorch Jasper and a MindSpore Jasper holding the same weights."""
    torch.manual_seed(seed)
    torch_model = build_torch_model(config)
    ms_model = build_model(config)
    state = mindspore_state_from_torch(torch_model)
    assert {p.name: tuple(p.shape) for p in ms_model.get_parameters()} == \
        {k: v.shape for k, v in state.items()}
    not_loaded = ms.load_param_into_net(ms_model, {k: ms.Parameter(Tensor(v), name=k) for k, v in state.items()},
                                        strict_load=True)
    assert not_loaded == ([], [])
    return torch_model, ms_model


def copy_weights(torch_model: torch.nn.Module, ms_model: nn.Cell) -> None:
    state = mindspore_state_from_torch(torch_model)
    for p in ms_model.get_parameters():
        p.set_data(Tensor(state[p.name]))


def test_state_dict_keys_are_nvidia_layout():
    config = load_config(CONFIGS / "jasper10x5dr.yaml")
    with torch.device("meta"):  # names and shapes only, no 1.3 GB of weights
        model = build_torch_model(config)
    state = model.state_dict()
    assert sum(v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k) \
        == 332_632_349
    assert state["encoder.layers.0.conv.0.weight"].shape == (256, 64, 11)
    assert state["encoder.layers.1.conv.16.weight"].shape == (256, 256, 11)
    assert state["encoder.layers.10.res.9.0.weight"].shape == (768, 768, 1)
    assert state["encoder.layers.10.res.0.0.weight"].shape == (768, 256, 1)
    assert state["encoder.layers.11.conv.0.weight"].shape == (896, 768, 29)
    assert state["decoder.layers.0.weight"].shape == (29, 1024, 1)
    for suffix in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        assert f"encoder.layers.5.conv.17.{suffix}" in state and f"encoder.layers.5.res.4.1.{suffix}" in state
    assert len(state) == 542 + 108  # MindSpore's 542 tensors + num_batches_tracked of the 108 BatchNorms
    convs = [k for k in state if k.endswith(".weight") and state[k].dim() == 3]
    assert len(convs) == 108 + 1


@pytest.mark.parametrize("preset,out_lengths", [("small", [48, 42, 25, 9]), ("jasper_tiny", [32, 28, 17, 6])])
def test_inference_matches_mindspore(preset, out_lengths):
    config = small_config() if preset == "small" else load_config(CONFIGS / "jasper_tiny.yaml")
    n_mels, frames = config.features.n_mels, 96
    lengths = np.array([96, 83, 50, 17], np.int32)
    x = features(4, n_mels, frames, lengths, seed=1)
    torch_model, ms_model = twin_models(config, seed=0)
    calibrate(torch_model, x, lengths, seed=2)
    copy_weights(torch_model, ms_model)
    torch_model.eval()
    ms_model.set_train(False)

    with torch.no_grad():
        expected, expected_lengths = torch_model(torch.from_numpy(x), torch.from_numpy(lengths))
    got, got_lengths = ms_model(Tensor(x), Tensor(lengths))
    got, got_lengths = got.asnumpy(), got_lengths.asnumpy()
    expected, expected_lengths = expected.numpy(), expected_lengths.numpy()

    assert got.shape == expected.shape == (4, out_lengths[0], 29)
    np.testing.assert_array_equal(got_lengths, expected_lengths)
    np.testing.assert_array_equal(got_lengths, out_lengths)     # ceil(length / stride)
    assert np.abs(expected).max() > 1.0  # not a trivially flat output
    for b, n in enumerate(got_lengths):
        np.testing.assert_allclose(got[b, :n], expected[b, :n], atol=1e-4, rtol=0)


def test_training_loss_gradients_and_bn_statistics_match():
    """Training mode (batch statistics over padded frames, no dropout): same CTC loss, same gradients of
    every parameter, same updated running statistics."""
    config = small_config(dropout=0.0)
    lengths = np.array([64, 57, 40], np.int32)
    x = features(3, config.features.n_mels, 64, lengths, seed=3)
    rng = np.random.default_rng(4)
    tokens = rng.integers(0, BLANK, (3, 9)).astype(np.int32)
    token_lengths = np.array([9, 6, 7], np.int32)
    torch_model, ms_model = twin_models(config, seed=5)
    torch_model.train()
    ms_model.set_train(True)

    step = TrainStep(torch_model, NovoGrad(torch_model.parameters()), BLANK)
    loss = step.loss(torch.from_numpy(x), torch.from_numpy(lengths), torch.from_numpy(tokens).long(),
                     torch.from_numpy(token_lengths).long())
    loss.backward()

    loss_cell = CTCLoss(ms_model, BLANK)
    grad_fn = ms.value_and_grad(loss_cell, None, ms_model.trainable_params())

    class Grads(nn.Cell):
        def __init__(self) -> None:
            super().__init__(auto_prefix=False)
            self.loss_cell = loss_cell

        def construct(self, *args):
            return grad_fn(*args)

    ms_loss, ms_grads = Grads()(Tensor(x), Tensor(lengths), Tensor(tokens), Tensor(token_lengths))
    np.testing.assert_allclose(float(ms_loss.asnumpy()), loss.item(), rtol=1e-5)

    torch_grads = _mindspore_named_grads(torch_model)
    assert len(ms_grads) == len(torch_grads)
    for p, g in zip(ms_model.trainable_params(), ms_grads):
        expected = torch_grads[p.name]
        scale = np.abs(expected).max()
        assert scale > 0, p.name
        np.testing.assert_allclose(g.asnumpy(), expected, atol=1e-4 * scale, rtol=1e-3, err_msg=p.name)

    after = mindspore_state_from_torch(torch_model)
    for p in ms_model.get_parameters():
        if "moving_" in p.name:
            np.testing.assert_allclose(p.asnumpy(), after[p.name], rtol=1e-4, atol=1e-5, err_msg=p.name)


def _mindspore_named_grads(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """The gradients of a PyTorch Jasper under MindSpore names and shapes."""
    names = {}
    for prefix, module in model.named_modules():
        if isinstance(module, torch.nn.Conv1d):
            names[f"{prefix}.weight"] = module.weight.grad.numpy()[:, :, None, :]
            if module.bias is not None:
                names[f"{prefix}.bias"] = module.bias.grad.numpy()
        elif isinstance(module, torch.nn.BatchNorm1d):
            names[f"{prefix}.gamma"] = module.weight.grad.numpy()
            names[f"{prefix}.beta"] = module.bias.grad.numpy()
    return names


def test_train_steps_match_mindspore_train_step():
    """Three NovoGrad steps of the benchmark's PyTorch step and of the project's TrainStep leave the
    same weights."""
    config = small_config(dropout=0.0)
    lengths = np.array([64, 49, 32], np.int32)
    x = features(3, config.features.n_mels, 64, lengths, seed=6)
    tokens = np.random.default_rng(7).integers(0, BLANK, (3, 8)).astype(np.int32)
    token_lengths = np.array([8, 8, 5], np.int32)
    torch_model, ms_model = twin_models(config, seed=8)
    torch_model.train()
    ms_model.set_train(True)

    opt = config.optim
    torch_step = TrainStep(torch_model, NovoGrad(torch_model.parameters(), lr=opt.lr, betas=tuple(opt.betas),
                                                 eps=opt.eps, weight_decay=opt.weight_decay), BLANK)
    ms_optimizer = build_optimizer(ms_model.trainable_params(), opt, total_steps=3)
    ms_step = MsTrainStep(CTCLoss(ms_model, BLANK), ms_optimizer, make_loss_scaler(config.train))
    ms_args = (Tensor(x), Tensor(lengths), Tensor(tokens), Tensor(token_lengths))
    torch_args = (torch.from_numpy(x), torch.from_numpy(lengths), torch.from_numpy(tokens).long(),
                  torch.from_numpy(token_lengths).long())
    before = mindspore_state_from_torch(torch_model)
    for _ in range(3):
        ms_loss, ms_finite, ms_norm, _ = ms_step(*ms_args)
        loss, finite, norm = torch_step(*torch_args)
        assert bool(ms_finite.asnumpy()) and bool(finite)
        np.testing.assert_allclose(float(ms_loss.asnumpy()), float(loss), rtol=1e-4)
        np.testing.assert_allclose(float(ms_norm.asnumpy()), float(norm), rtol=1e-4)

    after = mindspore_state_from_torch(torch_model)
    for p in ms_model.trainable_params():
        moved = np.abs(after[p.name] - before[p.name]).max()
        assert moved > 1e-3, p.name  # the steps changed every tensor
        np.testing.assert_allclose(p.asnumpy(), after[p.name], atol=1e-3 * moved, rtol=0, err_msg=p.name)
