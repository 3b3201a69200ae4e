"""Export a trained model of any family to MindIR (what Ascend 310 runs), ONNX, or AIR.

Usage:
    python export.py --config src/configs/jasper_tiny.yaml --checkpoint runs/tiny/checkpoints/jasper-1000.ckpt \\
        --file_name jasper --file_format MINDIR [--n_frames 1616] [--batch_size 1] [--dynamic] [--ema]

A sequence model's graph (Jasper, DeepSpeech2) takes ``features`` float32 (B, F, N) and ``lengths``
int32 (B,) (valid frames; padded frames are masked inside, so padding to N changes nothing) and
returns ``log_probs`` float32 (B, T', classes) and ``out_lengths`` int32 (B,); a keyword classifier
(DS-CNN) takes ``features`` (B, 10, 49) and returns ``log_probs`` (B, classes).  ``--n_frames`` fixes
N (a multiple of features.pad_to; longer utterances cannot run on a fixed-shape graph); ``--dynamic``
leaves the time axis and the batch open in a MindIR instead.  ONNX needs a fixed shape (MindSpore
2.10); AIR is only produced on Ascend.  Writes NAME.mindir / NAME.onnx / NAME.air and the sidecar
NAME.<ext>.json (front end, classes, output-length rule, input shapes: preprocess.py, postprocess.py,
eval.py and transcribe.py read it, so the exported model needs no config).
"""
from __future__ import annotations

import argparse
import logging
import sys

log = logging.getLogger("export")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from src.config import DEFAULT_CONFIG
    from src.deploy.export import FORMATS
    from src.runtime import DEVICES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--checkpoint", "--pre_trained_model_path", dest="checkpoint", required=True)
    p.add_argument("--ema", action="store_true", help="export the checkpoint's EMA weights")
    p.add_argument("--file_name", default=None, help="output path without extension (default: the family's name)")
    p.add_argument("--file_format", choices=sorted(FORMATS), default="MINDIR")
    p.add_argument("--n_frames", type=int, default=1616, help="time frames N of the fixed input (default "
                   "1616 = 16.15 s, NVIDIA's 16.7 s training limit at 10 ms frames, rounded down to 16; "
                   "ignored by models of fixed-length clips)")
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--dynamic", action="store_true", help="MindIR with open batch and time axes")
    p.add_argument("--device_target", choices=DEVICES, default="CPU")
    p.add_argument("--device_id", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from src.log import setup_logging
    setup_logging()
    from src.config import ConfigError, load_config
    from src.deploy.export import export_model
    from src.deploy.loading import load_checkpoint_model
    from src.deploy.sidecar import read_info
    from src.runtime import configure_device
    from src.tasks import get_task

    try:
        if args.file_format == "AIR" and args.device_target != "Ascend":
            raise ValueError("AIR export needs an Ascend device: add --device_target Ascend")
        config = load_config(args.config, args.set)
        configure_device(args.device_target, args.device_id)
        task = get_task(config)
        model = load_checkpoint_model(config, args.checkpoint, ema=args.ema, num_classes=task.num_classes(config))
        path = export_model(model, config, task.class_names(config), args.file_name or config.model.name,
                            args.file_format, args.n_frames, args.batch_size, dynamic=args.dynamic)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        return 1
    shape = ", ".join(f"{spec['name']} {spec['shape']}" for spec in read_info(path).inputs)
    log.info("exported %s (inputs %s, %.1f MB) from %s", path, shape, path.stat().st_size / 2**20, args.checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
