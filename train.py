"""Train any model of the zoo (Jasper, DeepSpeech2, DS-CNN) on CPU, GPU or Ascend; standalone or data
parallel; resumable.  The config's task picks the loss and the evaluation (CTC and WER for speech
recognition, cross-entropy and accuracy for keyword spotting).

Usage:
    python train.py --config src/configs/jasper_tiny.yaml --train_data data/mindrecord/train \\
        --dev_data data/mindrecord/dev --output_dir runs/tiny [--epochs N] [--max_steps N] [--resume]
        [--device_target CPU|GPU|Ascend] [--device_id N] [--loss_scale none|dynamic|1024]
        [--pre_trained_model_path CKPT] [--is_distributed] [--set section.key=value ...]

``--train_data``/``--dev_data`` take a MindRecord folder (create_mindrecord.py) or a manifest JSON
(written to MindRecord under the output folder first).    ``--data_dir DIR`` is a shorthand for
``--train_data DIR/train --dev_data DIR/dev``.  Checkpoints, the resolved config.yaml, the training
log (CSV/JSON lines) and a loss/metric plot go to ``OUTPUT_DIR/checkpoints``; ``--resume`` continues
from the newest checkpoint there (model, optimizer, LR position, loss scale, EMA, data position).
Distributed runs are launched by scripts/run_distribute_train_{cpu,gpu,ascend}.sh.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger("train")


def _bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "y"):
        return True
    if value.lower() in ("0", "false", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from src.config import DEFAULT_CONFIG
    from src.runtime import DEVICES
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, repeatable")
    p.add_argument("--train_data", help="MindRecord folder or manifest JSON")
    p.add_argument("--dev_data", help="MindRecord folder or manifest JSON for periodic dev evaluation")
    p.add_argument("--data_dir", help="folder with train/ (and dev/) MindRecord folders")
    p.add_argument("--output_dir", default="runs/jasper")
    p.add_argument("--epochs", type=int, default=None, help="overrides train.epochs")
    p.add_argument("--max_steps", type=int, default=None, help="overrides train.max_steps")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUTPUT_DIR")
    p.add_argument("--pre_trained_model_path", "--pretrained", dest="pretrained", default=None,
                   help="initialise the model weights from this checkpoint")
    p.add_argument("--is_distributed", nargs="?", const=True, default=None, type=_bool,
                   help="data-parallel training (set automatically under msrun / a rank table)")
    p.add_argument("--device_target", choices=DEVICES, default="CPU")
    p.add_argument("--device_id", type=int, default=0)
    p.add_argument("--loss_scale", default=None, help="none | dynamic | a fixed value (train.loss_scale)")
    p.add_argument("--amp_level", default=None, help="auto | O0 | O1 | O2 | O3 (train.amp_level)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    p.add_argument("--log_all_ranks", action="store_true", help="every rank logs at INFO (default: rank 0 only)")
    args = p.parse_args(argv)
    if args.data_dir:
        args.train_data = args.train_data or str(Path(args.data_dir) / "train")
        if args.dev_data is None and (Path(args.data_dir) / "dev").is_dir():
            args.dev_data = str(Path(args.data_dir) / "dev")
    if not args.train_data:
        p.error("give --train_data (or --data_dir)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from src.log import setup_logging
    setup_logging(all_ranks=args.log_all_ranks)
    from src.config import ConfigError, load_config
    from src.data.manifest import ManifestError
    from src.training.distributed import init_cluster, launched_distributed
    from src.runtime import configure_device
    from src.tasks import get_task
    from src.training.trainer import RunOptions, Trainer

    overrides = list(args.set)
    if args.loss_scale is not None:
        overrides.append(f"train.loss_scale={args.loss_scale}")
    if args.amp_level is not None:
        overrides.append(f"train.amp_level={args.amp_level}")
    try:
        config = load_config(args.config, overrides)
        configure_device(args.device_target, args.device_id, seed=config.train.seed)
        distributed = args.is_distributed if args.is_distributed is not None else launched_distributed()
        cluster = init_cluster(distributed)
        options = RunOptions(args.train_data, args.dev_data, args.output_dir, args.device_target, args.epochs,
                             args.max_steps, args.resume, args.pretrained, progress=not args.no_progress)
        Trainer(config, options, cluster, get_task(config)).run()
    except (ConfigError, ManifestError, FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
