"""PyTorch Jasper: the network of ``src/models/jasper.py`` built from the same ``Config``, in the module
layout of NVIDIA's DeepLearningExamples Jasper, so its ``state_dict`` keys are NVIDIA's.

PyTorch is an optional dependency (``pip install torch==2.13.0``; not in requirements.txt).  It serves
as the reference for benchmarks and for checking weight conversion between the two frameworks.

State-dict keys (block i, sub-block r, residual source s)::

    encoder.layers.{i}.conv.{4r}.weight          (C_out, C_in, k)   convolution, no bias
    encoder.layers.{i}.conv.{4r+1}.{weight,bias,running_mean,running_var,num_batches_tracked}   BatchNorm
    (conv.{4r+2} ReLU and conv.{4r+3} Dropout have no tensors; the last sub-block has neither)
    encoder.layers.{i}.res.{s}.0.weight          (C_out, C_s, 1)    residual projection
    encoder.layers.{i}.res.{s}.1.*                                  its BatchNorm
    decoder.layers.0.{weight (classes, C, 1), bias (classes,)}

Semantics match the MindSpore model on valid frames: every convolution reads its input zeroed at
frames ``>= length`` (lengths updated by each convolution), symmetric padding ``(k // 2) * dilation``,
residual projections read their sources masked with the block's input lengths, BN eps/momentum from
the config (PyTorch momentum convention), ReLU, dropout, log-softmax.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

try:
    import torch
    import torch.nn.functional as F
    from torch import Tensor, nn
except ImportError as e:  # an optional dependency: say how to get it
    raise ImportError("bench/torch_jasper.py needs PyTorch, an optional dependency of the benchmarks: "
                      "pip install torch==2.13.0") from e

from src.config import Config
from src.models.jasper import BlockConfig, JasperConfig as ModelConfig
from src.text.labels import load_labels

__all__ = ["MaskedConv1d", "JasperBlock", "JasperEncoder", "JasperDecoder", "TorchJasper", "build_torch_model",
           "mindspore_state_from_torch", "NovoGrad", "TrainStep"]


def conv_output_length(lengths: Tensor, kernel: int, stride: int, dilation: int, padding: int) -> Tensor:
    """lengths (B,) integer → valid frames after the convolution (B,), the same formula as the MindSpore model."""
    return torch.div(lengths + 2 * padding - dilation * (kernel - 1) - 1, stride, rounding_mode="floor") + 1


def zero_beyond(x: Tensor, lengths: Tensor) -> Tensor:
    """x (B, C, T), lengths (B,) → x with frames ``t >= lengths[b]`` set to 0."""
    frames = torch.arange(x.shape[-1], device=x.device)
    return x * (frames[None, :] < lengths[:, None]).unsqueeze(1).to(x.dtype)


class MaskedConv1d(nn.Conv1d):
    """A Conv1d that zeroes its input beyond the valid lengths and returns the new lengths.

    x (B, C_in, T), lengths (B,) → (B, C_out, T'), lengths' (B,).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, dilation: int = 1,
                 bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel, stride=stride, padding=(kernel // 2) * dilation,
                         dilation=dilation, bias=bias)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        y = super().forward(zero_beyond(x, lengths))
        return y, conv_output_length(lengths, self.kernel_size[0], self.stride[0], self.dilation[0], self.padding[0])


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int, dilation: int,
             model: ModelConfig) -> list[nn.Module]:
    return [MaskedConv1d(in_channels, out_channels, kernel, stride, dilation),
            nn.BatchNorm1d(out_channels, eps=model.bn_eps, momentum=model.bn_momentum)]


class JasperBlock(nn.Module):
    """``repeat`` × (masked conv → BN → ReLU → dropout); the last sub-block's ReLU and dropout (``mout``)
    follow the sum with the residual projections (one conv + BN per residual source)."""

    def __init__(self, block: BlockConfig, in_channels: int, residual_channels: Sequence[int],
                 model: ModelConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for r in range(block.repeat):
            layers += _conv_bn(channels, block.filters, block.kernel, block.stride, block.dilation, model)
            if r < block.repeat - 1:
                layers += [nn.ReLU(), nn.Dropout(block.dropout)]
            channels = block.filters
        self.conv = nn.ModuleList(layers)
        self.res = nn.ModuleList(nn.ModuleList(_conv_bn(c, block.filters, 1, 1, 1, model))
                                 for c in residual_channels)
        self.mout = nn.Sequential(nn.ReLU(), nn.Dropout(block.dropout))

    def forward(self, x: Tensor, lengths: Tensor, sources: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """x (B, C_in, T), lengths (B,), sources: residual inputs (B, C_s, T) of the same length →
        (B, filters, T'), lengths' (B,)."""
        in_lengths = lengths
        for layer in self.conv:
            if isinstance(layer, MaskedConv1d):
                x, lengths = layer(x, lengths)
            else:
                x = layer(x)
        for projection, source in zip(self.res, sources):
            res, _ = projection[0](source, in_lengths)
            x = x + projection[1](res)
        return self.mout(x), lengths


class JasperEncoder(nn.Module):
    """features (B, n_mels, T), lengths (B,) → encoded (B, C_last, T'), lengths (B,).

    Dense residual bookkeeping as in the MindSpore model: the list of residual sources starts with the
    input, a dense residual block appends its output, any other block restarts the list with its own.
    """

    def __init__(self, model: ModelConfig, in_channels: int) -> None:
        super().__init__()
        plan = model.residual_plan(in_channels)  # the plan the MindSpore model builds from too
        self.layers = nn.ModuleList([JasperBlock(b, c_in, list(sources), model) for b, c_in, sources, _ in plan])
        self.keeps_sources = tuple(keep for *_, keep in plan)
        self.out_channels = model.blocks[-1].filters

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        sources = [x]
        for block, keep in zip(self.layers, self.keeps_sources):
            x, lengths = block(x, lengths, sources)
            sources = sources + [x] if keep else [x]
        return x, lengths


class JasperDecoder(nn.Module):
    """encoded (B, C, T) → log-probabilities (B, T, num_classes)."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Conv1d(in_channels, num_classes, 1, bias=True))

    def forward(self, x: Tensor) -> Tensor:
        return F.log_softmax(self.layers(x).transpose(1, 2), dim=-1)


class TorchJasper(nn.Module):
    """forward(features (B, n_mels, T) float32, lengths (B,) int) →
    (log_probs (B, T', num_classes) float32, out_lengths (B,) int64)."""

    def __init__(self, model: ModelConfig, in_channels: int, num_classes: int) -> None:
        super().__init__()
        if not model.blocks:
            raise ValueError("model.blocks is empty")
        self.encoder = JasperEncoder(model, in_channels)
        self.decoder = JasperDecoder(self.encoder.out_channels, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform conv weights, zero decoder bias, unit BN scale (the MindSpore model's init)."""
        for module in self.modules():
            if isinstance(module, nn.Conv1d):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm1d):
                module.reset_parameters()

    def forward(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        x, lengths = self.encoder(features, lengths.long())
        return self.decoder(x), lengths


def build_torch_model(config: Config) -> TorchJasper:
    """The PyTorch twin of ``src.models.jasper.build_model(config)``."""
    if config.model.init != "xavier_uniform":
        raise ValueError(f"build_torch_model supports model.init=xavier_uniform only, got {config.model.init!r}")
    num_classes = load_labels(config.labels_path).num_classes
    return TorchJasper(config.model, config.features.n_mels, num_classes)


_BN_NAMES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}


def mindspore_state_from_torch(model: nn.Module) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch Jasper under the MindSpore model's parameter names and shapes.

    Conv weights (C_out, C_in, k) become (C_out, C_in, 1, k); BatchNorm weight/bias/running_mean/
    running_var become gamma/beta/moving_mean/moving_variance; num_batches_tracked is dropped.
    Returns float32 numpy arrays keyed like ``{p.name for p in ms_model.get_parameters()}``.
    """
    out: dict[str, np.ndarray] = {}
    for prefix, module in model.named_modules():
        if isinstance(module, nn.Conv1d):
            out[f"{prefix}.weight"] = _numpy(module.weight)[:, :, None, :]
            if module.bias is not None:
                out[f"{prefix}.bias"] = _numpy(module.bias)
        elif isinstance(module, nn.BatchNorm1d):
            for torch_name, ms_name in _BN_NAMES.items():
                out[f"{prefix}.{ms_name}"] = _numpy(getattr(module, torch_name))
    expected = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    if len(out) != len(expected):  # a module type this mapping does not know
        raise ValueError(f"mapped {len(out)} tensors but the model has {len(expected)}")
    return out


def _numpy(t: Tensor) -> np.ndarray:
    """A float32 copy (never a view of the live weights)."""
    return np.array(t.detach().cpu().numpy(), dtype=np.float32, copy=True)


class NovoGrad(torch.optim.Optimizer):
    """NovoGrad as ``src.training.optim.NovoGrad`` computes it (one second moment per tensor, weight decay
    added to the normalised gradient, no gradient averaging)::

        v = ||g||² on the first step, else beta2·v + (1 - beta2)·||g||²
        m = beta1·m + g / (sqrt(v) + eps) + weight_decay·w
        w = w - lr·m
    """

    def __init__(self, params, lr: float = 1e-2, betas: tuple[float, float] = (0.95, 0.98), eps: float = 1e-8,
                 weight_decay: float = 1e-3) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g, state = p.grad, self.state[p]
                sq_norm = torch.sum(g * g)
                if not state:
                    state["v"] = sq_norm
                    state["m"] = torch.zeros_like(p)
                else:
                    state["v"] = beta2 * state["v"] + (1 - beta2) * sq_norm
                update = g / (torch.sqrt(state["v"]) + group["eps"])
                if group["weight_decay"]:
                    update.add_(p, alpha=group["weight_decay"])
                state["m"].mul_(beta1).add_(update)
                p.add_(state["m"], alpha=-group["lr"])
        return None


class TrainStep:
    """The PyTorch counterpart of ``src.training.train_step.TrainStep`` (fp32, no loss scaling, no
    accumulation): CTC loss (per-utterance sum over tokens, mean over the batch, zero_infinity),
    backward, global gradient norm, and, when that norm is finite, optional clipping, the optimizer
    step and an optional EMA of the weights.

    ``step(feats (B, n_mels, T), feat_lens (B,), tokens (B, S), token_lens (B,))`` →
    (loss (), finite () bool, grad_norm ()) as detached tensors.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, blank: int, grad_clip: float = 0.0,
                 ema_decay: float = 0.0) -> None:
        self.model, self.optimizer, self.blank = model, optimizer, blank
        self.grad_clip, self.ema_decay = grad_clip, ema_decay
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.ema = [p.detach().clone() for p in self.params] if ema_decay > 0 else []

    def loss(self, feats: Tensor, feat_lens: Tensor, tokens: Tensor, token_lens: Tensor) -> Tensor:
        log_probs, out_lens = self.model(feats, feat_lens)
        return F.ctc_loss(log_probs.transpose(0, 1), tokens, out_lens, token_lens, blank=self.blank,
                          reduction="none", zero_infinity=True).mean()

    def __call__(self, feats: Tensor, feat_lens: Tensor, tokens: Tensor,
                 token_lens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(feats, feat_lens, tokens, token_lens)
        loss.backward()
        grads = [p.grad for p in self.params if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads)
        finite = torch.isfinite(norm)
        if finite:
            if self.grad_clip > 0:
                torch.nn.utils.clip_grads_with_norm_(self.params, self.grad_clip, norm)
            self.optimizer.step()
            with torch.no_grad():
                for average, weight in zip(self.ema, self.params):
                    average.lerp_(weight, 1.0 - self.ema_decay)
        return loss.detach(), finite, norm
