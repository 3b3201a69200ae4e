"""Faults a run must survive or report plainly: checkpoint folders shared by two runs, unreadable
checkpoints on --resume, a full disk and killed writers, out-of-range and duplicated config keys."""
import errno
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from src.config import ConfigError, load_config
from src.training import checkpoint as ckpt
from src.training.checkpoint import (CheckpointWriteError, Position, check_fresh_start, list_checkpoints,
                                     remove_stale_temporaries, restore_training_checkpoint, resume_checkpoint,
                                     save_training_checkpoint)
from tests.test_training import batch, make_step, micro_config, train_cmd, write_config

REPO = Path(__file__).resolve().parents[1]


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def trained_step(graph_mode_on_cpu):
    """A micro Jasper train step after one update, and its loss scaler."""
    _, step, scaler = make_step(micro_config())
    step(*batch())
    return step, scaler


def save(trained_step, folder: Path, step: int, keep: int = 3) -> Path:
    train_step, scaler = trained_step
    return save_training_checkpoint(train_step, scaler, folder, Position(0, step, step), keep=keep)


# ------------------------------------------------------------------------------------------------
# 1. One run never deletes what it (or another run) wrote

def test_retention_never_deletes_the_checkpoint_just_written(trained_step, tmp_path, caplog):
    """A run writing steps 20 and 40 into a folder holding steps 20..80 of another run used to delete
    each of its checkpoints right after writing it (retention kept the highest steps in the folder)."""
    for s in (20, 40, 60, 80):
        save(trained_step, tmp_path, s)
    assert names(tmp_path) == ["jasper-40.ckpt", "jasper-60.ckpt", "jasper-80.ckpt"]
    with caplog.at_level(logging.WARNING, logger="src.training.checkpoint"):
        for s in (20, 40):
            path = save(trained_step, tmp_path, s)
            assert path.is_file(), f"{path.name} was deleted right after it was written"
    assert names(tmp_path) == ["jasper-20.ckpt", "jasper-40.ckpt", "jasper-60.ckpt", "jasper-80.ckpt"]
    assert "later steps" in caplog.text and "jasper-80.ckpt" in caplog.text


def test_retention_keeps_the_newest_up_to_the_current_step(trained_step, tmp_path):
    for s in (2, 4, 6, 8):
        save(trained_step, tmp_path, s, keep=2)
    assert names(tmp_path) == ["jasper-6.ckpt", "jasper-8.ckpt"]
    save(trained_step, tmp_path, 10, keep=0)          # 0 keeps everything
    assert len(list_checkpoints(tmp_path)) == 3


def test_a_fresh_run_refuses_a_folder_with_checkpoints(trained_step, tmp_path):
    check_fresh_start(tmp_path / "missing")           # nothing there: fine
    save(trained_step, tmp_path, 80)
    with pytest.raises(ValueError, match=r"jasper-80\.ckpt.*--resume.*--output_dir"):
        check_fresh_start(tmp_path)


def test_resume_with_only_unreadable_checkpoints_warns_and_sets_them_aside(trained_step, tmp_path, caplog):
    (tmp_path / "jasper-80.ckpt").write_bytes(b"truncated")
    (tmp_path / "jasper-60.ckpt").write_bytes(b"")
    with caplog.at_level(logging.INFO, logger="src.training.checkpoint"):
        assert resume_checkpoint(tmp_path) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("starting from scratch" in m and "jasper-80.ckpt" in m and "jasper-60.ckpt" in m for m in warnings)
    # kept for inspection, but out of the way of retention and later resumes
    assert names(tmp_path) == ["jasper-60.ckpt.unreadable", "jasper-80.ckpt.unreadable"]
    save(trained_step, tmp_path, 2, keep=1)
    save(trained_step, tmp_path, 4, keep=1)
    assert names(tmp_path) == ["jasper-4.ckpt", "jasper-60.ckpt.unreadable", "jasper-80.ckpt.unreadable"]


def test_resume_passes_over_newer_unreadable_checkpoints(trained_step, tmp_path, caplog):
    save(trained_step, tmp_path, 4)
    (tmp_path / "jasper-8.ckpt").write_bytes(b"truncated")
    with caplog.at_level(logging.INFO, logger="src.training.checkpoint"):
        assert resume_checkpoint(tmp_path).name == "jasper-4.ckpt"
    assert "jasper-8.ckpt" in caplog.text and "starting from scratch" not in caplog.text
    assert names(tmp_path) == ["jasper-4.ckpt", "jasper-8.ckpt.unreadable"]


def test_resume_in_an_empty_folder_is_a_quiet_first_start(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="src.training.checkpoint"):
        assert resume_checkpoint(tmp_path) is None
    assert "starting from scratch" in caplog.text
    assert all(r.levelno < logging.WARNING for r in caplog.records)


def test_restore_does_not_report_the_rebuilt_learning_rate_as_not_loaded(trained_step, tmp_path, monkeypatch):
    """MindSpore warned "['learning_rate'] are not loaded" on every resume, though the rate continues right."""
    import mindspore.train.serialization as serialization

    path = save(trained_step, tmp_path, 1)
    _, step2, scaler2 = make_step(micro_config())
    lr_before = next(p for p in step2.get_parameters() if p.name == "learning_rate").asnumpy().copy()
    warned = []
    monkeypatch.setattr(serialization.logger, "warning", lambda msg, *args, **kw: warned.append(str(msg)))
    restore_training_checkpoint(step2, scaler2, path)
    assert not [w for w in warned if "not loaded" in w], warned
    lr_after = next(p for p in step2.get_parameters() if p.name == "learning_rate").asnumpy()
    np.testing.assert_array_equal(lr_before, lr_after)   # the table stays the one built from the config


# ------------------------------------------------------------------------------------------------
# 2. A failed or killed write leaves nothing behind and says what to do

def test_enospc_in_the_writer_leaves_no_partial_file(trained_step, tmp_path, monkeypatch):
    """MindSpore writes ``<name>.tmp`` itself and leaves it when the disk fills up; so did we."""
    save(trained_step, tmp_path, 1)

    def fill_disk(params, name, **kwargs):
        partial = Path(str(name) + ".tmp")       # MindSpore's own temporary of "<name>.ckpt"
        partial.write_bytes(b"\0" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.ms, "save_checkpoint", fill_disk)
    with pytest.raises(CheckpointWriteError) as info:
        save(trained_step, tmp_path, 2)
    assert isinstance(info.value, OSError) and isinstance(info.value, ValueError)   # train.py reports ValueError
    assert str(info.value).startswith(f"disk full while writing {tmp_path / 'jasper-2.ckpt'}: free ")
    assert names(tmp_path) == ["jasper-1.ckpt"]


def test_too_little_free_space_is_refused_before_writing(trained_step, tmp_path, monkeypatch):
    monkeypatch.setattr(ckpt.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(CheckpointWriteError, match=r"disk full while writing .*jasper-3\.ckpt: free 2 MB"):
        save(trained_step, tmp_path, 3)
    assert names(tmp_path) == []


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path):
    dead, alive = _dead_pid(), os.getppid()
    stale = [f"jasper-6.ckpt.{dead}.tmp", f"jasper-6.ckpt.{dead}.tmp.tmp", f"jasper-6.ckpt.{dead}.tmp.ckpt",
             f"config.yaml.{dead}.tmp"]
    live = [f"jasper-8.ckpt.{alive}.tmp.tmp"]
    for name in stale + live + ["jasper-4.ckpt", "notes.tmp"]:
        (tmp_path / name).write_bytes(b"x")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted(stale)
    assert names(tmp_path) == sorted(live + ["jasper-4.ckpt", "notes.tmp"])


@pytest.fixture
def small_disk(tmp_path):
    """``mount(kb)`` → a tmpfs of that size (skips where mounting is not allowed)."""
    point = tmp_path / "disk"
    point.mkdir()
    mounted = []

    def mount(kb: int) -> Path:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a tmpfs needs root")
        run = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kb}k", "tmpfs", str(point)],
                             capture_output=True, text=True)
        if run.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {run.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for p in mounted:
        subprocess.run(["umount", "-l", str(p)], capture_output=True)


@pytest.mark.parametrize("precheck", [True, False], ids=["refused", "fails-mid-write"])
def test_full_tmpfs(trained_step, small_disk, monkeypatch, precheck):
    """A real full disk: the first checkpoint (1.2 MB) fits, the second does not."""
    disk = small_disk(1500)
    save(trained_step, disk, 1)
    if not precheck:   # let MindSpore's writer run into ENOSPC itself
        monkeypatch.setattr(ckpt.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 0, 10**9))
    with pytest.raises(CheckpointWriteError, match=r"disk full while writing .*jasper-2\.ckpt: free 2 MB"):
        save(trained_step, disk, 2)
    assert names(disk) == ["jasper-1.ckpt"]


# ------------------------------------------------------------------------------------------------
# train.py end to end


@pytest.mark.slow
def test_train_py_refuses_a_second_run_into_the_same_folder_and_resume_sets_aside(mindrecord_dir, tmp_path):
    """Two runs into one folder, scaled down: 8 steps into D, then 4 steps into D without --resume."""
    config = write_config(tmp_path, checkpoint_every=2, keep_checkpoints=3)
    out = tmp_path / "D"
    first = subprocess.run(train_cmd(config, mindrecord_dir, out, "--max_steps", "8"), capture_output=True,
                           text=True, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    before = {p.name: p.stat().st_mtime_ns for p in list_checkpoints(out / "checkpoints")}
    assert len(before) == 3 and "jasper-6.ckpt" in before and "jasper-8.ckpt" in before
    config_before = (out / "checkpoints" / "config.yaml").read_text()

    (tmp_path / "other").mkdir()
    other = write_config(tmp_path / "other", checkpoint_every=3)
    second = subprocess.run(train_cmd(other, mindrecord_dir, out, "--max_steps", "4"), capture_output=True,
                            text=True, cwd=tmp_path)
    assert second.returncode == 1
    assert "--resume" in second.stderr and "--output_dir" in second.stderr and "Traceback" not in second.stderr
    assert {p.name: p.stat().st_mtime_ns for p in list_checkpoints(out / "checkpoints")} == before
    assert (out / "checkpoints" / "config.yaml").read_text() == config_before   # the first run's config kept

    # --resume with the newest checkpoint broken and a killed writer's leftovers: warned, set aside, cleaned
    (out / "checkpoints" / "jasper-8.ckpt").write_bytes(b"broken")
    leftover = out / "checkpoints" / f"jasper-10.ckpt.{_dead_pid()}.tmp.tmp"
    leftover.write_bytes(b"partial")
    third = subprocess.run(train_cmd(config, mindrecord_dir, out, "--max_steps", "10", "--resume"),
                           capture_output=True, text=True, cwd=tmp_path)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "jasper-8.ckpt" in third.stderr and "resumed from" in third.stderr and "jasper-6.ckpt" in third.stderr
    assert "not loaded" not in third.stderr
    assert not leftover.exists()
    assert names(out / "checkpoints").count("jasper-8.ckpt.unreadable") == 1
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["jasper-6.ckpt", "jasper-8.ckpt",
                                                                        "jasper-10.ckpt"]
    assert "jasper-6.ckpt" in third.stderr.split("resumed from")[1].splitlines()[0]


@pytest.mark.slow
def test_train_py_on_a_full_disk_exits_1_with_a_plain_message(mindrecord_dir, tmp_path, small_disk):
    disk = small_disk(1000)   # the config and logs fit, the first checkpoint (1.2 MB) does not
    config = write_config(tmp_path, checkpoint_every=2)
    run = subprocess.run(train_cmd(config, mindrecord_dir, disk / "run", "--max_steps", "4"), capture_output=True,
                         text=True, cwd=tmp_path)
    assert run.returncode == 1, run.stderr[-3000:]
    assert "disk full while writing" in run.stderr and "jasper-2.ckpt: free 2 MB" in run.stderr
    assert "Traceback" not in run.stderr
    left = [p.name for p in (disk / "run" / "checkpoints").iterdir()]
    assert not [n for n in left if ".tmp" in n or n.endswith(".ckpt")], left


# ------------------------------------------------------------------------------------------------
# 3. Config values out of range and keys given twice

TINY = REPO / "src" / "configs" / "jasper_tiny.yaml"


@pytest.mark.parametrize("override, message", [
    ("data.batch_size=0", "data.batch_size=0 must be >= 1"),
    ("train.epochs=-3", "train.epochs=-3 must be >= 0"),
    ("optim.lr=0", "optim.lr=0.0 must be > 0"),
])
def test_out_of_range_override_names_the_key(override, message):
    with pytest.raises(ConfigError, match=rf"jasper_tiny\.yaml: {message}"):
        load_config(TINY, [override])


def run_train_py(capfd, *argv: str) -> tuple[int, str]:
    import train
    code = train.main(list(argv))
    return code, capfd.readouterr().err


@pytest.mark.parametrize("override, message", [
    ("data.batch_size=0", "data.batch_size=0 must be >= 1"),
    ("train.epochs=-3", "train.epochs=-3 must be >= 0"),
])
def test_train_py_set_out_of_range_exits_1_with_the_message(override, message, tmp_path, capfd, restore_logging):
    code, err = run_train_py(capfd, "--config", str(TINY), "--train_data", str(tmp_path / "none"),
                             "--output_dir", str(tmp_path / "run"), "--set", override)
    assert code == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


DUPLICATED = """\
model:
  name: jasper
data:
  batch_size: 8
  shuffle: true
  batch_size: 4
"""


def test_a_key_given_twice_in_yaml_names_the_file_key_and_line(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(DUPLICATED)
    with pytest.raises(ConfigError, match=rf"{path}: line 6: key data\.batch_size is given twice \(first on line 4\)"):
        load_config(path)
    path.write_text("train:\n  epochs: 2\ndata: {batch_size: 2}\ntrain:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match=r"line 4: key train is given twice \(first on line 1\)"):
        load_config(path)
    # a merge key may be overridden, as YAML intends; every shipped config is free of duplicates
    path.write_text("data:\n  <<: {batch_size: 2, shuffle: false}\n  batch_size: 3\n")
    assert load_config(path).data.batch_size == 3 and not load_config(path).data.shuffle
    for preset in sorted((REPO / "src" / "configs").glob("*.yaml")):
        load_config(preset)


def test_train_py_with_a_duplicated_key_exits_1(tmp_path, capfd, restore_logging):
    path = tmp_path / "dup.yaml"
    path.write_text(DUPLICATED)
    code, err = run_train_py(capfd, "--config", str(path), "--train_data", str(tmp_path / "none"),
                             "--output_dir", str(tmp_path / "run"))
    assert code == 1 and "key data.batch_size is given twice" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------------
# 4. Counts that used to be silent


def test_eval_py_records_and_prints_skipped_utterances(mindrecord_dir, tmp_path, capfd, restore_logging):
    """An unreadable file used to vanish from the scores: fewer utterances, exit 0, no count."""
    import json

    import mindspore as ms
    import yaml

    import eval as eval_py
    from src.config import config_from_dict
    from src.models import build_model
    from tests.test_eval_export import SMALL

    config_path = tmp_path / "small.yaml"
    config_path.write_text(yaml.safe_dump(SMALL))
    ms.save_checkpoint(build_model(config_from_dict(SMALL)), str(tmp_path / "small.ckpt"))
    entries = json.loads((mindrecord_dir / "m.json").read_text())
    for e in entries:   # absolute paths: the manifest lives elsewhere
        e["files"][0]["fname"] = str((mindrecord_dir / e["files"][0]["fname"]).resolve())
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF but not really")
    entries[5]["files"][0]["fname"] = str(broken)
    entries[6]["files"][0]["fname"] = str(tmp_path / "missing.wav")
    (tmp_path / "set.json").write_text(json.dumps(entries))

    code = eval_py.main(["--config", str(config_path), "--checkpoint", str(tmp_path / "small.ckpt"), "--manifest",
                         str(tmp_path / "set.json"), "--output_dir", str(tmp_path / "eval"), "--no_progress"])
    captured = capfd.readouterr()
    assert code == 0, captured.err[-2000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())["set"]
    assert metrics["utterances"] == 20 and metrics["skipped"] == 2
    assert "20 utterances\t2 skipped" in captured.out
    assert "missing.wav: not found" in captured.err and "2 utterance(s) skipped" in captured.err
