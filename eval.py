"""Evaluate a checkpoint or an exported MindIR of any family: WER/CER (speech recognition) or accuracy
(keyword spotting) per data set, and a per-item report.

Usage:
    python eval.py --config src/configs/jasper_tiny.yaml --checkpoint runs/tiny/checkpoints/jasper-1000.ckpt \\
        --manifest data/dev-clean.json [data/test-clean.json ...] --output_dir runs/tiny/eval
    python eval.py --mindir jasper.mindir --manifest data/test-clean.json --output_dir DIR
    python eval.py --config src/configs/dscnn_s.yaml --checkpoint C --manifest OUT/test.json --output_dir E

``--manifest`` takes manifest JSON files or MindRecord folders (``--data`` is an alias).  Every item is
scored exactly once, whatever the set size: batches are length-bucketed and padded, never cropped, the
last batch may be smaller, and nothing is dropped or counted twice; unreadable audio is skipped and
counted (``skipped`` in metrics.json).  A MindIR brings its config in its sidecar (``--config`` is then
only checked against it).  Writes ``OUTPUT_DIR/metrics.json``: ``{"<data set>": {"wer": %, "cer": %,
"utterances": n, "words": n, ...}}`` for speech recognition, ``{"<data set>": {"accuracy": %, "clips": n,
...}}`` for keyword spotting; and the per-item report (``<data set>.tsv``; for keyword spotting also
``<data set>_confusion.png``).  Speech recognition decodes greedily by default; ``--decoder beam
[--lm_path 4-gram.arpa --alpha A --beta B --beam_width W --decoder_workers N]`` uses CTC beam search
with an optional KenLM n-gram model (tune α/β with tune_lm.py).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger("eval")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from src.deploy.loading import add_model_args
    add_model_args(p)
    p.add_argument("--manifest", "--data", dest="manifest", nargs="+", required=True,
                   help="manifest JSON files and/or MindRecord folders")
    p.add_argument("--output_dir", default="eval_results")
    p.add_argument("--batch_size", type=int, default=None, help="default: data.batch_size of the config")
    p.add_argument("--no_progress", action="store_true")
    from src.decoding.beam import add_decoder_args
    add_decoder_args(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from src.log import setup_logging
    setup_logging()
    from src.config import ConfigError
    from src.data.manifest import ManifestError
    from src.deploy.loading import config_for, load_model
    from src.fileio import atomic_write_json
    from src.runtime import configure_device
    from src.tasks import get_task

    out = Path(args.output_dir)
    lines = []
    try:
        if args.batch_size is not None and args.batch_size < 1:
            raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
        config = config_for(args)
        configure_device(args.device_target, args.device_id)
        task = get_task(config)
        model = load_model(args, config)
        evaluator = task.evaluator(config, args)
        metrics = {}
        for source in args.manifest:
            name = Path(source).stem if Path(source).suffix == ".json" else Path(source).name
            data = task.open_data(source, config, train=False, cache_dir=out / "mindrecord", batch_size=args.batch_size)
            evaluation = evaluator(model, data, progress=not args.no_progress, desc=name)
            metrics[name] = evaluation.metrics
            task.write_report(evaluation, out, name)
            lines.append(task.describe(name, evaluation))
            log.info("%s", lines[-1].replace("\t", "  "))
        atomic_write_json(out / "metrics.json", metrics)
    except (ConfigError, ManifestError, FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        return 1
    print("\n".join(lines))
    log.info("metrics: %s", out / "metrics.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
