"""Inputs for the C++ inference runner (ascend310_infer/): one .bin file per model input and item, and
the lists pairing them.

Usage:
    python preprocess.py --manifest data/dev-clean.json --output_dir infer/dev-clean --mindir jasper.mindir
    python preprocess.py --manifest JSON --output_dir DIR --config src/configs/jasper_tiny.yaml [--n_frames 1616]

With ``--mindir`` the front end, the input names and the fixed input length come from the model's
sidecar (``jasper.mindir.json``, written by export.py): the files hold exactly what the model was
trained on.  A ``--config`` that disagrees with the sidecar is refused.  Without ``--mindir``,
``--config`` (default src/configs/jasper_tiny.yaml) and ``--n_frames`` say it.

For every item of the manifest (original speed), in manifest order, writes
    DIR/<input name>/<utt_id>.bin   e.g. features float32 [1, F, T_pad] (no dither; zero after the valid
                                    frames) and lengths int32 [1] (valid frames) for a sequence model
    DIR/inputs.txt                  the runner's list: per item its input files with dtype and shape
    DIR/utterances.txt              utt_id<TAB>T_pad<TAB>reference (transcript, or class for keywords)
    DIR/model.json                  the sidecar, so postprocess.py needs no config
T_pad is the model's fixed input length, or the item's frame count rounded up to a multiple of
features.pad_to for a model with an open time axis.  Files are raw little-endian arrays.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger("preprocess")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", required=True, help="manifest JSON")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--mindir", default=None, help="the exported model: its sidecar gives front end and shapes")
    p.add_argument("--n_frames", type=int, default=None,
                   help="pad every item to this many frames (default: the model's fixed input length)")
    p.add_argument("--config", default=None, help="YAML config (default: the model's sidecar)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--no_progress", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from src.log import setup_logging
    setup_logging()
    import numpy as np
    from tqdm import tqdm

    from src.audio.features import batch_features
    from src.audio.io import AudioError
    from src.config import DEFAULT_CONFIG, ConfigError, config_to_dict, load_config
    from src.data.manifest import ManifestError
    from src.deploy.bins import MODEL_INFO, ListWriter, fit_frames
    from src.deploy.sidecar import resolve_config
    from src.fileio import atomic_write_json
    from src.tasks import get_task

    start = time.perf_counter()
    out = Path(args.output_dir)
    try:
        if args.n_frames is not None and args.n_frames <= 0:
            raise ValueError(f"--n_frames must be positive, got {args.n_frames}")
        if args.mindir:
            config, info = resolve_config(args.mindir, args.config, args.set)
        else:
            config, info = load_config(args.config or DEFAULT_CONFIG, args.set), None
        task = get_task(config)
        n_frames = args.n_frames
        if info is not None:
            names = [spec["name"] for spec in info.inputs]
            if info.n_frames is not None:
                if n_frames is not None and n_frames != info.n_frames:
                    raise ValueError(f"--n_frames {n_frames} but {args.mindir} takes {info.n_frames} frames")
                n_frames = info.n_frames
            model_info = info.to_json()
        else:
            names = task.input_names
            model_info = {"format": 0, "task": config.task, "classes": task.class_names(config),
                          "config": config_to_dict(config), "length_convs": None}
        fc = config.features
        writer = ListWriter(out, names)
        skipped, audio_seconds, longest = 0, 0.0, 0
        items = task.preprocess_items(args.manifest, config)
        for utt_id, reference, load in tqdm(items, desc="preprocess", unit="item", disable=args.no_progress):
            try:
                audio = load()
            except (AudioError, FileNotFoundError) as e:
                log.warning("skipping %s: %s", utt_id, e)
                skipped += 1
                continue
            feats, lengths = batch_features([audio], fc, pad_to=1)
            valid = int(lengths[0])
            arrays = {"features": fit_frames(feats, valid, n_frames, fc.pad_to, utt_id),
                      "lengths": np.array([valid], np.int32)}
            writer.add(utt_id, [arrays[n] for n in names], reference)
            audio_seconds += len(audio) / fc.sample_rate
            longest = max(longest, valid)
        if not writer.items:
            raise ValueError(f"{args.manifest}: no usable items")
        atomic_write_json(out / MODEL_INFO, model_info)
        writer.close()   # last: complete lists name complete files
    except (ConfigError, ManifestError, AudioError, FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        return 1
    shape = f"{n_frames} frames each" if n_frames else f"padded to multiples of {fc.pad_to} frames"
    log.info("preprocessed %d items (%.1f s of audio, longest %d frames; %s; %d skipped) into %s in %.1f s",
             len(writer.items), audio_seconds, longest, shape, skipped, out, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
