"""Running an acoustic model over evaluation data: batches → log-probabilities → transcripts → WER/CER.

Shared by the trainer's dev evaluation and eval.py.  ``model`` is anything called as
``model(features, lengths)`` returning ``(log_probs (B, T', C), out_lengths (B,))``: a Jasper cell in
inference mode or an ``nn.GraphCell`` of an exported MindIR.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from mindspore import Tensor, nn
from tqdm import tqdm

import src.runtime  # also caps oneDNN's ISA before a loaded MindIR runs (see src/runtime.py)
from src.config import Config

from src.decoding.greedy import greedy_decode
from src.metrics.breakdown import REPORT_COLUMNS
from src.metrics.wer import EditCounts, ErrorRates
from src.text.labels import Labels

Model = Callable[[Tensor, Tensor], tuple]


def load_checkpoint_model(config: Config, checkpoint: str | os.PathLike, ema: bool = False) -> nn.Cell:
    """The Jasper of ``config`` with a checkpoint's (or its EMA) weights, in inference mode."""
    from src.models.jasper import build_model
    from src.training.checkpoint import load_model_weights

    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    model = build_model(config)
    load_model_weights(model, checkpoint, ema=ema)
    model.set_train(False)
    return model


def add_model_args(parser) -> None:
    """The options of every tool that runs a trained model: config, overrides, checkpoint or MindIR,
    EMA weights, device."""
    parser.add_argument("--config", default="src/configs/jasper_tiny.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", "--pretrain_ckpt", dest="checkpoint", help="a .ckpt file")
    model.add_argument("--mindir", help="a MindIR exported by export.py")
    parser.add_argument("--ema", action="store_true", help="use the checkpoint's EMA weights")
    parser.add_argument("--device_target", choices=src.runtime.DEVICES, default="CPU")
    parser.add_argument("--device_id", type=int, default=0)


def load_model(args, config: Config) -> Model:
    """The model chosen by ``add_model_args`` options."""
    if args.mindir:
        return load_mindir_model(args.mindir)
    return load_checkpoint_model(config, args.checkpoint, ema=args.ema)


def export_info_path(model_file: str | os.PathLike) -> Path:
    """``jasper.mindir`` → ``jasper.mindir.json``: the input shape export.py used."""
    return Path(f"{model_file}.json")


class FixedShapeModel:
    """Runs a graph exported with a fixed input (batch_size, n_mels, n_frames) on any batch: frames are
    zero-padded to n_frames (masking inside the graph makes that exact), rows are padded with empty
    utterances or split into several calls."""

    def __init__(self, cell: nn.Cell, batch_size: int, n_frames: int, source: str = "the graph") -> None:
        self.cell, self.batch_size, self.n_frames, self.source = cell, batch_size, n_frames, source

    def __call__(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        feats, lens = features.asnumpy(), lengths.asnumpy()
        if feats.shape[2] > self.n_frames:
            raise ValueError(f"{feats.shape[2]} frames do not fit {self.source}, exported for {self.n_frames}; "
                             "export again with a larger --n_frames (or --dynamic)")
        feats = np.pad(feats, ((0, 0), (0, 0), (0, self.n_frames - feats.shape[2])))
        outs, out_lens = [], []
        for i in range(0, len(feats), self.batch_size):
            f, n = feats[i:i + self.batch_size], lens[i:i + self.batch_size]
            rows = len(f)
            if rows < self.batch_size:  # empty utterances (length 1) fill the fixed batch
                f = np.concatenate([f, np.zeros((self.batch_size - rows, *f.shape[1:]), f.dtype)])
                n = np.concatenate([n, np.ones(self.batch_size - rows, n.dtype)])
            lp, ol = self.cell(Tensor(f), Tensor(n))
            outs.append(lp.asnumpy()[:rows])
            out_lens.append(ol.asnumpy()[:rows])
        return Tensor(np.concatenate(outs)), Tensor(np.concatenate(out_lens))


def load_mindir_model(path: str | os.PathLike) -> Model:
    """An exported MindIR as a callable model.  Its input shape comes from the ``.json`` export.py
    writes beside it; without one the graph is called as it is (a dynamic export)."""
    import json

    import mindspore as ms

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MindIR not found: {path}")
    try:
        cell = nn.GraphCell(ms.load(str(path)))
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"{path}: cannot load the MindIR ({e})") from None
    info_path = export_info_path(path)
    info = json.loads(info_path.read_text()) if info_path.is_file() else {"dynamic": True}
    if info.get("dynamic"):
        return cell
    return FixedShapeModel(cell, int(info["batch_size"]), int(info["n_frames"]), source=str(path))


@dataclass(frozen=True)
class UtteranceResult:
    utt_id: str
    reference: str
    hypothesis: str
    words: EditCounts
    chars: EditCounts


def utterance_report(rows: list[UtteranceResult]) -> str:
    """The per-utterance TSV of eval.py and postprocess.py: id, word errors, reference words, texts."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(REPORT_COLUMNS)
    w.writerows([r.utt_id, r.words.errors, r.words.reference_length, r.reference, r.hypothesis] for r in rows)
    return buf.getvalue()


def predict(model: Model, features: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """features (B, n_mels, T) float32, lengths (B,) int32 → log_probs (B, T', C), out_lengths (B,)."""
    log_probs, out_lengths = model(Tensor(features), Tensor(lengths))
    return log_probs.asnumpy(), out_lengths.asnumpy()


def iterate_predictions(model: Model, data, progress: bool = False, desc: str = "eval"
                        ) -> Iterator[tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Yields (utt_ids, log_probs, out_lengths, tokens, token_lengths) per batch of ``data``
    (a SpeechData built with ``train=False``, so every utterance comes exactly once)."""
    it = data.pipeline(0).create_tuple_iterator(num_epochs=1, output_numpy=True)
    total = len(data.plan(0).batches)
    for feats, lengths, tokens, token_lengths, utt_ids in tqdm(it, total=total, desc=desc, unit="batch",
                                                               disable=not progress, leave=False):
        log_probs, out_lengths = predict(model, feats, lengths)
        yield [str(u) for u in utt_ids], log_probs, out_lengths, tokens, token_lengths


def evaluate(model: Model, data, labels: Labels, progress: bool = False, desc: str = "eval",
             decode: Callable[[np.ndarray, np.ndarray], list[str]] | None = None
             ) -> tuple[ErrorRates, list[UtteranceResult]]:
    """Transcripts of every utterance of ``data`` scored against its reference.  ``decode(log_probs,
    out_lengths) -> texts`` picks the decoder (src.decoding.beam.make_decoder); greedy by default."""
    totals, rows = ErrorRates(), []
    for utt_ids, log_probs, out_lengths, tokens, token_lengths in iterate_predictions(model, data, progress, desc):
        hypotheses = decode(log_probs, out_lengths) if decode else greedy_decode(log_probs, out_lengths, labels)
        for utt_id, hyp, tok, n in zip(utt_ids, hypotheses, tokens, token_lengths):
            ref = labels.decode(tok[:n])
            words, chars = totals.add(ref, hyp)
            rows.append(UtteranceResult(utt_id, ref, hyp, words, chars))
    return totals, rows
