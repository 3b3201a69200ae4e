"""The training loop: data, model, optimizer and train step wired together, with checkpoints, resume,
periodic dev evaluation, logs and a plot.

Every rank runs this; rank 0 alone writes checkpoints, logs and plots and evaluates on the dev set.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn
from tqdm import tqdm

from src.config import Config, save_config
from src.fileio import atomic_write_json
from src.models import build_model
from src.training.callbacks import Meter, TrainLog
from src.training.checkpoint import (Position, check_fresh_start, load_model_weights, remove_stale_temporaries,
                                     restore_training_checkpoint, resume_checkpoint, save_training_checkpoint)
from src.training.budget import TimeBudget
from src.training.distributed import Cluster
from src.training.lr_schedule import Retiming, lr_schedule, retime
from src.training.optim import build_optimizer, set_lr_table, weights_only
from src.training.train_step import TrainStep, make_loss_scaler

log = logging.getLogger(__name__)

RUN_SUMMARY = "run_summary.json"  # written when a run ends (its steps, why it stopped, last metrics)


@dataclass(frozen=True)
class RunOptions:
    train_data: str
    dev_data: str | None
    output_dir: str
    device_target: str = "CPU"
    epochs: int | None = None          # overrides config.train.epochs
    max_steps: int | None = None       # overrides config.train.max_steps
    resume: bool = False
    pretrained: str | None = None
    progress: bool = True


def amp_level_for(device_target: str, level: str) -> str:
    """``auto`` → fp32 on CPU (no fast fp16 kernels there), O2 on GPU/Ascend."""
    if level == "auto":
        return "O0" if device_target == "CPU" else "O2"
    if level not in ("O0", "O1", "O2", "O3"):
        raise ValueError(f"train.amp_level must be auto, O0, O1, O2 or O3, got {level!r}")
    return level


class Trainer:
    """Trains any registered model on any task: ``task`` (src/tasks) supplies the number of classes,
    the loss cell, the data and the evaluation; nothing here names a family or a task."""

    def __init__(self, config: Config, options: RunOptions, cluster: Cluster, task=None) -> None:
        if task is None:  # the config's own task (train.py passes it explicitly)
            from src.tasks import get_task
            task = get_task(config)
        self.config, self.opts, self.cluster, self.task = config, options, cluster, task
        self.out = Path(options.output_dir)
        self.ckpt_dir = self.out / "checkpoints"
        self._prepare_checkpoint_dir()    # before any work: a refused start fails fast
        tc = config.train

        self.model = build_model(config, task.num_classes(config))
        if options.pretrained:
            load_model_weights(self.model, options.pretrained)
            log.info("initialised from %s", options.pretrained)
        level = amp_level_for(options.device_target, tc.amp_level)
        # The wrapper casts inputs/outputs; parameter names stay the model's own.
        self.net = ms.amp.auto_mixed_precision(self.model, level) if level != "O0" else self.model

        if cluster.world > 1 and tc.max_minutes > 0:
            raise ValueError("train.max_minutes is for single-process runs (ranks would stop at different "
                             "steps); use train.max_steps or --epochs in distributed training")
        if cluster.world > 1 and Path(options.train_data).suffix == ".json":
            raise ValueError(f"{options.train_data}: in distributed runs pass MindRecord folders "
                             "(run create_mindrecord.py once before launching the ranks)")
        cache = self.out / "mindrecord"
        self.train_data = task.open_data(options.train_data, config, train=True, cache_dir=cache, rank=cluster.rank,
                                         world=cluster.world, output_stride=self.model.time_stride)
        self.dev_data = None
        if options.dev_data and cluster.is_main:
            self.dev_data = task.open_data(options.dev_data, config, train=False, cache_dir=cache,
                                           output_stride=self.model.time_stride)

        self.batches_per_epoch = self.train_data.steps_per_epoch()
        self.steps_per_epoch = self.batches_per_epoch // tc.accumulate
        if self.steps_per_epoch == 0:
            raise ValueError(f"an epoch has {self.batches_per_epoch} batches, fewer than train.accumulate="
                             f"{tc.accumulate}")
        epochs = options.epochs if options.epochs is not None else tc.epochs
        max_steps = options.max_steps if options.max_steps is not None else tc.max_steps
        self.total_steps = max_steps if max_steps > 0 else epochs * self.steps_per_epoch

        self.optimizer = build_optimizer(self.model.trainable_params(), config.optim, self.total_steps,
                                         decay_filter=None if config.optim.decay_norm_and_bias else weights_only)
        self.retiming: Retiming | None = None       # set when the time budget moves the end of the decay
        self.lr_table = lr_schedule(self.total_steps, config.optim)
        self.scaler = make_loss_scaler(tc)
        reducer = nn.DistributedGradReducer(self.optimizer.parameters, mean=True, degree=cluster.world) \
            if cluster.world > 1 else None
        self.step_cell = TrainStep(task.loss_cell(self.net, config), self.optimizer, self.scaler,
                                   grad_clip=config.optim.grad_clip, accumulate=tc.accumulate,
                                   ema_decay=tc.ema, grad_reducer=reducer)
        self.accumulate_cell = self.step_cell.accumulate_cell() if tc.accumulate > 1 else None
        self.train_shapes: set[tuple[int, ...]] = set()

    # ------------------------------------------------------------------------------------------
    def _prepare_checkpoint_dir(self) -> None:
        """Before anything is written: refuse to start a new run in a folder holding another run's
        checkpoints (every rank looks, so all stop together), and remove what a killed or failed write
        left behind (rank 0, which writes there)."""
        if not self.opts.resume:
            check_fresh_start(self.ckpt_dir)
        if self.cluster.is_main:
            remove_stale_temporaries(self.ckpt_dir)

    def _restore(self) -> Position:
        if not self.opts.resume:
            return Position(0, 0, 0)
        # Unreadable checkpoints are named in a warning and set aside (rank 0), never deleted.
        path = resume_checkpoint(self.ckpt_dir, set_aside=self.cluster.is_main)
        if path is None:
            return Position(0, 0, 0)
        pos = restore_training_checkpoint(self.step_cell, self.scaler, path)
        log.info("resumed from %s: epoch %d, step %d, batch %d of the epoch", path, pos.epoch, pos.step, pos.batch)
        if pos.retiming is not None:
            self._set_retiming(pos.retiming)
            log.info("the LR decay continues as retimed to end at step %d", pos.retiming.end)
        return pos

    def _set_retiming(self, retiming: Retiming) -> None:
        self.retiming = retiming
        self.lr_table = lr_schedule(self.total_steps, self.config.optim, retiming)
        set_lr_table(self.optimizer, self.lr_table)

    def _follow_budget(self, step: int, budget: TimeBudget) -> None:
        """train.schedule_to_budget: end the LR decay where the budget will stop the run (module budget)."""
        oc = self.config.optim
        last = budget.last_step(step)
        end = self.retiming.end if self.retiming else self.total_steps
        if (last is None or oc.decay in ("constant", "piecewise") or step < oc.warmup_steps + oc.hold_steps or step >= end
                or oc.warmup_steps + oc.hold_steps >= self.total_steps):
            return
        target = min(last, self.total_steps)
        if abs(target - end) <= max(self.total_steps // 50, 1):    # hysteresis: no retiming for a few steps
            return
        self._set_retiming(retime(step, target, self.total_steps, oc, self.retiming))
        if self.cluster.is_main:
            log.info("time budget: at %.3f s/step %d more steps fit; the LR decay now ends at step %d of %d",
                     budget.seconds_per_step(), last - step, self.retiming.end, self.total_steps)

    def _save(self, pos: Position) -> None:
        if self.cluster.is_main:
            path = save_training_checkpoint(self.step_cell, self.scaler, self.ckpt_dir, pos,
                                            keep=self.config.train.keep_checkpoints, prefix=self.config.model.name)
            log.info("saved %s", path)

    @contextlib.contextmanager
    def _ema_weights(self) -> Iterator[None]:
        """Evaluate with the EMA weights when EMA is on; the training weights come back afterwards."""
        if not self.step_cell.use_ema:
            yield
            return
        backup = [p.asnumpy().copy() for p in self.step_cell.model_state]
        for p, e in zip(self.step_cell.model_state, self.step_cell.ema):
            p.set_data(Tensor(e.asnumpy()))
        try:
            yield
        finally:
            for p, b in zip(self.step_cell.model_state, backup):
                p.set_data(Tensor(b))

    def evaluate_dev(self) -> dict | None:
        if self.dev_data is None:
            return None
        self.net.set_train(False)
        try:
            with self._ema_weights():
                evaluation = self.task.evaluate(self.net, self.dev_data, self.config, progress=self.opts.progress,
                                                desc="dev")
        finally:
            self.net.set_train(True)
        return {f"dev_{k}": v for k, v in evaluation.metrics.items() if isinstance(v, float)}

    def _dev_text(self, row: dict) -> str:
        key = f"dev_{self.task.primary}"
        return f"  dev {self.task.primary} {row[key]:.2f} %" if key in row else ""

    # ------------------------------------------------------------------------------------------
    def _batches(self, epoch: int, start: int) -> Iterator[tuple[np.ndarray, ...]]:
        it = self.train_data.pipeline(epoch, start_batch=start).create_tuple_iterator(num_epochs=1,
                                                                                      output_numpy=True)
        yield from it

    def run(self) -> dict:
        tc = self.config.train
        if self.cluster.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            save_config(self.config, self.ckpt_dir / "config.yaml")
        pos = self._restore()
        train_log = TrainLog(self.ckpt_dir, resume_step=pos.step, metric=self.task.primary) if self.cluster.is_main else None
        step, epoch, batch_in_epoch = pos.step, pos.epoch, pos.batch
        if batch_in_epoch >= self.batches_per_epoch // tc.accumulate * tc.accumulate:
            epoch, batch_in_epoch = epoch + 1, 0
        log.info("training %s: %d steps (%d per epoch, batch %d, accumulate %d, %d rank(s)); %d parameters",
                 self.config.model.name, self.total_steps, self.steps_per_epoch, self.train_data.batch_size,
                 tc.accumulate, self.cluster.world, sum(p.size for p in self.model.trainable_params()))
        self.net.set_train(True)
        eval_every = tc.eval_every or self.steps_per_epoch
        # train.max_minutes is for single-process runs (checked in __init__): ranks would read their clocks
        # at different steps and leave the others waiting in the all-reduce.
        budget = TimeBudget(tc.max_minutes, window=eval_every)
        meter, last, out_of_time = Meter(), {}, False
        compiled, evaluated = False, False    # for the budget's estimate: steps whose time was a one-off
        while step < self.total_steps and not out_of_time:
            usable = self.steps_per_epoch * tc.accumulate
            bar = tqdm(total=self.steps_per_epoch, initial=batch_in_epoch // tc.accumulate, unit="step",
                       desc=f"epoch {epoch}", disable=not (self.opts.progress and self.cluster.is_main), leave=False)
            for *inputs, utt_ids in self._batches(epoch, batch_in_epoch):
                if batch_in_epoch >= usable or step >= self.total_steps:
                    break
                if not self.train_shapes:  # lets a data-parallel run show that ranks read different data
                    log.info("rank %d: first batch %s", self.cluster.rank, "-".join(map(str, utt_ids[:2])))
                shape = inputs[0].shape
                compiled |= shape not in self.train_shapes   # this step compiles a new graph
                self.train_shapes.add(shape)
                args = tuple(Tensor(x) for x in inputs)
                batch_in_epoch += 1
                items, audio_s = self.task.batch_stats(inputs, self.config)
                if batch_in_epoch % tc.accumulate:
                    self.accumulate_cell(*args)
                    meter.utterances += items
                    meter.audio_seconds += audio_s
                    continue
                loss, finite, norm, scale = self.step_cell(*args)
                step += 1
                meter.update(float(loss.asnumpy()), bool(finite.asnumpy()), float(norm.asnumpy()), items, audio_s)
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss.asnumpy()):.2f}")
                budget.mark(step, restart=compiled)
                compiled = False
                at_epoch_end = batch_in_epoch >= usable
                want_eval = step % eval_every == 0 or step == self.total_steps
                if step % tc.log_every == 0 or want_eval or at_epoch_end:
                    last = {"step": step, "epoch": epoch, **meter.summary(),
                            "lr": float(self.lr_table[step - 1]),
                            "loss_scale": float(scale.asnumpy()),
                            "skipped_steps": int(self.step_cell.skipped_steps.asnumpy()),
                            "wall_s": round(budget.elapsed(), 1)}
                    meter.reset()
                    if want_eval:
                        compiled |= not evaluated                        # the first one compiles its graphs
                        evaluated = True
                        last.update(self.evaluate_dev() or {})
                    if self.cluster.is_main:
                        log.info("step %d/%d epoch %d  loss %.3f  lr %.3g  scale %g  grad norm %.3g  "
                                 "%.1f utt/s  %.0f audio-s/s  skipped %d%s", step, self.total_steps, epoch,
                                 last["loss"], last["lr"], last["loss_scale"], last["grad_norm"],
                                 last["utt_per_s"], last["audio_s_per_s"], last["skipped_steps"], self._dev_text(last))
                        train_log.append(last)
                        if want_eval:
                            train_log.plot()
                    if tc.schedule_to_budget:
                        self._follow_budget(step, budget)
                out_of_time = budget.spent()
                # Epoch ends save too, unless epochs are shorter than the checkpoint interval (a keyword-spotting
                # epoch is a few dozen steps: a save each would cost more than it protects).
                epoch_save = at_epoch_end and self.steps_per_epoch >= tc.checkpoint_every
                if step % tc.checkpoint_every == 0 or epoch_save or step == self.total_steps or out_of_time:
                    self._save(Position(epoch, step, batch_in_epoch, self.retiming))
                if out_of_time:
                    if self.cluster.is_main:
                        plan = (f"the LR decay was retimed to end at step {self.retiming.end}" if self.retiming
                                else f"the LR schedule was planned for {self.total_steps} steps")
                        log.warning("stopping at step %d of %d: train.max_minutes=%g reached (%s; --resume "
                                    "continues it)", step, self.total_steps, tc.max_minutes, plan)
                    break
            bar.close()
            if not out_of_time:
                epoch, batch_in_epoch = epoch + 1, 0
        result = {"steps": step, "planned_steps": self.total_steps,
                  "lr_decay_end": self.retiming.end if self.retiming else self.total_steps,
                  "stopped_by": "steps" if step >= self.total_steps else "max_minutes",
                  "epochs_started": epoch, "train_shapes": sorted(self.train_shapes),
                  "skipped_steps": int(self.step_cell.skipped_steps.asnumpy()),
                  "weights_fingerprint": weights_fingerprint(self.model), **last}
        # Every rank reports (seen with --log_all_ranks): data-parallel ranks must end identical.
        log.info("rank %d: weights fingerprint %s after %d steps", self.cluster.rank,
                 result["weights_fingerprint"], step)
        if self.cluster.is_main:
            train_log.plot()
            atomic_write_json(self.ckpt_dir / RUN_SUMMARY, {k: v for k, v in result.items() if k != "train_shapes"})
            log.info("done: %d steps in %.1f s; %d training shapes compiled; %d non-finite steps skipped; "
                     "last loss %.3f%s; checkpoints in %s", step, budget.elapsed(),
                     len(self.train_shapes), result["skipped_steps"], last.get("loss", float("nan")),
                     self._dev_text(last), self.ckpt_dir)
        return result


def weights_fingerprint(model: nn.Cell) -> str:
    """A short hash of the trainable weights.  (BatchNorm running statistics are left out: each rank
    gathers its own from its batches, and rank 0's are the ones saved.)"""
    h = hashlib.sha256()
    for p in sorted(model.trainable_params(), key=lambda p: p.name):
        h.update(p.name.encode())
        h.update(np.ascontiguousarray(p.asnumpy()).tobytes())
    return h.hexdigest()[:16]
