"""Evaluate a checkpoint or an exported MindIR: WER and CER per data set, and a per-utterance report.

Usage:
    python eval.py --config src/configs/jasper_tiny.yaml --checkpoint runs/tiny/checkpoints/jasper-1000.ckpt \\
        --manifest data/dev-clean.json [data/test-clean.json ...] --output_dir runs/tiny/eval
    python eval.py --config CFG --mindir jasper.mindir --manifest data/test-clean.json --output_dir DIR

``--manifest`` takes manifest JSON files or MindRecord folders (``--data`` is an alias).  Every
utterance is scored exactly once, whatever its length: batches are length-bucketed and padded, never
cropped, and no utterance is dropped or counted twice.  Writes ``OUTPUT_DIR/metrics.json``
(``{"<data set>": {"wer": %, "cer": %, "utterances": n, "words": n, ...}}``) and
``OUTPUT_DIR/<data set>.tsv`` (utt_id, word errors, reference words, reference, hypothesis).
Decoding is greedy by default; ``--decoder beam [--lm_path 4-gram.arpa --alpha A --beta B
--beam_width W --decoder_workers N]`` uses CTC beam search with an optional KenLM n-gram model
(tune α/β with tune_lm.py).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger("eval")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from src.inference import add_model_args
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
    from src.config import ConfigError, load_config
    from src.data.dataset import SpeechData
    from src.data.manifest import ManifestError
    from src.data.mindrecord import mindrecord_for
    from src.decoding.beam import make_decoder, options_from_args
    from src.fileio import atomic_write_json, atomic_write_text
    from src.inference import evaluate, load_model, utterance_report
    from src.runtime import configure_device
    from src.text.labels import load_labels

    out = Path(args.output_dir)
    try:
        config = load_config(args.config, args.set)
        configure_device(args.device_target, args.device_id)
        labels = load_labels(config.labels_path)
        model = load_model(args, config)
        decode = make_decoder(options_from_args(args), labels)
        metrics = {}
        for source in args.manifest:
            name = Path(source).stem if Path(source).suffix == ".json" else Path(source).name
            data = SpeechData(mindrecord_for(source, out / "mindrecord", config), config, train=False,
                              batch_size=args.batch_size)
            rates, rows = evaluate(model, data, labels, progress=not args.no_progress, desc=name, decode=decode)
            metrics[name] = rates.as_dict()
            atomic_write_text(out / f"{name}.tsv", utterance_report(rows))
            log.info("%s: WER %.2f %%  CER %.2f %%  (%d utterances, %d words)", name, rates.wer, rates.cer,
                     rates.utterances, rates.words.reference_length)
        atomic_write_json(out / "metrics.json", metrics)
    except (ConfigError, ManifestError, FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        return 1
    for name, m in metrics.items():
        print(f"{name}\tWER {m['wer']:.2f} %\tCER {m['cer']:.2f} %\t{m['utterances']} utterances")
    log.info("metrics: %s", out / "metrics.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
