"""Convert ARM's frozen TensorFlow DS-CNN graphs (ML-KWS-for-MCU) into MindSpore checkpoints.

Usage:
    python tf2mind.py --pb DS_CNN_S.pb --config src/configs/dscnn_s.yaml --output dscnn_s_arm.ckpt \\
        [--labels labels.txt] [--set key=value ...]

ARM publishes ``Pretrained_models/DS_CNN/DS_CNN_{S,M,L}.pb`` with ``Pretrained_models/labels.txt``
(utils/arm_kws.csv lists them with their checksums); the matching configs are
``src/configs/dscnn_{s,m,l}.yaml``.  TensorFlow is not needed: the graph's constants are read from
the file directly (src/models/convert_tf.py).

Before anything is written the graph is compared with the config — its MFCC front end (clip length,
window, stride, coefficients, mel channels, frequency limits), every layer's filters, kernel and
stride, BatchNorm epsilon, the number of classes — and with ``--labels`` (default: ``labels.txt``
beside the .pb, when present) the class order must equal the config's ``kws.labels``; every
difference is reported and nothing is written.  The checkpoint appears complete or not at all, and
loads directly in eval.py, export.py and transcribe.py (``--checkpoint``).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger("tf2mind")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from src.runtime import DEVICES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pb", required=True, help="ARM's frozen graph (DS_CNN_S.pb, DS_CNN_M.pb or DS_CNN_L.pb)")
    p.add_argument("--config", default="src/configs/dscnn_s.yaml", help="the matching DS-CNN preset")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--labels", default=None,
                   help="the graph's labels file, one class a line (default: labels.txt beside --pb, if any)")
    p.add_argument("--output", required=True, help="MindSpore checkpoint to write (.ckpt)")
    p.add_argument("--device_target", choices=DEVICES, default="CPU")
    p.add_argument("--device_id", type=int, default=0)
    return p.parse_args(argv)


def labels_path(pb: str | Path, labels: str | None) -> Path | None:
    """``--labels``, else ``labels.txt`` in the graph's folder or its parent (ARM's layout keeps it in
    Pretrained_models/ above DS_CNN/), else None."""
    if labels:
        return Path(labels)
    folder = Path(pb).resolve().parent
    for candidate in (folder / "labels.txt", folder.parent / "labels.txt"):
        if candidate.is_file():
            return candidate
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from src.log import setup_logging
    setup_logging()
    from src.config import ConfigError, load_config
    from src.models import build_model
    from src.models.convert_tf import ConversionError, convert_pb, read_labels
    from src.runtime import configure_device

    try:
        config = load_config(args.config, args.set)
        if config.model.name != "dscnn":
            raise ConversionError(f"{args.config} builds model.name={config.model.name!r}; ARM's graphs are "
                                  "DS-CNNs: use src/configs/dscnn_{s,m,l}.yaml")
        label_file = labels_path(args.pb, args.labels)
        labels = read_labels(label_file) if label_file is not None else None
        if labels is None:
            log.warning("no labels file beside %s: the class order is assumed to be kws.labels %s",
                        args.pb, list(config.kws.labels))
        configure_device(args.device_target, args.device_id)
        import mindspore as ms
        from src.training.checkpoint import write_checkpoint

        model = build_model(config, num_classes=len(config.kws.labels))
        expected = {p.name: tuple(p.shape) for p in model.get_parameters()}
        params, arch = convert_pb(args.pb, config, expected, labels)
        write_checkpoint([{"name": n, "data": ms.Tensor(v)} for n, v in params.items()], args.output)
    except (ConfigError, ConversionError, FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        return 1
    log.info("graph %s: model_size_info %s, %d classes%s", args.pb, " ".join(map(str, arch.model_size_info)),
             arch.num_classes, f" ({label_file})" if label_file else "")
    log.info("converted %d tensors into %s", len(params), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
