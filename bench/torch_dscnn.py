"""The zoo's DS-CNN (src/models/dscnn.py) in PyTorch, for the keyword-spotting benchmark.

``TorchDSCNN(features (B, F, T)) -> log_probs (B, classes)``, built from the settings of a
``DSCNNConfig`` (``config.model``, or any object with the same attributes: the benchmark passes them
as plain values so that its PyTorch process never loads MindSpore) and with the same semantics as the
MindSpore cell:

* the MFCC map is an image (B, 1, T, F): time is the height, coefficients the width;
* TensorFlow's SAME padding for the fixed input size (``ceil(n / s)`` outputs; the smaller half of the
  zeros before, the larger after), written as an explicit ``F.pad`` + a 'valid' convolution;
* every convolution has a bias; BatchNorm has an offset and a scale fixed at 1 (not trained), with
  ``bn_eps`` and ``bn_momentum`` (PyTorch's convention, as the config states it);
* a depthwise convolution, BN, ReLU, a 1×1 convolution, BN, ReLU per block; the mean over the map,
  a linear layer with bias, log-softmax.

Parameter names follow the MindSpore cell's (``first.conv``, ``first.bn``, ``blocks.{i}.depthwise``,
``blocks.{i}.dw_bn``, ``blocks.{i}.pointwise``, ``blocks.{i}.pw_bn``, ``fc``), with PyTorch's BatchNorm
names (weight/bias/running_mean/running_var for gamma/beta/moving_mean/moving_variance), so
``load_mindspore_weights`` copies a MindSpore DS-CNN's weights one to one.  Weights start as the
MindSpore cell's (Xavier-uniform convolutions and linear layer, zero biases) with torch's own random
numbers.  PyTorch is an optional dependency (``pip install torch==2.13.0``).
"""
from __future__ import annotations

from typing import Any, Mapping

try:
    import torch
    import torch.nn.functional as F
    from torch import Tensor, nn
except ImportError as e:  # an optional dependency: say how to get it
    raise ImportError("bench/torch_dscnn.py needs PyTorch, an optional dependency of the benchmarks: "
                      "pip install torch==2.13.0") from e

__all__ = ["TorchDSCNN", "build_torch_dscnn", "load_mindspore_weights", "same_padding"]

_INITS = {"xavier_uniform": nn.init.xavier_uniform_, "xavier_normal": nn.init.xavier_normal_,
          "kaiming_uniform": nn.init.kaiming_uniform_, "kaiming_normal": nn.init.kaiming_normal_}
# MindSpore BatchNorm names → PyTorch's
_BN_NAMES = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TensorFlow's SAME padding along one axis: (output size, zeros before, zeros after)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


class SameConv2d(nn.Module):
    """x (B, C_in, H, W) → (B, C_out, ceil(H / s_h), ceil(W / s_w)): SAME zeros, then a 'valid' convolution."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, ...], stride: tuple[int, ...],
                 in_size: tuple[int, int], groups: int = 1, init: str = "xavier_uniform") -> None:
        super().__init__()
        (out_h, top, bottom), (out_w, left, right) = (same_padding(in_size[0], kernel[0], stride[0]),
                                                      same_padding(in_size[1], kernel[1], stride[1]))
        self.out_size = (out_h, out_w)
        self.pad = (left, right, top, bottom)           # F.pad: last axis first
        self.conv = nn.Conv2d(in_channels, out_channels, tuple(kernel), tuple(stride), groups=groups, bias=True)
        _INITS[init](self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    @property
    def weight(self) -> Tensor:
        return self.conv.weight

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, self.pad) if any(self.pad) else x)


def _batch_norm(channels: int, model: Any) -> nn.BatchNorm2d:
    """BatchNorm with its scale fixed at 1 (not trained), as TF-slim's ``scale=False``."""
    bn = nn.BatchNorm2d(channels, eps=model.bn_eps, momentum=model.bn_momentum)
    bn.weight.requires_grad_(False)
    return bn


class ConvBNReLU(nn.Module):
    def __init__(self, in_channels: int, layer: Any, in_size: tuple[int, int],
                 model: Any) -> None:
        super().__init__()
        self.conv = SameConv2d(in_channels, layer.filters, layer.kernel, layer.stride, in_size, init=model.init)
        self.bn = _batch_norm(layer.filters, model)
        self.out_size = self.conv.out_size

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


class DepthwiseSeparable(nn.Module):
    def __init__(self, in_channels: int, layer: Any, in_size: tuple[int, int],
                 model: Any) -> None:
        super().__init__()
        self.depthwise = SameConv2d(in_channels, in_channels, layer.kernel, layer.stride, in_size,
                                    groups=in_channels, init=model.init)
        self.dw_bn = _batch_norm(in_channels, model)
        self.pointwise = SameConv2d(in_channels, layer.filters, (1, 1), (1, 1), self.depthwise.out_size,
                                    init=model.init)
        self.pw_bn = _batch_norm(layer.filters, model)
        self.out_size = self.pointwise.out_size

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.dw_bn(self.depthwise(x)))
        return F.relu(self.pw_bn(self.pointwise(x)))


class TorchDSCNN(nn.Module):
    """features (B, in_features, input_frames) float32 → log_probs (B, num_classes) float32."""

    def __init__(self, model: Any, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.in_features, self.fixed_frames = in_features, model.input_frames
        size = (model.input_frames, in_features)
        self.first = ConvBNReLU(1, model.first, size, model)
        size, channels = self.first.out_size, model.first.filters
        blocks = []
        for layer in model.blocks:
            blocks.append(DepthwiseSeparable(channels, layer, size, model))
            size, channels = blocks[-1].out_size, layer.filters
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(channels, num_classes)
        _INITS[model.init](self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, features: Tensor) -> Tensor:
        if tuple(features.shape[1:]) != (self.in_features, self.fixed_frames):
            raise ValueError(f"DS-CNN takes (B, {self.in_features}, {self.fixed_frames}), got {tuple(features.shape)}")
        x = features.transpose(1, 2).unsqueeze(1)          # (B, 1, T, F)
        x = self.first(x)
        for block in self.blocks:
            x = block(x)
        return F.log_softmax(self.fc(x.mean(dim=(2, 3))), dim=-1)


def build_torch_dscnn(model_cfg: Any, in_features: int, num_classes: int) -> TorchDSCNN:
    """The PyTorch DS-CNN of a ``DSCNNConfig`` (``config.model``; attributes ``first``, ``blocks`` (each
    ``filters``, ``kernel``, ``stride``), ``input_frames``, ``bn_eps``, ``bn_momentum``, ``init``)."""
    return TorchDSCNN(model_cfg, in_features, num_classes)


def _torch_name(ms_name: str) -> str:
    """``blocks.0.dw_bn.gamma`` → ``blocks.0.dw_bn.weight``; ``first.conv.weight`` → ``first.conv.conv.weight``."""
    head, _, last = ms_name.rpartition(".")
    if last in _BN_NAMES:
        return f"{head}.{_BN_NAMES[last]}"
    if head.endswith(("conv", "depthwise", "pointwise")):   # SameConv2d keeps its nn.Conv2d as .conv
        return f"{head}.conv.{last}"
    return ms_name


def load_mindspore_weights(model: TorchDSCNN, weights: Mapping[str, "object"]) -> None:
    """Copy a MindSpore DS-CNN's parameters (name → numpy array, e.g. ``{p.name: p.asnumpy()}``) into
    ``model``; every tensor of ``model`` must be given once (num_batches_tracked excepted)."""
    state = model.state_dict()
    wanted = {k for k in state if not k.endswith("num_batches_tracked")}
    given = {_torch_name(k): v for k, v in weights.items()}
    missing, unknown = wanted - set(given), set(given) - wanted
    if missing or unknown:
        raise KeyError(f"weights do not match the PyTorch DS-CNN: missing {sorted(missing)}, unknown {sorted(unknown)}")
    with torch.no_grad():
        for name, value in given.items():
            target = state[name]
            source = torch.as_tensor(value, dtype=target.dtype)
            if source.shape != target.shape:
                raise ValueError(f"{name}: shape {tuple(source.shape)} for {tuple(target.shape)}")
            target.copy_(source)
