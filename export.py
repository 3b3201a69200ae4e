"""Export a trained Jasper to MindIR (what Ascend 310 runs), ONNX, or AIR.

Usage:
    python export.py --config src/configs/jasper_tiny.yaml --checkpoint runs/tiny/checkpoints/jasper-1000.ckpt \\
        --file_name jasper --file_format MINDIR [--n_frames 1616] [--batch_size 1] [--dynamic] [--ema]

The exported graph takes ``features`` float32 (B, n_mels, N) and ``lengths`` int32 (B,) (valid frames;
padded frames are masked inside, so padding to N changes nothing) and returns ``log_probs`` float32
(B, ceil(N / 2), 29) and ``out_lengths`` int32 (B,).  ``--n_frames`` fixes N (a multiple of 16;
utterances longer than N cannot be run by a fixed-shape graph); ``--dynamic`` leaves the time axis
(and the batch) open in a MindIR instead.  ONNX export needs a fixed shape (MindSpore 2.10); AIR is
only produced on Ascend.  Writes NAME.mindir / NAME.onnx / NAME.air.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("export")

FORMATS = {"MINDIR": ".mindir", "ONNX": ".onnx", "AIR": ".air"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="src/configs/jasper_tiny.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--checkpoint", "--pre_trained_model_path", dest="checkpoint", required=True)
    p.add_argument("--ema", action="store_true", help="export the checkpoint's EMA weights")
    p.add_argument("--file_name", default="jasper", help="output path without extension")
    p.add_argument("--file_format", choices=sorted(FORMATS), default="MINDIR")
    p.add_argument("--n_frames", type=int, default=1616, help="time frames N of the fixed input (default "
                   "1616 = 16.15 s, NVIDIA's 16.7 s training limit at 10 ms frames, rounded down to 16)")
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--dynamic", action="store_true", help="MindIR with open batch and time axes")
    p.add_argument("--device_target", choices=("CPU", "GPU", "Ascend"), default="CPU")
    p.add_argument("--device_id", type=int, default=0)
    return p.parse_args(argv)


def write_export_info(target: Path, info: dict) -> None:
    from src.inference import export_info_path
    from src.fileio import atomic_write_json
    atomic_write_json(export_info_path(target), info)


def export(model, file_name: str, file_format: str, n_frames: int, batch_size: int, n_mels: int,
           dynamic: bool = False) -> Path:
    """Export ``model`` (inference mode) with inputs (features (B, n_mels, N), lengths (B,)); returns the file."""
    import mindspore as ms
    import numpy as np

    from src.models.jasper import exported_form

    if dynamic:
        if file_format != "MINDIR":
            raise ValueError(f"--dynamic works for MINDIR only; {file_format} needs a fixed --n_frames")
        inputs = (ms.Tensor(shape=[None, n_mels, None], dtype=ms.float32), ms.Tensor(shape=[None], dtype=ms.int32))
    else:
        if n_frames <= 0 or n_frames % 16 or batch_size <= 0:
            raise ValueError(f"--n_frames must be a positive multiple of 16 and --batch_size positive, got "
                             f"{n_frames} and {batch_size}")
        inputs = (ms.Tensor(np.zeros((batch_size, n_mels, n_frames), np.float32)),
                  ms.Tensor(np.full((batch_size,), n_frames, np.int32)))
    target = Path(f"{file_name}{FORMATS[file_format]}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_stem = target.with_name(f".{target.stem}.{os.getpid()}.tmp")
    with exported_form(model):
        ms.export(model, *inputs, file_name=str(tmp_stem), file_format=file_format)
    os.replace(f"{tmp_stem}{FORMATS[file_format]}", target)  # appears complete or not at all
    # The graph's input shape travels with it: eval.py and transcribe.py read it.
    write_export_info(target, {"batch_size": None if dynamic else batch_size,
                               "n_frames": None if dynamic else n_frames, "n_mels": n_mels, "dynamic": dynamic})
    return target


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from src.log import setup_logging
    setup_logging()
    from src.config import ConfigError, load_config
    from src.inference import load_checkpoint_model
    from src.runtime import configure_device

    try:
        if args.file_format == "AIR" and args.device_target != "Ascend":
            raise ValueError("AIR export needs an Ascend device: add --device_target Ascend")
        config = load_config(args.config, args.set)
        configure_device(args.device_target, args.device_id)
        model = load_checkpoint_model(config, args.checkpoint, ema=args.ema)
        path = export(model, args.file_name, args.file_format, args.n_frames, args.batch_size,
                      config.features.n_mels, dynamic=args.dynamic)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        return 1
    shape = "dynamic (batch, time)" if args.dynamic else f"batch {args.batch_size} x {args.n_frames} frames"
    log.info("exported %s (%s, %.1f MB) from %s", path, shape, path.stat().st_size / 2**20, args.checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
