"""Tasks: what a model is trained to do, and how that is scored.

A task hands the trainer and the entry scripts everything that depends on it, so neither names a
task or a family:

* ``num_classes(config)``: the model's outputs (the registry asks; models read no label files);
* ``loss_cell(net)``: an ``nn.Cell`` whose ``construct(*batch_inputs)`` returns the scalar loss;
* ``open_data(source, config, train, ...)``: a batch source (MindRecord folder or manifest) whose
  pipeline yields ``(*batch_inputs, ids)``;
* ``batch_stats(batch)``: (items, audio seconds) of a batch, for throughput logs;
* ``evaluate(model, data, ...) -> Evaluation``: metrics (``primary`` names the one a run is judged by)
  and per-item rows, and ``write_report(evaluation, out_dir, name)`` for the per-item report.

``asr``: CTC loss, greedy/beam decoding, WER/CER.  ``kws``: cross-entropy, accuracy and confusion.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

TASKS = {"asr": "src.tasks.asr", "kws": "src.tasks.kws"}


@dataclass
class Evaluation:
    """What a task's evaluation returns: ``metrics`` as written to metrics.json, ``rows`` per item."""
    metrics: dict[str, Any]
    rows: list = field(default_factory=list)
    primary: str = "wer"           # the metric a run is judged by
    higher_is_better: bool = False

    def summary(self) -> str:
        value = self.metrics[self.primary]
        return f"{self.primary} {value:.2f} %"


def get_task(config: Any):
    """The task object of ``config.task``."""
    name = config.task
    try:
        module = importlib.import_module(TASKS[name])
    except KeyError:
        raise ValueError(f"task {name!r} is not one of {sorted(TASKS)}") from None
    return module.TASK
