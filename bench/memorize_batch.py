"""Optimizer sanity check: can the network memorise one fixed batch?

Usage:
    python bench/memorize_batch.py --data demo_work/mindrecord/dev [--config src/configs/jasper_tiny.yaml]
        [--optimizers novograd:0.01 novograd:0.002 adamw:0.001 adamw:0.003] [--steps 60] [--batch_size 8]

Takes the first batch of a MindRecord folder (no augmentation, no dither) and runs the project's
TrainStep on it repeatedly with each optimizer:lr (constant LR), printing the CTC loss every 10
steps.  A healthy optimizer drives the loss of a fixed batch far down within a few dozen steps.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="MindRecord folder")
    p.add_argument("--config", default="src/configs/jasper_tiny.yaml")
    p.add_argument("--optimizers", nargs="+", default=["novograd:0.01", "novograd:0.002", "adamw:0.001",
                                                        "adamw:0.003"])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch_size", type=int, default=8)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import mindspore as ms
    from mindspore import Tensor

    from src.config import load_config
    from src.data.dataset import SpeechData
    from src.models import build_model
    from src.tasks.asr import CTCLoss
    from src.runtime import configure_device
    from src.training.optim import build_optimizer
    from src.training.train_step import TrainStep, make_loss_scaler

    configure_device("CPU")
    config = load_config(args.config, ["augment.speed_perturb=false", "augment.spec_augment=false",
                                       "features.dither=0", f"data.batch_size={args.batch_size}"])
    data = SpeechData(args.data, config, train=True)
    feats, lengths, tokens, token_lengths, _ = next(iter(data.pipeline(0).create_tuple_iterator(
        num_epochs=1, output_numpy=True)))
    batch = [Tensor(x) for x in (feats, lengths, tokens, token_lengths)]
    for spec in args.optimizers:
        name, lr = spec.split(":")
        ms.set_seed(1)
        model = build_model(config)
        model.set_train(True)
        optim_cfg = dataclasses.replace(config.optim, name=name, lr=float(lr), warmup_steps=0, decay="constant")
        step = TrainStep(CTCLoss(model, data.labels.blank),
                         build_optimizer(model.trainable_params(), optim_cfg, args.steps + 1), make_loss_scaler(config.train))
        losses = [float(step(*batch)[0].asnumpy()) for _ in range(args.steps)]
        print(f"{spec:<16}" + " ".join(f"{losses[i]:8.1f}" for i in range(0, args.steps, 10)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
