"""DeepSpeech2 as deepspeech.pytorch (SeanNaren, V3) defines it: a 2-D convolution front end, a stack of
recurrent layers, a bias-free linear head, CTC over characters.

Network, for spectrograms ``features`` (B, F, T) (F = 161 for deepspeech.pytorch's front end):

1. ``conv``: Conv2d(1→C, kernel 41×11 (freq × time), stride 2×2, padding 20×5, bias) → BatchNorm2d →
   Hardtanh(0, 20) → Conv2d(C→C, 21×11, stride 2×1, padding 10×5, bias) → BatchNorm2d → Hardtanh(0, 20),
   C = ``conv_channels`` (32 in deepspeech.pytorch); frames at and after each utterance's output length
   are zeroed after every layer (deepspeech.pytorch's ``MaskConv``; the input is zeroed beyond
   ``lengths`` too, which changes nothing for zero-padded batches).  T' = (T − 1) // 2 + 1 frames;
   F → (F − 1) // 2 + 1 twice: 161 → 81 → 41, so the recurrent input is 32 × 41 = 1312 features.
2. ``rnns``: ``hidden_layers`` recurrent layers (LSTM, GRU or tanh RNN with PyTorch's equations and both
   biases) of ``hidden_size`` units; every layer but the first starts with a sequence-wise BatchNorm1d;
   bidirectional layers **sum** their two directions.  Unidirectional models add ``lookahead``: a
   depthwise convolution over time (``lookahead_context`` taps, no bias, the future context: zeros
   after the last frame) and Hardtanh(0, 20).
3. ``fc``: sequence-wise BatchNorm1d(hidden) → Linear(hidden → classes, no bias) → log-softmax (also
   in training: the CTC loss takes log-probabilities; deepspeech.pytorch returns raw scores in training
   and softmax probabilities in evaluation, whose log is this output).

Variable lengths (what ``pack_padded_sequence`` does in PyTorch): every layer's output is zero at
frames at and after each utterance's length.  The forward direction runs over the padded batch as a
whole (padding comes after the valid frames, so it cannot reach them); the backward direction reverses
each utterance within its own length with one row gather (source frame ``len − 1 − t`` for
``t < len``, else ``t``: the permutation is its own inverse), runs the same forward recurrence and
gathers back, so it starts at the utterance's own last frame.  An utterance thus gives the same
outputs alone and inside any zero-padded batch.  (``nn.LSTM(seq_length=...)`` would do the same with a
per-step select, which MindSpore 2.10 compiles as an unrolled loop: 25 s for 100 frames on CPU.)

BatchNorm in training (``bn_stats``): deepspeech.pytorch normalises with statistics over the whole
padded batch, the zeros of the padded frames included, so a batch's padding shifts its statistics.
``bn_stats: valid`` (the default) counts valid frames only, which keeps training independent of how
far a batch is padded; ``bn_stats: all`` reproduces deepspeech.pytorch's batch statistics.  Inference
uses the running statistics either way.  Running variances are updated with the unbiased batch
variance and the momentum in PyTorch's convention (``bn_momentum`` weighs the new batch), as PyTorch.

How the recurrence is computed (``rnn_impl`` for training and checkpoint inference, ``export_rnn``
inside :meth:`DeepSpeech2.exported_form`); every form gives the same numbers (tests/test_deepspeech2.py):

* ``fused``: MindSpore's recurrent kernel for the device (``LSTM`` on CPU and GPU, ``DynamicRNN`` on
  Ascend; a GRU on GPU and Ascend), one call per direction and layer.  The fastest; a MindIR holding
  it runs on CPU/GPU with fixed or open shapes and its ONNX export is an ONNX ``LSTM``, which MindSpore
  Lite converts; but the Ascend converter has no adapter for the CPU ``LSTM`` primitive.
* ``loop``: the cell in primitive ops (MatMul, Sigmoid, Tanh, Mul, Add, slices) inside one graph
  ``while`` loop over time: compiles in seconds whatever the length and exports to MindIR with fixed
  or open shapes (MindSpore 2.10 runs a graph loop of open shape one input shape per loaded
  ``GraphCell``).  Per step it pays the loop's overhead: the tiny preset's exported MindIR takes 1.8 s
  for 16 s of audio where the fused kernel takes 0.4 s, and a training step about 4x as long.
  MindSpore's ONNX export has no loops.
* ``unrolled``: the same primitive ops written out for every time step: MindIR and ONNX (converted by
  MindSpore Lite) of a fixed, short frame count.  Compile time and memory grow with the steps (one
  direction of one layer: 6 s at 200 steps, 60 s and 4.8 GB at 800), and at 800 steps MindSpore's
  default call-depth limit (1000) already stops the compilation.
* ``auto``: for ``rnn_impl``, ``fused`` where MindSpore has a kernel with PyTorch's equations (LSTM
  everywhere, GRU on GPU/Ascend), else ``loop`` (MindSpore's CPU GRU kernel computes the other GRU
  variant, the reset gate applied before the recurrent product; the tanh RNN has no kernel).  For
  ``export_rnn`` (:meth:`DeepSpeech2.export_recurrence`): ``loop`` in a MindIR (no LSTM primitive for
  the Ascend converter to refuse), ``fused`` in an LSTM's ONNX, ``unrolled`` in a GRU's or RNN's ONNX
  (and an LSTM's whose hidden size is no multiple of 8, which MindSpore Lite 2.0's LSTM gets wrong);
  ``exported_form()`` without a format takes the ONNX choice, which a MindIR accepts too.

Parameter names mirror deepspeech.pytorch's state-dict keys one-to-one (BatchNorm tensors are called
gamma/beta/moving_mean/moving_variance): ``conv.seq_module.{0,3}.{weight,bias}`` (weights (32, C_in, kh,
kw)), ``conv.seq_module.{1,4}.*`` (BN2d), ``rnns.{i}.rnn.{weight_ih_l0, weight_hh_l0, bias_ih_l0,
bias_hh_l0}{,_reverse}`` (PyTorch gate order: i, f, g, o for LSTM; r, z, n for GRU),
``rnns.{i}.batch_norm.module.*`` (i ≥ 1), ``lookahead.0.conv.weight`` (H, 1, 1, context), ``fc.0.module.0.*``
(BN1d) and ``fc.0.module.1.weight`` (classes, H).  See src/models/convert_deepspeech2.py.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common import initializer as init

from src.models.base import IntLike, ZooModel

# Importing the model caps oneDNN's instruction set (see src/runtime.py) before its first kernel.
import src.runtime  # noqa: E402,F401

__all__ = ["CONFIG", "DeepSpeech2Config", "DeepSpeech2", "build", "RNN_TYPES", "RNN_IMPLS", "EXPORT_RNNS",
           "conv_output_size", "rnn_input_size", "MaskedBatchNorm", "Recurrence", "BatchRNN", "Lookahead"]

RNN_TYPES = ("lstm", "gru", "rnn")
RNN_IMPLS = ("auto", "fused", "loop", "unrolled")
EXPORT_RNNS = ("auto", "loop", "fused", "unrolled")
BN_STATS = ("valid", "all")
_GATES = {"lstm": 4, "gru": 3, "rnn": 1}

# The two convolutions of deepspeech.pytorch: (kernel (freq, time), stride (freq, time), padding (freq, time)).
_CONVS = (((41, 11), (2, 2), (20, 5)), ((21, 11), (2, 1), (10, 5)))
HARDTANH_MAX = 20.0


@dataclass(frozen=True)
class DeepSpeech2Config:
    """A DeepSpeech2 network (deepspeech.pytorch's ``model`` settings plus how it is computed here)."""
    name: str = "deepspeech2"
    rnn_type: str = "lstm"          # lstm | gru | rnn (tanh)
    hidden_size: int = 1024
    hidden_layers: int = 5
    bidirectional: bool = True      # directions summed; false adds the lookahead convolution
    lookahead_context: int = 20     # taps of the lookahead convolution (unidirectional models only)
    conv_channels: int = 32         # channels of both convolutions (deepspeech.pytorch: 32)
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1        # PyTorch convention (weight of the new batch statistic)
    bn_stats: str = "valid"         # training statistics over: valid frames | all frames (deepspeech.pytorch)
    rnn_impl: str = "auto"          # auto | fused | loop | unrolled (training and checkpoint inference)
    export_rnn: str = "auto"        # auto | loop | fused | unrolled (exported MindIR/ONNX graphs)

    def validate(self) -> None:
        for key, value, choices in (("rnn_type", self.rnn_type, RNN_TYPES), ("rnn_impl", self.rnn_impl, RNN_IMPLS),
                                    ("export_rnn", self.export_rnn, EXPORT_RNNS),
                                    ("bn_stats", self.bn_stats, BN_STATS)):
            if value not in choices:
                raise ValueError(f"model.{key}={value!r} must be one of {list(choices)}")
        for key in ("hidden_size", "hidden_layers", "lookahead_context", "conv_channels"):
            if getattr(self, key) < 1:
                raise ValueError(f"model.{key}={getattr(self, key)} must be >= 1")
        if not self.bn_eps > 0:
            raise ValueError(f"model.bn_eps={self.bn_eps} must be > 0")
        if not 0 < self.bn_momentum <= 1:
            raise ValueError(f"model.bn_momentum={self.bn_momentum} must be within (0, 1]")
        if self.rnn_type == "rnn" and self.rnn_impl == "fused":
            raise ValueError("model.rnn_impl='fused' has no kernel for model.rnn_type='rnn'; use auto, loop or unrolled")
        if self.export_rnn == "fused" and self.rnn_type != "lstm":
            raise ValueError(f"model.export_rnn='fused' exists for model.rnn_type='lstm' only, not "
                             f"{self.rnn_type!r}; use unrolled or loop")


CONFIG = DeepSpeech2Config


def conv_output_size(size: IntLike, kernel: int, stride: int, padding: int) -> IntLike:
    """Output size of a convolution along one axis (ints, numpy arrays or int tensors)."""
    return (size + 2 * padding - kernel) // stride + 1


def rnn_input_size(in_features: int, conv_channels: int = 32) -> int:
    """Features per frame after the convolutions: channels × frequency rows left (32 × 41 = 1312 for
    161 rows)."""
    size = in_features
    for kernel, stride, padding in _CONVS:
        size = conv_output_size(size, kernel[0], stride[0], padding[0])
    if size < 1:
        raise ValueError(f"{in_features} feature rows are too few for DeepSpeech2's convolutions")
    return conv_channels * size


def _uniform(bound: float, shape: tuple[int, ...]) -> Tensor:
    """PyTorch's default initialisation of conv, linear and recurrent tensors: U(−bound, bound)."""
    return init.initializer(init.Uniform(bound), shape, ms.float32)


def _hardtanh(x: Tensor) -> Tensor:
    """Hardtanh(0, 20) as Relu + Minimum (ops every exporter and converter knows)."""
    return ops.minimum(ops.relu(x), HARDTANH_MAX)


class Hardtanh(nn.Cell):
    """Hardtanh(0, 20), deepspeech.pytorch's activation (no tensors)."""

    def construct(self, x: Tensor) -> Tensor:
        return _hardtanh(x)


def _time_mask(lengths: Tensor, num_frames: int, dtype: ms.dtype) -> Tensor:
    """lengths (B,) int32 → (num_frames, B, 1): 1 for frames < length, else 0."""
    frames = ops.arange(num_frames, dtype=lengths.dtype).reshape(-1, 1, 1)
    return (frames < lengths.reshape(1, -1, 1)).astype(dtype)


def _reverse_index(lengths: Tensor, num_frames: int, batch: int) -> Tensor:
    """Row indices into a (num_frames · B, ...) view that reverse each utterance within its length:
    frame t of utterance b reads frame ``len_b − 1 − t`` if ``t < len_b``, else ``t``.  (T·B,) int32."""
    t = ops.arange(num_frames, dtype=ms.int32).reshape(-1, 1)
    lens = lengths.reshape(1, -1)
    source = ops.select(t < lens, lens - 1 - t, ops.broadcast_to(t, (num_frames, batch)))
    return (source * batch + ops.arange(batch, dtype=ms.int32).reshape(1, -1)).reshape(-1)


def _gather_frames(x: Tensor, index: Tensor) -> Tensor:
    """x (T, B, H) reordered by ``index`` (T·B,) over its (T·B) rows."""
    t, b, h = x.shape
    return ops.gather(x.reshape(t * b, h), index, 0).reshape(t, b, h)


class MaskedBatchNorm(nn.Cell):
    """BatchNorm over the channel axis whose training statistics skip padded frames (``bn_stats: valid``)
    or count them as the zeros they hold (``all``).

    ``construct(x, mask)``: x (B, C, F, T) with mask (B, 1, 1, T), or x (T, B, C) with mask (T, B, 1);
    1 marks valid frames.  Parameters: gamma, beta (trainable), moving_mean, moving_variance.
    """

    def __init__(self, num_features: int, eps: float, momentum: float, layout: str, valid_only: bool) -> None:
        super().__init__()
        if layout not in ("nchw", "tbc"):
            raise ValueError(f"layout must be nchw or tbc, got {layout!r}")
        self.gamma = Parameter(init.initializer("ones", (num_features,), ms.float32), name="gamma")
        self.beta = Parameter(init.initializer("zeros", (num_features,), ms.float32), name="beta")
        self.moving_mean = Parameter(init.initializer("zeros", (num_features,), ms.float32), name="moving_mean",
                                     requires_grad=False)
        self.moving_variance = Parameter(init.initializer("ones", (num_features,), ms.float32),
                                         name="moving_variance", requires_grad=False)
        self.eps, self.momentum, self.valid_only = eps, momentum, valid_only
        self.axes = (0, 2, 3) if layout == "nchw" else (0, 1)
        self.shape = (1, -1, 1, 1) if layout == "nchw" else (1, 1, -1)

    def construct(self, x: Tensor, mask: Tensor) -> Tensor:
        dtype = x.dtype
        x = x.astype(ms.float32)
        if self.training:
            if self.valid_only:
                m = mask.astype(ms.float32)
                # values per channel: valid (b, t) pairs × frequency rows (nchw) or × 1 (tbc)
                count = m.sum() * (x.shape[2] if len(self.axes) == 3 else 1)
                mean = (x * m).sum(self.axes, keepdims=True) / count
                centred = x - mean
                masked = centred * m
                var = (masked * masked).sum(self.axes, keepdims=True) / count
            else:
                count = ops.size(x) / x.shape[1 if len(self.axes) == 3 else 2]
                mean = x.mean(self.axes, keep_dims=True)
                centred = x - mean
                var = (centred * centred).mean(self.axes, keep_dims=True)
            y = centred / ops.sqrt(var + self.eps) * self.gamma.reshape(self.shape) + self.beta.reshape(self.shape)
            n = ops.stop_gradient(count)
            unbiased = ops.stop_gradient(var.reshape(-1)) * n / ops.maximum(n - 1, 1.0)
            new_mean = self.moving_mean * (1 - self.momentum) + ops.stop_gradient(mean.reshape(-1)) * self.momentum
            new_var = self.moving_variance * (1 - self.momentum) + unbiased * self.momentum
            y = ops.depend(y, ops.assign(self.moving_mean, new_mean))
            y = ops.depend(y, ops.assign(self.moving_variance, new_var))
        else:
            scale = self.gamma / ops.sqrt(self.moving_variance + self.eps)
            y = (x - self.moving_mean.reshape(self.shape)) * scale.reshape(self.shape) + self.beta.reshape(self.shape)
        return y.astype(dtype)


class SequenceWise(nn.Cell):
    """Holds ``module`` under deepspeech.pytorch's name (``...batch_norm.module.*``, ``fc.0.module.*``)."""

    def __init__(self, module: nn.Cell) -> None:
        super().__init__()
        self.module = module


class Conv2dBias(nn.Cell):
    """Conv2d with bias and symmetric zero padding: x (B, C_in, F, T) → (B, C_out, F', T').

    Training and checkpoint inference let the convolution pad; the exported form (``explicit_pad``)
    uses an explicit Pad and a 'valid' convolution (a padded Conv2D is written to ONNX with its pads
    in the wrong order, and MindSpore Lite 2.0 fails on it).  ``weight``: (C_out, C_in, kf, kt).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int], stride: tuple[int, int],
                 padding: tuple[int, int]) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_channels * kernel[0] * kernel[1])
        self.weight = Parameter(_uniform(bound, (out_channels, in_channels, *kernel)), name="weight")
        self.bias = Parameter(_uniform(bound, (out_channels,)), name="bias")
        self.kernel, self.stride, self.padding = kernel, stride, padding
        pad = (padding[0], padding[0], padding[1], padding[1])
        self.conv = ops.Conv2D(out_channel=out_channels, kernel_size=kernel, pad_mode="pad", pad=pad, stride=stride)
        self.conv_valid = ops.Conv2D(out_channel=out_channels, kernel_size=kernel, pad_mode="valid", stride=stride)
        self.pad = ops.Pad(((0, 0), (0, 0), (padding[0], padding[0]), (padding[1], padding[1])))
        self.bias_add = ops.BiasAdd()
        self.explicit_pad = False

    def construct(self, x: Tensor) -> Tensor:
        if self.explicit_pad:
            y = self.conv_valid(self.pad(x), self.weight)
        else:
            y = self.conv(x, self.weight)
        return self.bias_add(y, self.bias)


class MaskConv(nn.Cell):
    """The convolution front end: ``seq_module`` = [conv, BN2d, Hardtanh, conv, BN2d, Hardtanh], the
    frames of every layer's output at and after the output lengths zeroed.

    x (B, 1, F, T), lengths (B,) → (B, 32, F'', T'), out_lengths (B,) int32."""

    def __init__(self, cfg: DeepSpeech2Config) -> None:
        super().__init__()
        layers: list[nn.Cell] = []
        channels = 1
        for kernel, stride, padding in _CONVS:
            layers += [Conv2dBias(channels, cfg.conv_channels, kernel, stride, padding),
                       MaskedBatchNorm(cfg.conv_channels, cfg.bn_eps, cfg.bn_momentum, "nchw", cfg.bn_stats == "valid"),
                       Hardtanh()]
            channels = cfg.conv_channels
        self.seq_module = nn.CellList(layers)

    def construct(self, x: Tensor, lengths: Tensor, out_lengths: Tensor) -> Tensor:
        frames = ops.arange(x.shape[-1], dtype=ms.int32).reshape(1, 1, 1, -1)
        x = x * (frames < lengths.reshape(-1, 1, 1, 1)).astype(x.dtype)
        for i in range(len(_CONVS)):
            x = self.seq_module[3 * i](x)
            frames = ops.arange(x.shape[-1], dtype=ms.int32).reshape(1, 1, 1, -1)
            mask = (frames < out_lengths.reshape(-1, 1, 1, 1)).astype(x.dtype)
            x = self.seq_module[3 * i + 1](x * mask, mask)
            x = self.seq_module[3 * i + 2](x) * mask
        return x


def _fused_kernel(rnn_type: str) -> nn.Cell | None:
    """MindSpore's single-direction recurrent kernel for the current device (the one nn.LSTM/nn.GRU
    run), or None where MindSpore has none with PyTorch's equations."""
    try:
        from mindspore.nn.layer import rnns
    except ImportError:  # pragma: no cover - a MindSpore without these internals
        return None
    device = ms.get_context("device_target")
    if rnn_type == "lstm":
        return rnns._DynamicLSTMAscend() if device == "Ascend" else rnns._DynamicLSTMCPUGPU()
    if rnn_type == "gru":
        return rnns._DynamicGRUAscend() if device == "Ascend" else rnns._DynamicGRUCPUGPU()
    return None


class Recurrence(nn.Cell):
    """One recurrent layer with PyTorch's tensors and equations, directions summed, padding-exact.

    ``construct(x (T, B, I), reverse_index (T·B,), mask (T, B, 1)) -> (T, B, H)``, zero at frames
    beyond each length.  Tensors: ``weight_ih_l0`` (G·H, I), ``weight_hh_l0`` (G·H, H), ``bias_ih_l0``,
    ``bias_hh_l0`` (G·H,), and the same with ``_reverse`` for the backward direction (G = 4, 3, 1).
    """

    def __init__(self, rnn_type: str, input_size: int, hidden_size: int, bidirectional: bool, impl: str) -> None:
        super().__init__()
        if rnn_type not in _GATES:
            raise ValueError(f"rnn_type must be one of {RNN_TYPES}, got {rnn_type!r}")
        self.rnn_type, self.hidden_size, self.bidirectional = rnn_type, hidden_size, bidirectional
        gates = _GATES[rnn_type] * hidden_size
        bound = 1.0 / math.sqrt(hidden_size)
        self.weight_ih_l0 = Parameter(_uniform(bound, (gates, input_size)), name="weight_ih_l0")
        self.weight_hh_l0 = Parameter(_uniform(bound, (gates, hidden_size)), name="weight_hh_l0")
        self.bias_ih_l0 = Parameter(_uniform(bound, (gates,)), name="bias_ih_l0")
        self.bias_hh_l0 = Parameter(_uniform(bound, (gates,)), name="bias_hh_l0")
        if bidirectional:
            self.weight_ih_l0_reverse = Parameter(_uniform(bound, (gates, input_size)), name="weight_ih_l0_reverse")
            self.weight_hh_l0_reverse = Parameter(_uniform(bound, (gates, hidden_size)), name="weight_hh_l0_reverse")
            self.bias_ih_l0_reverse = Parameter(_uniform(bound, (gates,)), name="bias_ih_l0_reverse")
            self.bias_hh_l0_reverse = Parameter(_uniform(bound, (gates,)), name="bias_hh_l0_reverse")
        self.kernel = _fused_kernel(rnn_type)
        self.impl = self.resolve(impl)

    def resolve(self, impl: str) -> str:
        """The computation ``impl`` (RNN_IMPLS / EXPORT_RNNS) stands for on this device."""
        if impl == "auto":
            device = ms.get_context("device_target")
            fused = self.rnn_type == "lstm" or (self.rnn_type == "gru" and device in ("GPU", "Ascend"))
            impl = "fused" if fused and self.kernel is not None else "loop"
        if impl == "fused" and self.kernel is None:
            raise ValueError(f"no fused MindSpore kernel for a {self.rnn_type} layer on this device")
        if impl not in ("fused", "loop", "unrolled"):
            raise ValueError(f"unknown recurrence implementation {impl!r}")
        return impl

    # -- one direction over the whole (T, B, I) sequence, zero initial state ------------------------

    def _cell(self, gx: Tensor, h: Tensor, c: Tensor, w_hh_t: Tensor, b_hh: Tensor) -> tuple[Tensor, Tensor]:
        """One time step: gx (B, G·H) the input projection (with both biases, except the GRU's b_hh),
        h, c (B, H) → new (h, c) (c unused by GRU and RNN).  Gates are sliced, not split: ONNX export
        takes slices."""
        n = self.hidden_size
        gh = ops.matmul(h, w_hh_t)
        if self.rnn_type == "lstm":
            g = gx + gh
            c = ops.sigmoid(g[:, n:2 * n]) * c + ops.sigmoid(g[:, :n]) * ops.tanh(g[:, 2 * n:3 * n])
            return ops.sigmoid(g[:, 3 * n:]) * ops.tanh(c), c
        if self.rnn_type == "gru":
            gh = gh + b_hh
            r = ops.sigmoid(gx[:, :n] + gh[:, :n])
            z = ops.sigmoid(gx[:, n:2 * n] + gh[:, n:2 * n])
            candidate = ops.tanh(gx[:, 2 * n:] + r * gh[:, 2 * n:])
            return candidate + z * (h - candidate), c
        return ops.tanh(gx + gh), c

    def _input_projection(self, x: Tensor, w_ih: Tensor, b_ih: Tensor, b_hh: Tensor) -> Tensor:
        t, b, i = x.shape
        bias = b_ih if self.rnn_type == "gru" else b_ih + b_hh
        return (ops.matmul(x.reshape(t * b, i), w_ih.T) + bias).reshape(t, b, -1)

    def _loop(self, x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> Tensor:
        gx = self._input_projection(x, w_ih, b_ih, b_hh)
        steps, batch = x.shape[0], x.shape[1]
        h = ops.zeros((batch, self.hidden_size), x.dtype)
        c = h
        w_hh_t = w_hh.T
        out = ops.zeros((steps, batch, self.hidden_size), x.dtype)
        t = Tensor(0, ms.int32)
        while t < steps:
            h, c = self._cell(ops.gather(gx, t, 0), h, c, w_hh_t, b_hh)
            out = ops.tensor_scatter_update(out, t.reshape(1, 1), h.expand_dims(0))
            t = t + 1
        return out

    def _unrolled(self, x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> Tensor:
        gx = self._input_projection(x, w_ih, b_ih, b_hh)
        steps, batch = x.shape[0], x.shape[1]
        h = ops.zeros((batch, self.hidden_size), x.dtype)
        c = h
        w_hh_t = w_hh.T
        outputs = ()
        for t in range(steps):
            h, c = self._cell(gx[t], h, c, w_hh_t, b_hh)
            outputs = outputs + (h.expand_dims(0),)
        return ops.concat(outputs, 0)           # (a Stack becomes ONNX sequence ops, which Lite lacks)

    def _fused(self, x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> Tensor:
        h = ops.zeros((x.shape[1], self.hidden_size), x.dtype)
        state = (h, h) if self.rnn_type == "lstm" else h
        return self.kernel(x, state, None, w_ih, w_hh, b_ih, b_hh)[0]

    def _direction(self, x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> Tensor:
        if self.impl == "fused":
            return self._fused(x, w_ih, w_hh, b_ih, b_hh)
        if self.impl == "loop":
            return self._loop(x, w_ih, w_hh, b_ih, b_hh)
        return self._unrolled(x, w_ih, w_hh, b_ih, b_hh)

    def construct(self, x: Tensor, reverse_index: Tensor, mask: Tensor) -> Tensor:
        y = self._direction(x, self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0, self.bias_hh_l0)
        if self.bidirectional:
            xr = _gather_frames(x, reverse_index)
            yr = self._direction(xr, self.weight_ih_l0_reverse, self.weight_hh_l0_reverse, self.bias_ih_l0_reverse,
                                 self.bias_hh_l0_reverse)
            y = y + _gather_frames(yr, reverse_index)
        return y * mask.astype(y.dtype)


class BatchRNN(nn.Cell):
    """[sequence-wise BatchNorm1d →] recurrent layer: x (T, B, I) → (T, B, H), zero beyond the lengths."""

    def __init__(self, cfg: DeepSpeech2Config, input_size: int, batch_norm: bool) -> None:
        super().__init__()
        self.batch_norm = SequenceWise(MaskedBatchNorm(input_size, cfg.bn_eps, cfg.bn_momentum, "tbc",
                                                       cfg.bn_stats == "valid")) if batch_norm else None
        self.rnn = Recurrence(cfg.rnn_type, input_size, cfg.hidden_size, cfg.bidirectional, cfg.rnn_impl)

    def construct(self, x: Tensor, reverse_index: Tensor, mask: Tensor) -> Tensor:
        if self.batch_norm is not None:
            x = self.batch_norm.module(x, mask) * mask.astype(x.dtype)
        return self.rnn(x, reverse_index, mask)


class Lookahead(nn.Cell):
    """Row convolution over future frames: out[t] = Σ_k weight[h, k] · x[t + k], zeros after the last
    frame.  x (T, B, H) → (T, B, H); ``conv.weight`` (H, 1, 1, context) (PyTorch's (H, 1, context))."""

    def __init__(self, features: int, context: int) -> None:
        super().__init__()
        self.conv = _DepthwiseTimeConv(features, context)

    def construct(self, x: Tensor) -> Tensor:
        y = self.conv(x.transpose(1, 2, 0).expand_dims(2))          # (B, H, 1, T)
        return y.squeeze(2).transpose(2, 0, 1)


class _DepthwiseTimeConv(nn.Cell):
    def __init__(self, features: int, context: int) -> None:
        super().__init__()
        self.weight = Parameter(_uniform(1.0 / math.sqrt(context), (features, 1, 1, context)), name="weight")
        self.pad = ops.Pad(((0, 0), (0, 0), (0, 0), (0, context - 1)))
        self.conv = ops.Conv2D(out_channel=features, kernel_size=(1, context), pad_mode="valid", group=features)

    def construct(self, x: Tensor) -> Tensor:
        return self.conv(self.pad(x), self.weight)


class _Linear(nn.Cell):
    """Bias-free linear map over the last axis: ``weight`` (out, in), as PyTorch's Linear."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = Parameter(_uniform(1.0 / math.sqrt(in_features), (out_features, in_features)), name="weight")

    def construct(self, x: Tensor) -> Tensor:
        shape = x.shape
        y = ops.matmul(x.reshape(-1, shape[-1]), self.weight.T)
        return y.reshape(shape[:-1] + (self.weight.shape[0],))


class DeepSpeech2(ZooModel):
    """deepspeech.pytorch's DeepSpeech2.

    ``model(features, lengths)`` with features (B, F, T) float32 spectrograms (F = 161 for 16 kHz,
    20 ms windows) and lengths (B,) int32 valid frames returns ``(log_probs (B, T', num_classes) float32,
    out_lengths (B,) int32)`` with ``T' = (T − 1) // 2 + 1`` and ``out_lengths = (lengths − 1) // 2 + 1``;
    log-probabilities in training and inference alike.  Outputs at frames ``>= out_lengths`` are those
    of an all-zero input frame (the head's BatchNorm shift) and carry no meaning.
    """

    time_stride = 2

    def __init__(self, cfg: DeepSpeech2Config, in_features: int, num_classes: int) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.in_features, self.num_classes = in_features, num_classes
        self.conv = MaskConv(cfg)
        size = rnn_input_size(in_features, cfg.conv_channels)
        layers = []
        for i in range(cfg.hidden_layers):
            layers.append(BatchRNN(cfg, size, batch_norm=i > 0))
            size = cfg.hidden_size
        self.rnns = nn.CellList(layers)
        self.lookahead = None if cfg.bidirectional else nn.CellList(
            [Lookahead(cfg.hidden_size, cfg.lookahead_context), Hardtanh()])
        self.fc = nn.CellList([SequenceWise(nn.CellList([
            MaskedBatchNorm(cfg.hidden_size, cfg.bn_eps, cfg.bn_momentum, "tbc", cfg.bn_stats == "valid"),
            _Linear(cfg.hidden_size, num_classes)]))])

    def output_lengths(self, lengths: IntLike) -> IntLike:
        """Output frames for input lengths (ints, numpy arrays or int tensors): ``(lengths − 1) // 2 + 1``."""
        for kernel, stride, padding in _CONVS:
            lengths = conv_output_size(lengths, kernel[1], stride[1], padding[1])
        return lengths

    def export_recurrence(self, file_format: str | None = None) -> str:
        """The recurrence form ``cfg.export_rnn`` gives an export in ``file_format`` (MINDIR, AIR, ONNX;
        None: a form every format takes).  ``auto`` is ``loop`` for MINDIR/AIR (primitive ops, no LSTM
        primitive: what the Ascend path needs); for ONNX and for None it is ``fused`` for an LSTM whose
        hidden size is a multiple of 8 (one ONNX LSTM per direction), else ``unrolled``."""
        fmt = None if file_format is None else file_format.upper()
        form = self.cfg.export_rnn
        if form == "auto":
            if fmt in ("MINDIR", "AIR"):
                return "loop"
            # MindSpore Lite 2.0 (the CPU runtime of the 310 path) computes a converted ONNX LSTM wrongly
            # unless the hidden size is a multiple of 8 (measured: 4, 12, 20 wrong; 8, 16, 24, 32 right)
            fused = self.cfg.rnn_type == "lstm" and self.cfg.hidden_size % 8 == 0
            return "fused" if fused else "unrolled"
        if form == "loop" and fmt == "ONNX":
            raise ValueError("model.export_rnn='loop' cannot be written as ONNX (MindSpore's ONNX export has no "
                             "loops); use auto, fused (LSTM) or unrolled")
        return form

    @contextlib.contextmanager
    def exported_form(self, file_format: str | None = None) -> Iterator[nn.Cell]:
        """Within the block the network compiles to the form an export in ``file_format`` holds (None: a
        form every format takes): explicit Pad + 'valid' convolutions and the recurrence
        :meth:`export_recurrence` names, numerically the training form.  A graph compiled before keeps
        its form: compare forms on separate instances."""
        form = self.export_recurrence(file_format)
        convs = [c for _, c in self.cells_and_names() if isinstance(c, Conv2dBias)]
        rnns = [c for _, c in self.cells_and_names() if isinstance(c, Recurrence)]
        before = [r.impl for r in rnns]
        for r in rnns:
            r.impl = r.resolve(form)
        for c in convs:
            c.explicit_pad = True
        try:
            yield self
        finally:
            for c in convs:
                c.explicit_pad = False
            for r, impl in zip(rnns, before):
                r.impl = impl

    def construct(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        if lengths.dtype != ms.int32:
            lengths = lengths.astype(ms.int32)
        out_lengths = self.output_lengths(lengths)
        x = self.conv(features.expand_dims(1), lengths, out_lengths)      # (B, 32, F'', T')
        b, c, f, t = x.shape
        x = x.reshape(b, c * f, t).transpose(2, 0, 1)                      # (T', B, 32·F'')
        mask = _time_mask(out_lengths, t, x.dtype)
        reverse_index = _reverse_index(out_lengths, t, b)
        for i in range(len(self.rnns)):
            x = self.rnns[i](x, reverse_index, mask)
        if self.lookahead is not None:
            x = self.lookahead[1](self.lookahead[0](x))
        head = self.fc[0].module
        x = head[1](head[0](x, mask))                                     # (T', B, classes)
        logits = x.transpose(1, 0, 2)
        if logits.dtype != ms.float32:
            logits = logits.astype(ms.float32)
        return ops.log_softmax(logits, axis=-1), out_lengths


def build(model: DeepSpeech2Config, in_features: int, num_classes: int) -> DeepSpeech2:
    """The registry's entry: DeepSpeech2 for ``in_features`` spectrogram rows and ``num_classes`` outputs."""
    return DeepSpeech2(model, in_features, num_classes)
