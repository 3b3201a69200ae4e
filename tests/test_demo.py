"""bash scripts/run_demo.sh --quick: every stage runs, every artifact exists, the inference paths agree."""
import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ["corpus", "convert", "mindrecord", "train", "eval", "export", "eval_mindir", "infer_310", "lm", "probe"]


@pytest.mark.slow
def test_quick_demo_walks_the_whole_path(tmp_path):
    work = tmp_path / "demo"
    run = subprocess.run(["bash", str(REPO / "scripts" / "run_demo.sh"), "--quick", "--work_dir", str(work)],
                         capture_output=True, text=True, cwd=REPO, timeout=1800)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    summary = json.loads((work / "summary.json").read_text())
    assert list(summary["stages"]) == STAGES
    for name, stage in summary["stages"].items():
        assert stage["seconds"] >= 0 and all(Path(a).exists() for a in stage["artifacts"]), name
    assert set(summary["inference"]) == {"checkpoint", "mindir", "310"}
    for path, splits in summary["inference"].items():
        assert set(splits) == {"dev", "test"}
        assert all(0 <= s["wer"] and 0 <= s["cer"] and s["utterances"] > 0 for s in splits.values())
    assert summary["agree"] is True
    for split in ("dev", "test"):
        assert len({summary["inference"][p][split]["wer"] for p in summary["inference"]}) == 1
    assert "the three inference paths agree" in run.stdout
    test = summary["breakdown"]["test"]                # the quick corpus speaks with espeak-ng only
    assert list(test["by_voice"]) == ["espeak"] and test["by_voice"]["espeak"]["wer"] == pytest.approx(
        summary["inference"]["checkpoint"]["test"]["wer"], abs=0.01)
    assert list(test["by_training_count"]) == ["10+", "1-9", "0"]
    assert sum(b["words"] for b in test["by_training_count"].values()) == test["by_voice"]["espeak"]["words"]
    lm = summary["lm"]                                 # beam search with the training-transcript LM
    assert Path(lm["lm_path"]).read_text().lstrip().startswith("\\data\\")
    assert all(lm[s]["utterances"] == summary["inference"]["checkpoint"][s]["utterances"] for s in ("dev", "test"))
    probe = summary["probe"]                           # the checkpoint on re-rendered probe sets
    assert list(probe)[:7] == ["seen", "new_voice", "new_text", "pitch", "tempo", "channel", "open_text"]
    assert list(probe)[7:] == (["new_engine"] if neural_voices_installed() else [])
    assert all(r["utterances"] == 4 and r["wer"] >= 0 for r in probe.values())
    assert list(summary["breakdown"]["probe"]) == list(probe)       # word accuracy by training count per set
    assert all(sum(b["words"] for b in r.values()) > 0 for r in summary["breakdown"]["probe"].values())
    assert "probe sets" in run.stdout
    # A second run reuses every stage's outputs.
    again = subprocess.run(["bash", str(REPO / "scripts" / "run_demo.sh"), "--quick", "--work_dir", str(work)],
                           capture_output=True, text=True, cwd=REPO, timeout=1800)
    assert again.returncode == 0
    second = json.loads((work / "summary.json").read_text())
    assert second["stages"]["corpus"]["seconds"] < 5 and second["inference"] == summary["inference"]


def neural_voices_installed() -> bool:
    from utils.corpus.probe import engine_available
    return any(engine_available(e) for e in ("hibari", "kokoro"))


def _demo_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("run_demo", REPO / "utils" / "run_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_outputs_made_with_other_settings_are_redone(tmp_path):
    demo_mod = _demo_module()
    demo = demo_mod.Demo(demo_mod.parse_args(["--quick", "--work_dir", str(tmp_path), "--jobs", "2"]))
    meta = demo.librispeech / "corpus.json"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"config": {"seed": 99}}))            # an older preset's corpus
    (demo.data).mkdir()
    (demo.data / "train-clean.json").write_text("[]")
    demo.corpus()
    assert demo.args.from_stage == "corpus" and demo.redo("train")
    assert json.loads(meta.read_text())["config"] != {"seed": 99}  # regenerated with the preset
    demo.fresh("convert", demo.data)
    assert not demo.data.exists()                                    # and the conversion made from it is gone

    demo = demo_mod.Demo(demo_mod.parse_args(["--quick", "--work_dir", str(tmp_path)]))
    demo.check_training_settings()                                   # no run yet: nothing to redo
    assert demo.args.from_stage is None
    saved = demo.run_dir / "checkpoints" / "config.yaml"
    saved.parent.mkdir(parents=True)
    from src.config import load_config, save_config
    save_config(load_config(demo.args.config, demo.overrides), saved)
    demo.check_training_settings()                                   # the same settings: reused
    assert demo.args.from_stage is None
    save_config(load_config(demo.args.config, [*demo.overrides, "optim.lr=0.5"]), saved)
    demo.check_training_settings()
    assert demo.args.from_stage == "train" and not demo.redo("mindrecord") and demo.redo("probe")


def test_config_overrides_reach_the_shards_and_the_310_path(tmp_path):
    """--set labels_path / features.* must reach create_mindrecord and the 310 path's pre/postprocess too,
    or their tokens and features would not be the checkpoint's."""
    demo_mod = _demo_module()
    demo = demo_mod.Demo(demo_mod.parse_args(["--work_dir", str(tmp_path), "--set", "labels_path=my.json"]))
    demo.data.mkdir(parents=True)
    for split in demo_mod.SPLITS:
        demo.manifest(split).write_text("[]")
    calls = []

    def command(stage, args):
        calls.append((stage, [str(a) for a in args]))
        if stage == "infer_310":
            work = Path(args[args.index("--work_dir") + 1])
            (work / "result").mkdir(parents=True)
            (work / "result" / "metrics.json").write_text(json.dumps({"x": {"wer": 1, "cer": 1, "utterances": 1}}))

    demo.command = command
    demo.export_dir = tmp_path / "export"
    demo.mindrecord_stage()
    demo.infer_310()
    assert [stage for stage, _ in calls] == ["mindrecord"] * 3 + ["infer_310"] * 2
    for _, args in calls:
        assert args[args.index("--config") + 1] == demo.args.config and "labels_path=my.json" in args


def test_a_run_with_ema_is_evaluated_and_exported_with_its_ema_weights(tmp_path):
    demo_mod = _demo_module()
    demo = demo_mod.Demo(demo_mod.parse_args(["--work_dir", str(tmp_path)]))
    demo.checkpoint = tmp_path / "jasper-1.ckpt"
    assert demo.checkpoint_args() == ["--checkpoint", demo.checkpoint]
    demo = demo_mod.Demo(demo_mod.parse_args(["--work_dir", str(tmp_path), "--set", "train.ema=0.999"]))
    demo.checkpoint = tmp_path / "jasper-1.ckpt"
    assert demo.checkpoint_args() == ["--checkpoint", demo.checkpoint, "--ema"]
