"""Benchmark of the keyword spotter (DS-CNN) on CPU: the training step against PyTorch, and inference
speed through the checkpoint, the exported MindIR and the 310 runner on MindSpore Lite.

Usage:
    python bench/bench_kws.py [--preset dscnn_s] [--parts train,infer] [--batch 100] [--steps 40]
                              [--repeats 3] [--threads 2] [--frameworks mindspore,pytorch]
                              [--infer_batches 1,100] [--methods checkpoint,mindir,lite] [--calls 20]
                              [--rounds 5] [--work_dir DIR] [--quick] [--output bench/results/adhoc/kws.json]

``train``: both frameworks train the same DS-CNN (``src/configs/<preset>.yaml``; PyTorch:
bench/torch_dscnn.py, SAME padding and BatchNorm without a trained scale as the MindSpore cell, equal
outputs for equal weights: tests/test_bench.py) from random weights on one fixed batch of ``--batch``
random MFCC maps (B, 10, 49) and random labels of the task's 12 classes, with Adam at the preset's
settings.

    mindspore  GRAPH_MODE, src.training.train_step.TrainStep around the task's cross-entropy
               (get_task(config).loss_cell), exactly as bench/bench_train.py and train.py build it
    pytorch    forward, NLL of the log-probabilities, backward, global gradient norm and finite check
               (as the MindSpore step computes them), torch.optim.Adam step

Every (framework, round) is its own process (so each reports its own peak RSS, ru_maxrss; the
PyTorch process reads the config as plain values and never loads MindSpore, whose import alone holds
about 0.47 GB, and keeps PyTorch's own oneDNN settings rather than the AVX2 cap of src/runtime.py),
the frameworks alternate, and each times one first step (MindSpore's includes the graph compilation) and
``--steps`` more.  Reported: median seconds per step, steps/s, clips/s, peak RSS, and the median over
rounds of each round's MindSpore / PyTorch step-time ratio.

``infer`` (one MindSpore process): a DS-CNN with random weights is saved as a checkpoint, loaded back
by src.deploy.loading and exported by src.deploy.export.export_model for each ``--infer_batches`` size
(MindIR + ONNX + sidecar).  Per batch size B, B one-second clips of synthetic speech-like audio are run:

    features    MFCC of the B clips (src.audio.features.batch_features, the config's front end)
    checkpoint  the cell from the checkpoint (load_checkpoint_model), GRAPH_MODE: features → log-probs
    mindir      load_mindir_model (mindspore.load + nn.GraphCell, what eval.py --mindir runs)
    lite        the Ascend-310 C++ runner (ascend310_infer/) on the MindSpore Lite 2.0 CPU runtime, on
                the model converted ONNX → Lite as scripts/run_infer_310.sh does; its own Predict()
                time (timing.tsv), one process per round after a warm-up process.  Reported as skipped,
                with the reason, if it cannot be built or run.

Each round runs every method ``--calls`` times (the runner: ``--calls`` items); medians over
``--rounds`` rounds of the per-round medians.  Reported per call: ms; per clip: ms per call / B and
clips/s.  At B = 1 the call time is a clip's latency.  MindSpore runs with ``--threads`` threads; the
runner uses the Lite runtime's default.

Training time to a target accuracy is not measured here: ``bash scripts/run_demo.sh --model dscnn``
trains the preset on a generated Speech-Commands corpus and reports accuracy and time per stage.

``--quick``: a smoke run (batch 16, 3 steps, 1 round, B in 1 and 4, 2 calls, no runner).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench import adhoc_output, choice_list, machine_info, preset_path, run_worker, write_result  # noqa: E402
from src.config import Config, load_config  # noqa: E402
from src.fileio import atomic_write_json  # noqa: E402

PARTS = ("train", "infer")
FRAMEWORKS = ("mindspore", "pytorch")
METHODS = ("checkpoint", "mindir", "lite")
LABELS = {"features": "MFCC features only (numpy)", "checkpoint": "checkpoint, GRAPH_MODE",
          "mindir": "MindIR (mindspore.load + GraphCell)", "lite": "C++ runner, MindSpore Lite 2.0"}
CLIP_SECONDS = 1.0
QUICK = {"batch": 16, "steps": 3, "repeats": 1, "infer_batches": "1,4", "calls": 2, "rounds": 1,
         "methods": "checkpoint,mindir"}
DEFAULTS = {"batch": 100, "steps": 40, "repeats": 3, "infer_batches": "1,100", "calls": 20, "rounds": 5,
            "methods": ",".join(METHODS)}
DEMO_NOTE = ("training time to a target accuracy is measured by the demo, not here: "
             "bash scripts/run_demo.sh --model dscnn (accuracy and time per stage in its summary)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="dscnn_s", help="a DS-CNN config in src/configs (or a YAML path)")
    p.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of " + ", ".join(PARTS))
    p.add_argument("--batch", type=int, default=None, help="training batch (default 100, ARM's recipe)")
    p.add_argument("--steps", type=int, default=None, help="timed training steps per process (default 40)")
    p.add_argument("--repeats", type=int, default=None, help="training rounds, each framework once per round (3)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads of both frameworks")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS), help="comma-separated subset of "
                   + ", ".join(FRAMEWORKS))
    p.add_argument("--infer_batches", default=None, help="comma-separated inference batch sizes (1,100)")
    p.add_argument("--methods", default=None, help="inference paths, subset of " + ", ".join(METHODS))
    p.add_argument("--calls", type=int, default=None, help="calls of each inference path per round (20)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved inference rounds (5)")
    p.add_argument("--work_dir", default=None, help="keep the exported models here (default: a temporary folder)")
    p.add_argument("--quick", action="store_true", help="a smoke run: " + ", ".join(f"{k} {v}" for k, v in QUICK.items()))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=adhoc_output("kws"), help="JSON result file")
    # internal: one measurement in this process
    p.add_argument("--worker", choices=FRAMEWORKS + ("infer",), help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--data_dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if not preset_path(args.preset).is_file():
        p.error(f"--preset: no {preset_path(args.preset)}")
    args.parts = choice_list(p, "--parts", args.parts, PARTS)
    args.frameworks = choice_list(p, "--frameworks", args.frameworks, FRAMEWORKS)
    args.methods = choice_list(p, "--methods", args.methods, METHODS)
    for name in ("batch", "steps", "repeats", "threads", "calls", "rounds"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    try:
        args.infer_batches = sorted({int(b) for b in args.infer_batches.split(",") if b.strip()})
    except ValueError:
        p.error(f"--infer_batches: comma-separated integers, got {args.infer_batches!r}")
    if not args.infer_batches or min(args.infer_batches) < 1:
        p.error("--infer_batches: name at least one batch size, each >= 1")
    return args


def kws_config(preset: str) -> Config:
    config = load_config(preset_path(preset))
    if config.task != "kws":
        raise SystemExit(f"--preset {preset}: task {config.task!r}, not a keyword spotter (kws)")
    return config


def synthetic_batch(config: Config, batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """features (B, F, T) float32 of unit variance (MFCC maps' shape), labels (B,) int32 over the classes."""
    from src.tasks import get_task

    rng = np.random.default_rng(seed)
    feats = rng.standard_normal((batch, config.features.feature_dim, config.model.input_frames)).astype(np.float32)
    labels = rng.integers(0, get_task(config).num_classes(config), batch).astype(np.int32)
    return feats, labels


# ------------------------------------------------------------------------------------------------
# training (one framework per process)
# ------------------------------------------------------------------------------------------------

def write_inputs(folder: Path, config: Config, data: tuple[np.ndarray, ...]) -> None:
    """What both training processes read: the batch (``batch.npz``) and, for the PyTorch one, the config as
    plain values (``config.json``: typing it would load the MindSpore model registry into that process)."""
    from src.config import config_to_dict
    from src.tasks import get_task

    np.savez(folder / "batch.npz", *data)
    plain = {**config_to_dict(config), "num_classes": get_task(config).num_classes(config),
             "feature_dim": config.features.feature_dim}
    atomic_write_json(folder / "config.json", plain)


def read_inputs(folder: Path) -> tuple[SimpleNamespace, tuple[np.ndarray, ...]]:
    """``write_inputs``' files: the plain config (attributes, as the typed one) and the batch."""
    plain = json.loads((folder / "config.json").read_text(), object_hook=lambda d: SimpleNamespace(**d))
    with np.load(folder / "batch.npz") as npz:
        data = tuple(npz[f"arr_{i}"] for i in range(len(npz.files)))
    return plain, data


def run_pytorch(config: SimpleNamespace, data: tuple[np.ndarray, ...], steps: int, threads: int, seed: int) -> dict:
    import torch

    from bench.bench_train import _timed_steps
    from bench.torch_dscnn import build_torch_dscnn

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = build_torch_dscnn(config.model, config.feature_dim, config.num_classes)
    model.train()
    opt = config.optim
    if opt.name != "adam":
        raise SystemExit(f"the PyTorch DS-CNN step uses Adam; the preset asks for {opt.name!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps,
                                 weight_decay=opt.weight_decay)
    feats, labels = torch.from_numpy(data[0]), torch.from_numpy(data[1]).long()
    losses: list[float] = []

    def run_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = -model(feats).gather(1, labels[:, None]).mean()
        loss.backward()
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])   # as TrainStep: norm, finite check
        if torch.isfinite(norm):
            optimizer.step()
        losses.append(loss.item())

    first, times = _timed_steps(run_step, steps)
    return {"first_step_s": first, "step_s": times, "losses": losses, "torch": torch.__version__,
            "optimizer": "Adam"}


def train_worker(args: argparse.Namespace) -> int:
    from bench.bench_train import current_rss_mb, peak_rss_mb, run_mindspore

    started = time.perf_counter()
    plain, data = read_inputs(Path(args.data_dir))
    if args.worker == "mindspore":
        result = run_mindspore(kws_config(args.preset), data, args.steps, args.threads, args.seed)
    else:
        result = run_pytorch(plain, data, args.steps, args.threads, args.seed)
    result.update({"setup_s": time.perf_counter() - started - result["first_step_s"] - sum(result["step_s"]),
                   "peak_rss_mb": peak_rss_mb(), "final_rss_mb": current_rss_mb(),
                   "batch": int(data[0].shape[0]), "frames": int(data[0].shape[-1]),
                   "mindspore_loaded": "mindspore" in sys.modules, "torch_loaded": "torch" in sys.modules})
    atomic_write_json(args.result, result)
    return 0


# ------------------------------------------------------------------------------------------------
# inference (one MindSpore process)
# ------------------------------------------------------------------------------------------------

def summarize_calls(per_round: list[list[float]], batch: int) -> dict:
    """Median over rounds of each round's median call; per clip and clips/s for ``batch`` clips a call."""
    medians = [statistics.median(r) for r in per_round]
    median = statistics.median(medians)
    every = [t for r in per_round for t in r]
    return {"ms_per_call": round(1000 * median, 4), "ms_per_clip": round(1000 * median / batch, 4),
            "clips_per_s": round(batch / median, 1), "ms_min": round(1000 * min(every), 4),
            "ms_max": round(1000 * max(every), 4), "per_round_ms": [round(1000 * m, 4) for m in medians]}


def lite_runner(mindir: Path, work: Path, feats: np.ndarray, calls: int):
    """bench_infer.LiteRunner (build.sh lite, prepare_lite_model, timed zoo_infer runs) for a model whose only
    input is ``features``: LiteRunner writes a sequence model's (features, lengths) list, replaced here by
    ``calls`` + 1 items of the features alone (the first one an untimed warm-up)."""
    from bench.bench_infer import LiteRunner
    from src.deploy.bins import ListWriter

    runner = LiteRunner(mindir, work, feats, feats.shape[-1], calls)
    runner.input_dir = work / "runner_input_features"
    writer = ListWriter(runner.input_dir, ("features",))
    for i in range(calls + 1):
        writer.add(f"bench-{i:04d}", [feats], "bench")
    writer.close()
    return runner


def infer_worker(args: argparse.Namespace) -> int:
    os.environ.setdefault("GLOG_v", "3")
    os.environ["MS_CPU_THREADS"] = str(args.threads)
    import mindspore as ms
    from mindspore import Tensor

    from bench.bench_features import synthetic_speech
    from bench.bench_infer import time_calls
    from src.audio.features import batch_features
    from src.deploy.export import export_model
    from src.deploy.loading import load_checkpoint_model, load_mindir_model
    from src.models import build_model, count_parameters  # caps oneDNN's ISA before any kernel
    from src.runtime import configure_device
    from src.tasks import get_task
    from src.training.checkpoint import write_checkpoint

    started = time.perf_counter()
    config = kws_config(args.preset)
    fc = config.features
    configure_device("CPU", seed=args.seed)
    classes = get_task(config).class_names(config)
    rng = np.random.default_rng(args.seed)
    clips = [synthetic_speech(CLIP_SECONDS, fc.sample_rate, rng) for _ in range(max(args.infer_batches))]

    work_ctx = tempfile.TemporaryDirectory(prefix="bench_kws_") if args.work_dir is None else None
    work = Path(work_ctx.name if work_ctx else args.work_dir) / Path(args.preset).stem
    work.mkdir(parents=True, exist_ok=True)
    try:
        model = build_model(config)
        params, _ = count_parameters(model)
        write_checkpoint([{"name": p.name, "data": p} for p in model.get_parameters()], work / "random.ckpt")
        del model
        checkpoint_model = load_checkpoint_model(config, work / "random.ckpt")
        result: dict[str, Any] = {"params": params, "classes": len(classes), "mindspore": ms.__version__,
                                  "batches": {}}

        def logits(model: Callable, feats: np.ndarray) -> Callable[[], np.ndarray]:
            return lambda: model(Tensor(feats)).asnumpy()

        for batch in args.infer_batches:
            audio = clips[:batch]
            feats, _ = batch_features(audio, fc, pad_to=1)
            stem = work / f"b{batch}" / "dscnn"
            start = time.perf_counter()
            mindir = export_model(checkpoint_model, config, classes, str(stem), "MINDIR", batch_size=batch)
            export_s = time.perf_counter() - start
            if "lite" in args.methods:
                export_model(checkpoint_model, config, classes, str(stem), "ONNX", batch_size=batch)
            models = {"checkpoint": checkpoint_model, "mindir": load_mindir_model(mindir)}
            models = {m: models[m] for m in args.methods if m in models}
            row: dict[str, Any] = {"input_shape": list(feats.shape), "export_s": round(export_s, 2),
                                   "mindir_kb": round(mindir.stat().st_size / 1024, 1), "methods": {}}
            first, outputs = {}, {}
            for name, model in models.items():   # warm-up: graph compilation, first allocations
                start = time.perf_counter()
                outputs[name] = logits(model, feats)()
                first[name] = time.perf_counter() - start
            if len(outputs) == 2:
                row["max_abs_diff_mindir_vs_checkpoint"] = float(np.abs(outputs["mindir"] - outputs["checkpoint"]).max())

            runner, runner_error = None, None
            if "lite" in args.methods:
                try:
                    runner = lite_runner(mindir, stem.parent, feats, args.calls)
                    runner.run()                  # warm-up process: page cache, first load
                    reference = outputs.get("mindir")
                    if reference is None:
                        reference = logits(load_mindir_model(mindir), feats)()
                    got = runner.outputs()
                    row["max_abs_diff_lite_vs_mindspore"] = (float(np.abs(got.reshape(reference.shape) - reference).max())
                                                             if got.size == reference.size else None)
                    print(f"batch {batch}: runner built/checked in {runner.build_s:.1f} s, model converted in "
                          f"{runner.convert_s:.1f} s", flush=True)
                except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError, IndexError) as e:
                    runner, runner_error = None, str(e).strip()[:1500]
                    print(f"batch {batch}: C++ runner skipped: {e}", flush=True)

            timings: dict[str, list[list[float]]] = {"features": [], **{m: [] for m in models}}
            if runner:
                timings["lite"] = []
            loads = []
            for round_index in range(args.rounds):
                loads.append(round(os.getloadavg()[0], 2))
                timings["features"].append(time_calls(lambda: batch_features(audio, fc, pad_to=1), args.calls))
                for name, model in models.items():
                    timings[name].append(time_calls(logits(model, feats), args.calls))
                if runner:
                    timings["lite"].append(runner.run())
                print(f"batch {batch} round {round_index + 1}/{args.rounds}: " + ", ".join(
                    f"{k} {1000 * statistics.median(v[-1]):.2f} ms" for k, v in timings.items()), flush=True)
            row["load_1min_per_round"] = loads
            row["features"] = summarize_calls(timings["features"], batch)
            for name in models:
                row["methods"][name] = {"first_call_s": round(first[name], 3), **summarize_calls(timings[name], batch)}
            if "lite" in args.methods:
                row["methods"]["lite"] = ({"build_s": round(runner.build_s, 2), "convert_s": round(runner.convert_s, 2),
                                           **summarize_calls(timings["lite"], batch)} if runner
                                          else {"skipped": runner_error})
            result["batches"][str(batch)] = row
        result["wall_s"] = round(time.perf_counter() - started, 1)
        atomic_write_json(args.result, result)
    finally:
        if work_ctx:
            work_ctx.cleanup()
    return 0


# ------------------------------------------------------------------------------------------------
# driver
# ------------------------------------------------------------------------------------------------

def run_child(args: argparse.Namespace, worker: str, data_dir: Path | None = None) -> dict:
    """One measurement in a fresh interpreter (its output shown as it comes); returns its result dict."""
    with tempfile.TemporaryDirectory(prefix="bench_kws_") as tmp:
        result_path = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", worker, "--result", str(result_path),
               "--preset", args.preset, "--threads", str(args.threads), "--seed", str(args.seed),
               "--batch", str(args.batch), "--steps", str(args.steps), "--repeats", str(args.repeats),
               "--infer_batches", ",".join(map(str, args.infer_batches)), "--methods", ",".join(args.methods),
               "--calls", str(args.calls), "--rounds", str(args.rounds)]
        if args.work_dir:
            cmd += ["--work_dir", str(Path(args.work_dir).resolve())]
        if data_dir:
            cmd += ["--data_dir", str(data_dir)]
        return run_worker(cmd, result_path, worker)


def run_training(args: argparse.Namespace) -> dict:
    from bench.bench_train import summarize

    config = kws_config(args.preset)
    runs: dict[str, list[dict]] = {f: [] for f in args.frameworks}
    with tempfile.TemporaryDirectory(prefix="bench_kws_data_") as data_dir:
        write_inputs(Path(data_dir), config, synthetic_batch(config, args.batch, args.seed))
        for round_index in range(args.repeats):
            for framework in args.frameworks:   # A B, A B, ...: adjacent runs see the same machine load
                r = run_child(args, framework, Path(data_dir))
                runs[framework].append(r)
                print(f"train round {round_index + 1}/{args.repeats} {framework}: first step "
                      f"{r['first_step_s']:.2f} s, median step {1000 * statistics.median(r['step_s']):.1f} ms, "
                      f"peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    out = summarize(runs, CLIP_SECONDS)
    for framework in args.frameworks:
        s = out[framework]
        s["steps_per_s"] = round(1 / s["step_s_median"], 2)
        s["clips_per_s"] = s.pop("utt_per_s")
        del s["audio_s_per_s"]                  # one clip is one audio-second: the same number
        s["other_framework_loaded"] = any(r["mindspore_loaded"] and r["torch_loaded"] for r in runs[framework])
        s["load_1min_per_round"] = [r["load_1min_before"] for r in runs[framework]]   # a noisy round shows here
    return {"batch": args.batch, "input": [config.features.feature_dim, config.model.input_frames],
            "steps": args.steps, "repeats": args.repeats, **out}


def print_tables(result: dict) -> None:
    train = result.get("train")
    if train:
        print(f"\nDS-CNN training step ({result['preset']}, batch {train['batch']} × {train['input']}, "
              f"{result['threads']} threads), medians of {train['repeats']} alternating round(s) × {train['steps']} steps")
        print("| framework | optimizer | s/step | steps/s | clips/s | first step s | peak RSS MB | MS/PT step (per round) |")
        print("|---|---|---:|---:|---:|---:|---:|---|")
        ratio = train.get("ratio_mindspore_over_pytorch")
        for framework in FRAMEWORKS:
            if framework not in train:
                continue
            s = train[framework]
            cell = (f"{ratio['median']:.2f} ({', '.join(f'{r:.2f}' for r in ratio['per_round'])})"
                    if ratio and framework == "mindspore" else "")
            print(f"| {framework} | {s['optimizer']} | {s['step_s_median']:.4f} | {s['steps_per_s']:.1f} | "
                  f"{s['clips_per_s']:.0f} | {s['first_step_s']:.2f} | {s['peak_rss_mb']:.0f} | {cell} |")
    infer = result.get("infer")
    if infer:
        print(f"\nDS-CNN inference ({result['preset']}, {infer['params']:,} parameters), medians of "
              f"{result['rounds']} round(s) × {result['calls']} call(s)")
        print("| batch | path | ms per call | ms per clip | clips/s |")
        print("|---:|---|---:|---:|---:|")
        for batch, row in infer["batches"].items():
            for name, m in [("features", row["features"]), *row["methods"].items()]:
                if "skipped" in m:
                    print(f"| {batch} | {LABELS[name]} | skipped: {m['skipped'].strip().splitlines()[0][:100]} | | |")
                    continue
                print(f"| {batch} | {LABELS[name]} | {m['ms_per_call']:.3f} | {m['ms_per_clip']:.4f} | "
                      f"{m['clips_per_s']:,.0f} |")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker in FRAMEWORKS:
        return train_worker(args)
    if args.worker == "infer":
        return infer_worker(args)
    kws_config(args.preset)  # fail early on a preset of another task
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "DS-CNN keyword spotter on CPU: training step MindSpore vs PyTorch; inference clips/s "
                     "(checkpoint, MindIR, C++ runner on Lite)",
        "preset": args.preset, "threads": args.threads, "quick": args.quick, "calls": args.calls,
        "rounds": args.rounds, "time_to_accuracy": DEMO_NOTE}
    if "train" in args.parts:
        result["train"] = run_training(args)
    if "infer" in args.parts:
        result["infer"] = run_child(args, "infer")
    result.update(machine_info(load_before))
    result["wall_s"] = round(time.perf_counter() - started, 1)
    print_tables(result)
    write_result(args.output, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
