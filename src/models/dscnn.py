"""DS-CNN: the depthwise-separable keyword-spotting network of ARM's ML-KWS-for-MCU ("Hello Edge").

``model(features (B, F, T) float32) -> log_probs (B, num_classes) float32`` for F = 10 MFCC and
T = 49 frames (one second).  The network, exactly as ARM's ``create_ds_cnn_model`` (TF-slim) builds it:

* the MFCC map is an image of height T (time) and width F (coefficients) with one channel;
* ``first``: a kt × kf convolution with stride (st, sf), bias, BatchNorm, ReLU;
* per entry of ``blocks``: a k_t × k_f depthwise convolution (one filter per channel) with stride
  and bias → BatchNorm → ReLU → a 1×1 convolution with bias → BatchNorm → ReLU;
* the average of the whole remaining map per channel, then a fully connected layer with bias.

Conventions of this implementation:

* Padding is TensorFlow's ``SAME``: ``ceil(n / s)`` outputs, ``max((out - 1) s + k - n, 0)`` zeros in
  total, the smaller half before and the larger after (asymmetric, unlike Jasper's).  The pads are
  fixed when the network is built from its input size (``input_frames`` × F), which is why the model
  takes a fixed number of frames (``fixed_frames``); another count is an error at compile time.
  Convolutions pad internally; exported graphs (``exported_form``) use an explicit Pad and a
  'valid' convolution instead (what MindSpore Lite's converter and ONNX take); the numbers are equal.
* BatchNorm has an offset β and no scale (TF-slim's default): each ``nn.BatchNorm2d`` keeps its
  ``gamma`` fixed at 1 and not trainable, so the trainable parameters are exactly ARM's
  (DS-CNN S for 12 classes: 23,180).  ARM's BN decay 0.96 is ``bn_momentum`` 0.04 in the zoo's
  PyTorch convention (weight of the new batch), MindSpore momentum 0.96.
* ARM's DS-CNN has no dropout; weights start Xavier-uniform and biases at zero (slim's defaults).
* Parameter names: ``first.conv``, ``first.bn``, ``blocks.{i}.depthwise``, ``blocks.{i}.dw_bn``,
  ``blocks.{i}.pointwise``, ``blocks.{i}.pw_bn``, ``fc``; src/models/convert_tf.py maps ARM's frozen
  graphs onto them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common import initializer as init

from src.models.base import ZooModel, explicit_padding

# Importing the model caps oneDNN's instruction set (see src/runtime.py) before its first kernel.
import src.runtime  # noqa: E402,F401

__all__ = ["CONFIG", "ConvLayerConfig", "DSCNNConfig", "DSCNN", "SameConv2d", "ConvBNReLU", "DepthwiseSeparable",
           "build", "same_padding", "exported_form", "parse_model_size_info"]

_WEIGHT_INITS = {"xavier_uniform": init.XavierUniform, "xavier_normal": init.XavierNormal,
                 "kaiming_uniform": init.HeUniform, "kaiming_normal": init.HeNormal}


@dataclass(frozen=True)
class ConvLayerConfig:
    """One layer: ``filters`` output channels, ``kernel`` [time, mfcc], ``stride`` [time, mfcc].
    For a depthwise-separable block the kernel and stride are the depthwise convolution's; its
    channels stay those of the block's input and the 1×1 convolution makes ``filters``."""
    filters: int
    kernel: tuple[int, ...] = (3, 3)
    stride: tuple[int, ...] = (1, 1)


def parse_model_size_info(info: Sequence[int]) -> tuple[ConvLayerConfig, tuple[ConvLayerConfig, ...]]:
    """ARM's ``--model_size_info``: ``N`` then N × (filters, kt, kf, st, sf), the first entry being the
    regular convolution → (first, blocks)."""
    info = [int(v) for v in info]
    if not info or info[0] < 1 or len(info) != 1 + 5 * info[0]:
        raise ValueError(f"model_size_info must be N followed by N x (filters, kt, kf, st, sf), got {info}")
    layers = [ConvLayerConfig(info[i], (info[i + 1], info[i + 2]), (info[i + 3], info[i + 4]))
              for i in range(1, len(info), 5)]
    return layers[0], tuple(layers[1:])


_S_FIRST, _S_BLOCKS = parse_model_size_info([5, 64, 10, 4, 2, 2] + [64, 3, 3, 1, 1] * 4)


@dataclass(frozen=True)
class DSCNNConfig:
    """A DS-CNN; the defaults are ARM's DS-CNN S (``model_size_info 5 64 10 4 2 2 64 3 3 1 1 ×4``)."""
    name: str = "dscnn"
    first: ConvLayerConfig = _S_FIRST
    blocks: tuple[ConvLayerConfig, ...] = _S_BLOCKS
    # MFCC frames of one clip: 1 + (clip samples - features.win_length) // features.hop_length
    # (49 for 1 s at 16 kHz with 640/320); the SAME pads are computed for it.
    input_frames: int = 49
    bn_eps: float = 1e-3
    bn_momentum: float = 0.04       # PyTorch convention (weight of the new batch); TF-slim decay 0.96
    init: str = "xavier_uniform"    # slim's xavier_initializer (uniform)

    @property
    def model_size_info(self) -> tuple[int, ...]:
        """The layers in ARM's ``--model_size_info`` notation."""
        layers = (self.first, *self.blocks)
        return (len(layers),) + tuple(v for layer in layers
                                      for v in (layer.filters, *layer.kernel, *layer.stride))

    def validate(self) -> None:
        if self.init not in _WEIGHT_INITS:
            raise ValueError(f"model.init={self.init!r} must be one of {list(_WEIGHT_INITS)}")
        for where, layer in [("model.first", self.first)] + [
                (f"model.blocks[{i}]", b) for i, b in enumerate(self.blocks)]:
            if layer.filters < 1:
                raise ValueError(f"{where}.filters={layer.filters} must be >= 1")
            for key in ("kernel", "stride"):
                value = getattr(layer, key)
                if len(value) != 2 or min(value) < 1:
                    raise ValueError(f"{where}.{key}={list(value)} must be two integers >= 1 [time, mfcc]")
        if self.input_frames < 1:
            raise ValueError(f"model.input_frames={self.input_frames} must be >= 1")
        if not self.bn_eps > 0:
            raise ValueError(f"model.bn_eps={self.bn_eps} must be > 0")
        if not 0 < self.bn_momentum <= 1:
            raise ValueError(f"model.bn_momentum={self.bn_momentum} must be within (0, 1]")


CONFIG = DSCNNConfig


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TensorFlow's SAME padding along one axis: (output size, zeros before, zeros after)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def _weight_init(name: str) -> init.Initializer:
    try:
        return _WEIGHT_INITS[name]()
    except KeyError:
        raise ValueError(f"unknown model.init {name!r}; choose one of {sorted(_WEIGHT_INITS)}") from None


class SameConv2d(nn.Cell):
    """2-D convolution with bias and TensorFlow's SAME padding for a fixed input size.

    x (B, C_in, H, W) → (B, C_out, ceil(H / s_h), ceil(W / s_w)); ``groups = C_in = C_out`` makes it
    depthwise.  ``weight``: (C_out, C_in / groups, k_h, k_w); ``bias``: (C_out,).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: Sequence[int], stride: Sequence[int],
                 in_size: tuple[int, int], groups: int = 1, weight_init: str = "xavier_uniform") -> None:
        super().__init__()
        kernel, stride = tuple(int(k) for k in kernel), tuple(int(s) for s in stride)
        (out_h, top, bottom), (out_w, left, right) = (same_padding(in_size[0], kernel[0], stride[0]),
                                                      same_padding(in_size[1], kernel[1], stride[1]))
        self.in_size, self.out_size = tuple(in_size), (out_h, out_w)
        self.padding = (top, bottom, left, right)
        self.weight = Parameter(init.initializer(_weight_init(weight_init),
                                                 (out_channels, in_channels // groups, *kernel), ms.float32),
                                name="weight")
        self.bias = Parameter(init.initializer("zeros", (out_channels,), ms.float32), name="bias")
        self.bias_add = ops.BiasAdd()
        padded = any(self.padding)
        self.conv2d = ops.Conv2D(out_channel=out_channels, kernel_size=kernel, stride=stride, group=groups,
                                 pad_mode="pad" if padded else "valid", pad=self.padding if padded else 0)
        # the form exported graphs use (module docstring); read when a graph compiles
        self.explicit_pad = False
        self.pad = ops.Pad(((0, 0), (0, 0), (top, bottom), (left, right))) if padded else None
        self.conv2d_valid = ops.Conv2D(out_channel=out_channels, kernel_size=kernel, stride=stride, group=groups,
                                       pad_mode="valid")

    def construct(self, x: Tensor) -> Tensor:
        if self.explicit_pad:
            y = self.conv2d_valid(self.pad(x) if self.pad is not None else x, self.weight)
        else:
            y = self.conv2d(x, self.weight)
        return self.bias_add(y, self.bias)


def _batch_norm(channels: int, model: DSCNNConfig) -> nn.BatchNorm2d:
    """BatchNorm with offset β only: γ stays 1 and is not trained (TF-slim's ``scale=False``)."""
    bn = nn.BatchNorm2d(channels, eps=model.bn_eps, momentum=1.0 - model.bn_momentum)
    bn.gamma.requires_grad = False
    return bn


class ConvBNReLU(nn.Cell):
    """The first layer: SAME convolution with bias → BatchNorm (β only) → ReLU."""

    def __init__(self, in_channels: int, layer: ConvLayerConfig, in_size: tuple[int, int], model: DSCNNConfig) -> None:
        super().__init__()
        self.conv = SameConv2d(in_channels, layer.filters, layer.kernel, layer.stride, in_size,
                               weight_init=model.init)
        self.bn = _batch_norm(layer.filters, model)
        self.relu = nn.ReLU()
        self.out_size = self.conv.out_size

    def construct(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


class DepthwiseSeparable(nn.Cell):
    """Depthwise SAME convolution with bias → BN → ReLU → 1×1 convolution with bias → BN → ReLU."""

    def __init__(self, in_channels: int, layer: ConvLayerConfig, in_size: tuple[int, int],
                 model: DSCNNConfig) -> None:
        super().__init__()
        self.depthwise = SameConv2d(in_channels, in_channels, layer.kernel, layer.stride, in_size,
                                    groups=in_channels, weight_init=model.init)
        self.dw_bn = _batch_norm(in_channels, model)
        self.pointwise = SameConv2d(in_channels, layer.filters, (1, 1), (1, 1), self.depthwise.out_size,
                                    weight_init=model.init)
        self.pw_bn = _batch_norm(layer.filters, model)
        self.relu = nn.ReLU()
        self.out_size = self.pointwise.out_size

    def construct(self, x: Tensor) -> Tensor:
        x = self.relu(self.dw_bn(self.depthwise(x)))
        return self.relu(self.pw_bn(self.pointwise(x)))


def exported_form(model: nn.Cell):
    """Within the block every SameConv2d of ``model`` compiles to an explicit Pad + 'valid' convolution."""
    return explicit_padding(model, SameConv2d)


class DSCNN(ZooModel):
    """ARM's DS-CNN: features (B, in_features, fixed_frames) float32 → log_probs (B, num_classes) float32.

    The same in training mode (batch statistics in BatchNorm).  ``fixed_frames`` is
    ``model.input_frames`` (49: one second of MFCC frames); other frame counts are refused.
    """

    input_names = ("features",)
    output_names = ("log_probs",)

    def __init__(self, model: DSCNNConfig, in_features: int, num_classes: int) -> None:
        super().__init__()
        model.validate()
        if in_features < 1 or num_classes < 1:
            raise ValueError(f"DS-CNN needs in_features >= 1 and num_classes >= 1, got {in_features}, {num_classes}")
        self.in_features = in_features
        self.num_classes = num_classes
        self.fixed_frames = model.input_frames
        size = (model.input_frames, in_features)          # image height (time) × width (MFCC)
        self.first = ConvBNReLU(1, model.first, size, model)
        size, channels = self.first.out_size, model.first.filters
        blocks = []
        for layer in model.blocks:
            blocks.append(DepthwiseSeparable(channels, layer, size, model))
            size, channels = blocks[-1].out_size, layer.filters
        self.blocks = nn.CellList(blocks)
        self.final_size = size                             # the map the average pool covers
        self.fc = nn.Dense(channels, num_classes, weight_init=_weight_init(model.init), bias_init="zeros")
        self.num_blocks = len(blocks)

    def exported_form(self, file_format: str | None = None):
        return exported_form(self)

    def construct(self, features: Tensor) -> Tensor:
        if features.shape[-1] != self.fixed_frames or features.shape[-2] != self.in_features:
            raise ValueError("DS-CNN takes features of shape (B, in_features, fixed_frames) "
                             "(10 MFCC x 49 frames for ARM's models)")
        x = features.transpose(0, 2, 1).expand_dims(1)     # (B, 1, T, F): time is the height axis
        x = self.first(x)
        for i in range(self.num_blocks):
            x = self.blocks[i](x)
        x = x.mean(axis=(2, 3))                              # average pool over the whole map
        logits = self.fc(x)
        if logits.dtype != ms.float32:
            logits = logits.astype(ms.float32)
        return ops.log_softmax(logits, axis=-1)


def build(model: DSCNNConfig, in_features: int, num_classes: int) -> DSCNN:
    """The registry's entry: a DS-CNN for ``in_features`` MFCC rows and ``num_classes`` outputs."""
    return DSCNN(model, in_features, num_classes)
