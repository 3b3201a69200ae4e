"""Speech recognition with CTC: the loss, batches of (features, lengths, tokens, token lengths),
greedy or beam decoding, WER/CER and the per-utterance report.

``model`` below is anything called as ``model(features, lengths)`` returning
``(log_probs (B, T', C), out_lengths (B,))``: a Jasper or DeepSpeech2 cell in inference mode or an
exported MindIR (src/deploy).
"""
from __future__ import annotations

import csv
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops
from tqdm import tqdm

from src.decoding.greedy import greedy_decode
from src.metrics.breakdown import REPORT_COLUMNS
from src.metrics.wer import EditCounts, ErrorRates
from src.tasks import Evaluation
from src.text.labels import Labels, load_labels

log = logging.getLogger(__name__)

Model = Callable[[Tensor, Tensor], tuple]


class CTCLoss(nn.Cell):
    """Mean over the batch of each utterance's CTC loss (summed over its tokens, NVIDIA's convention).

    Utterances that cannot be aligned give 0 (zero_infinity) instead of inf.
    """

    def __init__(self, model: nn.Cell, blank: int) -> None:
        super().__init__(auto_prefix=False)
        self.model, self.blank = model, blank

    def construct(self, feats: Tensor, feat_lens: Tensor, tokens: Tensor, token_lens: Tensor) -> Tensor:
        """feats (B, F, T), feat_lens (B,), tokens (B, S), token_lens (B,) → scalar loss."""
        log_probs, out_lens = self.model(feats, feat_lens)
        loss, _ = ops.ctc_loss(log_probs.astype(ms.float32).transpose(1, 0, 2), tokens, out_lens, token_lens,
                               blank=self.blank, reduction="none", zero_infinity=True)
        return loss.mean()


@dataclass(frozen=True)
class UtteranceResult:
    utt_id: str
    reference: str
    hypothesis: str
    words: EditCounts
    chars: EditCounts


def utterance_report(rows: list[UtteranceResult]) -> str:
    """The per-utterance TSV of eval.py and postprocess.py: id, word errors, reference words, texts."""
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(REPORT_COLUMNS)
    w.writerows([r.utt_id, r.words.errors, r.words.reference_length, r.reference, r.hypothesis] for r in rows)
    return buf.getvalue()


def predict(model: Model, features: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """features (B, F, T) float32, lengths (B,) int32 → log_probs (B, T', C), out_lengths (B,)."""
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


class AsrTask:
    """CTC speech recognition (Jasper, DeepSpeech2)."""

    name = "asr"
    input_names = ("features", "lengths")
    primary = "wer"
    higher_is_better = False
    report_suffix = ".tsv"

    def labels(self, config) -> Labels:
        return load_labels(config.labels_path)

    def num_classes(self, config) -> int:
        """Symbols of the labels file + the CTC blank."""
        return self.labels(config).num_classes

    def class_names(self, config) -> list[str]:
        """The label symbols (the blank is the class after them), recorded in an export's sidecar."""
        return list(self.labels(config).symbols)

    def loss_cell(self, net: nn.Cell, config) -> nn.Cell:
        return CTCLoss(net, self.labels(config).blank)

    def open_data(self, source: str | os.PathLike, config, train: bool, cache_dir: str | os.PathLike,
                  rank: int = 0, world: int = 1, output_stride: int = 1, batch_size: int | None = None):
        """A MindRecord folder (or a manifest, written to MindRecord under ``cache_dir`` first) as batches
        ``(features, lengths, tokens, token_lengths, utt_ids)``."""
        from src.data.dataset import SpeechData
        from src.data.mindrecord import mindrecord_for

        return SpeechData(mindrecord_for(source, cache_dir, config), config, train=train, rank=rank, world=world,
                          output_stride=output_stride, batch_size=batch_size)

    def batch_stats(self, batch: tuple, config) -> tuple[int, float]:
        """(utterances, seconds of audio) of a training batch."""
        feats, lengths = batch[0], batch[1]
        fc = config.features
        return feats.shape[0], float(lengths.sum()) * fc.hop_length / fc.sample_rate

    def evaluator(self, config, args=None) -> Callable[..., Evaluation]:
        """``evaluate`` with the decoder chosen by eval.py's decoder options (greedy without them)."""
        from src.decoding.beam import make_decoder, options_from_args

        decode = make_decoder(options_from_args(args), self.labels(config)) if args is not None else None

        def run(model: Model, data, progress: bool = False, desc: str = "eval") -> Evaluation:
            return self.evaluate(model, data, config, progress=progress, desc=desc, decode=decode)
        return run

    def evaluate(self, model: Model, data, config, progress: bool = False, desc: str = "eval",
                 decode: Callable | None = None) -> Evaluation:
        rates, rows = evaluate(model, data, self.labels(config), progress=progress, desc=desc, decode=decode)
        # Utterances whose audio could not be read (or was missing) when the set was written to MindRecord:
        # not scored, so always reported next to the count of those that were.
        skipped = int(getattr(data, "skipped", 0))
        if skipped:
            log.warning("%s: %d utterance(s) skipped when the data set was written (unreadable or missing audio; "
                        "named in the log when it was written) and not scored", desc, skipped)
        return Evaluation({**rates.as_dict(), "skipped": skipped}, rows, self.primary, self.higher_is_better)

    def write_report(self, evaluation: Evaluation, out_dir: Path, name: str) -> list[Path]:
        from src.fileio import atomic_write_text
        path = Path(out_dir) / f"{name}.tsv"
        atomic_write_text(path, utterance_report(evaluation.rows))
        return [path]

    def transcriber(self, model: Model, config, args) -> Callable[[dict], tuple[dict, dict]]:
        """``run({path: audio}) -> ({path: [text]}, {path: error})`` for transcribe.py: batches of similar
        lengths; recordings longer than ``--chunk_seconds`` (default 20 s) go through src.tasks.long_audio
        in overlapping chunks, so memory stays bounded whatever their length."""
        from src.audio.features import batch_features
        from src.decoding.beam import make_decoder, options_from_args
        from src.tasks import long_audio

        decode = make_decoder(options_from_args(args), self.labels(config))
        batch_size = max(1, getattr(args, "batch_size", 8))
        chunk_seconds = getattr(args, "chunk_seconds", None) or long_audio.DEFAULT_CHUNK_SECONDS
        if chunk_seconds <= 0:
            raise ValueError(f"--chunk_seconds must be > 0, got {chunk_seconds}")
        longest = int(chunk_seconds * config.features.sample_rate)
        stride, convs, max_window = long_audio.model_geometry(model, getattr(args, "mindir", None))
        overlap = long_audio.overlap_for(convs, config.features)

        def model_predict(feats: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return predict(model, feats, lengths)

        def run(audio: dict) -> tuple[dict, dict]:
            nonlocal stride
            texts, errors = {}, {}
            # Similar lengths together keep padding small; results are returned per path.
            short = sorted((p for p in audio if len(audio[p]) <= longest), key=lambda p: len(audio[p]))
            for i in range(0, len(short), batch_size):
                paths = short[i:i + batch_size]
                feats, lengths = batch_features([audio[p] for p in paths], config.features)
                try:
                    log_probs, out_lengths = predict(model, feats, lengths)
                except ValueError as e:  # e.g. longer than a fixed-shape MindIR allows
                    errors.update({p: str(e) for p in paths})
                    continue
                texts.update((p, [t]) for p, t in zip(paths, decode(log_probs, out_lengths)))
            for p in (p for p in audio if len(audio[p]) > longest):
                try:
                    if stride is None:
                        stride = long_audio.probe_stride(model_predict, config.features.feature_dim,
                                                         min(960, max_window or 960))
                    texts[p] = [long_audio.transcribe_long(model_predict, decode, audio[p], config.features, stride,
                                                           chunk_seconds, overlap, max_window)]
                except ValueError as e:
                    errors[p] = str(e)
            return texts, errors
        return run

    # --- the 310 path (preprocess.py / postprocess.py) -------------------------------------------
    def preprocess_items(self, manifest: str, config) -> Iterator[tuple[str, str, Callable[[], np.ndarray]]]:
        """(utt_id, transcript, load audio) per utterance of a manifest, in manifest order."""
        from src.audio.io import load_audio
        from src.data.manifest import read_manifest

        utts = read_manifest(manifest)
        if not utts:
            raise ValueError(f"{manifest} lists no utterances")
        sr = config.features.sample_rate
        for u in utts:
            yield u.utt_id, u.transcript, (lambda path=u.audio_path: load_audio(path, target_sr=sr)[0])

    def postprocess(self, result_dir: Path, preprocess_dir: Path, items, config, info: dict, args) -> Evaluation:
        """Decode the runner's outputs of ``items`` and score them against the listed transcripts."""
        from src.decoding.beam import make_decoder, options_from_args
        from src.deploy.bins import read_array
        from src.models.base import apply_length_convs

        symbols = info.get("classes") or self.class_names(config)
        labels = Labels(symbols)
        classes = labels.num_classes
        decode = make_decoder(options_from_args(args, progress=True), labels)
        outputs, out_lengths_all = [], []
        for u in items:
            path = Path(result_dir) / f"{u.utt_id}_0.bin"
            log_probs = read_array(path, "float32")
            if log_probs.size == 0 or log_probs.size % classes:
                raise ValueError(f"{path} holds {log_probs.size} float32 values, not a multiple of the model's "
                                 f"{classes} classes: wrong model or a truncated file")
            log_probs = log_probs.reshape(1, -1, classes)
            lengths_path = Path(result_dir) / f"{u.utt_id}_1.bin"
            if lengths_path.is_file():
                out_lengths = read_array(lengths_path, "int32")
                if out_lengths.shape != (1,):
                    raise ValueError(f"{lengths_path} holds {out_lengths.size} int32 values; expected 1")
            else:
                convs = info.get("length_convs")
                if convs is None:
                    raise ValueError(f"{lengths_path} is missing and {preprocess_dir} does not record the model's "
                                     "output-length rule: preprocess with --mindir")
                valid = read_array(Path(preprocess_dir) / "lengths" / f"{u.utt_id}.bin", "int32")
                out_lengths = np.array([apply_length_convs(int(valid[0]), convs)])
            if not 0 <= out_lengths[0] <= log_probs.shape[1]:
                raise ValueError(f"{u.utt_id}: output length {out_lengths[0]} outside 0..{log_probs.shape[1]}")
            outputs.append(log_probs[0])
            out_lengths_all.append(int(out_lengths[0]))
        totals, rows = ErrorRates(), []
        for u, hypothesis in zip(items, decode(outputs, np.array(out_lengths_all))):
            rows.append(UtteranceResult(u.utt_id, u.reference, hypothesis, *totals.add(u.reference, hypothesis)))
        return Evaluation(totals.as_dict(), rows, self.primary, self.higher_is_better)

    def describe(self, name: str, evaluation: Evaluation) -> str:
        m = evaluation.metrics
        skipped = f"\t{m['skipped']} skipped" if m.get("skipped") else ""
        return f"{name}\tWER {m['wer']:.2f} %\tCER {m['cer']:.2f} %\t{m['utterances']} utterances{skipped}"


TASK = AsrTask()
