"""Running an acoustic model over evaluation data: batches → log-probabilities → transcripts → WER/CER.

Shared by the trainer's dev evaluation and eval.py.  ``model`` is anything called as
``model(features, lengths)`` returning ``(log_probs (B, T', C), out_lengths (B,))``: a Jasper cell in
inference mode or an ``nn.GraphCell`` of an exported MindIR.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
from mindspore import Tensor
from tqdm import tqdm

from src.decoding.greedy import greedy_decode
from src.metrics.wer import EditCounts, ErrorRates
from src.text.labels import Labels

Model = Callable[[Tensor, Tensor], tuple]


@dataclass(frozen=True)
class UtteranceResult:
    utt_id: str
    reference: str
    hypothesis: str
    words: EditCounts
    chars: EditCounts


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


def evaluate(model: Model, data, labels: Labels, progress: bool = False, desc: str = "eval"
             ) -> tuple[ErrorRates, list[UtteranceResult]]:
    """Greedy transcripts of every utterance of ``data`` scored against its reference."""
    totals, rows = ErrorRates(), []
    for utt_ids, log_probs, out_lengths, tokens, token_lengths in iterate_predictions(model, data, progress, desc):
        hypotheses = greedy_decode(log_probs, out_lengths, labels)
        for utt_id, hyp, tok, n in zip(utt_ids, hypotheses, tokens, token_lengths):
            ref = labels.decode(tok[:n])
            words, chars = totals.add(ref, hyp)
            rows.append(UtteranceResult(utt_id, ref, hyp, words, chars))
    return totals, rows
