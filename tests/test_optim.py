"""Optimizers in a graph-mode train step: NovoGrad against a numpy reference, checkpoint resume, AdamW/SGD."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")
from mindspore import Parameter, Tensor, nn, ops  # noqa: E402

from src.config import OptimConfig  # noqa: E402
from src.training.lr_schedule import lr_schedule  # noqa: E402
from src.training.optim import NovoGrad, build_optimizer, decay_groups, weights_only  # noqa: E402

BETA1, BETA2, EPS = 0.95, 0.98, 1e-8


pytestmark = pytest.mark.usefixtures("graph_mode_on_cpu")


class TinyNet(nn.Cell):
    """Conv1d (no bias) → BatchNorm → ReLU → mean over time → Dense: (B, 3, T) → (B, 2)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 4, 3, pad_mode="valid", has_bias=False)
        self.bn = nn.BatchNorm1d(4)
        self.dense = nn.Dense(4, 2)
        rng = np.random.default_rng(seed)
        for p in self.trainable_params():
            p.set_data(Tensor(rng.normal(0.0, 0.5, p.shape).astype(np.float32)))

    def construct(self, x: Tensor) -> Tensor:
        return self.dense(ops.relu(self.bn(self.conv(x))).mean(axis=2))


class TrainStep(nn.Cell):
    """Loss, gradients and the optimizer update in one graph; returns the loss and the gradients it applied."""

    def __init__(self, net: nn.Cell, optimizer: nn.Optimizer) -> None:
        super().__init__(auto_prefix=False)   # keep the network's parameter names
        self.net = net
        self.optimizer = optimizer
        self.grad_fn = ms.value_and_grad(self.forward, None, optimizer.parameters)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return ops.square(self.net(x) - y).mean()

    def construct(self, x: Tensor, y: Tensor):
        loss, grads = self.grad_fn(x, y)
        self.optimizer(grads)
        return loss, grads


def batches(n: int, seed: int = 0) -> list[tuple[Tensor, Tensor]]:
    rng = np.random.default_rng(seed)
    return [(Tensor(rng.standard_normal((4, 3, 8)).astype(np.float32)),
             Tensor(rng.standard_normal((4, 2)).astype(np.float32))) for _ in range(n)]


def weights(net: nn.Cell) -> dict[str, np.ndarray]:
    return {p.name: p.asnumpy().copy() for p in net.trainable_params()}


def novograd_reference(w: dict, m: dict, v: dict, grads: dict, lr: float, weight_decay: dict,
                       grad_averaging: bool) -> None:
    """One NovoGrad step in float64, in place; v[name] is None (or 0) until a tensor gets a nonzero gradient."""
    for name, g in grads.items():
        g = g.astype(np.float64)
        sq = float(np.sum(g * g))
        v[name] = BETA2 * v[name] + (1 - BETA2) * sq if v[name] else sq
        update = g / (np.sqrt(v[name]) + EPS) + weight_decay[name] * w[name]
        if grad_averaging:
            update = update * (1 - BETA1)
        m[name] = BETA1 * m[name] + update
        w[name] = w[name] - lr * m[name]


@pytest.mark.parametrize("grouped, grad_averaging", [(False, False), (True, True)])
def test_novograd_matches_numpy_reference(grouped, grad_averaging):
    net = TinyNet(seed=0)
    net.set_train(True)
    params = net.trainable_params()
    lrs = np.array([0.05, 0.1, 0.2, 0.1, 0.05], np.float32)
    wd = 0.02
    if grouped:   # MindSpore's group convention: no decay for BatchNorm and bias
        opt = NovoGrad(decay_groups(params, wd, weights_only), lrs, BETA1, BETA2, EPS, weight_decay=wd,
                       grad_averaging=True)
        decay = {p.name: (wd if p.ndim >= 2 else 0.0) for p in params}
    else:
        opt = NovoGrad(params, lrs, BETA1, BETA2, EPS, weight_decay=wd, grad_averaging=grad_averaging)
        decay = {p.name: wd for p in params}
    step = TrainStep(net, opt)

    w = {k: a.astype(np.float64) for k, a in weights(net).items()}
    m = {k: np.zeros_like(a) for k, a in w.items()}
    v: dict = {k: None for k in w}
    names = [p.name for p in opt.parameters]
    for i, (x, y) in enumerate(batches(5)):
        _, grads = step(x, y)
        grads = {name: g.asnumpy() for name, g in zip(names, grads)}
        if i == 0:
            # the same first step without weight decay, to show the comparison below would catch its absence
            w_plain = dict(w)
            novograd_reference(w_plain, dict(m), dict(v), grads, float(lrs[0]), dict.fromkeys(w, 0.0),
                               grad_averaging)
            assert not np.allclose(weights(net)["conv.weight"], w_plain["conv.weight"], rtol=0, atol=1e-5)
        novograd_reference(w, m, v, grads, float(lrs[i]), decay, grad_averaging)
        if i == 0:   # first step: v is ||g||², not (1 - beta2)·||g||²
            for p, nv in zip(opt.parameters, opt.grad_norms):
                assert float(nv.asnumpy()) == pytest.approx(float(np.sum(grads[p.name].astype(np.float64) ** 2)),
                                                            rel=1e-5)
        for name, got in weights(net).items():
            np.testing.assert_allclose(got, w[name], rtol=1e-5, atol=1e-5, err_msg=f"step {i}: {name}")
    for p, mom, nv in zip(opt.parameters, opt.moments, opt.grad_norms):
        np.testing.assert_allclose(mom.asnumpy(), m[p.name], rtol=1e-5, atol=1e-5)
        assert float(nv.asnumpy()) == pytest.approx(v[p.name], rel=1e-5)
    assert int(opt.global_step.asnumpy()[0]) == 5


class ApplyGradients(nn.Cell):
    def __init__(self, optimizer: nn.Optimizer) -> None:
        super().__init__(auto_prefix=False)
        self.optimizer = optimizer

    def construct(self, g16: Tensor, g32: Tensor, g_late: Tensor):
        return self.optimizer((g16, g32, g_late))


def test_novograd_fixed_gradients_float16_and_late_first_gradient():
    rng = np.random.default_rng(3)
    init = {"w16": rng.standard_normal((2, 3)), "w32": rng.standard_normal((4, 1, 3)), "late": rng.standard_normal(5)}
    params = [Parameter(Tensor(init["w16"].astype(np.float16)), name="w16"),
              Parameter(Tensor(init["w32"].astype(np.float32)), name="w32"),
              Parameter(Tensor(init["late"].astype(np.float32)), name="late")]
    lrs = np.array([0.1, 0.2, 0.1, 0.05], np.float32)
    opt = NovoGrad(params, lrs, BETA1, BETA2, EPS, weight_decay=0.01)
    apply = ApplyGradients(opt)
    dtypes = {"w16": np.float16, "w32": np.float32, "late": np.float32}
    w = {k: a.astype(dtypes[k]).astype(np.float64) for k, a in init.items()}
    m = {k: np.zeros_like(a) for k, a in w.items()}
    v: dict = dict.fromkeys(w)
    for i, lr in enumerate(lrs):
        sent = {k: rng.standard_normal(a.shape).astype(dtypes[k]) for k, a in w.items()}
        if i < 2:
            sent["late"][:] = 0   # no gradient yet: v must wait for the first nonzero one
        apply(*(Tensor(sent[k]) for k in ("w16", "w32", "late")))
        grads = {k: g.astype(np.float64) for k, g in sent.items()}
        novograd_reference(w, m, v, grads, float(lr), dict.fromkeys(w, 0.01), grad_averaging=False)
        if i == 1:
            assert float(opt.grad_norms[2].asnumpy()) == 0.0
    assert params[0].dtype == ms.float16
    np.testing.assert_allclose(params[0].asnumpy().astype(np.float64), w["w16"], rtol=2e-3, atol=2e-3)
    for p in params[1:]:
        np.testing.assert_allclose(p.asnumpy(), w[p.name], rtol=1e-5, atol=1e-5, err_msg=p.name)
    assert float(opt.grad_norms[2].asnumpy()) == pytest.approx(v["late"], rel=1e-5)


NOVOGRAD = OptimConfig(name="novograd", lr=0.05, warmup_steps=2, hold_steps=1, decay="exponential", min_lr=1e-3,
                       weight_decay=1e-3)


def build(seed: int, total: int) -> tuple[TinyNet, NovoGrad, TrainStep]:
    net = TinyNet(seed)
    net.set_train(True)
    opt = build_optimizer(net.trainable_params(), NOVOGRAD, total)
    return net, opt, TrainStep(net, opt)


def test_checkpoint_round_trip_resumes_exactly(tmp_path: Path):
    data = batches(6, seed=1)
    net_a, opt_a, step_a = build(seed=0, total=6)
    for x, y in data[:3]:
        step_a(x, y)
    ckpt = tmp_path / "step3.ckpt"
    ms.save_checkpoint(step_a, str(ckpt))
    for x, y in data[3:]:
        step_a(x, y)
    expected = weights(net_a)

    saved = ms.load_checkpoint(str(ckpt))
    for name in ("global_step", "novograd_m.conv.weight", "novograd_v.conv.weight", "novograd_v.dense.bias",
                 "conv.weight", "bn.moving_mean"):
        assert name in saved, name
    assert saved["novograd_v.conv.weight"].shape == ()

    net_b, opt_b, step_b = build(seed=7, total=6)   # different initial weights, fresh optimizer state
    not_loaded_params, unused_ckpt = ms.load_param_into_net(step_b, saved)
    assert not not_loaded_params and not unused_ckpt
    assert int(opt_b.global_step.asnumpy()[0]) == 3
    for x, y in data[3:]:
        step_b(x, y)
    for name, got in weights(net_b).items():
        np.testing.assert_allclose(got, expected[name], rtol=0, atol=1e-7, err_msg=name)

    # Restoring the network alone is not enough: the optimizer's state and step change the result.
    net_c, _, step_c = build(seed=7, total=6)
    ms.load_param_into_net(net_c, {k: p for k, p in saved.items() if k in weights(net_c)
                                   or k.startswith("bn.moving")})
    for x, y in data[3:]:
        step_c(x, y)
    assert not np.allclose(weights(net_c)["dense.weight"], expected["dense.weight"], rtol=0, atol=1e-5)


class Quadratic(nn.Cell):
    """sum((w - 1)²) + sum((W + 0.5)²) for a (4,) vector and a (3, 2) matrix."""

    def __init__(self) -> None:
        super().__init__()
        self.w = Parameter(Tensor(np.zeros(4, np.float32)), name="w")
        self.big_w = Parameter(Tensor(np.full((3, 2), 2.0, np.float32)), name="big_w")

    def construct(self) -> Tensor:
        return ops.square(self.w - 1.0).sum() + ops.square(self.big_w + 0.5).sum()


class QuadraticStep(nn.Cell):
    def __init__(self, net: nn.Cell, optimizer: nn.Optimizer) -> None:
        super().__init__(auto_prefix=False)
        self.net = net
        self.optimizer = optimizer
        self.grad_fn = ms.value_and_grad(self.net, None, optimizer.parameters)

    def construct(self) -> Tensor:
        loss, grads = self.grad_fn()
        self.optimizer(grads)
        return loss


@pytest.mark.parametrize("name, cls, lr", [("adamw", nn.AdamWeightDecay, 0.3), ("sgd", nn.Momentum, 0.02),
                                           ("novograd", NovoGrad, 0.1)])
def test_builtin_optimizers_reduce_a_quadratic(name, cls, lr):
    cfg = OptimConfig(name=name, lr=lr, warmup_steps=3, hold_steps=0, decay="polynomial", min_lr=1e-4,
                      weight_decay=1e-4, momentum=0.9)
    net = Quadratic()
    opt = build_optimizer(net.trainable_params(), cfg, total_steps=40)
    assert isinstance(opt, cls)
    step = QuadraticStep(net, opt)
    losses = [float(step().asnumpy()) for _ in range(40)]
    assert losses[-1] < 0.1 * losses[0], losses
    assert int(opt.global_step.asnumpy()[0]) == 40


def test_weight_decay_default_and_filter():
    net = TinyNet(seed=0)
    cfg = dataclasses.replace(NOVOGRAD, weight_decay=1e-3)
    for name in ("novograd", "adamw", "sgd"):
        c = dataclasses.replace(cfg, name=name)
        everything = build_optimizer(net.trainable_params(), c, 10)
        assert all(everything.decay_flags), name    # BatchNorm gamma/beta and biases included by default
        filtered = build_optimizer(net.trainable_params(), c, 10, decay_filter=weights_only)
        flags = dict(zip((p.name for p in filtered.parameters), filtered.decay_flags))
        assert flags == {"conv.weight": True, "bn.gamma": False, "bn.beta": False, "dense.weight": True,
                         "dense.bias": False}, name
        assert [p.name for p in filtered.parameters] == [p.name for p in net.trainable_params()]


def test_lr_table_is_the_schedule():
    net = TinyNet(seed=0)
    opt = build_optimizer(net.trainable_params(), NOVOGRAD, 9)
    table = opt.get_lr_parameter(opt.parameters[0]).asnumpy()
    np.testing.assert_array_equal(table, lr_schedule(9, NOVOGRAD))


def test_bad_optimizer_settings_raise():
    params = TinyNet(seed=0).trainable_params()
    with pytest.raises(ValueError, match="novograd, adamw, adam, sgd"):
        build_optimizer(params, OptimConfig(name="adagrad"), 10)
    with pytest.raises(ValueError, match="betas"):
        build_optimizer(params, OptimConfig(betas=(0.9,)), 10)
    with pytest.raises(ValueError, match="no parameters"):
        build_optimizer([], OptimConfig(), 10)
    with pytest.raises(ValueError, match="beta2"):
        NovoGrad(params, 0.1, beta2=1.0)
