"""Models for inference: a checkpoint through the registry, or an exported MindIR through
``nn.GraphCell`` (wrapped to accept any batch when it was exported with a fixed shape)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
from mindspore import Tensor, nn

import src.runtime  # caps oneDNN's ISA before a loaded MindIR runs (see src/runtime.py)
from src.config import DEFAULT_CONFIG, Config
from src.deploy.sidecar import raw_shape_info, resolve_config

Model = Callable[..., tuple]


def add_model_args(parser, default_config: str | None = DEFAULT_CONFIG, required: bool = True) -> None:
    """The options of every tool that runs a trained model: config, overrides, checkpoint or MindIR,
    EMA weights, device.  With ``--mindir`` the config defaults to the model's sidecar."""
    parser.add_argument("--config", default=None,
                        help=f"YAML config (default: the MindIR's sidecar, else {default_config})")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    model = parser.add_mutually_exclusive_group(required=required)
    model.add_argument("--checkpoint", "--pretrain_ckpt", dest="checkpoint", help="a .ckpt file")
    model.add_argument("--mindir", help="a MindIR exported by export.py")
    parser.add_argument("--ema", action="store_true", help="use the checkpoint's EMA weights")
    parser.add_argument("--device_target", choices=src.runtime.DEVICES, default="CPU")
    parser.add_argument("--device_id", type=int, default=0)
    parser.set_defaults(default_config=default_config)


def config_for(args) -> Config:
    """The config of ``add_model_args`` options: a MindIR's sidecar (checked against ``--config`` when
    given), or ``--config`` (default ``DEFAULT_CONFIG``) for a checkpoint."""
    if args.mindir:
        return resolve_config(args.mindir, args.config, args.set)[0]
    from src.config import load_config
    return load_config(args.config or args.default_config, args.set)


def load_checkpoint_model(config: Config, checkpoint: str | os.PathLike, ema: bool = False,
                          num_classes: int | None = None) -> nn.Cell:
    """The registry's model of ``config`` with a checkpoint's (or its EMA) weights, in inference mode."""
    from src.models import build_model
    from src.training.checkpoint import load_model_weights

    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    model = build_model(config, num_classes)
    load_model_weights(model, checkpoint, ema=ema)
    model.set_train(False)
    return model


def load_model(args, config: Config) -> Model:
    """The model chosen by ``add_model_args`` options."""
    if args.mindir:
        return load_mindir_model(args.mindir)
    return load_checkpoint_model(config, args.checkpoint, ema=args.ema)


class FixedShapeModel:
    """Runs a graph exported with a fixed input (batch_size, F, n_frames) on any batch: frames are
    zero-padded to n_frames (masking inside the graph makes that exact), rows are padded with empty
    utterances or split into several calls.  Works for one input (features) or two (features, lengths)."""

    def __init__(self, cell: nn.Cell, batch_size: int, n_frames: int, source: str = "the graph") -> None:
        self.cell, self.batch_size, self.n_frames, self.source = cell, batch_size, n_frames, source

    def __call__(self, features: Tensor, *rest: Tensor):
        feats = features.asnumpy()
        lens = rest[0].asnumpy() if rest else None
        if feats.shape[2] > self.n_frames:
            raise ValueError(f"{feats.shape[2]} frames do not fit {self.source}, exported for {self.n_frames}; "
                             "export again with a larger --n_frames (or --dynamic)")
        feats = np.pad(feats, ((0, 0), (0, 0), (0, self.n_frames - feats.shape[2])))
        outs: list[list[np.ndarray]] = []
        for i in range(0, len(feats), self.batch_size):
            f = feats[i:i + self.batch_size]
            rows = len(f)
            args = [f]
            if lens is not None:
                args.append(lens[i:i + self.batch_size])
            if rows < self.batch_size:  # empty utterances (length 1) fill the fixed batch
                args[0] = np.concatenate([f, np.zeros((self.batch_size - rows, *f.shape[1:]), f.dtype)])
                if lens is not None:
                    args[1] = np.concatenate([args[1], np.ones(self.batch_size - rows, args[1].dtype)])
            result = self.cell(*(Tensor(a) for a in args))
            result = result if isinstance(result, (tuple, list)) else (result,)
            outs.append([r.asnumpy()[:rows] for r in result])
        merged = tuple(Tensor(np.concatenate([o[k] for o in outs])) for k in range(len(outs[0])))
        return merged if len(merged) > 1 else merged[0]


def load_mindir_model(path: str | os.PathLike) -> Model:
    """An exported MindIR as a callable model.  Its input shape comes from the sidecar export.py
    writes beside it; without one the graph is called as it is (a dynamic export)."""
    import mindspore as ms

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MindIR not found: {path}")
    try:
        graph = ms.load(str(path))
        cell = nn.GraphCell(graph)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"{path}: cannot load the MindIR ({e})") from None
    info = raw_shape_info(path) or {"dynamic": True}
    if info.get("dynamic"):
        return GraphPerShape(graph, cell)
    return FixedShapeModel(cell, int(info["batch_size"]), int(info["n_frames"]), source=str(path))


class GraphPerShape:
    """An open-shape MindIR called with inputs of any shape.  One ``GraphCell`` per distinct input shape:
    MindSpore 2.10 cannot run a graph holding a loop (DeepSpeech2's exported recurrence) at a second
    shape in the same cell ("The actor already exists")."""

    def __init__(self, graph, first: nn.Cell) -> None:
        self.graph, self.cells = graph, {}
        self._first = first

    def __call__(self, *inputs: Tensor):
        key = tuple(tuple(x.shape) for x in inputs)
        if key not in self.cells:
            self.cells[key] = self._first if not self.cells else nn.GraphCell(self.graph)
        return self.cells[key](*inputs)
