"""Training: the compiled step (loss scaling, skipped steps, accumulation), checkpoints and resume,
train.py end to end, a SIGKILL-ed run resuming, and 2-rank data parallel through msrun."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
import yaml
from mindspore import Tensor

from src.config import TrainConfig, config_from_dict
from src.models.jasper import build_model
from src.tasks.asr import CTCLoss
from src.training.checkpoint import (Position, latest_checkpoint, list_checkpoints, load_model_weights,
                                     restore_training_checkpoint, save_training_checkpoint)
from src.training.optim import build_optimizer
from src.training.train_step import TrainStep, make_loss_scaler

REPO = Path(__file__).resolve().parents[1]

# A network small enough to compile and train in seconds, with every Jasper feature (stride,
# dense residuals, dilation, dropout off for reproducible losses).
MICRO_MODEL = {"name": "jasper", "blocks": [
    {"filters": 32, "kernel": 11, "stride": 2},
    {"filters": 32, "repeat": 2, "kernel": 11, "residual": True},
    {"filters": 48, "repeat": 2, "kernel": 13, "residual": True},
    {"filters": 64, "kernel": 15, "dilation": 2},
    {"filters": 64, "kernel": 1}]}
MICRO = {"model": MICRO_MODEL, "data": {"batch_size": 4, "num_buckets": 3},
         "optim": {"name": "novograd", "lr": 0.02, "warmup_steps": 4, "decay": "polynomial", "min_lr": 1e-4},
         "train": {"log_every": 1, "checkpoint_every": 2, "keep_checkpoints": 50}}


pytestmark = pytest.mark.usefixtures("graph_mode_on_cpu")


def micro_config(**train):
    tree = json.loads(json.dumps(MICRO))
    tree["train"].update(train)
    return config_from_dict(tree)


def batch(bad: bool = False):
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((4, 64, 96)).astype(np.float32)
    if bad:
        feats[0, 0, 0] = np.inf
    lengths = np.array([96, 80, 64, 40], np.int32)
    tokens = rng.integers(0, 28, (4, 48)).astype(np.int32)
    return Tensor(feats), Tensor(lengths), Tensor(tokens), Tensor(np.array([10, 8, 6, 4], np.int32))


def make_step(config, **kwargs):
    model = build_model(config)
    opt = build_optimizer(model.trainable_params(), config.optim, 100)
    scaler = make_loss_scaler(config.train)
    return model, TrainStep(CTCLoss(model, 28), opt, scaler, **kwargs), scaler


def test_non_finite_step_is_skipped_and_dynamic_scale_halves():
    config = micro_config(loss_scale="dynamic", loss_scale_init=1024.0)
    model, step, scaler = make_step(config)
    loss, finite, norm, scale = step(*batch())
    assert bool(finite.asnumpy()) and np.isfinite(loss.asnumpy()) and float(scale.asnumpy()) == 1024
    before = {p.name: p.asnumpy().copy() for p in model.trainable_params()}
    _, finite, _, _ = step(*batch(bad=True))
    assert not bool(finite.asnumpy())
    assert int(step.skipped_steps.asnumpy()) == 1 and float(scaler.scale_value.asnumpy()) == 512
    assert all(np.array_equal(before[p.name], p.asnumpy()) for p in model.trainable_params())


def test_static_loss_scale_gives_the_same_update_as_none():
    results = []
    for scale in ("none", "128"):
        ms.set_seed(3)
        model, step, _ = make_step(micro_config(loss_scale=scale))
        model.set_train(True)
        loss, *_ = step(*batch())
        results.append((float(loss.asnumpy()), [p.asnumpy().copy() for p in model.trainable_params()]))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_gradient_accumulation_runs_and_clears_buffers():
    model, step, _ = make_step(micro_config(), accumulate=2, grad_clip=1.0)
    step.accumulate_cell()(*batch())
    loss, finite, norm, _ = step(*batch())
    assert bool(finite.asnumpy()) and float(norm.asnumpy()) > 0
    assert all(not b.asnumpy().any() for b in step.accum)


def test_loss_scaler_settings():
    assert float(make_loss_scaler(TrainConfig(loss_scale="1024")).scale_value.asnumpy()) == 1024
    with pytest.raises(ValueError, match="loss_scale"):
        make_loss_scaler(TrainConfig(loss_scale="sometimes"))


def test_checkpoint_round_trip_keep_last_and_ema(tmp_path):
    config = micro_config(loss_scale="dynamic", ema=0.9)
    model, step, scaler = make_step(config, ema_decay=0.9)
    for _ in range(3):
        step(*batch())
    scaler.scale_value.set_data(Tensor(np.float32(256.0)))
    for s in (1, 2, 3):
        save_training_checkpoint(step, scaler, tmp_path, Position(epoch=1, step=s, batch=s + 4), keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["jasper-2.ckpt", "jasper-3.ckpt"]
    assert not list(tmp_path.glob("*.tmp*"))

    model2, step2, scaler2 = make_step(config, ema_decay=0.9)
    pos = restore_training_checkpoint(step2, scaler2, latest_checkpoint(tmp_path))
    assert pos == Position(1, 3, 7) and float(scaler2.scale_value.asnumpy()) == 256
    for a, b in zip(step.get_parameters(), step2.get_parameters()):
        if a.name != "learning_rate":
            np.testing.assert_array_equal(a.asnumpy(), b.asnumpy(), err_msg=a.name)

    bare = build_model(config)
    load_model_weights(bare, tmp_path / "jasper-3.ckpt", ema=True)
    ema = {p.name[len("ema."):]: p.asnumpy() for p in step.ema}
    for p in bare.get_parameters():
        np.testing.assert_array_equal(p.asnumpy(), ema[p.name])


def test_unreadable_newest_checkpoint_is_passed_over(tmp_path):
    config = micro_config()
    _, step, scaler = make_step(config)
    save_training_checkpoint(step, scaler, tmp_path, Position(0, 4, 4), keep=5)
    (tmp_path / "jasper-8.ckpt").write_bytes(b"truncated")
    assert latest_checkpoint(tmp_path).name == "jasper-4.ckpt"


def test_model_weights_that_do_not_fit_are_named(tmp_path):
    _, step, scaler = make_step(micro_config())
    path = save_training_checkpoint(step, scaler, tmp_path, Position(0, 1, 1), keep=1)
    wider = json.loads(json.dumps(MICRO))
    wider["model"]["blocks"][-1]["filters"] = 80
    with pytest.raises(ValueError, match=r"encoder\.layers\.4\.conv\.0\.weight has shape .* check --config"):
        load_model_weights(build_model(config_from_dict(wider)), path)
    with pytest.raises(ValueError, match="no EMA weights"):
        load_model_weights(build_model(micro_config()), path, ema=True)


# ------------------------------------------------------------------------------------------------
# train.py end to end (a few training steps on generated speech)

def write_config(tmp_path: Path, **train) -> Path:
    tree = json.loads(json.dumps(MICRO))
    tree["train"].update(train)
    for block in tree["model"]["blocks"]:
        block["dropout"] = 0.0
    path = tmp_path / "micro.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def train_cmd(config: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "train.py"), "--config", str(config), "--train_data", str(data / "mr"),
            "--output_dir", str(out), "--no_progress", *extra]


def log_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "checkpoints" / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_train_py_learns_and_writes_artifacts(mindrecord_dir, tmp_path):
    out = tmp_path / "run"
    config = write_config(tmp_path, eval_every=10)
    run = subprocess.run(train_cmd(config, mindrecord_dir, out, "--dev_data", str(mindrecord_dir / "m.json"),
                                   "--max_steps", "30"), capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = log_rows(out)
    assert [r["step"] for r in rows] == list(range(1, 31))
    losses = [r["loss"] for r in rows]
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])          # it learns
    assert all(r["dev_wer"] is not None for r in rows if r["step"] % 10 == 0)
    ckpt = out / "checkpoints"
    assert (ckpt / "config.yaml").is_file() and (ckpt / "train_log.csv").is_file() and (ckpt / "train_log.png").is_file()
    assert list_checkpoints(ckpt)[-1].name == "jasper-30.ckpt"
    assert re.search(r"\d+ training shapes compiled", run.stderr)


@pytest.mark.slow
def test_sigkill_then_resume_continues_the_same_curve(mindrecord_dir, tmp_path):
    config = write_config(tmp_path)
    reference = tmp_path / "reference"
    subprocess.run(train_cmd(config, mindrecord_dir, reference, "--max_steps", "12"), check=True,
                   capture_output=True, cwd=tmp_path)
    expected = {r["step"]: r["loss"] for r in log_rows(reference)}

    out = tmp_path / "killed"
    proc = subprocess.Popen(train_cmd(config, mindrecord_dir, out, "--max_steps", "12"), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "checkpoints" / "jasper-6.ckpt").exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = [p.name for p in list_checkpoints(out / "checkpoints")]
    assert "jasper-6.ckpt" in done and "jasper-12.ckpt" not in done

    run = subprocess.run(train_cmd(config, mindrecord_dir, out, "--max_steps", "12", "--resume"),
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "resumed from" in run.stderr
    assert "not loaded" not in run.stderr                            # the LR table is rebuilt, not missing
    assert not list((out / "checkpoints").glob("*.tmp*"))            # a write cut by the kill is cleaned up
    rows = log_rows(out)
    assert [r["step"] for r in rows] == list(range(1, 13))           # no gap, no duplicate
    for r in rows:                                                   # the same curve as without the kill
        assert r["loss"] == pytest.approx(expected[r["step"]], rel=1e-3), r["step"]


@pytest.mark.slow
def test_time_budget_stops_with_a_checkpoint_and_resume_finishes(mindrecord_dir, tmp_path):
    out = tmp_path / "budget"
    config = write_config(tmp_path, max_minutes=1e-6)             # spent after the first step
    run = subprocess.run(train_cmd(config, mindrecord_dir, out, "--max_steps", "6"), capture_output=True,
                         text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "train.max_minutes=1e-06 reached" in run.stderr
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["jasper-1.ckpt"]
    run = subprocess.run(train_cmd(write_config(tmp_path), mindrecord_dir, out, "--max_steps", "6", "--resume"),
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert [r["step"] for r in log_rows(out)] == list(range(1, 7))


@pytest.mark.slow
def test_budget_retimes_the_decay_to_end_with_it_and_resume_continues_it(mindrecord_dir, tmp_path, monkeypatch):
    """A clock that ticks once per reading: the budget (60 ticks) fits about a third of the 45 planned steps."""
    import itertools

    import src.training.trainer as trainer_module
    from src.training.budget import TimeBudget
    from src.training.distributed import Cluster
    from src.training.lr_schedule import lr_schedule

    ticks = itertools.count()
    monkeypatch.setattr(trainer_module, "TimeBudget",
                        lambda minutes, window: TimeBudget(minutes, window, clock=lambda: float(next(ticks))))
    out = tmp_path / "retimed"
    config = micro_config(max_minutes=1.0, schedule_to_budget=True)

    def run(config, resume):
        opts = trainer_module.RunOptions(str(mindrecord_dir / "mr"), None, str(out), max_steps=45, resume=resume,
                                         progress=False)
        trainer = trainer_module.Trainer(config, opts, Cluster())
        return trainer, trainer.run()

    trainer, result = run(config, resume=False)
    assert result["stopped_by"] == "max_minutes" and result["lr_decay_end"] < 45
    assert abs(result["lr_decay_end"] - result["steps"]) <= 3        # the decay ends with the budget
    rows = log_rows(out)
    lrs = [r["lr"] for r in rows]
    assert max(lrs) == pytest.approx(config.optim.lr, rel=1e-6)
    assert np.all(np.diff(lrs[config.optim.warmup_steps:]) <= 1e-12)  # still a decay, only shorter
    assert lrs[-1] < 0.1 * config.optim.lr                            # planned for 45 steps it would be ~0.5

    resumed, result2 = run(micro_config(schedule_to_budget=True), resume=True)   # no budget now
    assert resumed.retiming == trainer.retiming                       # carried by the checkpoint
    assert result2["steps"] == 45
    expected = lr_schedule(45, config.optim, trainer.retiming)
    for r in log_rows(out)[len(rows):]:
        assert r["lr"] == pytest.approx(float(expected[r["step"] - 1]), rel=1e-6), r["step"]


@pytest.mark.slow
def test_two_msrun_ranks_end_with_identical_weights(mindrecord_dir, tmp_path):
    config = write_config(tmp_path)
    out = tmp_path / "ddp"
    env = {**os.environ, "CONFIG": str(config), "DATA_DIR": str(mindrecord_dir), "OUTPUT_DIR": str(out),
           "MASTER_PORT": str(9000 + os.getpid() % 500)}
    run = subprocess.run(["bash", str(REPO / "scripts" / "run_distribute_train_cpu.sh"), "2",
                          "--train_data", str(mindrecord_dir / "mr"), "--max_steps", "4", "--no_progress",
                          "--log_all_ranks"], capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    logs = {p.name: p.read_text(errors="replace") for p in (out / "msrun_logs").glob("worker_*.log")}
    assert run.returncode == 0, run.stderr[-2000:] + "".join(v[-2000:] for v in logs.values())
    prints = {re.search(r"rank (\d+): weights fingerprint (\w+)", text).groups() for text in logs.values()}
    assert {rank for rank, _ in prints} == {"0", "1"}
    assert len({fp for _, fp in prints}) == 1                        # gradients were all-reduced
    firsts = {re.search(r"rank (\d+): first batch ([\w-]+)", text).groups() for text in logs.values()}
    assert len({b for _, b in firsts}) == 2                          # ... over different data
    assert list_checkpoints(out / "checkpoints")                     # rank 0 wrote checkpoints
