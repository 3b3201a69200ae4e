"""Optimizers for Jasper training: NovoGrad (the paper's), AdamW and momentum SGD.

All three are ``mindspore.nn.Optimizer`` subclasses, called as ``optimizer(grads)`` inside an ``nn.Cell`` train
step (``grads`` in the order of ``optimizer.parameters``), with the per-step learning rate of
``src.training.lr_schedule`` as a 1-D tensor indexed by the optimizer's ``global_step``.

Weight decay.  By default every trainable parameter is decayed, BatchNorm scales/shifts and biases included:
that is what NVIDIA's Jasper recipe does (its train script hands ``model.parameters()`` to NovoGrad with one
``weight_decay``), and reproducing the recipe is the goal.  ``decay_filter=weights_only`` restricts decay to conv
and dense weights (the parameters with 2 or more dimensions), the common choice for AdamW.  The choice is passed
to MindSpore as parameter groups, so it means the same thing for all three optimizers (a plain parameter list
would otherwise get MindSpore's own name-based rule, which skips parameters named ``gamma``/``beta``).
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence, Union

import mindspore as ms
import numpy as np
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops
from mindspore.nn.learning_rate_schedule import LearningRateSchedule

from src.config import OptimConfig
from src.training.lr_schedule import lr_schedule

OPTIMIZERS = ("novograd", "adamw", "adam", "sgd")

DecayFilter = Callable[[Parameter], bool]
LearningRate = Union[float, np.ndarray, Tensor, Sequence[float], LearningRateSchedule]
ParamsOrGroups = Union[Sequence[Parameter], Sequence[dict]]


def decay_all(param: Parameter) -> bool:
    """Decay every parameter (NVIDIA's Jasper recipe)."""
    return True


def weights_only(param: Parameter) -> bool:
    """Decay conv and dense weights only; BatchNorm gamma/beta and biases are the 1-D parameters."""
    return len(param.shape) >= 2


def decay_groups(params: Iterable[Parameter], weight_decay: float,
                 decay_filter: DecayFilter | None = None) -> list[dict]:
    """MindSpore parameter groups giving ``weight_decay`` to the parameters ``decay_filter`` accepts, 0 to the rest.

    The original order is kept (``order_params``), so gradients from ``value_and_grad(..., optimizer.parameters)``
    line up with it whichever groups exist.
    """
    params = list(params)
    keep = decay_filter or decay_all
    decayed = [p for p in params if keep(p)]
    plain = [p for p in params if not keep(p)]
    groups = [{"params": ps, "weight_decay": wd}
              for ps, wd in ((decayed, float(weight_decay)), (plain, 0.0)) if ps]
    return groups + [{"order_params": params}]


def _as_lr(learning_rate: LearningRate) -> float | Tensor | LearningRateSchedule:
    """A float stays a constant LR; arrays become the (steps,) float32 tensor MindSpore indexes by global_step."""
    if isinstance(learning_rate, (int, float)):
        return float(learning_rate)
    if isinstance(learning_rate, Tensor):
        return learning_rate.astype(ms.float32)
    if isinstance(learning_rate, LearningRateSchedule):
        return learning_rate
    return Tensor(np.asarray(learning_rate, dtype=np.float32))


_novograd_update = ops.MultitypeFuncGraph("novograd_update")
# m ← momentum·m + g';  w ← w − lr·m  as one in-place kernel (about 3× faster on CPU than separate ops)
_apply_momentum = ops.ApplyMomentum()


@_novograd_update.register("Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Bool",
                           "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Bool")
def _novograd_tensor(beta1: Tensor, beta2: Tensor, one_minus_beta1: Tensor, one_minus_beta2: Tensor, eps: Tensor,
                     grad_averaging: bool, lr: Tensor, weight_decay: Tensor, param: Parameter, m: Parameter,
                     v: Parameter, grad: Tensor, decay: bool) -> Tensor:
    """One NovoGrad step for one parameter tensor.

    param, m, grad: same shape (any); v: () the running mean of ||grad||²; lr, weight_decay: () scalars.
    Arithmetic is float32 whatever the parameter's dtype (m and v are float32).
    """
    g = ops.cast(grad, ms.float32)   # free when already float32
    flat = g.reshape(-1)             # a 1-D sum is ~2.5× faster on CPU than one over all axes of a conv weight
    sq_norm = ops.sum(flat * flat)
    # v == 0 only before the first update (or while every gradient so far was 0): start from ||g||² itself
    # instead of (1 - beta2)·||g||², which would inflate the first steps by 1/sqrt(1 - beta2).
    v_new = ops.select(v == 0, sq_norm, beta2 * v + one_minus_beta2 * sq_norm)
    # g' = (g / (sqrt(v) + eps) + weight_decay·w) · (1 - beta1 if grad_averaging), with the scalars folded first
    scale = 1.0 / (ops.sqrt(v_new) + eps)
    if grad_averaging:
        scale = scale * one_minus_beta1
        weight_decay = weight_decay * one_minus_beta1
    update = g * scale
    if decay:
        update = update + weight_decay * ops.cast(param, ms.float32)
    done = ops.assign(v, v_new)
    if param.dtype == ms.float32:
        return ops.depend(done, _apply_momentum(param, m, lr, update, beta1))
    m_new = beta1 * m + update        # e.g. float16 weights: the same update in float32, cast back
    done = ops.depend(done, ops.assign(m, m_new))
    return ops.depend(done, ops.assign(param, ops.cast(ops.cast(param, ms.float32) - lr * m_new, param.dtype)))


class NovoGrad(nn.Optimizer):
    """NovoGrad (Ginsburg et al., 2019) with layer-wise second moments, as used to train Jasper.

    For each parameter tensor ``w`` with gradient ``g`` (``v`` a scalar per tensor, ``m`` shaped like ``w``)::

        v  = ||g||²                           on the tensor's first update
        v  = beta2·v + (1 - beta2)·||g||²     afterwards
        g' = g / (sqrt(v) + eps) + weight_decay·w      (weight decay only where enabled)
        g' = (1 - beta1)·g'                   only with grad_averaging=True (NVIDIA's default: off)
        m  = beta1·m + g'
        w  = w - lr·m

    State is saved with the network in checkpoints: ``novograd_m.<param name>`` (shaped like the parameter,
    float32), ``novograd_v.<param name>`` (a () float32 scalar; 0 means "no update yet", as in NVIDIA's
    implementation) and the base class's ``global_step``, which also indexes a per-step learning rate.

    Args:
        params: trainable parameters, or MindSpore parameter groups (dicts with ``params``, ``weight_decay``,
            ``lr``, ``order_params``).
        learning_rate: a float, or a (steps,) array/Tensor of per-step values (``lr_schedule``) indexed by
            ``global_step``.
        beta1, beta2, eps, weight_decay: as in the update above (Jasper recipe defaults).
        grad_averaging: scale the normalised gradient by ``1 - beta1`` before accumulating it.
        decay_filter: for a plain parameter list, which parameters get weight decay (default: all of them,
            like NVIDIA's recipe); with groups it further restricts the groups' choice.
    """

    def __init__(self, params: ParamsOrGroups, learning_rate: LearningRate = 1e-2, beta1: float = 0.95,
                 beta2: float = 0.98, eps: float = 1e-8, weight_decay: float = 1e-3,
                 grad_averaging: bool = False, decay_filter: DecayFilter | None = None) -> None:
        for name, beta in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"NovoGrad: {name} must be in [0, 1), got {beta}")
        if not eps > 0.0:
            raise ValueError(f"NovoGrad: eps must be > 0, got {eps}")
        if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)):
            raise TypeError(f"NovoGrad: weight_decay must be a number, got {type(weight_decay).__name__}")
        super().__init__(_as_lr(learning_rate), list(params), float(weight_decay))
        keep = decay_filter or decay_all
        # The base class decides per-group flags; for a plain list it would skip names with gamma/beta.
        group_flags = self.decay_flags if self.is_group else (weight_decay > 0,) * len(self._parameters)
        self.decay_flags = tuple(bool(flag and keep(p)) for flag, p in zip(group_flags, self._parameters))
        self.exec_weight_decay = any(self.decay_flags)

        self.beta1 = Tensor(beta1, ms.float32)
        self.beta2 = Tensor(beta2, ms.float32)
        self.one_minus_beta1 = Tensor(1.0 - beta1, ms.float32)
        self.one_minus_beta2 = Tensor(1.0 - beta2, ms.float32)
        self.eps = Tensor(eps, ms.float32)
        self.grad_averaging = bool(grad_averaging)
        self.moments = ParameterTuple(
            Parameter(Tensor(np.zeros(p.shape, np.float32)), name=f"novograd_m.{p.name}", requires_grad=False)
            for p in self._parameters)
        self.grad_norms = ParameterTuple(
            Parameter(Tensor(np.zeros((), np.float32)), name=f"novograd_v.{p.name}", requires_grad=False)
            for p in self._parameters)

    @ms.jit(backend="ms_backend")   # one compiled update in PyNative too; a no-op inside a graph-mode step
    def construct(self, gradients: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """Apply one update; ``gradients`` line up with ``self.parameters``.  Advances ``global_step``."""
        gradients = self.flatten_gradients(gradients)
        lr = self.get_lr()
        weight_decay = self.get_weight_decay()
        self.assignadd(self.global_step, self.global_step_increase_tensor)
        b1, b2, c1, c2, eps, avg = (self.beta1, self.beta2, self.one_minus_beta1, self.one_minus_beta2, self.eps,
                                    self.grad_averaging)
        params, moments, norms, flags = self._parameters, self.moments, self.grad_norms, self.decay_flags
        # Graph mode takes neither a partial of a partial nor *-unpacking here, hence the spelled-out cases.
        if self.is_group_lr:   # a learning rate (schedule) per parameter: lr and weight_decay are tuples
            return self.hyper_map(ops.partial(_novograd_update, b1, b2, c1, c2, eps, avg),
                                  lr, weight_decay, params, moments, norms, gradients, flags)
        if self.is_group:      # one learning rate, a weight decay per parameter
            return self.hyper_map(ops.partial(_novograd_update, b1, b2, c1, c2, eps, avg, lr),
                                  weight_decay, params, moments, norms, gradients, flags)
        return self.hyper_map(ops.partial(_novograd_update, b1, b2, c1, c2, eps, avg, lr, weight_decay),
                              params, moments, norms, gradients, flags)


def build_optimizer(params: Iterable[Parameter], cfg: OptimConfig, total_steps: int, *,
                    decay_filter: DecayFilter | None = None) -> nn.Optimizer:
    """The optimizer ``cfg.name`` names, with the per-step LR of ``lr_schedule(total_steps, cfg)``.

    params: the parameters to train (e.g. ``net.trainable_params()``); take gradients with respect to the
    returned optimizer's ``parameters`` (same order).  ``decay_filter`` picks the parameters that get
    ``cfg.weight_decay`` (default all, see the module docstring).  ``cfg.grad_clip`` belongs to the train step.

    * ``novograd``: ``NovoGrad`` (betas = ``cfg.betas``).
    * ``adamw``: ``nn.AdamWeightDecay`` — MindSpore's decoupled-decay Adam as an ``nn.Optimizer`` (the other
      AdamW, ``mindspore.experimental.optim.AdamW``, follows a different optimizer/LR-scheduler API).  It applies
      no bias correction, so its first steps differ from PyTorch's AdamW (about 0.35× with betas (0.95, 0.98));
      LR warmup covers that.
    * ``adam``: ``nn.Adam`` with bias correction (TensorFlow's Adam, the DS-CNN recipe).
    * ``sgd``: ``nn.Momentum`` (``cfg.momentum``, Nesterov with ``cfg.nesterov``; weight decay added to the gradient, i.e. L2).
    """
    if cfg.name not in OPTIMIZERS:
        raise ValueError(f"optim.name must be one of {', '.join(OPTIMIZERS)}; got {cfg.name!r}")
    params = list(params)
    if not params:
        raise ValueError("build_optimizer: no parameters to optimize")
    if cfg.name in ("novograd", "adamw", "adam") and len(cfg.betas) != 2:
        raise ValueError(f"optim.betas must hold two values (beta1, beta2) for {cfg.name}, got {list(cfg.betas)}")
    if cfg.weight_decay < 0:
        raise ValueError(f"optim.weight_decay must be >= 0, got {cfg.weight_decay}")
    learning_rate = Tensor(lr_schedule(total_steps, cfg))
    groups = decay_groups(params, cfg.weight_decay, decay_filter)
    weight_decay = float(cfg.weight_decay)
    if cfg.name == "novograd":
        beta1, beta2 = (float(b) for b in cfg.betas)
        return NovoGrad(groups, learning_rate, beta1=beta1, beta2=beta2, eps=cfg.eps, weight_decay=weight_decay)
    if cfg.name == "adamw":
        beta1, beta2 = (float(b) for b in cfg.betas)
        return nn.AdamWeightDecay(groups, learning_rate, beta1=beta1, beta2=beta2, eps=cfg.eps,
                                  weight_decay=weight_decay)
    if cfg.name == "adam":   # with bias correction, as TensorFlow's Adam (DS-CNN's recipe)
        beta1, beta2 = (float(b) for b in cfg.betas)
        return nn.Adam(groups, learning_rate, beta1=beta1, beta2=beta2, eps=cfg.eps, weight_decay=weight_decay)
    return nn.Momentum(groups, learning_rate, momentum=float(cfg.momentum), weight_decay=weight_decay,
                       use_nesterov=cfg.nesterov)


def set_lr_table(optimizer: nn.Optimizer, table: np.ndarray) -> None:
    """Replace the per-step LR table (same length) of an optimizer built by ``build_optimizer``; a compiled
    train step reads the new values from its next step on."""
    param = optimizer.learning_rate.learning_rate   # the Parameter inside MindSpore's table-indexing schedule
    if tuple(param.shape) != tuple(table.shape):
        raise ValueError(f"LR table of shape {tuple(table.shape)} for an optimizer planned with {tuple(param.shape)}")
    param.set_data(Tensor(np.asarray(table, dtype=np.float32)))
