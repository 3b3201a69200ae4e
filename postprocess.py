"""Scores from the C++ runner's outputs (ascend310_infer/): transcripts and WER/CER, or keyword accuracy.

Usage:
    python postprocess.py --result_dir infer/result --preprocess_dir infer/dev-clean [--dataset_name dev-clean]

Reads PREPROCESS_DIR/utterances.txt and PREPROCESS_DIR/model.json (both written by preprocess.py; the
latter is the model's sidecar: task, classes, output-length rule) and, per item, the runner's outputs
RESULT_DIR/<utt_id>_<k>.bin.  Speech recognition: output 0 is the log-probabilities (float32
[1, T', classes]), output 1 the output lengths (int32 [1]; when absent they follow from the valid input
frames by the model's own rule); decoded greedily (or ``--decoder beam``) and scored with eval.py's
functions.  Keyword spotting: output 0 is the log-probabilities (float32 [1, classes]).  Writes
RESULT_DIR/metrics.json in eval.py's format (the name defaults to the preprocess folder's) and the
same per-item report as eval.py.  ``--config`` is needed only for preprocess folders without model.json,
and is checked against it otherwise.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger("postprocess")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--result_dir", required=True, help="the runner's output folder")
    p.add_argument("--preprocess_dir", required=True, help="preprocess.py's output folder")
    p.add_argument("--config", default=None, help="YAML config (default: PREPROCESS_DIR/model.json)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--dataset_name", default=None, help="key in metrics.json (default: the preprocess folder's name)")
    from src.decoding.beam import add_decoder_args
    add_decoder_args(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from src.log import setup_logging
    setup_logging()
    from src.config import ConfigError
    from src.deploy.bins import MODEL_INFO, read_utterance_list
    from src.deploy.sidecar import processing_info
    from src.fileio import atomic_write_json
    from src.tasks import get_task

    result_dir, preprocess_dir = Path(args.result_dir), Path(args.preprocess_dir)
    name = args.dataset_name or preprocess_dir.resolve().name
    try:
        config, info = processing_info(preprocess_dir / MODEL_INFO, args.config, args.set)
        task = get_task(config)
        items = read_utterance_list(preprocess_dir)
        evaluation = task.postprocess(result_dir, preprocess_dir, items, config, info, args)
        atomic_write_json(result_dir / "metrics.json", {name: evaluation.metrics})
        task.write_report(evaluation, result_dir, "report")
    except (ConfigError, FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        return 1
    line = task.describe(name, evaluation)
    log.info("%s; metrics in %s", line.replace("\t", "  "), result_dir / "metrics.json")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
