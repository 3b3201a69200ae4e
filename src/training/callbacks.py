"""Training observability: throughput meters, the CSV/JSON-lines log and the loss/WER plot."""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from src.fileio import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

LOG_FIELDS = ["step", "epoch", "loss", "lr", "loss_scale", "grad_norm", "utt_per_s", "audio_s_per_s",
              "skipped_steps", "dev_wer", "dev_cer", "dev_accuracy", "wall_s"]


@dataclass
class Meter:
    """Averages over the steps since the last ``reset`` (one log interval)."""
    loss_sum: float = 0.0
    norm_sum: float = 0.0
    steps: int = 0
    finite_steps: int = 0
    utterances: int = 0
    audio_seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def update(self, loss: float, finite: bool, grad_norm: float, utterances: int, audio_seconds: float) -> None:
        self.steps += 1
        self.utterances += utterances
        self.audio_seconds += audio_seconds
        if finite and math.isfinite(loss):
            self.finite_steps += 1
            self.loss_sum += loss
            self.norm_sum += grad_norm

    def summary(self) -> dict:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        n = max(self.finite_steps, 1)
        return {"loss": self.loss_sum / n if self.finite_steps else float("nan"),
                "grad_norm": self.norm_sum / n if self.finite_steps else float("nan"),
                "utt_per_s": self.utterances / elapsed, "audio_s_per_s": self.audio_seconds / elapsed}

    def reset(self) -> None:
        self.__init__()


class TrainLog:
    """Appends rows to ``train_log.csv`` and ``train_log.jsonl`` (rank 0) and redraws ``train_log.png``.

    On resume, rows after the resumed step are dropped, so the curves continue without duplicates.
    """

    def __init__(self, directory: str | Path, resume_step: int | None = None, metric: str = "wer") -> None:
        self.dir, self.metric = Path(directory), metric
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict] = []
        jsonl = self.dir / "train_log.jsonl"
        if resume_step is not None and jsonl.is_file():
            for line in jsonl.read_text().splitlines():
                row = json.loads(line)
                if row["step"] <= resume_step:
                    self.rows.append(row)
        self._write_all()

    def append(self, row: dict) -> None:
        self.rows.append({k: row.get(k) for k in LOG_FIELDS})
        self._write_all()

    def _write_all(self) -> None:
        atomic_write_text(self.dir / "train_log.jsonl", "".join(json.dumps(r) + "\n" for r in self.rows))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.dir / "train_log.csv", buf.getvalue())

    def plot(self) -> Path | None:
        """Loss (left axis) and the dev metric (right axis, e.g. WER or accuracy) against steps."""
        loss = [(r["step"], r["loss"]) for r in self.rows if r.get("loss") is not None and math.isfinite(r["loss"])]
        key, name = f"dev_{self.metric}", "WER" if self.metric == "wer" else self.metric
        wer = [(r["step"], r[key]) for r in self.rows if r.get(key) is not None]
        if not loss and not wer:
            return None
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
        if loss:
            ax.plot(*zip(*loss), color="tab:blue", label="training loss")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss", color="tab:blue")
        ax.set_yscale("log")
        if wer:
            ax2 = ax.twinx()
            ax2.plot(*zip(*wer), "o-", color="tab:red", label=f"dev {name}")
            ax2.set_ylabel(f"dev {name} (%)", color="tab:red")
            ax2.set_ylim(0, max(100.0, max(w for _, w in wer)))
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = self.dir / "train_log.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)
        return path
