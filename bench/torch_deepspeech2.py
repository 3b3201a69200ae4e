"""PyTorch DeepSpeech2 as deepspeech.pytorch (V3) publishes it, for tests and benchmarks.

Written from the published architecture (see src/models/deepspeech2.py) with the same module layout,
so ``state_dict()`` has deepspeech.pytorch's keys and a file saved from it looks like theirs::

    conv.seq_module.{0,3}.{weight,bias}                     Conv2d (32, C_in, kf, kt)
    conv.seq_module.{1,4}.{weight,bias,running_mean,running_var,num_batches_tracked}   BatchNorm2d
    rnns.{i}.rnn.{weight_ih_l0,weight_hh_l0,bias_ih_l0,bias_hh_l0}{,_reverse}
    rnns.{i}.batch_norm.module.*                            BatchNorm1d (i >= 1)
    lookahead.0.conv.weight                                 (H, 1, context), unidirectional only
    fc.0.module.0.*  BatchNorm1d,  fc.0.module.1.weight     Linear (classes, H), no bias

Semantics: padded frames zeroed after every convolution-stack layer, packed sequences (each
direction sees only its utterance's frames), bidirectional outputs summed, output = raw scores in
training mode and softmax probabilities in eval mode, as deepspeech.pytorch's ``DeepSpeech.forward``.
PyTorch is an optional dependency (``pip install torch==2.13.0``).
"""
from __future__ import annotations

import math

try:
    import torch
    from torch import Tensor, nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
except ImportError as e:  # an optional dependency: say how to get it
    raise ImportError("bench/torch_deepspeech2.py needs PyTorch, an optional dependency of the benchmarks: "
                      "pip install torch==2.13.0") from e

__all__ = ["TorchDeepSpeech2", "build_torch_deepspeech2", "DEEPSPEECH_LABELS"]

#: deepspeech.pytorch's English labels: CTC blank "_" first, apostrophe, A-Z, space
DEEPSPEECH_LABELS = ("_", "'", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ", " ")

_RNN_CLASSES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def _zero_after(x: Tensor, lengths: Tensor) -> Tensor:
    """x (B, ..., T) with frames t >= lengths[b] set to 0."""
    keep = torch.arange(x.shape[-1], device=x.device)[None, :] < lengths[:, None]
    return x * keep.reshape(x.shape[0], *([1] * (x.dim() - 2)), x.shape[-1]).to(x.dtype)


class SequenceWise(nn.Module):
    """Applies ``module`` to (T, B, H) as to (T·B, H)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        t, b = x.shape[:2]
        return self.module(x.reshape(t * b, -1)).reshape(t, b, -1)


class MaskConv(nn.Module):
    def __init__(self, seq_module: nn.Sequential) -> None:
        super().__init__()
        self.seq_module = seq_module

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        for layer in self.seq_module:
            x = _zero_after(layer(x), lengths)
        return x


class BatchRNN(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, rnn_type: str, bidirectional: bool,
                 batch_norm: bool) -> None:
        super().__init__()
        self.batch_norm = SequenceWise(nn.BatchNorm1d(input_size)) if batch_norm else None
        self.rnn = _RNN_CLASSES[rnn_type](input_size=input_size, hidden_size=hidden_size,
                                          bidirectional=bidirectional, bias=True)
        self.bidirectional = bidirectional

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        if self.batch_norm is not None:
            x = self.batch_norm(x)
        packed = pack_padded_sequence(x, lengths.cpu().long(), enforce_sorted=False)
        y, _ = pad_packed_sequence(self.rnn(packed)[0], total_length=x.shape[0])
        if self.bidirectional:
            y = y.reshape(y.shape[0], y.shape[1], 2, -1).sum(2)
        return y


class Lookahead(nn.Module):
    """Depthwise convolution over the next ``context`` frames (zeros after the end): (T, B, H) → (T, B, H)."""

    def __init__(self, n_features: int, context: int) -> None:
        super().__init__()
        self.context = context
        self.conv = nn.Conv1d(n_features, n_features, kernel_size=context, groups=n_features, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        y = nn.functional.pad(x.permute(1, 2, 0), (0, self.context - 1))
        return self.conv(y).permute(2, 0, 1)


class TorchDeepSpeech2(nn.Module):
    """``forward(x (B, 1, F, T) or (B, F, T), lengths (B,)) -> (out (B, T', classes), out_lengths (B,))``.

    ``conv_channels`` (32 in deepspeech.pytorch) scales the convolutions as the demo preset does."""

    def __init__(self, num_classes: int = 29, in_features: int = 161, rnn_type: str = "lstm",
                 hidden_size: int = 1024, hidden_layers: int = 5, bidirectional: bool = True,
                 lookahead_context: int = 20, conv_channels: int = 32) -> None:
        super().__init__()
        self.bidirectional = bidirectional
        c = conv_channels
        self.conv = MaskConv(nn.Sequential(
            nn.Conv2d(1, c, kernel_size=(41, 11), stride=(2, 2), padding=(20, 5)),
            nn.BatchNorm2d(c),
            nn.Hardtanh(0, 20),
            nn.Conv2d(c, c, kernel_size=(21, 11), stride=(2, 1), padding=(10, 5)),
            nn.BatchNorm2d(c),
            nn.Hardtanh(0, 20)))
        rows = in_features
        for kernel, padding in ((41, 20), (21, 10)):
            rows = math.floor((rows + 2 * padding - kernel) / 2) + 1
        size = c * rows
        layers = []
        for i in range(hidden_layers):
            layers.append(BatchRNN(size, hidden_size, rnn_type, bidirectional, batch_norm=i > 0))
            size = hidden_size
        self.rnns = nn.Sequential(*layers)
        self.lookahead = None if bidirectional else nn.Sequential(Lookahead(hidden_size, lookahead_context),
                                                                  nn.Hardtanh(0, 20))
        self.fc = nn.Sequential(SequenceWise(nn.Sequential(nn.BatchNorm1d(hidden_size),
                                                           nn.Linear(hidden_size, num_classes, bias=False))))

    @staticmethod
    def output_lengths(lengths: Tensor) -> Tensor:
        for kernel, stride, padding in ((11, 2, 5), (11, 1, 5)):
            lengths = torch.div(lengths + 2 * padding - kernel, stride, rounding_mode="floor") + 1
        return lengths.int()

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        out_lengths = self.output_lengths(lengths.cpu().int())
        x = self.conv(x, out_lengths)
        b, c, f, t = x.shape
        x = x.reshape(b, c * f, t).permute(2, 0, 1).contiguous()          # (T, B, H)
        for layer in self.rnns:
            x = layer(x, out_lengths)
        if self.lookahead is not None:
            x = self.lookahead(x)
        x = self.fc(x).transpose(0, 1)
        return (x if self.training else torch.softmax(x, dim=-1)), out_lengths


def build_torch_deepspeech2(model_cfg, num_classes: int, in_features: int = 161) -> TorchDeepSpeech2:
    """The PyTorch network of a ``DeepSpeech2Config`` (``config.model``)."""
    return TorchDeepSpeech2(num_classes, in_features, model_cfg.rnn_type, model_cfg.hidden_size,
                            model_cfg.hidden_layers, model_cfg.bidirectional, model_cfg.lookahead_context,
                            getattr(model_cfg, "conv_channels", 32))
