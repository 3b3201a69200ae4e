"""bench/bench_infer.py, bench/bench_convert.py, bench/bench_kws.py, bench/bench_deepspeech2.py and
bench/run_all.py in tiny configurations: they run, write JSON with positive finite numbers, and print
their markdown tables; bench/torch_dscnn.py computes what the MindSpore DS-CNN computes."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from utils.corpus import synthetic as S

REPO = Path(__file__).resolve().parents[1]
# make_synthetic_corpus.py with espeak-ng voices and its text sources (as tests/test_synthetic_corpus.py)
MISSING_TOOLS = (any(shutil.which(t) is None for t in ("sox", "espeak-ng", "bible")) or not S.DICT_PATH.is_file()
                 or not S.FORTUNES_DIR.is_dir())


def run_bench(script: str, *args, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "GLOG_v": "3"}
    r = subprocess.run([sys.executable, str(REPO / "bench" / script), *map(str, args)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{script} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def check_timing(summary: dict) -> None:
    assert positive(summary["ms_median"]) and positive(summary["rtf"]) and positive(summary["x_real_time"])
    assert summary["ms_min"] <= summary["ms_median"] <= summary["ms_max"]
    assert all(positive(t) for t in summary["per_round_ms"])


def check_infer(result: dict, seconds: float, methods: list[str]) -> dict:
    assert result["seconds"] == seconds and result["repeats"] == 1
    p = result["presets"]["jasper_tiny"]
    assert p["audio_seconds"] == pytest.approx(seconds)
    assert p["params"] == 2_811_933  # the README's count for the tiny preset
    assert p["n_frames"] % 16 == 0 and p["n_frames"] >= p["input_frames"] >= p["valid_frames"]
    check_timing(p["features"])
    assert list(p["methods"]) == methods
    for name in ("mindir", "checkpoint"):
        m = p["methods"][name]
        check_timing(m["model"])
        check_timing(m["e2e"])
        assert positive(m["first_call_s"])
        # RTF is the model time over the audio duration
        assert m["model"]["rtf"] == pytest.approx(m["model"]["ms_median"] / 1000 / seconds, rel=1e-2)
    assert p["max_abs_diff_mindir_vs_checkpoint"] < 1e-4
    return p


def test_bench_infer_mindspore_paths(tmp_path):
    out = tmp_path / "infer.json"
    r = run_bench("bench_infer.py", "--seconds", 1.5, "--repeats", 1, "--calls", 1, "--methods", "mindir,checkpoint",
                  "--work_dir", tmp_path / "work", "--output", out)
    check_infer(json.loads(out.read_text()), 1.5, ["mindir", "checkpoint"])
    assert (tmp_path / "work" / "jasper_tiny" / "jasper.mindir.json").is_file()  # export.py's sidecar
    assert "| jasper_tiny | MindIR (mindspore.load + GraphCell) | 160 |" in r.stdout
    assert "| preset | path | input frames | model ms | RTF model |" in r.stdout


@pytest.mark.slow
def test_bench_infer_with_the_cpp_runner(tmp_path):
    """With the C++ runner: either numbers that match MindSpore's outputs, or a skipped row with a reason
    (the first run fetches MindSpore Lite and builds the runner, hence slow)."""
    out = tmp_path / "infer.json"
    r = run_bench("bench_infer.py", "--seconds", 1, "--repeats", 1, "--calls", 1, "--output", out, timeout=3600)
    p = check_infer(json.loads(out.read_text()), 1.0, ["mindir", "checkpoint", "lite"])
    lite = p["methods"]["lite"]
    if "skipped" in lite:
        assert lite["skipped"] and "skipped" in r.stdout
    else:
        check_timing(lite["model"])
        assert p["max_abs_diff_lite_vs_mindspore"] < 1e-4
        assert "| jasper_tiny | C++ runner, MindSpore Lite 2.0 |" in r.stdout


@pytest.mark.parametrize("args", [["--seconds", 0], ["--methods", "onnx"], ["--n_frames", 100],
                                  ["--presets", "nonexistent"], ["--repeats", 0]])
def test_bench_infer_rejects_bad_arguments(args):
    r = subprocess.run([sys.executable, str(REPO / "bench" / "bench_infer.py"), *map(str, args)], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "error:" in r.stderr


@pytest.mark.needs_tools
@pytest.mark.skipif(MISSING_TOOLS, reason="needs sox, espeak-ng, bible-kjv, fortunes and wamerican")
def test_bench_convert(tmp_path):
    work, out = tmp_path / "work", tmp_path / "convert.json"
    args = ["--speakers", 1, "--utts_per_chapter", 2, "--voices", "espeak", "--repeats", 1, "--work_dir", work]
    r = run_bench("bench_convert.py", *args, "--output", out)
    result = json.loads(out.read_text())
    assert result["utterances"] == 2 and positive(result["audio_seconds"])
    assert result["corpus"]["flac_files"] == 2 and positive(result["corpus"]["generate_s"])
    assert positive(result["wav_mb"]) and positive(result["mindrecord_mb"])
    hours = result["audio_seconds"] / 3600
    for stage in ("convert", "mindrecord", "total"):
        s = result["stages"][stage]
        for key in ("wall_s_median", "audio_hours_per_minute", "x_real_time"):
            assert positive(s[key]), (stage, key, s[key])
        assert s["audio_hours_per_minute"] == pytest.approx(hours / (s["wall_s_median"] / 60), rel=1e-2)
        assert s["tool_s_median"] is None or s["tool_s_median"] >= 0
    assert result["stages"]["total"]["wall_s_median"] == pytest.approx(
        result["stages"]["convert"]["wall_s_median"] + result["stages"]["mindrecord"]["wall_s_median"], abs=2e-3)
    assert "| convert_librispeech.py (FLAC → wav + manifest) |" in r.stdout
    assert not [p for p in work.iterdir() if p.name.startswith("round-")]  # scratch space removed

    # The corpus is cached: a second run does not generate it again.
    run_bench("bench_convert.py", *args, "--output", out)
    assert json.loads(out.read_text())["corpus"]["generate_s"] == 0


def test_run_all_collects_results_and_reports_failures(tmp_path, monkeypatch):
    """run_all.py with stand-in benchmarks: one writes a result, one fails; both are in all.json and the
    summary, and the exit code says that one failed."""
    from bench import run_all

    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "good.py").write_text(
        "import json, sys\nout = sys.argv[sys.argv.index('--output') + 1]\n"
        "json.dump({'stages': {'total': {'audio_hours_per_minute': 1.5}}, 'audio_seconds': 60}, open(out, 'w'))\n"
        "print('[WARNING] noise'); print('done')\n")
    (tmp_path / "bench" / "bad.py").write_text("import sys\nprint('something broke', file=sys.stderr)\nsys.exit(3)\n")
    monkeypatch.setattr(run_all, "BENCHES", {
        "convert": run_all.Bench("good.py", "stand-in", ("--quick_flag",), run_all.headline_convert),
        "infer": run_all.Bench("bad.py", "stand-in", (), run_all.headline_infer)})
    monkeypatch.setattr(run_all, "ROOT", tmp_path)
    code = run_all.main(["--quick", "--results_dir", str(tmp_path / "res")])
    assert code == 1
    report = json.loads((tmp_path / "res" / "all.json").read_text())
    assert report["quick"] is True
    conv, inf = report["benchmarks"]["convert"], report["benchmarks"]["infer"]
    assert conv["exit_code"] == 0 and conv["result"]["audio_seconds"] == 60
    assert conv["headline"] == "audio-hours per wall-minute: both 1.50 (1.0 min of audio)"
    assert conv["command"] == "python bench/good.py --quick_flag --output res/convert.json"
    assert inf["exit_code"] == 3 and "something broke" in inf["error"]
    summary = (tmp_path / "res" / "summary.md").read_text()
    assert "| convert: stand-in | audio-hours per wall-minute: both 1.50" in summary
    assert "**failed** (exit 3): something broke" in summary
    log = (tmp_path / "res" / "logs" / "convert.log").read_text()
    assert "[WARNING] noise" in log and "done" in log

    # --only one: the other's earlier entry stays, named as kept
    assert run_all.main(["--quick", "--only", "convert", "--results_dir", str(tmp_path / "res")]) == 0
    again = json.loads((tmp_path / "res" / "all.json").read_text())
    assert list(again["benchmarks"]) == ["convert", "infer"] and again["kept_from_earlier"] == ["infer"]
    assert again["benchmarks"]["infer"]["exit_code"] == 3 and again["benchmarks"]["infer"]["finished"]
    summary = (tmp_path / "res" / "summary.md").read_text()
    assert "Not re-run, kept from earlier runs: infer (" in summary and "**failed** (exit 3)" in summary


def test_run_all_reports_an_unreadable_earlier_result(tmp_path, capsys):
    from bench import run_all

    (tmp_path / "all.json").write_text('{"quick": false, "benchmarks": ')     # cut off mid-write
    assert run_all.earlier_entries(tmp_path / "all.json", quick=False) == {}
    assert "all.json is unreadable (JSONDecodeError" in capsys.readouterr().err
    assert run_all.earlier_entries(tmp_path / "missing.json", quick=False) == {}
    assert capsys.readouterr().err == ""


def test_profile_op_shares_from_the_profiler_table(tmp_path):
    from bench.bench_train import op_shares

    table = tmp_path / "run" / "FRAMEWORK" / "cpu_op_type_info_0.csv"
    table.parent.mkdir(parents=True)
    table.write_text("op_type,type_occurrences,execution_frequency(per-step),total_compute_time,avg_time(ms),percent\n"
                     "Pad,60,12,25.0,0.4,0.25\nConv2D,145,29,75.0,0.5,0.75\n")
    assert op_shares(tmp_path) == {"Conv2D": 75.0, "Pad": 25.0}
    with pytest.raises(RuntimeError, match="no cpu_op_type_info"):
        op_shares(tmp_path / "run" / "FRAMEWORK" / "none")


def test_run_all_headlines_of_every_result_format():
    """The headline functions read the JSON each benchmark writes (shapes as in bench/*.py)."""
    from bench import run_all

    assert run_all.headline_features({"audio_seconds_per_second": {"batched": 8277.3, "librosa": 3283.3},
                                      "median_ratio_vs_librosa": {"batched/librosa": 2.5}}) == \
        "batch_features 8,277 audio-s/s, 2.50× librosa (3,283 audio-s/s)"
    assert run_all.headline_loader({"padding": [{"batching": "planned buckets (8)", "batch_size": 16,
                                                 "overhead": 0.079, "shapes": 8}],
                                    "loading": {"train": {"audio_seconds_per_s": 3272.6},
                                                "eval": {"audio_seconds_per_s": 6566.6}}}) == \
        "padding 7.9 % with 8 buckets (batch 16); train loading 3,273 audio-s/s; eval loading 6,567 audio-s/s"
    step = {"step_s_median": 0.897, "batch": 16}
    assert run_all.headline_train({"presets": {"jasper_tiny": {
        "mindspore": step, "pytorch": {**step, "step_s_median": 0.699},
        "ratio_mindspore_over_pytorch": {"median": 1.279}}}}) == \
        "jasper_tiny: mindspore 0.897 s/step (batch 16), pytorch 0.699 s/step (batch 16), MS/PT 1.28"
    rows = [{"decoder": "greedy", "ms_per_utterance": 0.5, "wer": 20.0},
            {"decoder": "beam 8 + LM", "ms_per_utterance": 5.0, "wer": 10.0}]
    assert run_all.headline_decode({"rows": rows, "setup": {"frames": 500}}) == \
        "greedy 0.50 ms/utt; beam 8 + LM 5.0 ms/utt (WER 10.0 % vs greedy 20.0 %); 500 frames per utterance"
    timing = {"rtf": 0.0161}
    assert run_all.headline_infer({"seconds": 10.0, "presets": {"jasper_tiny": {"methods": {
        "mindir": {"model": timing, "e2e": {"rtf": 0.017}}, "lite": {"skipped": "no cmake"}}}}}) == \
        "jasper_tiny, 10 s: MindIR RTF 0.0161 (e2e 0.017), C++ runner (Lite) skipped"
    assert run_all.headline_kws({"train": {"batch": 100, "mindspore": {"steps_per_s": 12.34},
                                           "pytorch": {"steps_per_s": 8.0}, "ratio_mindspore_over_pytorch": {"median": 0.648}},
                                 "infer": {"batches": {"1": {"methods": {"checkpoint": {"ms_per_clip": 2.5},
                                                                         "lite": {"skipped": "no cmake"}}}}}}) == \
        "train batch 100: mindspore 12.3 steps/s, pytorch 8 steps/s, MS/PT step 0.65; " \
        "infer batch 1: checkpoint 2.5 ms/clip, C++ runner (Lite) skipped"
    ds2 = {"step_s_median": 1.5, "batch": 8, "peak_rss_mb": 2048}
    assert run_all.headline_deepspeech2({"infer_seconds": 10.0, "train": {"deepspeech2_tiny": {
        "mindspore": ds2, "pytorch": {**ds2, "step_s_median": 1.0, "peak_rss_mb": 1024},
        "ratio_mindspore_over_pytorch": {"median": 1.5}}},
        "infer": {"deepspeech2_tiny": {"methods": {"mindir": {"model": {"rtf": 0.05}}}}}}) == \
        "deepspeech2_tiny (batch 8): mindspore 1.5 s/step, 2.00 GB, pytorch 1 s/step, 1.00 GB, MS/PT 1.50; " \
        "deepspeech2_tiny, 10 s: MindIR RTF 0.05"


@pytest.mark.parametrize("name", ["features", "loader", "train", "decode", "infer", "convert", "kws", "deepspeech2"])
def test_run_all_quick_arguments_are_accepted(name):
    """--quick passes options each benchmark's own parser accepts."""
    import importlib

    from bench import run_all

    bench = run_all.BENCHES[name]
    module = importlib.import_module(f"bench.{Path(bench.script).stem}")
    args = module.parse_args([*bench.quick, "--output", "x.json"])
    assert args.output == "x.json"


@pytest.mark.parametrize("name", ["convert", "decode", "features", "infer", "loader", "train", "kws", "deepspeech2"])
def test_a_benchmark_run_alone_does_not_replace_the_committed_results(name):
    import importlib

    from bench import ADHOC_RESULTS

    module = importlib.import_module(f"bench.bench_{name}")
    output = module.parse_args([]).output
    assert output == f"{ADHOC_RESULTS}/{name}.json" and ADHOC_RESULTS in (REPO / ".gitignore").read_text()


# ------------------------------------------------------------------------------------------------
# the benchmarks of the keyword spotter and of DeepSpeech2
# ------------------------------------------------------------------------------------------------

def check_train_summary(summary: dict) -> None:
    for name in ("mindspore", "pytorch"):
        s = summary[name]
        assert positive(s["step_s_median"]) and positive(s["first_step_s"]) and positive(s["peak_rss_mb"])
        assert s["step_s_min"] <= s["step_s_median"] <= s["step_s_max"]
        assert math.isfinite(s["first_loss"]) and math.isfinite(s["last_loss"])
    ratio = summary["ratio_mindspore_over_pytorch"]
    assert positive(ratio["median"]) and len(ratio["per_round"]) == 1
    assert ratio["median"] == pytest.approx(summary["mindspore"]["per_round_step_s"][0]
                                            / summary["pytorch"]["per_round_step_s"][0], rel=1e-2)


@pytest.mark.usefixtures("graph_mode_on_cpu")
def test_torch_dscnn_computes_what_the_mindspore_dscnn_computes():
    """Equal weights (BatchNorm statistics and offsets not at their initial values) give equal outputs,
    and the PyTorch copy trains exactly ARM's 23,180 parameters (BatchNorm scales fixed)."""
    torch = pytest.importorskip("torch")
    from mindspore import Tensor

    from bench.torch_dscnn import build_torch_dscnn, load_mindspore_weights
    from src.config import load_config
    from src.models import build_model, count_parameters

    config = load_config(REPO / "src" / "configs" / "dscnn_s.yaml")
    model = build_model(config)
    model.set_train(False)
    rng = np.random.default_rng(0)
    weights = {}
    for p in model.get_parameters():
        value = p.asnumpy()
        if p.name.endswith(("beta", "moving_mean", "bias")):
            value = 0.3 * rng.standard_normal(value.shape).astype(np.float32)
        elif p.name.endswith("moving_variance"):
            value = rng.uniform(0.5, 2.0, value.shape).astype(np.float32)
        elif p.name.endswith("weight"):   # He-scaled, so that the inputs still matter at the output
            value = (rng.standard_normal(value.shape) * np.sqrt(2 / np.prod(value.shape[1:]))).astype(np.float32)
        p.set_data(Tensor(value))
        weights[p.name] = value
    net = build_torch_dscnn(config.model, config.features.feature_dim, 12).eval()
    load_mindspore_weights(net, weights)
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == count_parameters(model)[0] == 23_180
    feats = rng.standard_normal((3, 10, 49)).astype(np.float32)
    expected = model(Tensor(feats)).asnumpy()
    got = net(torch.from_numpy(feats)).detach().numpy()
    assert expected.shape == got.shape == (3, 12)
    assert np.abs(expected - got).max() < 1e-4
    assert np.abs(expected - expected.mean(0)).max() > 0.02   # the inputs do change the outputs
    with pytest.raises(KeyError, match="missing"):
        load_mindspore_weights(net, {k: v for k, v in weights.items() if k != "fc.bias"})
    # the PyTorch file keeps its own copy of the SAME rule (its process must not load MindSpore)
    from bench.torch_dscnn import same_padding as torch_same
    from src.models.dscnn import same_padding
    assert all(torch_same(n, k, s) == same_padding(n, k, s) for n in range(1, 52) for k in range(1, 11)
               for s in range(1, 4))


def test_bench_kws_quick(tmp_path):
    """Both frameworks train; both MindSpore inference paths run at batch 1 and 4, with equal outputs."""
    out = tmp_path / "kws.json"
    r = run_bench("bench_kws.py", "--quick", "--work_dir", tmp_path / "work", "--output", out)
    result = json.loads(out.read_text())
    train = result["train"]
    assert train["batch"] == 16 and train["input"] == [10, 49]
    check_train_summary(train)
    assert train["mindspore"]["steps_per_s"] == pytest.approx(1 / train["mindspore"]["step_s_median"], rel=1e-2)
    assert train["mindspore"]["optimizer"] == "Adam" and train["pytorch"]["optimizer"] == "Adam"
    # each process holds one framework, so each peak RSS is that framework's alone
    assert not train["mindspore"]["other_framework_loaded"] and not train["pytorch"]["other_framework_loaded"]
    infer = result["infer"]
    assert infer["params"] == 23_180 and list(infer["batches"]) == ["1", "4"]
    for batch, row in infer["batches"].items():
        assert row["input_shape"] == [int(batch), 10, 49]
        assert row["max_abs_diff_mindir_vs_checkpoint"] < 1e-5
        assert list(row["methods"]) == ["checkpoint", "mindir"]
        for m in (row["features"], *row["methods"].values()):
            assert positive(m["ms_per_call"]) and positive(m["clips_per_s"])
            assert m["ms_per_clip"] == pytest.approx(m["ms_per_call"] / int(batch), rel=1e-2)
    assert (tmp_path / "work" / "dscnn_s" / "b4" / "dscnn.mindir.json").is_file()   # export.py's sidecar
    assert "run_demo.sh --model dscnn" in result["time_to_accuracy"]
    assert "| framework | optimizer | s/step | steps/s |" in r.stdout and "| 4 | MindIR (mindspore.load" in r.stdout


@pytest.mark.slow
def test_bench_kws_with_the_cpp_runner(tmp_path):
    """The runner on MindSpore Lite at batch 1 and 3: outputs equal to MindSpore's, or a skipped row with a
    reason (the first run fetches MindSpore Lite and builds the runner)."""
    out = tmp_path / "kws.json"
    r = run_bench("bench_kws.py", "--parts", "infer", "--infer_batches", "1,3", "--calls", 2, "--rounds", 1,
                  "--output", out, timeout=3600)
    for batch, row in json.loads(out.read_text())["infer"]["batches"].items():
        lite = row["methods"]["lite"]
        if "skipped" in lite:
            assert lite["skipped"] and "skipped" in r.stdout
        else:
            assert positive(lite["ms_per_call"]) and row["max_abs_diff_lite_vs_mindspore"] < 1e-4
            assert f"| {batch} | C++ runner, MindSpore Lite 2.0 |" in r.stdout


@pytest.mark.slow
def test_bench_deepspeech2_quick(tmp_path):
    """The tiny preset: both frameworks train a small batch; checkpoint and MindIR give the same outputs."""
    out = tmp_path / "ds2.json"
    r = run_bench("bench_deepspeech2.py", "--quick", "--output", out, timeout=1800)
    result = json.loads(out.read_text())
    summary = result["train"]["deepspeech2_tiny"]
    check_train_summary(summary)
    assert summary["mindspore"]["batch"] == 2 and summary["params"] > 0
    assert not summary["mindspore"]["other_framework_loaded"] and not summary["pytorch"]["other_framework_loaded"]
    p = result["infer"]["deepspeech2_tiny"]
    assert p["audio_seconds"] == pytest.approx(2.0) and p["n_frames"] >= p["input_frames"] >= p["valid_frames"]
    assert p["max_abs_diff_mindir_vs_checkpoint"] < 1e-4
    assert list(p["methods"]) == ["checkpoint", "mindir"]
    for m in p["methods"].values():
        check_timing(m["model"])
        check_timing(m["e2e"])
    assert "| deepspeech2_tiny | mindspore |" in r.stdout and "| deepspeech2_tiny | MindIR" in r.stdout


@pytest.mark.parametrize("script,args", [
    ("bench_kws.py", ["--parts", "eval"]), ("bench_kws.py", ["--infer_batches", "0"]),
    ("bench_kws.py", ["--methods", "onnx"]), ("bench_kws.py", ["--preset", "nonexistent"]),
    ("bench_kws.py", ["--steps", "0"]), ("bench_deepspeech2.py", ["--seconds", "0"]),
    ("bench_deepspeech2.py", ["--frameworks", "jax"]), ("bench_deepspeech2.py", ["--presets", "nonexistent"])])
def test_model_family_benchmarks_reject_bad_arguments(script, args):
    r = subprocess.run([sys.executable, str(REPO / "bench" / script), *args], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "error:" in r.stderr
