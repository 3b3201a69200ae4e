"""Convert PyTorch checkpoints into MindSpore checkpoints of this project's models: NVIDIA's Jasper and
deepspeech.pytorch's DeepSpeech2 (the family ``--config`` names in ``model.name``).

Usage:
    pip install torch==2.13.0        # Jasper checkpoints only (a CPU wheel); DeepSpeech2 needs no PyTorch
    python pt2mind.py --pt_checkpoint jasper_fp16.pt --config src/configs/jasper10x5dr.yaml \\
        --output jasper10x5dr_nvidia.ckpt [--ema]
    python pt2mind.py --pt_checkpoint librispeech_pretrained_v3.ckpt --config src/configs/deepspeech2.yaml \\
        --output deepspeech2_librispeech.ckpt

Jasper: DeepLearningExamples checkpoints (keys ``state_dict`` / ``ema_state_dict``; ``--ema`` picks
the averaged weights), their 2019 layout (``jasper_encoder.*`` / ``jasper_decoder.*``), NeMo state
dicts and ``.nemo`` archives, read with ``torch.load(weights_only=True)``: tensors and plain
containers only, never arbitrary pickled objects.

DeepSpeech2: deepspeech.pytorch's PyTorch Lightning ``.ckpt`` files (or a bare state dict), read by
src/models/convert_deepspeech2.py without PyTorch and without running anything from the file: its
hyper-parameters (OmegaConf / dataclass records) become plain values, and the architecture, labels and
spectrogram settings they and the tensors describe must match ``--config``.  The output classes are
reordered from deepspeech.pytorch's labels (blank first, upper case) to labels.json's (blank last).

Every tensor of the checkpoint must find exactly one parameter of the model built from ``--config``
and every parameter must be filled, with shapes checked; anything else is an error naming the
tensors.  The result loads directly in eval.py, export.py and transcribe.py (``--checkpoint``).
"""
from __future__ import annotations

import argparse
import io
import logging
import pickle
import re
import sys
import tarfile
from pathlib import Path

import numpy as np

log = logging.getLogger("pt2mind")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pt_checkpoint", required=True, help="a PyTorch .pt/.ckpt file or a .nemo archive")
    p.add_argument("--config", default="src/configs/jasper10x5dr.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--output", required=True, help="MindSpore checkpoint to write (.ckpt)")
    p.add_argument("--ema", action="store_true", help="take ema_state_dict (DeepLearningExamples)")
    return p.parse_args(argv)


def _torch():
    try:
        import torch
    except ImportError:
        raise SystemExit("pt2mind.py needs PyTorch: pip install torch==2.13.0") from None
    return torch


def read_torch_state(path: str | Path, ema: bool = False) -> dict[str, np.ndarray]:
    """The model tensors of a PyTorch checkpoint as numpy arrays (no code from the file is run)."""
    torch = _torch()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    source: str | io.BytesIO = str(path)
    if tarfile.is_tarfile(path):  # .nemo: a tar holding model_weights.ckpt
        with tarfile.open(path) as tar:
            member = next((m for m in tar.getmembers() if m.name.endswith("model_weights.ckpt")), None)
            if member is None:
                raise ValueError(f"{path}: archive without model_weights.ckpt; is it a .nemo file?")
            source = io.BytesIO(tar.extractfile(member).read())
    try:
        obj = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # a refused object: PyTorch's message would suggest unsafe loading
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        raise ValueError(f"{path} holds objects this converter does not load"
                         f"{f' ({found.group(1)})' if found else ''}: it reads tensors and plain containers only "
                         "(torch.load with weights_only=True)") from None
    except Exception as e:  # corrupt or foreign files
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "weights_only" in reason:
            reason = type(e).__name__
        raise ValueError(f"{path}: cannot read it as a PyTorch checkpoint ({reason})") from None
    if isinstance(obj, dict) and ("state_dict" in obj or "ema_state_dict" in obj):
        key = "ema_state_dict" if ema else "state_dict"
        if key not in obj:
            raise ValueError(f"{path} has no {key!r} (keys: {sorted(obj)[:10]})"
                             + ("; drop --ema" if ema else ""))
        obj = obj[key]
    elif ema:
        raise ValueError(f"{path} holds one set of weights only; drop --ema")
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(obj).__name__}")
    state = {}
    for name, value in obj.items():
        if not hasattr(value, "detach"):
            raise ValueError(f"{path}: entry {name!r} is not a tensor")
        state[name.removeprefix("module.")] = value.detach().float().numpy()
    return state


def convert_jasper(args: argparse.Namespace, config) -> dict[str, np.ndarray]:
    """NVIDIA's Jasper tensors → this model's parameters (name → array)."""
    from src.models import build_model
    from src.models.convert import convert_state_dict

    state = read_torch_state(args.pt_checkpoint, ema=args.ema)
    model = build_model(config)
    expected = {p.name: tuple(p.shape) for p in model.get_parameters()}
    return convert_state_dict(state, expected, config)


def convert_deepspeech2(args: argparse.Namespace, config) -> dict[str, np.ndarray]:
    """deepspeech.pytorch's DeepSpeech2 checkpoint → this model's parameters (name → array)."""
    from src.models import build_model
    from src.models.convert_deepspeech2 import convert_deepspeech2_checkpoint
    from src.text.labels import load_labels

    if args.ema:
        raise ValueError("deepspeech.pytorch checkpoints hold one set of weights; drop --ema")
    model = build_model(config)
    expected = {p.name: tuple(p.shape) for p in model.get_parameters()}
    return convert_deepspeech2_checkpoint(args.pt_checkpoint, config, expected,
                                          load_labels(config.labels_path).symbols)


CONVERTERS = {"jasper": convert_jasper, "deepspeech2": convert_deepspeech2}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from src.log import setup_logging
    setup_logging()
    from src.config import ConfigError, load_config
    import mindspore as ms
    from src.models.convert import ConversionError
    from src.runtime import configure_device
    from src.training.checkpoint import write_checkpoint

    try:
        config = load_config(args.config, args.set)
        family = config.model.name
        if family not in CONVERTERS:
            raise ValueError(f"--config has model.name={family!r}; pt2mind.py converts {sorted(CONVERTERS)} "
                             "checkpoints (tf2mind.py takes DS-CNN graphs)")
        if not Path(args.pt_checkpoint).is_file():
            raise FileNotFoundError(f"checkpoint not found: {args.pt_checkpoint}")
        configure_device("CPU")
        params = CONVERTERS[family](args, config)
        write_checkpoint([{"name": n, "data": ms.Tensor(v)} for n, v in params.items()], args.output)
    except (ConfigError, ConversionError, FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        return 1
    log.info("converted %d tensors of %s (%s) into %s", len(params), args.pt_checkpoint,
             "EMA weights" if args.ema else "weights", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
