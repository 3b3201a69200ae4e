"""The compiled training step: the task's loss (injected), backward, loss scaling, gradient accumulation, all-reduce,
clipping, optimizer update and EMA, as ``nn.Cell``s run in GRAPH_MODE.

A Cell whose ``construct`` calls ``ms.value_and_grad`` and the optimizer runs about 1.7× faster on
CPU than the same step as an ``@ms.jit`` function, and ``nn.TrainOneStepWithLossScaleCell`` does not
run on CPU in MindSpore 2.10, hence this form.  The cells are built with ``auto_prefix=False`` so
parameter names stay the model's own (``encoder.layers.0.conv.0.weight``), which keeps checkpoints
loadable by the bare model.
"""
from __future__ import annotations

import mindspore as ms
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops
from mindspore.amp import DynamicLossScaler, StaticLossScaler

from src.config import TrainConfig

_add = ops.MultitypeFuncGraph("add")
_square_sum = ops.MultitypeFuncGraph("square_sum")
_scale = ops.MultitypeFuncGraph("scale")
_ema = ops.MultitypeFuncGraph("ema")
_zero = ops.MultitypeFuncGraph("zero")


@_add.register("Tensor", "Tensor")
def _add_into(buffer: Tensor, grad: Tensor) -> Tensor:
    return ops.assign_add(buffer, grad)


@_square_sum.register("Tensor")
def _square_sum_of(grad: Tensor) -> Tensor:
    return ops.reduce_sum(ops.square(grad.astype(ms.float32)))


@_scale.register("Tensor", "Tensor")
def _scale_by(factor: Tensor, grad: Tensor) -> Tensor:
    return grad * factor.astype(grad.dtype)


@_ema.register("Tensor", "Tensor", "Tensor")
def _ema_update(decay: Tensor, average: Tensor, weight: Tensor) -> Tensor:
    return ops.assign(average, average * decay + weight.astype(average.dtype) * (1 - decay))


@_zero.register("Tensor")
def _zero_out(buffer: Tensor) -> Tensor:
    return ops.assign(buffer, ops.zeros_like(buffer))


def make_loss_scaler(cfg: TrainConfig) -> StaticLossScaler | DynamicLossScaler:
    """``none`` → a static scale of 1, ``dynamic`` → a dynamic scaler, a number → that static scale."""
    if cfg.loss_scale == "dynamic":
        return DynamicLossScaler(cfg.loss_scale_init, cfg.loss_scale_factor, cfg.loss_scale_window)
    if cfg.loss_scale == "none":
        return StaticLossScaler(1.0)
    try:
        value = float(cfg.loss_scale)
    except ValueError:
        raise ValueError(f"train.loss_scale must be none, dynamic or a number, got {cfg.loss_scale!r}") from None
    if value <= 0:
        raise ValueError(f"train.loss_scale must be positive, got {value}")
    return StaticLossScaler(value)


class _GradientCell(nn.Cell):
    """Shared part: the scaled loss and its gradients with respect to the optimizer's parameters."""

    def __init__(self, loss_cell: nn.Cell, weights: ParameterTuple, scaler) -> None:
        super().__init__(auto_prefix=False)
        self.loss_cell, self.weights, self.scaler = loss_cell, weights, scaler
        self.grad_fn = ms.value_and_grad(self._scaled_loss, None, weights)

    def _scaled_loss(self, *inputs):
        return self.scaler.scale(self.loss_cell(*inputs))


class AccumulateStep(_GradientCell):
    """A micro-batch of gradient accumulation: adds its (still scaled) gradients into the buffers."""

    def __init__(self, loss_cell: nn.Cell, weights: ParameterTuple, scaler, buffers: ParameterTuple) -> None:
        super().__init__(loss_cell, weights, scaler)
        self.buffers = buffers
        self.hyper_map = ops.HyperMap()

    def construct(self, *inputs):
        loss, grads = self.grad_fn(*inputs)
        loss = ops.depend(loss, self.hyper_map(_add, self.buffers, grads))
        return self.scaler.unscale(loss)


class TrainStep(_GradientCell):
    """One optimizer step.  Returns (loss, finite, grad_norm, loss_scale); a step whose gradients are
    not finite changes no weight, is counted in ``skipped_steps`` and (dynamic scaling) halves the scale.

    With ``accumulate`` > 1 the gradients of the previous micro-batches (``AccumulateStep``) are added
    and the mean is applied.  ``grad_reducer`` all-reduces gradients in data-parallel runs.
    """

    def __init__(self, loss_cell: nn.Cell, optimizer: nn.Optimizer, scaler, grad_clip: float = 0.0,
                 accumulate: int = 1, ema_decay: float = 0.0, grad_reducer: nn.Cell | None = None) -> None:
        """``loss_cell``: the task's loss around the network, ``construct(*batch_inputs) -> scalar``
        (src/tasks); it holds every parameter of the model."""
        super().__init__(loss_cell, optimizer.parameters, scaler)
        self.optimizer, self.grad_clip, self.accumulate = optimizer, grad_clip, accumulate
        self.grad_reducer = grad_reducer
        self.hyper_map = ops.HyperMap()
        # no loss scaling (the CPU default): unscaling would multiply every gradient by 1
        self.unit_scale = isinstance(scaler, StaticLossScaler) and float(scaler.scale_value.asnumpy()) == 1.0
        self.skipped_steps = Parameter(Tensor(0, ms.int32), name="skipped_steps", requires_grad=False)
        self.accum = optimizer.parameters.clone(prefix="accum", init="zeros") if accumulate > 1 else None
        self.use_ema = ema_decay > 0
        if self.use_ema:
            self.ema_decay = Tensor(ema_decay, ms.float32)
            self.model_state = ParameterTuple(loss_cell.get_parameters())
            self.ema = self.model_state.clone(prefix="ema", init="same")

    def accumulate_cell(self) -> AccumulateStep:
        if self.accum is None:
            raise ValueError("accumulate_cell needs accumulate > 1")
        return AccumulateStep(self.loss_cell, self.weights, self.scaler, self.accum)

    def construct(self, *inputs):
        loss, grads = self.grad_fn(*inputs)
        if self.accumulate > 1:
            grads = self.hyper_map(ops.partial(_add), self.accum, grads)
            grads = self.hyper_map(ops.partial(_scale, Tensor(1.0 / self.accumulate, ms.float32)), grads)
        if not self.unit_scale:
            loss = self.scaler.unscale(loss)
            grads = self.scaler.unscale(grads)
        if self.grad_reducer is not None:
            grads = self.grad_reducer(grads)
        norm = ops.sqrt(ops.addn(self.hyper_map(_square_sum, grads)))
        # An inf or nan anywhere makes the sum of squares inf or nan: one check instead of one per
        # gradient (4 % of a CPU step, bench_train.py --profile).  A norm beyond float32 counts as non-finite.
        finite = ops.isfinite(norm)
        scale = self.scaler.scale_value
        if isinstance(self.scaler, DynamicLossScaler):
            finite = ops.depend(finite, self.scaler.adjust(finite))
        if finite:
            if self.grad_clip > 0:
                factor = ops.minimum(Tensor(1.0, ms.float32), self.grad_clip / (norm + 1e-6))
                grads = self.hyper_map(ops.partial(_scale, factor), grads)
            loss = ops.depend(loss, self.optimizer(grads))
            if self.use_ema:
                loss = ops.depend(loss, self.hyper_map(ops.partial(_ema, self.ema_decay), self.ema, self.model_state))
        else:
            loss = ops.depend(loss, ops.assign_add(self.skipped_steps, Tensor(1, ms.int32)))
        if self.accumulate > 1:
            loss = ops.depend(loss, self.hyper_map(_zero, self.accum))
        return loss, finite, norm, scale
