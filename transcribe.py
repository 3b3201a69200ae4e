"""Transcribe audio files (wav, flac, ogg; any sample rate; mono or stereo) with a checkpoint or a MindIR
of any family: text for speech recognition, the keyword of a clip or timed detections in a longer
recording for keyword spotting.

Usage:
    python transcribe.py --config src/configs/jasper_tiny.yaml --checkpoint CKPT speech.wav [more.flac ...]
    python transcribe.py --mindir jasper.mindir speech.wav
    python transcribe.py --config src/configs/dscnn_s.yaml --checkpoint CKPT clip.wav long_recording.wav

Prints ``path<TAB>text`` per file, in the order given (keyword spotting: the label of a clip of at
most one clip length; for a longer recording ``path<TAB>time_s<TAB>label<TAB>score`` per detection).
Audio is resampled to the model's rate and down-mixed to mono (soxr, soundfile).  A file that cannot
be read is reported on stderr and the others are still transcribed; the exit code is then 1.
``--decoder beam --lm_path LM.arpa`` uses beam search with an n-gram language model (see eval.py).
"""
from __future__ import annotations

import argparse
import logging
import sys

log = logging.getLogger("transcribe")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from src.deploy.loading import add_model_args
    add_model_args(p)
    p.add_argument("audio", nargs="+", help="audio files")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--chunk_seconds", type=float, default=None,
                   help="speech recognition: recordings longer than this are transcribed in overlapping "
                        "chunks with bounded memory (default: the task's)")
    from src.decoding.beam import add_decoder_args
    add_decoder_args(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from src.log import setup_logging
    setup_logging()
    from src.audio.io import AudioError, load_audio
    from src.config import ConfigError
    from src.deploy.loading import config_for, load_model
    from src.runtime import configure_device
    from src.tasks import get_task

    try:
        config = config_for(args)
        configure_device(args.device_target, args.device_id)
        task = get_task(config)
        model = load_model(args, config)
        transcriber = task.transcriber(model, config, args)
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
    results, errors = transcriber(audio)
    for path, message in errors.items():
        log.error("%s: %s", path, message)
    for path in args.audio:
        for line in results.get(path, []):
            print(f"{path}\t{line}", flush=True)
    failed += len(errors)
    if failed:
        log.error("%d of %d files could not be transcribed", failed, len(args.audio))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
