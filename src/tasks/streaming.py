"""Keyword detection in a recording of any length, as TensorFlow's RecognizeCommands does it, and its
scoring as test_streaming_accuracy does it.

A 1-s window slides over the recording every ``kws.stride_ms``; each window's class posteriors are
averaged over the last ``kws.average_window_ms``; a detection is reported when the top class of the
average is a keyword (not ``_silence_`` or ``_unknown_``), its average exceeds
``kws.detection_threshold``, and it differs from the previous detection or comes more than
``kws.suppression_ms`` after it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

NON_KEYWORDS = ("_silence_", "_unknown_")


@dataclass(frozen=True)
class Detection:
    time_s: float      # end of the window that triggered it
    label: str
    score: float       # averaged posterior


def window_posteriors(audio: np.ndarray, config, classify: Callable[[np.ndarray], np.ndarray],
                      batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Posteriors of every 1-s window of ``audio`` (n,) float32 every ``kws.stride_ms``.

    The MFCC of each window equals the frames of the whole recording's MFCC it covers when the stride
    is a multiple of the hop (no normalisation across frames), so the recording's features are computed
    once.  ``classify(features (B, F, T)) -> probabilities (B, C)``.
    Returns (window end times in s (W,), probabilities (W, C)).
    """
    from src.audio.features import batch_features, frame_count

    fc, kc = config.features, config.kws
    clip = fc.sample_rate * kc.clip_duration_ms // 1000
    stride = max(1, int(round(kc.stride_ms * fc.sample_rate / 1000)))
    if len(audio) < clip:
        audio = np.pad(audio, (0, clip - len(audio)))
    starts = np.arange(0, len(audio) - clip + 1, stride)
    window_frames = int(frame_count(clip, fc))
    if stride % fc.hop_length == 0:
        feats, _ = batch_features([audio], fc, pad_to=1)
        step = stride // fc.hop_length
        windows = lambda idx: np.stack([feats[0, :, s * step: s * step + window_frames] for s in idx])  # noqa: E731
    else:
        windows = lambda idx: batch_features([audio[starts[s]: starts[s] + clip] for s in idx], fc,  # noqa: E731
                                             pad_to=1)[0]
    probs = [classify(windows(range(i, min(i + batch_size, len(starts))))) for i in range(0, len(starts), batch_size)]
    return (starts + clip) / fc.sample_rate, np.concatenate(probs)


def recognize(times: np.ndarray, probs: np.ndarray, classes: Sequence[str], config,
              minimum_count: int = 3) -> list[Detection]:
    """RecognizeCommands over window posteriors (times (W,) s, probs (W, C)): the keyword detections in
    time order.  As in TensorFlow's class, a new top class is accepted when its average exceeds the
    threshold, it differs from the previous accepted class and the suppression time has passed (or the
    previous one was silence); at least ``minimum_count`` windows must be averaged.  Silence and unknown
    are accepted like any class (they reset the previous one) but are not reported."""
    kc = config.kws
    window_s, suppression_s = kc.average_window_ms / 1000, kc.suppression_ms / 1000
    out: list[Detection] = []
    last_label, last_time = None, -np.inf
    lo = 0
    for i, t in enumerate(times):
        while times[lo] < t - window_s:
            lo += 1
        if i + 1 - lo < minimum_count:
            continue
        average = probs[lo:i + 1].mean(axis=0)
        top = int(np.argmax(average))
        label, score = classes[top], float(average[top])
        free = last_label in (None, "_silence_") or t - last_time > suppression_s
        if score > kc.detection_threshold and label != last_label and free:
            last_label, last_time = label, float(t)
            if label not in NON_KEYWORDS:
                out.append(Detection(float(t), label, score))
    return out


@dataclass(frozen=True)
class StreamingScore:
    keywords: int          # ground-truth keyword occurrences
    matched: int           # detected with the right label within the tolerance
    wrong: int             # detected with another label
    false_alarms: int      # detections with no keyword nearby
    missed: int            # keywords with no detection

    def as_dict(self) -> dict:
        n = max(self.keywords, 1)
        return {"keywords": self.keywords, "matched": self.matched, "wrong": self.wrong,
                "false_alarms": self.false_alarms, "missed": self.missed,
                "matched_pct": 100.0 * self.matched / n, "wrong_pct": 100.0 * self.wrong / n,
                "false_alarm_pct": 100.0 * self.false_alarms / n}


def score_detections(detections: Sequence[Detection], truth: Sequence[tuple[float, str]],
                     tolerance_s: float = 0.75) -> StreamingScore:
    """test_streaming_accuracy's counts.  ``truth``: (start s, label) of each keyword's 1-s clip in the
    recording.  A detection (reported at the end of its window) belongs to the first unclaimed keyword
    whose clip started at most 1 s + ``tolerance_s`` before it: matched when the labels agree, wrong
    otherwise; a detection belonging to none is a false alarm; unclaimed keywords are missed."""
    used = [False] * len(truth)
    matched = wrong = false_alarms = 0
    for d in detections:
        hit = None
        for k, (start, _label) in enumerate(truth):
            if not used[k] and start <= d.time_s <= start + 1.0 + tolerance_s:
                hit = k
                break
        if hit is None:
            false_alarms += 1
            continue
        used[hit] = True
        if truth[hit][1] == d.label:
            matched += 1
        else:
            wrong += 1
    return StreamingScore(len(truth), matched, wrong, false_alarms, used.count(False))
