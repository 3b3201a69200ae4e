"""Checkpoints: the whole training state in one MindSpore ``.ckpt``, written atomically.

A training checkpoint ``<dir>/<family>-<step>.ckpt`` (``jasper-120.ckpt``, ``dscnn-300.ckpt``) holds the model's parameters under their own names
(``encoder.layers.0.conv.0.weight``, so the bare model loads it), the optimizer's state and LR
position (``global_step``), the EMA weights (``ema.<name>``) when used, the loss-scaler state
(``loss_scale.value``, ``loss_scale.counter``), the skipped-step count, and the position
(``meta.epoch``, ``meta.step``, ``meta.batch``), and the LR decay's retiming when the time budget moved
its end (``meta.lr_retime_at``, ``meta.lr_retime_progress``, ``meta.lr_retime_end``).  The resolved config
is saved beside as ``config.yaml`` by the trainer.

Safety of the folder:

* a write appears complete or not at all; when it fails (a full disk, no permission) every partial
  file is removed, ours (``<name>.<pid>.tmp``) and MindSpore's (``<name>.<pid>.tmp.tmp``), and
  :class:`CheckpointWriteError` says what to free;
* a run removes the temporaries a killed writer left behind when it starts
  (:func:`remove_stale_temporaries`);
* retention deletes only checkpoints of earlier steps than the one just written, never that one and
  never later ones, and a fresh run refuses a folder that already holds checkpoints
  (:func:`check_fresh_start`), so one run cannot delete or shadow another's;
* ``--resume`` passes over unreadable checkpoints and renames them ``<name>.unreadable``
  (:func:`resume_checkpoint`): kept for inspection, out of the way of retention and of later resumes.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn

from src.fileio import atomic_path, pid_alive, tmp_path_for
from src.training.lr_schedule import Retiming

log = logging.getLogger(__name__)

PREFIX = "jasper"   # the default name; the trainer uses the model family's
_NAME = re.compile(r"^[A-Za-z0-9_]+-(\d+)\.ckpt$")
# Temporaries of an interrupted write: src.fileio's ``<name>.<pid>.tmp``, with MindSpore's own suffix
# (``.tmp`` while writing, ``.ckpt`` before the rename) when save_checkpoint was given that name.
_TEMP = re.compile(r"^.+\.(\d+)\.tmp(?:\.tmp|\.ckpt)?$")
UNREADABLE = ".unreadable"    # suffix given to checkpoints --resume could not read
_SKIP_PREFIXES = ("accum.",)  # gradient-accumulation buffers are zero at every step boundary
# Rebuilt from the config on every start (``global_step`` carries the position), so a resumed run may
# change epochs/max_steps; loading the saved table would fail on its old length.
_REBUILT = ("learning_rate",)


class CheckpointWriteError(OSError, ValueError):
    """A checkpoint could not be written (disk full, no permission); no partial file is left.

    An ``OSError`` by nature, and a ``ValueError`` so that entry points that report user-facing
    errors without a traceback (``except ValueError``) report this one too.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)   # one argument: str() is the message alone, without "[Errno N]"
        self.errno = code


@dataclass(frozen=True)
class Position:
    epoch: int      # epoch being trained
    step: int       # optimizer steps done in total
    batch: int      # batches of ``epoch`` already consumed (per rank)
    retiming: Retiming | None = None   # where the time budget moved the end of the LR decay


def checkpoint_path(directory: str | os.PathLike, step: int, prefix: str = PREFIX) -> Path:
    return Path(directory) / f"{prefix}-{step}.ckpt"


def step_of(path: str | os.PathLike) -> int:
    """The step in a checkpoint's name (``jasper-120.ckpt`` → 120)."""
    m = _NAME.match(Path(path).name)
    if m is None:
        raise ValueError(f"{path} is not named like a training checkpoint (<name>-<step>.ckpt)")
    return int(m.group(1))


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Training checkpoints in ``directory``, oldest first (by step)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def _pid_alive(pid: int) -> bool:
    # this process is not writing while it starts or recovers
    return pid != os.getpid() and pid_alive(pid)


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the half-written files (``*.<pid>.tmp``, ``*.<pid>.tmp.tmp``, ``*.<pid>.tmp.ckpt``) that a
    killed or failed writer left in ``directory``; files of a process still running are kept.
    Returns the files removed."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for p in sorted(directory.iterdir()):
        m = _TEMP.match(p.name)
        if m and p.is_file() and not _pid_alive(int(m.group(1))):
            p.unlink(missing_ok=True)
            removed.append(p)
    if removed:
        log.warning("removed %d partial file(s) of an interrupted write in %s: %s", len(removed), directory,
                    ", ".join(p.name for p in removed))
    return removed


def _temporaries(path: Path) -> list[Path]:
    """Every name a write of ``path`` in this process may leave behind."""
    tmp = tmp_path_for(path)
    return [tmp, Path(f"{tmp}.tmp"), Path(f"{tmp}.ckpt")]


def _nbytes(value) -> int:
    if hasattr(value, "nbytes"):
        return int(value.nbytes)
    if hasattr(value, "size") and hasattr(value, "itemsize"):
        return int(value.size) * int(value.itemsize)
    return 64


def estimate_bytes(params: list[dict], append_dict: dict | None = None) -> int:
    """Approximate size of the checkpoint of ``params`` (the tensors' bytes plus names and headers)."""
    values = [p["data"] for p in params] + list((append_dict or {}).values())
    names = [p["name"] for p in params] + list(append_dict or {})
    return sum(_nbytes(v) for v in values) + sum(len(n) + 64 for n in names)


def _megabytes(n: int) -> int:
    return max(1, -(-n // 2**20))


def _disk_full(path: Path, need: int) -> CheckpointWriteError:
    return CheckpointWriteError(
        f"disk full while writing {path}: free {_megabytes(need)} MB (about one checkpoint) in {path.parent}, "
        "then continue with --resume", errno.ENOSPC)


def write_checkpoint(params: list[dict], path: str | os.PathLike, append_dict: dict | None = None) -> None:
    """``ms.save_checkpoint`` of ``[{"name", "data"}]`` that appears complete or not at all.

    Raises CheckpointWriteError (naming the file and the space to free when the disk is full) and
    leaves no partial file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    need = estimate_bytes(params, append_dict)
    try:
        usage = shutil.disk_usage(path.parent)
    except OSError:
        usage = None
    if usage is not None and usage.total > 0 and usage.free < need:   # (some FUSE mounts report 0 / 0)
        raise _disk_full(path, need)
    try:
        with atomic_path(path) as tmp:
            ms.save_checkpoint(params, str(tmp), append_dict=append_dict, format="ckpt")
            written = tmp if tmp.exists() else Path(f"{tmp}.ckpt")  # save_checkpoint may add the suffix
            if written != tmp:
                os.replace(written, tmp)
    except BaseException as e:
        for leftover in _temporaries(path):
            leftover.unlink(missing_ok=True)
        if isinstance(e, OSError) and not isinstance(e, CheckpointWriteError):
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _disk_full(path, need) from None
            raise CheckpointWriteError(f"cannot write {path}: {e.strerror or e}", e.errno) from None
        raise


def save_training_checkpoint(train_step: nn.Cell, scaler, directory: str | os.PathLike, position: Position,
                             keep: int, prefix: str = PREFIX) -> Path:
    """Write the state atomically, then keep the newest ``keep`` checkpoints up to this one (``keep`` <= 0:
    all).  Only checkpoints of earlier steps are deleted: never the one just written, never later ones
    (another run's; :func:`check_fresh_start` keeps runs apart)."""
    path = checkpoint_path(directory, position.step, prefix)
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
    apply_retention(directory, position.step, keep)
    return path


def apply_retention(directory: str | os.PathLike, step: int, keep: int) -> list[Path]:
    """Delete checkpoints of steps before ``step`` beyond the newest ``keep`` (the one of ``step``
    included); returns what was deleted.  Checkpoints of later steps are left alone, with a warning."""
    found = list_checkpoints(directory)
    later = [p for p in found if step_of(p) > step]
    if later:
        log.warning("%s holds checkpoints of later steps than this run's step %d (%s); they are left alone: "
                    "is another run writing into this folder?", directory, step, ", ".join(p.name for p in later))
    if keep <= 0:
        return []
    earlier = [p for p in found if step_of(p) < step]
    doomed = earlier[:max(0, len(earlier) - (keep - 1))]
    for old in doomed:
        old.unlink(missing_ok=True)
    return doomed


def check_fresh_start(directory: str | os.PathLike) -> None:
    """A run without ``--resume`` must not write into a folder holding another run's checkpoints: its
    retention would fight them and ``--resume``/eval would pick the wrong weights.  Raises ValueError."""
    found = list_checkpoints(directory)
    if found:
        names = ", ".join(p.name for p in found[-3:])
        raise ValueError(f"{directory} already holds {len(found)} checkpoint(s) of another run ({names}): pass "
                         "--resume to continue that run, or a new --output_dir to start a new one")


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


def resume_checkpoint(directory: str | os.PathLike, set_aside: bool = True) -> Path | None:
    """The checkpoint ``--resume`` continues from: the newest that loads, or None.

    Unreadable checkpoints newer than it are renamed ``<name>.unreadable`` (``set_aside``; rank 0 only),
    so retention and later resumes no longer see them, and named in a WARNING; so is starting from
    scratch because none is readable.  An empty folder is the normal first start (INFO).
    """
    found = list_checkpoints(directory)
    if not found:
        log.info("--resume: no checkpoint in %s, starting from scratch", directory)
        return None
    unreadable, chosen = [], None
    for path in reversed(found):
        try:
            _read(path)
            chosen = path
            break
        except ValueError as e:
            unreadable.append((path, str(e)))
    for path, reason in unreadable:
        moved = path.with_name(path.name + UNREADABLE)
        if set_aside:
            try:
                os.replace(path, moved)
            except OSError:
                moved = path
        log.warning("--resume: %s; %s", reason,
                    f"kept as {moved.name}" if moved != path else "passed over")
    if chosen is None:
        log.warning("--resume: none of the %d checkpoint(s) in %s is readable (%s); starting from scratch",
                    len(found), directory, ", ".join(p.name for p, _ in unreadable))
    return chosen


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
    # Parameters that are rebuilt or zero at a step boundary are not read from the file; handing the cell
    # its own values keeps MindSpore from reporting them as "not loaded" on every resume.
    for p in train_step.get_parameters():
        if p.name not in params and (p.name.startswith(_SKIP_PREFIXES) or p.name in _REBUILT):
            params[p.name] = ms.Parameter(Tensor(p.asnumpy()), name=p.name)
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
