"""What every zoo model offers beyond ``construct``, so export, postprocess and the 310 path ask the
model instead of re-deriving its formulas.

A CTC model (Jasper, DeepSpeech2)::

    model(features (B, F, T) float32, lengths (B,) int32) -> (log_probs (B, T', C) float32, out_lengths (B,) int32)

A classifier (DS-CNN)::

    model(features (B, F, T) float32) -> log_probs (B, C) float32
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence, TypeVar

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn

IntLike = TypeVar("IntLike", int, np.ndarray, Tensor)


@contextlib.contextmanager
def explicit_padding(model: nn.Cell, cell_type: type) -> Iterator[nn.Cell]:
    """Within the block every ``cell_type`` cell of ``model`` (a convolution with an ``explicit_pad`` switch)
    compiles to an explicit Pad + 'valid' convolution, the form MindSpore Lite's converter and ONNX take;
    the switch is read when a graph compiles, so the model's other graphs are left as they are."""
    convs = [cell for _, cell in model.cells_and_names() if isinstance(cell, cell_type)]
    for conv in convs:
        conv.explicit_pad = True
    try:
        yield model
    finally:
        for conv in convs:
            conv.explicit_pad = False


def apply_length_convs(lengths: IntLike, convs: Sequence[Sequence[int]]) -> IntLike:
    """Valid frames after a chain of (kernel, stride, dilation, padding) convolutions."""
    for kernel, stride, dilation, padding in convs:
        lengths = (lengths + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    return lengths


class ZooModel(nn.Cell):
    """Base of every family's top-level cell.

    Subclasses set ``in_features``, ``num_classes`` and ``input_names``/``output_names`` and override
    ``output_lengths`` (sequence models) and, where the exported graph differs, ``exported_form``.
    """

    input_names: Sequence[str] = ("features", "lengths")
    output_names: Sequence[str] = ("log_probs", "out_lengths")
    #: input frames per output frame (1 for a classifier)
    time_stride: int = 1
    #: a fixed number of input frames (a classifier of fixed-length clips), else None
    fixed_frames: int | None = None
    #: the time-axis convolutions that set the output length, (kernel, stride, dilation, padding) each;
    #: exported with the model (src/deploy) so postprocessing applies the same rule without the network
    length_convs: tuple[tuple[int, int, int, int], ...] = ()

    def output_lengths(self, lengths: IntLike) -> IntLike:
        """Output frames for input lengths (ints or numpy arrays), exactly as the network computes them."""
        return apply_length_convs(lengths, self.length_convs)

    def export_inputs(self, batch_size: int | None, n_frames: int | None) -> tuple[Tensor, ...]:
        """Example inputs for ``ms.export``: ``None`` leaves that axis open (a dynamic MindIR)."""
        if self.fixed_frames is not None:
            n_frames = self.fixed_frames
        if batch_size is None or n_frames is None:
            shapes = [[batch_size, self.in_features, n_frames], [batch_size]]
            tensors = (Tensor(shape=shapes[0], dtype=ms.float32), Tensor(shape=shapes[1], dtype=ms.int32))
        else:
            tensors = (Tensor(np.zeros((batch_size, self.in_features, n_frames), np.float32)),
                       Tensor(np.full((batch_size,), n_frames, np.int32)))
        return tensors[:len(self.input_names)]

    @contextlib.contextmanager
    def exported_form(self, file_format: str | None = None) -> Iterator[nn.Cell]:
        """Within the block the cell compiles to the form exported graphs of ``file_format`` (MINDIR, ONNX,
        AIR) use, e.g. explicit padding or recurrences in primitive ops; numerically identical to the
        training form."""
        yield self
