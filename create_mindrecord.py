"""Write manifests' utterances into MindRecord shards for training and evaluation.

Usage:
    python create_mindrecord.py --manifest data/librispeech-train-clean-100-wav.json [more.json ...] \\
        --output_dir data/mindrecord/train --num_shards 8 [--store audio|features] [--parallel 4]

The schema is documented in src/data/mindrecord.py and the README.  Audio is stored as int16 PCM
by default so augmentation stays fresh every epoch; ``--store features`` stores log-mel features
instead (faster to read, no speed perturbation or dither).  With a config whose front end trims
edge silence (``--set features.trim_db=35``), the audio is stored trimmed.  Shards already written
for the same inputs are kept, so an interrupted run resumes (a shard whose files no longer have the
sizes recorded when it was written, e.g. truncated, is written again).  Unusable utterances are
skipped and counted ("not found" for missing files); an id listed twice keeps its first usable copy;
an empty transcript is stored with a warning.  With a keyword-spotting config (``task: kws``) the
manifest is a keyword manifest (utils/convert_speech_commands.py) and the folder holds clips, labels
and the background noise (src/data/keywords.py).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from src.config import ConfigError, load_config
from src.data.manifest import ManifestError, read_manifest
from src.data.mindrecord import STORES, write_mindrecord
from src.log import setup_logging
from src.text.labels import load_labels

log = logging.getLogger("create_mindrecord")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", nargs="+", required=True, help="one or more manifest JSON files")
    p.add_argument("--data_dir", default=None, help="folder the manifests' fnames are relative to "
                   "(default: each manifest's own folder)")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--num_shards", type=int, default=1)
    p.add_argument("--store", choices=STORES, default="audio")
    p.add_argument("--speeds", default="1.0", help="which manifest files to store: '1.0' (the originals), "
                   "a comma list such as '0.9,1.0,1.1' (offline speed-perturbed copies), or 'all'")
    p.add_argument("--config", default=None, help="YAML config (labels, the front end's trim, and "
                   "its feature settings for --store features)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--prefix", default="data", help="shard file name prefix")
    p.add_argument("--parallel", type=int, default=os.cpu_count() or 1, help="shards written at once")
    p.add_argument("--no_progress", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    start = time.perf_counter()
    try:
        config = load_config(args.config, args.set)
        if config.task == "kws":  # keyword manifests: one folder of clips (src/data/keywords.py)
            if len(args.manifest) != 1:
                raise ValueError("keyword spotting takes one keyword manifest per MindRecord folder")
            from src.data.keywords import write_keyword_mindrecord
            index = write_keyword_mindrecord(args.manifest[0], args.output_dir, config, args.num_shards,
                                             progress=not args.no_progress)
            log.info("wrote %d clips (%d skipped) in %d shards to %s in %.1f s", index["records"], index["skipped"],
                     len(index["shards"]), args.output_dir, time.perf_counter() - start)
            return 0
        labels = load_labels(config.labels_path)
        speeds = None if args.speeds == "all" else tuple(float(s) for s in args.speeds.split(","))
        # An id listed twice keeps its first usable copy (write_mindrecord decides and reports it).
        utts = [u for m in args.manifest for u in read_manifest(m, args.data_dir, speeds)]
        index = write_mindrecord(utts, args.output_dir, args.num_shards, labels, store=args.store,
                                 feature_cfg=config.features, prefix=args.prefix, parallel=args.parallel,
                                 progress=not args.no_progress)
    except (ConfigError, ManifestError, FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        return 1
    log.info("wrote %d records (%.2f h, %d skipped, %d duplicate ids dropped) in %d shards to %s in %.1f s",
             index["records"], index["hours"], index["skipped"], index.get("duplicates", 0), len(index["shards"]),
             args.output_dir, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
