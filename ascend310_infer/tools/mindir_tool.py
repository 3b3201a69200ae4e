"""Inspect or convert a MindIR for the C++ runner.

Usage:
    python ascend310_infer/tools/mindir_tool.py shape MODEL.mindir [MODEL.mindir ...]
        prints each model's input shapes, one line per model: the inputs in the model's order separated
        by spaces, each one's dimensions joined by 'x' (-1 for an open dimension), e.g. "1x64x368 1";
        reads MindIR versions 1 (MindSpore Lite) and 3 (MindSpore 2.x) alike.
    python ascend310_infer/tools/mindir_tool.py onnx MODEL.mindir OUTPUT.onnx
        re-exports a fixed-shape MindIR as ONNX (the input of the MindSpore Lite converter), for
        when export.py's ONNX file is not at hand.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

# mind_ir.proto's TensorProto.DataType → numpy dtype names (the ones a model input can have here).
MINDIR_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
                 10: "float16", 11: "float64"}


@dataclass(frozen=True)
class GraphInput:
    name: str
    dtype: str              # numpy dtype name, or "type <n>" when not in MINDIR_DTYPES
    shape: tuple[int, ...]  # -1 for an open dimension

    @property
    def shape_text(self) -> str:
        return "x".join(str(d) for d in self.shape)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    shape = sub.add_parser("shape", help="print the input shapes")
    shape.add_argument("models", nargs="+")
    onnx = sub.add_parser("onnx", help="export the MindIR's graph as ONNX")
    onnx.add_argument("model")
    onnx.add_argument("output")
    return p.parse_args(argv)


def graph_inputs(path: str | os.PathLike) -> list[GraphInput]:
    """The graph inputs recorded in a MindIR file, in the model's input order."""
    from mindspore.train import mind_ir_pb2

    proto = mind_ir_pb2.ModelProto()
    try:
        proto.ParseFromString(Path(path).read_bytes())
    except FileNotFoundError:
        raise FileNotFoundError(f"model file not found: {path}") from None
    except Exception as e:  # protobuf's DecodeError and friends
        raise ValueError(f"{path}: not a MindIR file ({e})") from None
    inputs = [GraphInput(inp.name, MINDIR_DTYPES.get(inp.tensor[0].data_type, f"type {inp.tensor[0].data_type}"),
                         tuple(int(d) for d in inp.tensor[0].dims))
              for inp in proto.graph.input if inp.tensor]
    if not inputs:
        raise ValueError(f"{path}: the graph records no inputs")
    return inputs


def mindir_to_onnx(model: str | os.PathLike, output: str | os.PathLike) -> Path:
    """Export the graph of a fixed-shape MindIR as ONNX (written atomically); returns the file.

    The graph is traced with placeholder inputs of its recorded shapes and types (zeros for floating
    point inputs, ones for integer ones): only their shapes and types shape the exported graph.
    """
    import mindspore as ms
    import numpy as np

    inputs = graph_inputs(model)
    for inp in inputs:
        if not inp.shape or min(inp.shape) <= 0:
            raise ValueError(f"{model} has an open input shape {list(inp.shape)} ({inp.name}); ONNX export needs a "
                             "fixed one: export the ONNX with export.py --file_format ONNX instead")
        if inp.dtype.startswith("type "):
            raise ValueError(f"{model}: input {inp.name} has the unsupported MindIR {inp.dtype}")
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    cell = ms.nn.GraphCell(ms.load(str(model)))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp_stem = output.with_name(f".{output.stem}.{os.getpid()}.tmp")
    placeholders = [ms.Tensor(np.zeros(inp.shape, inp.dtype) if np.dtype(inp.dtype).kind == "f"
                              else np.ones(inp.shape, inp.dtype)) for inp in inputs]
    ms.export(cell, *placeholders, file_name=str(tmp_stem), file_format="ONNX")
    os.replace(f"{tmp_stem}.onnx", output)
    return output


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "shape":
            for model in args.models:
                print(*(inp.shape_text for inp in graph_inputs(model)))
        else:
            print(mindir_to_onnx(args.model, args.output))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
