"""Features for the C++ inference runner (ascend310_infer/): one .bin file per utterance and the list pairing them.

Usage:
    python preprocess.py --manifest data/dev-clean.json --output_dir infer/dev-clean [--n_frames 1616] \\
        [--config src/configs/jasper_tiny.yaml] [--set features.n_mels=64]

For every utterance of the manifest (original speed), in manifest order, writes
    DIR/features/<utt_id>.bin   float32 [1, n_mels, T_pad]: log-mel features exactly as eval.py computes
                                them (no dither, normalised over the valid frames, zero after them)
    DIR/lengths/<utt_id>.bin    int32 [1]: the number of valid frames
    DIR/utterances.txt          utt_id<TAB>T_pad<TAB>reference transcript, one line per utterance
With ``--n_frames N`` (the frame count the model was exported with) T_pad is N for every utterance;
without it T_pad is the utterance's frame count rounded up to a multiple of features.pad_to (16), which
only a model with an open time axis accepts.  Files are raw little-endian arrays (numpy ``tofile``).
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
    p.add_argument("--manifest", required=True, help="manifest JSON (NVIDIA Jasper format)")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--n_frames", type=int, default=None,
                   help="pad every utterance to this many frames (the model's fixed input length)")
    p.add_argument("--config", default=None, help="YAML config for the feature settings (default: built-in)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--no_progress", action="store_true")
    return p.parse_args(argv)


def utterance_features(audio, feature_cfg, n_frames: int | None, utt_id: str):
    """audio (n,) float32 → (features float32 (1, n_mels, T_pad), valid frames).

    Raises ValueError naming the utterance when it does not fit ``n_frames``.
    """
    import numpy as np

    from src.audio.features import batch_features, padded_frames

    if n_frames is None:
        feats, lengths = batch_features([audio], feature_cfg)
        return feats, int(lengths[0])
    feats, lengths = batch_features([audio], feature_cfg, pad_to=1)
    valid = int(lengths[0])
    if valid > n_frames:
        raise ValueError(f"utterance {utt_id} has {valid} frames ({len(audio) / feature_cfg.sample_rate:.2f} s), "
                         f"more than --n_frames {n_frames}: export the model with a larger --n_frames "
                         f"(at least {padded_frames(valid, feature_cfg.pad_to)}) and preprocess with that value")
    out = np.zeros((1, feats.shape[1], n_frames), np.float32)
    kept = min(n_frames, feats.shape[2])  # frames after the valid ones are zero either way
    out[:, :, :kept] = feats[:, :, :kept]
    return out, valid


def write_array(path: Path, array) -> None:
    """Raw little-endian bytes, renamed into place when complete."""
    from src.fileio import atomic_path

    with atomic_path(path) as tmp:
        array.astype(array.dtype.newbyteorder("<"), copy=False).tofile(tmp)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from src.log import setup_logging
    setup_logging()
    import numpy as np
    from tqdm import tqdm

    from src.audio.io import AudioError, load_audio
    from src.config import ConfigError, load_config
    from src.data.manifest import ManifestError, read_manifest
    from src.fileio import atomic_write_text

    start = time.perf_counter()
    out = Path(args.output_dir)
    try:
        if args.n_frames is not None and args.n_frames <= 0:
            raise ValueError(f"--n_frames must be positive, got {args.n_frames}")
        fc = load_config(args.config, args.set).features
        utts = read_manifest(args.manifest)
        if not utts:
            raise ValueError(f"{args.manifest} lists no utterances")
        seen: set[str] = set()
        for u in utts:
            if u.utt_id in seen:
                raise ValueError(f"{args.manifest}: utterance id {u.utt_id} appears twice; ids name the output files")
            if any(c in u.transcript for c in "\t\r\n"):
                raise ValueError(f"{args.manifest}: the transcript of {u.utt_id} contains a tab or line break")
            seen.add(u.utt_id)
        lines, audio_seconds, longest = [], 0.0, 0
        for u in tqdm(utts, desc="preprocess", unit="utt", disable=args.no_progress):
            audio, _ = load_audio(u.audio_path, target_sr=fc.sample_rate)
            feats, valid = utterance_features(audio, fc, args.n_frames, u.utt_id)
            write_array(out / "features" / f"{u.utt_id}.bin", feats)
            write_array(out / "lengths" / f"{u.utt_id}.bin", np.array([valid], np.int32))
            lines.append(f"{u.utt_id}\t{feats.shape[2]}\t{u.transcript}\n")
            audio_seconds += len(audio) / fc.sample_rate
            longest = max(longest, valid)
        # Written last: a complete list means every file it names is complete.
        atomic_write_text(out / "utterances.txt", "".join(lines))
    except (ConfigError, ManifestError, AudioError, FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        return 1
    shape = f"{args.n_frames} frames each" if args.n_frames else f"padded to multiples of {fc.pad_to} frames"
    log.info("preprocessed %d utterances (%.1f s of audio, longest %d frames; %s) into %s in %.1f s",
             len(lines), audio_seconds, longest, shape, out, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
