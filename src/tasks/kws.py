"""Keyword spotting: cross-entropy over ``_silence_``, ``_unknown_`` and the wanted words; batches of
(features (B, F, T), labels (B,)); accuracy, a confusion matrix and a per-clip report; streaming
detection in long recordings (src/tasks/streaming.py).

``model`` below is anything called as ``model(features)`` returning log-probabilities (B, C): a DS-CNN
cell in inference mode or an exported MindIR (src/deploy).
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

from src.tasks import Evaluation

log = logging.getLogger(__name__)

REPORT_COLUMNS = ("path", "label", "predicted", "score")


class CrossEntropyLoss(nn.Cell):
    """Mean negative log-likelihood of the labels under the model's log-probabilities."""

    def __init__(self, model: nn.Cell) -> None:
        super().__init__(auto_prefix=False)
        self.model = model

    def construct(self, feats: Tensor, labels: Tensor) -> Tensor:
        """feats (B, F, T), labels (B,) int32 → scalar loss."""
        log_probs = self.model(feats).astype(ms.float32)
        picked = ops.gather_elements(log_probs, 1, labels.astype(ms.int32).reshape(-1, 1))
        return -picked.mean()


@dataclass(frozen=True)
class ClipResult:
    path: str
    label: str
    predicted: str
    score: float       # probability of the predicted class


def _probabilities(model, feats: np.ndarray) -> np.ndarray:
    out = model(Tensor(feats))
    out = out[0] if isinstance(out, (tuple, list)) else out
    return np.exp(out.asnumpy().astype(np.float64))


def accuracy_metrics(labels: np.ndarray, predicted: np.ndarray, classes: list[str], skipped: int = 0) -> dict:
    """accuracy %, clips, per-class accuracy and the confusion matrix (rows: label, columns: predicted)."""
    k = len(classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = {c: (100.0 * confusion[i, i] / confusion[i].sum() if confusion[i].sum() else None)
                 for i, c in enumerate(classes)}
    n = int(len(labels))
    out = {"accuracy": 100.0 * float((labels == predicted).sum()) / max(n, 1), "clips": n,
           "per_class": per_class, "confusion": confusion.tolist(), "classes": list(classes)}
    if skipped:
        out["skipped"] = skipped
    return out


def plot_confusion(metrics: dict, path: Path, title: str) -> Path:
    """The confusion matrix as a PNG (rows: true class, columns: predicted; counts in the cells)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from src.fileio import atomic_path

    confusion, classes = np.asarray(metrics["confusion"]), metrics["classes"]
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(classes), 0.8 + 0.5 * len(classes)), dpi=100)
    shares = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("label")
    ax.set_title(f"{title}: accuracy {metrics['accuracy']:.2f} % of {metrics['clips']} clips", fontsize=9)
    for i in range(len(classes)):
        for j in range(len(classes)):
            if confusion[i, j]:
                ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if shares[i, j] > 0.5 else "black")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def clip_report(rows: list[ClipResult]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(REPORT_COLUMNS)
    w.writerows([r.path, r.label, r.predicted, f"{r.score:.4f}"] for r in rows)
    return buf.getvalue()


class KwsTask:
    """Keyword classification (DS-CNN)."""

    name = "kws"
    input_names = ("features",)
    primary = "accuracy"
    higher_is_better = True

    def class_names(self, config) -> list[str]:
        return list(config.kws.labels)

    def num_classes(self, config) -> int:
        return len(config.kws.labels)

    def loss_cell(self, net: nn.Cell, config) -> nn.Cell:
        return CrossEntropyLoss(net)

    def open_data(self, source: str | os.PathLike, config, train: bool, cache_dir: str | os.PathLike,
                  rank: int = 0, world: int = 1, output_stride: int = 1, batch_size: int | None = None):
        """A keyword MindRecord folder (or a keyword manifest, written under ``cache_dir`` first) as batches
        ``(features, labels, utt_ids)``."""
        from src.data.keywords import KeywordData, keyword_mindrecord_for

        return KeywordData(keyword_mindrecord_for(source, cache_dir, config), config, train=train, rank=rank,
                           world=world, batch_size=batch_size)

    def batch_stats(self, batch: tuple, config) -> tuple[int, float]:
        n = batch[0].shape[0]
        return n, n * config.kws.clip_duration_ms / 1000

    def evaluator(self, config, args=None) -> Callable[..., Evaluation]:
        def run(model, data, progress: bool = False, desc: str = "eval") -> Evaluation:
            return self.evaluate(model, data, config, progress=progress, desc=desc)
        return run

    def evaluate(self, model, data, config, progress: bool = False, desc: str = "eval") -> Evaluation:
        classes = self.class_names(config)
        labels, predicted, rows = [], [], []
        it = data.pipeline(0).create_tuple_iterator(num_epochs=1, output_numpy=True)
        for feats, lab, ids in tqdm(it, total=data.steps_per_epoch(), desc=desc, unit="batch", disable=not progress,
                                    leave=False):
            probs = _probabilities(model, feats)
            pred = probs.argmax(axis=1)
            labels.append(lab.astype(np.int64))
            predicted.append(pred)
            rows += [ClipResult(str(u), classes[int(a)], classes[int(b)], float(p[b]))
                     for u, a, b, p in zip(ids, lab, pred, probs)]
        metrics = accuracy_metrics(np.concatenate(labels), np.concatenate(predicted), classes,
                                   getattr(data, "skipped", 0))
        return Evaluation(metrics, rows, self.primary, self.higher_is_better)

    def write_report(self, evaluation: Evaluation, out_dir: Path, name: str) -> list[Path]:
        from src.fileio import atomic_write_text

        out_dir = Path(out_dir)
        tsv = out_dir / f"{name}.tsv"
        atomic_write_text(tsv, clip_report(evaluation.rows))
        return [tsv, plot_confusion(evaluation.metrics, out_dir / f"{name}_confusion.png", name)]

    def describe(self, name: str, evaluation: Evaluation) -> str:
        m = evaluation.metrics
        skipped = f"\t{m['skipped']} skipped" if m.get("skipped") else ""
        return f"{name}\taccuracy {m['accuracy']:.2f} %\t{m['clips']} clips{skipped}"

    # --- transcribe.py ----------------------------------------------------------------------------
    def transcriber(self, model, config, args) -> Callable[[dict], tuple[dict, dict]]:
        """``run({path: audio}) -> ({path: [lines]}, {path: error})``: a clip of at most one clip length
        gives its label and probability; a longer recording gives one line per detection
        (``time_s<TAB>label<TAB>score``, streaming)."""
        from src.audio.features import batch_features
        from src.audio.mfcc import decode_clip
        from src.tasks.streaming import recognize, window_posteriors

        classes = self.class_names(config)
        clip = config.features.sample_rate * config.kws.clip_duration_ms // 1000

        def run(audio: dict) -> tuple[dict, dict]:
            out, errors = {}, {}
            for path, a in audio.items():
                try:
                    if len(a) <= clip:
                        feats, _ = batch_features([decode_clip(a, clip)], config.features, pad_to=1)
                        probs = _probabilities(model, feats)[0]
                        top = int(probs.argmax())
                        out[path] = [f"{classes[top]}\t{probs[top]:.4f}"]
                    else:
                        times, probs = window_posteriors(a, config, lambda f: _probabilities(model, f))
                        found = recognize(times, probs, classes, config)
                        log.info("%s: %d keyword detections in %.1f s", path, len(found), len(a) / config.features.sample_rate)
                        out[path] = [f"{d.time_s:.2f}\t{d.label}\t{d.score:.4f}" for d in found]
                except ValueError as e:
                    errors[path] = str(e)
            return out, errors
        return run

    # --- the 310 path (preprocess.py / postprocess.py) -------------------------------------------
    def preprocess_items(self, manifest: str, config) -> Iterator[tuple[str, str, Callable[[], np.ndarray]]]:
        """(id, class, load clip) per entry of a keyword manifest, in manifest order; each clip sounds as in
        keyword evaluation (src/data/keywords.py)."""
        from src.data.keywords import SILENCE, clip_key, eval_silence_gain
        from src.data.speech_commands import load_clip, read_keyword_manifest

        clip = config.features.sample_rate * config.kws.clip_duration_ms // 1000
        classes = self.class_names(config)
        for i, c in enumerate(read_keyword_manifest(manifest)):
            if c.label not in classes:
                log.warning("skipping %s: label %s is not a class of the model", c.path, c.label)
                continue
            gain = eval_silence_gain(config.data.seed, clip_key(c, manifest)) if c.label == SILENCE else 1.0

            def load(c=c, gain=gain) -> np.ndarray:
                return (load_clip(c, clip) * gain).astype(np.float32)
            yield f"{i:06d}_{Path(c.path).stem}", c.label, load

    def postprocess(self, result_dir: Path, preprocess_dir: Path, items, config, info: dict, args) -> Evaluation:
        from src.deploy.bins import read_array

        classes = list(info.get("classes") or self.class_names(config))
        labels, predicted, rows = [], [], []
        for u in items:
            path = Path(result_dir) / f"{u.utt_id}_0.bin"
            log_probs = read_array(path, "float32")
            if log_probs.size != len(classes):
                raise ValueError(f"{path} holds {log_probs.size} float32 values, not the model's {len(classes)} "
                                 "classes: wrong model or a truncated file")
            probs = np.exp(log_probs.astype(np.float64))
            top = int(probs.argmax())
            labels.append(classes.index(u.reference))
            predicted.append(top)
            rows.append(ClipResult(u.utt_id, u.reference, classes[top], float(probs[top])))
        metrics = accuracy_metrics(np.array(labels), np.array(predicted), classes)
        return Evaluation(metrics, rows, self.primary, self.higher_is_better)


TASK = KwsTask()
