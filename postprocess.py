"""Transcripts and WER/CER from the C++ runner's outputs (ascend310_infer/).

Usage:
    python postprocess.py --result_dir infer/result --preprocess_dir infer/dev-clean \\
        [--config src/configs/jasper_tiny.yaml] [--set KEY=VALUE] [--dataset_name dev-clean]

Reads PREPROCESS_DIR/utterances.txt (written by preprocess.py) and, for each utterance in it,
RESULT_DIR/<utt_id>_0.bin (log-probabilities, float32 [1, T', classes]) and RESULT_DIR/<utt_id>_1.bin
(output lengths, int32 [1]; when absent they follow from the valid input frames and the model of
--config).  Decodes greedily and scores with the same functions as eval.py, then writes
RESULT_DIR/metrics.json (``{"<dataset name>": {"wer": %, "cer": %, "utterances": n, "words": n, ...}}``;
the name defaults to the preprocess folder's) and RESULT_DIR/report.tsv (utt_id, word_errors,
reference_words, reference, hypothesis: the columns of eval.py's report).
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger("postprocess")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--result_dir", required=True, help="the runner's output folder")
    p.add_argument("--preprocess_dir", required=True, help="preprocess.py's output folder")
    p.add_argument("--config", default=None, help="YAML config: labels and (for missing _1.bin files) the model")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--dataset_name", default=None, help="key in metrics.json (default: the preprocess folder's name)")
    from src.decoding.beam import add_decoder_args
    add_decoder_args(p)
    return p.parse_args(argv)


@dataclass(frozen=True)
class ListedUtterance:
    utt_id: str
    frames: int       # T_pad of the features file
    reference: str


def read_utterance_list(preprocess_dir: Path) -> list[ListedUtterance]:
    path = preprocess_dir / "utterances.txt"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found: run preprocess.py first") from None
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        parts = line.split("\t")
        if len(parts) != 3 or not parts[1].isdigit():
            raise ValueError(f"{path}:{number}: expected 'utt_id<TAB>frames<TAB>transcript', got {line!r}")
        out.append(ListedUtterance(parts[0], int(parts[1]), parts[2]))
    if not out:
        raise ValueError(f"{path} lists no utterances")
    return out


def read_bin(path: Path, dtype: str) -> np.ndarray:
    try:
        return np.fromfile(path, dtype=dtype)
    except FileNotFoundError:
        raise FileNotFoundError(f"missing runner output {path}: run the runner (again) for this preprocess "
                                "folder") from None


def output_length_rule(config):
    """valid input frames → valid output frames (and T_pad, T' of the files when the config has no model).

    With the model of the config this is the network's own arithmetic; without one, the time stride is
    the ratio of the padded input to the output frames (Jasper's convolutions keep ceil(T / stride)).
    """
    blocks = config.model.blocks
    if blocks:
        from src.models.jasper import conv_output_length

        def exact(valid: int, frames: int, out_frames: int) -> int:
            for b in blocks:
                for _ in range(b.repeat):
                    valid = conv_output_length(valid, b.kernel, b.stride, b.dilation, (b.kernel // 2) * b.dilation)
            return int(valid)
        return exact

    def by_stride(valid: int, frames: int, out_frames: int) -> int:
        stride = max(1, round(frames / out_frames))
        return -(-valid // stride)
    return by_stride


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from src.log import setup_logging
    setup_logging()
    from src.config import ConfigError, load_config
    from src.decoding.beam import make_decoder, options_from_args
    from src.fileio import atomic_write_json, atomic_write_text
    from src.inference import UtteranceResult, utterance_report
    from src.metrics.wer import ErrorRates
    from src.text.labels import load_labels

    result_dir, preprocess_dir = Path(args.result_dir), Path(args.preprocess_dir)
    name = args.dataset_name or preprocess_dir.resolve().name
    try:
        config = load_config(args.config, args.set)
        labels = load_labels(config.labels_path)
        utterances = read_utterance_list(preprocess_dir)
        classes = labels.num_classes
        length_rule = None
        decode = make_decoder(options_from_args(args, progress=True), labels)
        outputs, out_lengths_all = [], []
        for u in utterances:
            path = result_dir / f"{u.utt_id}_0.bin"
            log_probs = read_bin(path, "<f4")
            if log_probs.size == 0 or log_probs.size % classes:
                raise ValueError(f"{path} holds {log_probs.size} float32 values, not a multiple of the "
                                 f"{classes} classes of {config.labels_path}: wrong labels or a truncated file")
            log_probs = log_probs.reshape(1, -1, classes)
            lengths_path = result_dir / f"{u.utt_id}_1.bin"
            if lengths_path.is_file():
                out_lengths = read_bin(lengths_path, "<i4")
                if out_lengths.shape != (1,):
                    raise ValueError(f"{lengths_path} holds {out_lengths.size} int32 values; expected 1")
            else:
                length_rule = length_rule or output_length_rule(config)
                valid = read_bin(preprocess_dir / "lengths" / f"{u.utt_id}.bin", "<i4")
                out_lengths = np.array([length_rule(int(valid[0]), u.frames, log_probs.shape[1])])
            if not 0 <= out_lengths[0] <= log_probs.shape[1]:
                raise ValueError(f"{u.utt_id}: output length {out_lengths[0]} outside 0..{log_probs.shape[1]}")
            outputs.append(log_probs[0])
            out_lengths_all.append(int(out_lengths[0]))
        totals, rows = ErrorRates(), []
        for u, hypothesis in zip(utterances, decode(outputs, np.array(out_lengths_all))):
            rows.append(UtteranceResult(u.utt_id, u.reference, hypothesis, *totals.add(u.reference, hypothesis)))
        atomic_write_json(result_dir / "metrics.json", {name: totals.as_dict()})
        atomic_write_text(result_dir / "report.tsv", utterance_report(rows))
    except (ConfigError, FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        return 1
    log.info("%s: WER %.2f %%  CER %.2f %%  (%d utterances, %d words); metrics in %s", name, totals.wer,
             totals.cer, totals.utterances, totals.words.reference_length, result_dir / "metrics.json")
    print(f"{name}\tWER {totals.wer:.2f} %\tCER {totals.cer:.2f} %\t{totals.utterances} utterances")
    return 0


if __name__ == "__main__":
    sys.exit(main())
