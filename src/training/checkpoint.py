"""Checkpoints: the whole training state in one MindSpore ``.ckpt``, written atomically.

A training checkpoint ``<dir>/jasper-<step>.ckpt`` holds the model's parameters under their own names
(``encoder.layers.0.conv.0.weight``, so the bare model loads it), the optimizer's state and LR
position (``global_step``), the EMA weights (``ema.<name>``) when used, the loss-scaler state
(``loss_scale.value``, ``loss_scale.counter``), the skipped-step count, and the position
(``meta.epoch``, ``meta.step``, ``meta.batch``), and the LR decay's retiming when the time budget moved
its end (``meta.lr_retime_at``, ``meta.lr_retime_progress``, ``meta.lr_retime_end``).  The resolved config
is saved beside as ``config.yaml`` by the trainer.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn

from src.fileio import atomic_path
from src.training.lr_schedule import Retiming

log = logging.getLogger(__name__)

PREFIX = "jasper"
_NAME = re.compile(rf"^{PREFIX}-(\d+)\.ckpt$")
_SKIP_PREFIXES = ("accum.",)  # gradient-accumulation buffers are zero at every step boundary
# Rebuilt from the config on every start (``global_step`` carries the position), so a resumed run may
# change epochs/max_steps; loading the saved table would fail on its old length.
_REBUILT = ("learning_rate",)


@dataclass(frozen=True)
class Position:
    epoch: int      # epoch being trained
    step: int       # optimizer steps done in total
    batch: int      # batches of ``epoch`` already consumed (per rank)
    retiming: Retiming | None = None   # where the time budget moved the end of the LR decay


def checkpoint_path(directory: str | os.PathLike, step: int) -> Path:
    return Path(directory) / f"{PREFIX}-{step}.ckpt"


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Training checkpoints in ``directory``, oldest first (by step)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def write_checkpoint(params: list[dict], path: str | os.PathLike, append_dict: dict | None = None) -> None:
    """``ms.save_checkpoint`` of ``[{"name", "data"}]`` that appears complete or not at all."""
    with atomic_path(path) as tmp:
        ms.save_checkpoint(params, str(tmp), append_dict=append_dict, format="ckpt")
        written = tmp if tmp.exists() else Path(f"{tmp}.ckpt")  # save_checkpoint may add the suffix
        if written != tmp:
            os.replace(written, tmp)


def save_training_checkpoint(train_step: nn.Cell, scaler, directory: str | os.PathLike, position: Position,
                             keep: int) -> Path:
    """Write the state atomically and delete all but the newest ``keep`` checkpoints."""
    path = checkpoint_path(directory, position.step)
    params = [{"name": p.name, "data": p} for p in train_step.get_parameters()
              if not p.name.startswith(_SKIP_PREFIXES)]
    extra = {"loss_scale.value": Tensor(scaler.scale_value.asnumpy()),
             "meta.epoch": position.epoch, "meta.step": position.step, "meta.batch": position.batch}
    if hasattr(scaler, "counter"):
        extra["loss_scale.counter"] = Tensor(scaler.counter.asnumpy())
    if position.retiming is not None:
        r = position.retiming
        extra.update({"meta.lr_retime_at": r.at, "meta.lr_retime_progress": float(r.progress),
                      "meta.lr_retime_end": r.end})
    write_checkpoint(params, path, extra)
    for old in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def _read(path: Path) -> dict:
    try:
        return ms.load_checkpoint(str(path))
    except (ValueError, RuntimeError, OSError) as e:
        raise ValueError(f"{path}: not a readable MindSpore checkpoint ({e})") from None


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The newest checkpoint that loads; unreadable ones are reported and passed over."""
    for path in reversed(list_checkpoints(directory)):
        try:
            _read(path)
            return path
        except ValueError as e:
            log.warning("ignoring %s", e)
    return None


def _scalar(value, kind=int):
    return kind(np.asarray(value.asnumpy() if hasattr(value, "asnumpy") else value).reshape(()))


def restore_training_checkpoint(train_step: nn.Cell, scaler, path: str | os.PathLike) -> Position:
    """Load everything ``save_training_checkpoint`` wrote back into the cells; returns the position."""
    state = _read(Path(path))
    params = {k: v for k, v in state.items() if not k.startswith(("meta.", "loss_scale.")) and k not in _REBUILT}
    expected = {p.name for p in train_step.get_parameters()
                if not p.name.startswith(_SKIP_PREFIXES) and p.name not in _REBUILT}
    missing = sorted(expected - set(params))
    if missing:
        raise ValueError(f"{path} lacks {len(missing)} parameters of this run (e.g. {missing[:3]}); "
                         "was it written with another config (model, optimizer, EMA)?")
    not_loaded, _ = ms.load_param_into_net(train_step, params, strict_load=True)
    not_loaded = [n for n in not_loaded if not n.startswith(_SKIP_PREFIXES) and n not in _REBUILT]
    if not_loaded:
        raise ValueError(f"{path}: could not load {not_loaded[:5]}")
    scaler.scale_value.set_data(Tensor(state["loss_scale.value"].asnumpy()))
    if hasattr(scaler, "counter") and "loss_scale.counter" in state:
        scaler.counter.set_data(Tensor(state["loss_scale.counter"].asnumpy()))
    retiming = None
    if "meta.lr_retime_end" in state:
        retiming = Retiming(_scalar(state["meta.lr_retime_at"]), _scalar(state["meta.lr_retime_progress"], float),
                            _scalar(state["meta.lr_retime_end"]))
    return Position(_scalar(state["meta.epoch"]), _scalar(state["meta.step"]), _scalar(state["meta.batch"]),
                    retiming)


def load_model_weights(model: nn.Cell, path: str | os.PathLike, ema: bool = False) -> None:
    """Load a checkpoint's model weights (or its EMA weights) into the bare model, strictly.

    Works for training checkpoints and for plain model checkpoints (e.g. converted ones).
    """
    state = _read(Path(path))
    if ema:
        averaged = {k[len("ema."):]: v for k, v in state.items() if k.startswith("ema.")}
        if not averaged:
            raise ValueError(f"{path} holds no EMA weights (train with train.ema > 0, or drop --ema)")
        state = averaged
    names = {p.name for p in model.get_parameters()}
    missing = sorted(names - set(state))
    if missing:
        raise ValueError(f"{path} does not fit this model: {len(missing)} parameters missing "
                         f"(e.g. {missing[:3]}); check --config")
    for p in model.get_parameters():
        if tuple(state[p.name].shape) != tuple(p.shape):
            raise ValueError(f"{path}: {p.name} has shape {tuple(state[p.name].shape)}, the model expects "
                             f"{tuple(p.shape)}; check --config")
    ms.load_param_into_net(model, {n: state[n] for n in names}, strict_load=True)
