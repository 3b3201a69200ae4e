"""Transcribe audio files (wav, flac, ogg; any sample rate; mono or stereo) with a checkpoint or a MindIR.

Usage:
    python transcribe.py --config src/configs/jasper_tiny.yaml --checkpoint CKPT speech.wav [more.flac ...]
    python transcribe.py --config CFG --mindir jasper.mindir speech.wav

Prints ``path<TAB>text`` per file, in the order given.  Audio is resampled to the model's rate and
down-mixed to mono (soxr, soundfile).  A file that cannot be read is reported on stderr and the
others are still transcribed; the exit code is then 1.  ``--decoder beam --lm_path LM.arpa`` uses
beam search with an n-gram language model (see eval.py).
"""
from __future__ import annotations

import argparse
import logging
import sys

log = logging.getLogger("transcribe")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from src.inference import add_model_args
    add_model_args(p)
    p.add_argument("audio", nargs="+", help="audio files")
    p.add_argument("--batch_size", type=int, default=8)
    from src.decoding.beam import add_decoder_args
    add_decoder_args(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from src.log import setup_logging
    setup_logging()
    from src.audio.features import batch_features
    from src.audio.io import AudioError, load_audio
    from src.config import ConfigError, load_config
    from src.decoding.beam import make_decoder, options_from_args
    from src.inference import load_model, predict
    from src.runtime import configure_device
    from src.text.labels import load_labels

    try:
        config = load_config(args.config, args.set)
        configure_device(args.device_target, args.device_id)
        labels = load_labels(config.labels_path)
        model = load_model(args, config)
        decode = make_decoder(options_from_args(args), labels)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        return 1
    audio, failed = {}, 0
    for path in args.audio:
        try:
            audio[path] = load_audio(path, target_sr=config.features.sample_rate)[0]
        except (AudioError, FileNotFoundError) as e:
            log.error("%s", e)
            failed += 1
    # Similar lengths together keep padding small; results are printed in the order given.
    order = sorted(audio, key=lambda p: len(audio[p]))
    texts = {}
    for i in range(0, len(order), args.batch_size):
        paths = order[i:i + args.batch_size]
        feats, lengths = batch_features([audio[p] for p in paths], config.features)
        try:
            log_probs, out_lengths = predict(model, feats, lengths)
        except ValueError as e:  # e.g. longer than a fixed-shape MindIR allows
            log.error("%s: %s", ", ".join(paths), e)
            failed += len(paths)
            continue
        texts.update(zip(paths, decode(log_probs, out_lengths)))
    for path in args.audio:
        if path in texts:
            print(f"{path}\t{texts[path]}", flush=True)
    if failed:
        log.error("%d of %d files could not be transcribed", failed, len(args.audio))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
