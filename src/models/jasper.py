"""Jasper: a CTC acoustic model of masked 1-D convolutions in (dense) residual blocks.

``config.model.blocks`` lists the prologue, the B residual blocks and the epilogue layers; a 1×1
convolution with bias (the decoder) maps to ``num_classes`` and a log-softmax follows.

Conventions of this implementation:

* Activations inside the network are kept as ``(B, C, 1, T)``: every convolution is one Conv2D with
  a ``(1, k)`` kernel (what ``nn.Conv1d`` runs too) and BatchNorm2d applies directly, so the graph
  has no per-layer expand/squeeze/reshape nodes (same speed as nn.Conv1d + nn.BatchNorm1d, fewer
  nodes in exported graphs).  Weights have the shape ``(C_out, C_in, 1, k)``, as in ``nn.Conv1d``.
* Masking (Jasper's masked convolutions): every tensor a convolution reads is zero at frames
  ``>= length``.  Rather than at each consumer, a tensor is masked once where it is produced (the
  input features, each sub-block output, each block output), so one multiply serves the next
  convolution and every residual projection reading the same block output.  The mask changes only
  when a convolution changes the frame count (the strided prologue), so it is rebuilt only there.
* Padding is symmetric, ``(k // 2) * dilation`` zeros on both sides (``pad_mode='same'`` is
  asymmetric for stride 2).  Training and checkpoint inference let the convolution pad (an explicit Pad
  op took 18 % of a CPU training step); exported graphs (``exported_form``) use an explicit Pad and a
  ``'valid'`` convolution, which MindSpore Lite's converter and ONNX take (Lite 2.0 fails to infer the
  shapes of a padded Conv2D).  Both compute the same numbers.
* Parameter names mirror NVIDIA's Jasper tensors one-to-one: ``encoder.layers.{i}.conv.{j}``
  (conv at j = 0, 4, 8, …, its BatchNorm at j + 1, ReLU and dropout at j + 2, j + 3),
  ``encoder.layers.{i}.res.{r}.{0,1}`` (projection conv, BatchNorm) and ``decoder.layers.0``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common import initializer as init

from src.models.base import IntLike, ZooModel, explicit_padding

# Importing the model caps oneDNN's instruction set (see src/runtime.py) before its first kernel.
import src.runtime  # noqa: E402,F401

__all__ = ["CONFIG", "BlockConfig", "JasperConfig", "Jasper", "JasperBlock", "JasperEncoder", "JasperDecoder",
           "PaddedConv1d", "build", "build_model", "exported_form", "conv_output_length", "length_mask",
           "count_parameters"]


@dataclass(frozen=True)
class BlockConfig:
    """One Jasper block: ``repeat`` sub-blocks of conv → BN → ReLU → dropout (the last one's ReLU and
    dropout come after the residual sum)."""
    filters: int
    repeat: int = 1
    kernel: int = 11
    stride: int = 1
    dilation: int = 1
    dropout: float = 0.0
    residual: bool = False      # takes (dense) residual inputs from earlier blocks


@dataclass(frozen=True)
class JasperConfig:
    """A Jasper network: prologue, B blocks and epilogue as one list."""
    name: str = "jasper"
    blocks: tuple[BlockConfig, ...] = ()
    dense_residual: bool = True  # each residual block sees every earlier block's output (Jasper "DR")
    bn_eps: float = 1e-3
    bn_momentum: float = 0.1     # PyTorch convention (weight of the new batch statistic)
    init: str = "xavier_uniform"

    def validate(self) -> None:
        if self.init not in _WEIGHT_INIT_NAMES:
            raise ValueError(f"model.init={self.init!r} must be one of {list(_WEIGHT_INIT_NAMES)}")
        for i, b in enumerate(self.blocks):
            for key in ("filters", "repeat", "kernel", "stride", "dilation"):
                if getattr(b, key) < 1:
                    raise ValueError(f"model.blocks[{i}].{key}={getattr(b, key)} must be >= 1")
            if not 0 <= b.dropout < 1:
                raise ValueError(f"model.blocks[{i}].dropout={b.dropout} must be within [0, 1)")
        if not 0 < self.bn_momentum <= 1 or not self.bn_eps > 0:
            raise ValueError("model.bn_momentum must be within (0, 1] and model.bn_eps > 0")

    def residual_plan(self, in_channels: int) -> list[tuple[BlockConfig, int, tuple[int, ...], bool]]:
        """Per block: (block, input channels, channels of its residual sources, whether its output
        joins the sources of later blocks).  NVIDIA's rule: the sources start with the encoder input,
        a dense residual block appends its output, any other block restarts them with its own."""
        if not self.blocks:
            raise ValueError("model.blocks is empty")
        plan, channels, sources = [], in_channels, [in_channels]
        for block in self.blocks:
            keep = block.residual and self.dense_residual
            plan.append((block, channels, tuple(sources) if block.residual else (), keep))
            sources = sources + [block.filters] if keep else [block.filters]
            channels = block.filters
        return plan


CONFIG = JasperConfig
_WEIGHT_INIT_NAMES = ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal")

_WEIGHT_INITS = {
    "xavier_uniform": init.XavierUniform,
    "xavier_normal": init.XavierNormal,
    "kaiming_uniform": init.HeUniform,
    "kaiming_normal": init.HeNormal,
}

def conv_output_length(length: IntLike, kernel: int, stride: int = 1, dilation: int = 1,
                       padding: int = 0) -> IntLike:
    """Valid frames after a convolution; works on Python ints, numpy arrays and int tensors."""
    return (length + (2 * padding - dilation * (kernel - 1) - 1)) // stride + 1


def length_mask(lengths: Tensor, num_frames: int, dtype: ms.dtype) -> Tensor:
    """lengths: (B,) int32 → (B, 1, 1, num_frames) in ``dtype``: 1 for frames < length, else 0."""
    frames = ops.arange(num_frames, dtype=lengths.dtype).reshape(1, 1, 1, num_frames)
    return (frames < lengths.reshape(-1, 1, 1, 1)).astype(dtype)


def _masked(x: Tensor, mask: Tensor) -> Tensor:
    """x * mask in x's dtype (under mixed precision the mask may have been built in another one)."""
    if mask.dtype != x.dtype:
        mask = mask.astype(x.dtype)
    return x * mask


def _weight_init(name: str) -> init.Initializer:
    try:
        return _WEIGHT_INITS[name]()
    except KeyError:
        raise ValueError(f"unknown model.init {name!r}; choose one of {sorted(_WEIGHT_INITS)}") from None


def _dropout(p: float) -> nn.Cell:
    # Identity keeps the cell's slot (and so NVIDIA's indices) without a no-op dropout kernel.
    return nn.Dropout(p=p) if p > 0 else nn.Identity()


class PaddedConv1d(nn.Cell):
    """Symmetrically zero-padded 1-D convolution: x (B, C_in, 1, T) → (B, C_out, 1, T').

    This is Jasper's masked convolution minus the mask: its input must already be zero at frames
    ``>= length`` (the encoder masks tensors where they are produced), which makes the result
    independent of how far a batch is padded.
    ``weight``: (C_out, C_in, 1, k); ``bias`` (C_out,) only with ``has_bias``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1,
                 dilation: int = 1, has_bias: bool = False, weight_init: str = "xavier_uniform") -> None:
        super().__init__()
        if stride > 1 and dilation > 1:
            raise ValueError("a convolution cannot have both stride and dilation > 1")
        self.kernel, self.stride, self.dilation = kernel, stride, dilation
        self.padding = (kernel // 2) * dilation
        self.weight = Parameter(init.initializer(_weight_init(weight_init), (out_channels, in_channels, 1, kernel),
                                                 ms.float32), name="weight")
        self.has_bias = has_bias
        if has_bias:
            self.bias = Parameter(init.initializer("zeros", (out_channels,), ms.float32), name="bias")
            self.bias_add = ops.BiasAdd()
        self.conv2d = ops.Conv2D(out_channel=out_channels, kernel_size=(1, kernel), pad_mode="pad",
                                 pad=(0, 0, self.padding, self.padding), stride=(1, stride), dilation=(1, dilation))
        # the form exported graphs use (module docstring); a build-time switch, read when a graph compiles
        self.explicit_pad = False
        self.pad = ops.Pad(((0, 0), (0, 0), (0, 0), (self.padding, self.padding))) if self.padding else None
        self.conv2d_valid = ops.Conv2D(out_channel=out_channels, kernel_size=(1, kernel), pad_mode="valid",
                                       stride=(1, stride), dilation=(1, dilation))
        # Known when the net is built: stride 1 with an odd kernel keeps every length unchanged.
        self.changes_length = stride != 1 or 2 * self.padding != dilation * (kernel - 1)

    def output_length(self, length: IntLike) -> IntLike:
        return conv_output_length(length, self.kernel, self.stride, self.dilation, self.padding)

    def construct(self, x: Tensor) -> Tensor:
        if self.explicit_pad:
            y = self.conv2d_valid(self.pad(x) if self.pad is not None else x, self.weight)
        else:
            y = self.conv2d(x, self.weight)
        if self.has_bias:
            y = self.bias_add(y, self.bias)
        return y


def exported_form(model: nn.Cell):
    """Within the block, every PaddedConv1d of ``model`` compiles to the exported form (explicit Pad,
    'valid' convolution): wrap ``ms.export``.  The model's other graphs are left as they are."""
    return explicit_padding(model, PaddedConv1d)


def _batch_norm(channels: int, model: JasperConfig) -> nn.BatchNorm2d:
    # MindSpore's momentum weighs the running statistic; PyTorch's (the config's) weighs the new batch.
    return nn.BatchNorm2d(channels, eps=model.bn_eps, momentum=1.0 - model.bn_momentum)


class JasperBlock(nn.Cell):
    """``repeat`` sub-blocks of conv → BN → ReLU → dropout; in the last one the residual sum comes
    before ReLU and dropout.  Each residual source gets its own 1×1 conv + BN projection.  Kernel,
    stride and dilation apply to every sub-block's convolution (as in NVIDIA's Jasper).

    ``conv`` holds [conv, BN, ReLU, dropout] × (repeat − 1) + [conv, BN]; ``res.{r}`` holds
    [conv, BN] for residual source r; ``mout`` is the final ReLU + dropout.
    """

    def __init__(self, block: BlockConfig, in_channels: int, residual_channels: Sequence[int],
                 model: JasperConfig) -> None:
        super().__init__()
        if block.repeat < 1:
            raise ValueError(f"block repeat must be >= 1, got {block.repeat}")
        layers: list[nn.Cell] = []
        channels = in_channels
        for r in range(block.repeat):
            layers += [PaddedConv1d(channels, block.filters, block.kernel, block.stride, block.dilation,
                                    weight_init=model.init),
                       _batch_norm(block.filters, model)]
            if r < block.repeat - 1:
                layers += [nn.ReLU(), _dropout(block.dropout)]
            channels = block.filters
        self.conv = nn.CellList(layers)
        self.res = nn.CellList([
            nn.CellList([PaddedConv1d(c, block.filters, 1, weight_init=model.init), _batch_norm(block.filters, model)])
            for c in residual_channels])
        self.mout = nn.SequentialCell([nn.ReLU(), _dropout(block.dropout)])
        self.repeat = block.repeat
        self.num_res = len(residual_channels)
        self.changes_length = self.conv[0].changes_length
        if self.num_res and self.changes_length:
            raise ValueError("a residual block must keep the frame count (stride 1, odd kernel): "
                             f"got kernel {block.kernel}, stride {block.stride}")

    def construct(self, x: Tensor, lengths: Tensor, mask: Tensor,
                  sources: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, Tensor]:
        """x: (B, C_in, 1, T), lengths: (B,) int32, mask: (B, 1, 1, T) for those lengths, sources: the
        residual inputs (B, C_r, 1, T) (all zero beyond ``lengths``; ignored without residuals).

        Returns the output (B, filters, 1, T') zeroed beyond the new lengths, the lengths (B,) and
        their mask (B, 1, 1, T')."""
        for r in range(self.repeat):
            conv = self.conv[4 * r]
            x = conv(x)
            if self.changes_length:
                lengths = conv.output_length(lengths)
                mask = length_mask(lengths, x.shape[-1], x.dtype)
            x = self.conv[4 * r + 1](x)
            if r < self.repeat - 1:
                x = _masked(self.conv[4 * r + 3](self.conv[4 * r + 2](x)), mask)
        for r in range(self.num_res):
            projection = self.res[r]
            x = x + projection[1](projection[0](sources[r]))
        return _masked(self.mout(x), mask), lengths, mask


class JasperEncoder(nn.Cell):
    """features (B, n_mels, 1, T) → encoded (B, C_last, 1, T'), lengths (B,) int32.

    Residual sources follow NVIDIA's rule: a list of outputs restarts with the output of each block
    that is not a dense residual block, and each dense residual block appends its own; a residual
    block takes one projection per listed output (its own input only, without ``dense_residual``).
    """

    def __init__(self, model: JasperConfig, in_channels: int) -> None:
        super().__init__()
        plan = model.residual_plan(in_channels)
        self.layers = nn.CellList([JasperBlock(b, c_in, sources, model) for b, c_in, sources, _ in plan])
        self.keeps_sources = tuple(keep for *_, keep in plan)
        self.out_channels = model.blocks[-1].filters

    def construct(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        mask = length_mask(lengths, x.shape[-1], x.dtype)
        x = _masked(x, mask)
        sources = (x,)
        for i in range(len(self.keeps_sources)):
            x, lengths, mask = self.layers[i](x, lengths, mask, sources)
            sources = sources + (x,) if self.keeps_sources[i] else (x,)
        return x, lengths


class JasperDecoder(nn.Cell):
    """CTC head: encoded (B, C, 1, T) → log-probabilities (B, T, num_classes) float32."""

    def __init__(self, in_channels: int, num_classes: int, weight_init: str) -> None:
        super().__init__()
        self.layers = nn.CellList([PaddedConv1d(in_channels, num_classes, 1, has_bias=True, weight_init=weight_init)])

    def construct(self, x: Tensor) -> Tensor:
        logits = self.layers[0](x).squeeze(2).transpose(0, 2, 1)
        if logits.dtype != ms.float32:
            logits = logits.astype(ms.float32)
        return ops.log_softmax(logits, axis=-1)


class Jasper(ZooModel):
    """Jasper acoustic model.

    ``model(features, lengths)`` with features (B, n_mels, T) float32 (fp16 under mixed precision)
    and lengths (B,) int32 returns ``(log_probs (B, T', num_classes) float32, out_lengths (B,) int32)``,
    T' = ceil(T / time_stride) for Jasper's stride-2 prologue; the same in training mode.
    """

    def __init__(self, model: JasperConfig, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.encoder = JasperEncoder(model, in_channels)
        self.decoder = JasperDecoder(self.encoder.out_channels, num_classes, model.init)
        self.in_channels = self.in_features = in_channels
        self.num_classes = num_classes
        self._convs = self.length_convs = tuple((b.kernel, b.stride, b.dilation, (b.kernel // 2) * b.dilation)
                                                for b in model.blocks for _ in range(b.repeat))

    @property
    def time_stride(self) -> int:
        """Input frames per output frame (product of the strides; 2 for Jasper)."""
        return int(np.prod([stride for _, stride, _, _ in self._convs]))

    def exported_form(self, file_format: str | None = None):
        return exported_form(self)

    def construct(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        if lengths.dtype != ms.int32:
            lengths = lengths.astype(ms.int32)
        x, lengths = self.encoder(features.expand_dims(2), lengths)
        return self.decoder(x), lengths


def build(model: JasperConfig, in_features: int, num_classes: int) -> Jasper:
    """The registry's entry: Jasper for ``in_features`` feature rows and ``num_classes`` outputs."""
    return Jasper(model, in_features, num_classes)


def build_model(config, num_classes: int | None = None) -> Jasper:
    """Alias of ``src.models.build_model`` for a Jasper config (kept for existing callers)."""
    from src.models import build_model as registry_build
    return registry_build(config, num_classes)


def count_parameters(model: nn.Cell) -> tuple[int, int]:
    """(trainable parameter count, number of parameter tensors including BN moving statistics)."""
    from src.models import count_parameters as count
    return count(model)
