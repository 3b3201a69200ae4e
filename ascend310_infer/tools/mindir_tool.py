"""Inspect or convert a MindIR for the C++ runner.

Usage:
    python ascend310_infer/tools/mindir_tool.py shape MODEL.mindir [MODEL.mindir ...]
        prints each model's feature input shape "B N_MELS T" (-1 for an open dimension), one line per
        model; reads MindIR versions 1 (MindSpore Lite) and 3 (MindSpore 2.x) alike.
    python ascend310_infer/tools/mindir_tool.py onnx MODEL.mindir OUTPUT.onnx
        re-exports a fixed-shape MindIR as ONNX (the input of the MindSpore Lite converter), for
        when export.py's ONNX file is not at hand.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    shape = sub.add_parser("shape", help="print the feature input shapes")
    shape.add_argument("models", nargs="+")
    onnx = sub.add_parser("onnx", help="export the MindIR's graph as ONNX")
    onnx.add_argument("model")
    onnx.add_argument("output")
    return p.parse_args(argv)


def input_shapes(path: str | os.PathLike) -> list[list[int]]:
    """Shapes of the graph inputs recorded in a MindIR file (in input order)."""
    from mindspore.train import mind_ir_pb2

    proto = mind_ir_pb2.ModelProto()
    try:
        proto.ParseFromString(Path(path).read_bytes())
    except FileNotFoundError:
        raise FileNotFoundError(f"model file not found: {path}") from None
    except Exception as e:  # protobuf's DecodeError and friends
        raise ValueError(f"{path}: not a MindIR file ({e})") from None
    shapes = [[int(d) for d in inp.tensor[0].dims] for inp in proto.graph.input if inp.tensor]
    if len(shapes) != 2 or len(shapes[0]) != 3:
        raise ValueError(f"{path}: inputs {shapes}; expected features [B, n_mels, T] and lengths [B]")
    return shapes


def mindir_to_onnx(model: str | os.PathLike, output: str | os.PathLike) -> Path:
    """Export the graph of a fixed-shape MindIR as ONNX (written atomically); returns the file."""
    import mindspore as ms
    import numpy as np

    (batch, n_mels, frames), _ = input_shapes(model)
    if min(batch, n_mels, frames) <= 0:
        raise ValueError(f"{model} has an open input shape {[batch, n_mels, frames]}; ONNX export needs a fixed one: "
                         "export the ONNX with export.py --file_format ONNX --n_frames N instead")
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    cell = ms.nn.GraphCell(ms.load(str(model)))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp_stem = output.with_name(f".{output.stem}.{os.getpid()}.tmp")
    ms.export(cell, ms.Tensor(np.zeros((batch, n_mels, frames), np.float32)),
              ms.Tensor(np.full((batch,), frames, np.int32)), file_name=str(tmp_stem), file_format="ONNX")
    os.replace(f"{tmp_stem}.onnx", output)
    return output


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "shape":
            for model in args.models:
                print(*input_shapes(model)[0])
        else:
            print(mindir_to_onnx(args.model, args.output))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
