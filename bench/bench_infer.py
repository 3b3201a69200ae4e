"""Benchmark of inference speed on CPU: real-time factor of an exported Jasper at batch 1.

Usage:
    python bench/bench_infer.py [--presets jasper_tiny[,jasper5x3,jasper10x5dr]] [--seconds 10]
                                [--repeats 5] [--calls 3] [--threads 2] [--n_frames N]
                                [--methods mindir,checkpoint,lite] [--work_dir DIR]
                                [--output bench/results/adhoc/infer.json]

For each preset (``src/configs/<preset>.yaml``) a Jasper with randomly initialised weights (the speed
does not depend on the weights) is saved as a checkpoint, loaded back with src.deploy.loading and
exported by src.deploy.export.export_model with a fixed input (1, n_mels, N) plus its ``NAME.mindir.json``
(and an ONNX for the C++ runner), into a temporary folder (or ``--work_dir``).  One utterance of
``--seconds`` of synthetic speech-like int16 PCM is then run three ways:

    mindir      src.deploy.loading.load_mindir_model: ``mindspore.load`` + ``nn.GraphCell`` behind
                FixedShapeModel (what eval.py / transcribe.py do with ``--mindir``)
    checkpoint  the Jasper cell from the checkpoint (src.deploy.loading.load_checkpoint_model) in GRAPH_MODE,
                for reference
    lite        the Ascend-310 C++ runner (ascend310_infer/) built against the MindSpore Lite 2.0 CPU
                runtime, on the model converted ONNX → Lite exactly as scripts/run_infer_310.sh does
                (``build.sh lite`` + common.sh's prepare_lite_model).  If it cannot be built or run,
                its row is reported as skipped with the reason.

Two times are reported, both divided by the audio duration to give the real-time factor (RTF; below 1
is faster than real time):

    model  the forward pass only: features already computed; for MindSpore from numpy features in to
           numpy log-probabilities out (Tensor conversion and FixedShapeModel's padding to N included),
           for the runner its own Predict() time (timing.tsv; no file I/O)
    e2e    int16 PCM in memory → log-mel features (src.audio.features.batch_features, all cores) →
           forward → greedy CTC transcript.  The runner has no e2e time: on the 310 path features are
           computed offline by preprocess.py (the ``features`` row gives their cost).

N defaults to the utterance's own frame count rounded up to 16 (1008 for 10 s); ``--n_frames 1616``
measures export.py's default shape, which pads every utterance to 16.15 s.  Each round runs every
method ``--calls`` times in turn (features, mindir, checkpoint, then e2e of both, then one runner
process which makes one untimed warm-up call first); rounds are repeated ``--repeats`` times after a
warm-up call of every method, and the medians over rounds of the per-round medians are reported.
MindSpore runs with ``--threads`` CPU threads; the runner uses the Lite runtime's default thread count
(it does not set one).  Each preset runs in its own process.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench import adhoc_output, choice_list, machine_info, preset_list, preset_path, write_result  # noqa: E402
from src.fileio import atomic_write_json  # noqa: E402

METHODS = ("mindir", "checkpoint", "lite")
LABELS = {"mindir": "MindIR (mindspore.load + GraphCell)", "checkpoint": "checkpoint, GRAPH_MODE",
          "lite": "C++ runner, MindSpore Lite 2.0"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="jasper_tiny",
                   help="comma-separated config names in src/configs (tiny, 5x3, 10x5dr also accepted)")
    p.add_argument("--seconds", type=float, default=10.0, help="audio seconds of the utterance")
    p.add_argument("--repeats", type=int, default=5, help="interleaved timed rounds")
    p.add_argument("--calls", type=int, default=3, help="calls of each method per round")
    p.add_argument("--threads", type=int, default=2, help="MindSpore CPU threads")
    p.add_argument("--n_frames", type=int, default=None,
                   help="frames N of the exported input (default: the utterance's, rounded up to 16)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ", ".join(METHODS))
    p.add_argument("--work_dir", default=None, help="keep the exported models here (default: a temporary folder)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=adhoc_output("infer"), help="JSON result file")
    # internal: one preset in this process
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--preset", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.presets = preset_list(p, args.presets)
    args.methods = choice_list(p, "--methods", args.methods, METHODS)
    for name in ("repeats", "calls", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.seconds <= 0:
        p.error("--seconds must be > 0")
    if args.n_frames is not None and (args.n_frames <= 0 or args.n_frames % 16):
        p.error("--n_frames must be a positive multiple of 16")
    return args


# ------------------------------------------------------------------------------------------------
# timing helpers
# ------------------------------------------------------------------------------------------------

def time_calls(fn: Callable[[], Any], calls: int) -> list[float]:
    """Seconds of ``calls`` consecutive calls of ``fn`` (which must block until its result is ready)."""
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def summarize(per_round: list[list[float]], audio_seconds: float) -> dict:
    """Median over rounds of each round's median (seconds → ms), its RTF and the spread."""
    medians = [statistics.median(r) for r in per_round]
    median = statistics.median(medians)
    every = [t for r in per_round for t in r]
    return {"ms_median": round(1000 * median, 3), "ms_min": round(1000 * min(every), 3),
            "ms_max": round(1000 * max(every), 3), "rtf": float(f"{median / audio_seconds:.4g}"),
            "x_real_time": float(f"{audio_seconds / median:.4g}"),
            "per_round_ms": [round(1000 * m, 3) for m in medians]}


def tail(text: str, lines: int = 15) -> str:
    """The last ``lines`` lines of a tool's output, without MindSpore's [WARNING] log lines."""
    return "\n".join([line for line in text.splitlines() if not line.startswith("[WARN")][-lines:])


# ------------------------------------------------------------------------------------------------
# the C++ runner on MindSpore Lite
# ------------------------------------------------------------------------------------------------

class LiteRunner:
    """``ascend310_infer/build.sh lite``, the model conversion of run_infer_310.sh, and timed runs."""

    def __init__(self, mindir: Path, work: Path, features: np.ndarray, valid: int, calls: int) -> None:
        self.work, self.calls = work, calls
        env = dict(os.environ, GLOG_v=os.environ.get("GLOG_v", "3"), PY=sys.executable)
        start = time.perf_counter()
        r = subprocess.run(["bash", str(ROOT / "ascend310_infer" / "build.sh"), "lite"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=3600)
        if r.returncode != 0:
            raise RuntimeError(f"build.sh lite failed (exit {r.returncode}): {tail(r.stderr, 8)}")
        self.build_dir = Path(r.stdout.strip().splitlines()[-1])
        self.build_s = time.perf_counter() - start
        start = time.perf_counter()
        r = subprocess.run(["bash", "-c", 'source scripts/common.sh && prepare_lite_model "$1" "$2" "$3"', "_",
                            str(mindir), str(work / "model"), str(self.build_dir)],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
        if r.returncode != 0:
            raise RuntimeError(f"converting the model for MindSpore Lite failed: {tail(r.stderr, 8)}")
        self.model = Path(r.stdout.strip().splitlines()[-1])
        self.convert_s = time.perf_counter() - start
        self.lib_dir = (self.build_dir / "mindspore_lib_dir").read_text().strip()
        # preprocess.py's layout: the same utterance calls + 1 times, the first one an untimed warm-up
        from src.deploy.bins import ListWriter

        self.input_dir = work / "runner_input"
        writer = ListWriter(self.input_dir, ("features", "lengths"))
        for i in range(calls + 1):
            writer.add(f"bench-{i:04d}", [features, np.array([valid], np.int32)], "bench")
        writer.close()
        self.result_dir = work / "runner_result"

    def run(self) -> list[float]:
        """One runner process; returns the seconds of its timed Predict() calls (the warm-up dropped)."""
        shutil.rmtree(self.result_dir, ignore_errors=True)
        env = dict(os.environ, GLOG_v=os.environ.get("GLOG_v", "3"),
                   LD_LIBRARY_PATH=self.lib_dir + (":" + os.environ["LD_LIBRARY_PATH"]
                                                   if os.environ.get("LD_LIBRARY_PATH") else ""))
        r = subprocess.run([str(self.build_dir / "zoo_infer"), "--mindir_path", str(self.model),
                            "--input_dir", str(self.input_dir), "--result_dir", str(self.result_dir),
                            "--device_target", "CPU"], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=3600)
        if r.returncode != 0:
            raise RuntimeError(f"zoo_infer failed (exit {r.returncode}): {tail(r.stderr, 8)}")
        rows = (self.result_dir / "timing.tsv").read_text().splitlines()[1:]
        return [float(line.split("\t")[2]) / 1000.0 for line in rows[1:]]

    def outputs(self) -> np.ndarray:
        return np.fromfile(self.result_dir / "bench-0001_0.bin", "<f4")


# ------------------------------------------------------------------------------------------------
# one preset (worker process)
# ------------------------------------------------------------------------------------------------

def worker(args: argparse.Namespace) -> int:
    os.environ.setdefault("GLOG_v", "3")
    os.environ["MS_CPU_THREADS"] = str(args.threads)
    import mindspore as ms

    from bench.bench_features import synthetic_speech
    from src.deploy.bins import fit_frames
    from src.deploy.export import export_model
    from src.audio.features import batch_features, num_frames, padded_frames
    from src.audio.io import float_to_int16, int16_to_float
    from src.config import load_config
    from src.decoding.greedy import greedy_decode
    from src.deploy.loading import load_checkpoint_model, load_mindir_model
    from src.tasks.asr import predict
    from src.models import build_model, count_parameters  # caps oneDNN's ISA before any kernel
    from src.runtime import configure_device
    from src.text.labels import load_labels
    from src.training.checkpoint import write_checkpoint

    started = time.perf_counter()
    config = load_config(preset_path(args.preset))
    fc = config.features
    labels = load_labels(config.labels_path)
    configure_device("CPU", seed=args.seed)

    rng = np.random.default_rng(args.seed)
    pcm = float_to_int16(synthetic_speech(args.seconds, fc.sample_rate, rng))
    audio_seconds = len(pcm) / fc.sample_rate
    feats, lengths = batch_features([int16_to_float(pcm)], fc)
    n_frames = args.n_frames or int(padded_frames(num_frames(len(pcm), fc.hop_length), 16))
    if feats.shape[2] > n_frames:
        raise SystemExit(f"--n_frames {n_frames} is shorter than the {feats.shape[2]} frames of "
                         f"{args.seconds:g} s of audio")

    work_ctx = tempfile.TemporaryDirectory(prefix="bench_infer_") if args.work_dir is None else None
    work = Path(work_ctx.name if work_ctx else args.work_dir) / args.preset
    work.mkdir(parents=True, exist_ok=True)
    try:
        # A random-weight model, through the same checkpoint loader and exporter as the tools.
        model = build_model(config)
        params, _ = count_parameters(model)
        write_checkpoint([{"name": p.name, "data": p} for p in model.get_parameters()], work / "random.ckpt")
        del model
        checkpoint_model = load_checkpoint_model(config, work / "random.ckpt")
        start = time.perf_counter()
        mindir = export_model(checkpoint_model, config, labels.symbols, str(work / "jasper"), "MINDIR", n_frames)
        export_s = time.perf_counter() - start
        if "lite" in args.methods:
            export_model(checkpoint_model, config, labels.symbols, str(work / "jasper"), "ONNX", n_frames)
        mindir_model = load_mindir_model(mindir)
        models = {"mindir": mindir_model, "checkpoint": checkpoint_model}
        models = {m: models[m] for m in args.methods if m in models}

        def forward(model) -> Callable[[], Any]:
            return lambda: predict(model, feats, lengths)

        def end_to_end(model) -> Callable[[], Any]:
            def run() -> list[str]:
                f, n = batch_features([int16_to_float(pcm)], fc)
                log_probs, out_lengths = predict(model, f, n)
                return greedy_decode(log_probs, out_lengths, labels)
            return run

        result: dict[str, Any] = {
            "params": params, "audio_seconds": audio_seconds, "valid_frames": int(lengths[0]),
            "input_frames": int(feats.shape[2]), "n_frames": n_frames,
            "mindir_mb": round(mindir.stat().st_size / 2**20, 2), "export_s": round(export_s, 2),
            "mindspore": ms.__version__, "methods": {}}
        first: dict[str, float] = {}
        outputs: dict[str, np.ndarray] = {}
        for name, model in models.items():  # warm-up: graph compilation, first allocations
            start = time.perf_counter()
            log_probs, out_lengths = predict(model, feats, lengths)
            first[name] = time.perf_counter() - start
            outputs[name] = log_probs[0, :int(out_lengths[0])]  # the valid frames (N may pad more)
            end_to_end(model)()
        if len(outputs) == 2:
            a, b = outputs["mindir"], outputs["checkpoint"]
            result["max_abs_diff_mindir_vs_checkpoint"] = (float(np.abs(a - b).max()) if a.shape == b.shape
                                                           else None)

        runner, runner_error = None, None
        if "lite" in args.methods:
            try:
                start = time.perf_counter()
                padded = fit_frames(feats, int(lengths[0]), n_frames, fc.pad_to, "bench")
                valid = int(lengths[0])
                runner = LiteRunner(mindir, work, padded, valid, args.calls)
                runner.run()  # warm-up process: page cache, first load
                reference = outputs.get("mindir")
                if reference is None:
                    log_probs, out_lengths = predict(mindir_model, feats, lengths)
                    reference = log_probs[0, :int(out_lengths[0])]
                got = runner.outputs()  # (1, N / 2, C) as a flat array
                got = got.reshape(-1, reference.shape[1])[:reference.shape[0]] \
                    if got.size % reference.shape[1] == 0 else None
                result["max_abs_diff_lite_vs_mindspore"] = (float(np.abs(got - reference).max())
                                                            if got is not None and got.shape == reference.shape
                                                            else None)
                print(f"{args.preset}: runner built/checked in {runner.build_s:.1f} s, model converted in "
                      f"{runner.convert_s:.1f} s ({time.perf_counter() - start:.1f} s with the warm-up run)",
                      flush=True)
            except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError, IndexError) as e:
                runner, runner_error = None, str(e)
                print(f"{args.preset}: C++ runner skipped: {e}", flush=True)

        timings: dict[str, list[list[float]]] = {"features": []}
        for name in models:
            timings[f"{name}/model"], timings[f"{name}/e2e"] = [], []
        if runner:
            timings["lite/model"] = []
        for round_index in range(args.repeats):
            timings["features"].append(time_calls(lambda: batch_features([int16_to_float(pcm)], fc), args.calls))
            for name, model in models.items():
                timings[f"{name}/model"].append(time_calls(forward(model), args.calls))
            for name, model in models.items():
                timings[f"{name}/e2e"].append(time_calls(end_to_end(model), args.calls))
            if runner:
                timings["lite/model"].append(runner.run())
            print(f"{args.preset} round {round_index + 1}/{args.repeats}: " + ", ".join(
                f"{k} {1000 * statistics.median(v[-1]):.1f} ms" for k, v in timings.items()), flush=True)

        result["features"] = summarize(timings["features"], audio_seconds)
        for name in models:
            result["methods"][name] = {"first_call_s": round(first[name], 3),
                                       "model": summarize(timings[f"{name}/model"], audio_seconds),
                                       "e2e": summarize(timings[f"{name}/e2e"], audio_seconds)}
        if "lite" in args.methods:
            if runner:
                result["methods"]["lite"] = {"build_s": round(runner.build_s, 2),
                                             "convert_s": round(runner.convert_s, 2),
                                             "model": summarize(timings["lite/model"], audio_seconds)}
            else:
                result["methods"]["lite"] = {"skipped": runner_error}
        result["wall_s"] = round(time.perf_counter() - started, 1)
        atomic_write_json(args.result, result)
    finally:
        if work_ctx:
            work_ctx.cleanup()
    return 0


# ------------------------------------------------------------------------------------------------
# driver
# ------------------------------------------------------------------------------------------------

def run_worker(args: argparse.Namespace, preset: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_infer_result_") as tmp:
        result_path = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--preset", preset,
               "--result", str(result_path), "--seconds", str(args.seconds), "--repeats", str(args.repeats),
               "--calls", str(args.calls), "--threads", str(args.threads), "--methods", ",".join(args.methods),
               "--seed", str(args.seed)]
        if args.n_frames:
            cmd += ["--n_frames", str(args.n_frames)]
        if args.work_dir:
            cmd += ["--work_dir", str(Path(args.work_dir).resolve())]
        env = dict(os.environ, GLOG_v=os.environ.get("GLOG_v", "3"))  # MindSpore: errors only
        with open(Path(tmp) / "stderr.txt", "w+") as err:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, stderr=err, text=True)
            err.seek(0)
            stderr = err.read()
        if proc.returncode != 0 or not result_path.is_file():
            raise RuntimeError(f"{preset} failed (exit {proc.returncode}):\n{tail(stderr, 30)}")
        return json.loads(result_path.read_text())


def print_table(result: dict) -> None:
    print(f"\nInference on CPU, batch 1, {result['seconds']:g} s of audio; medians of {result['repeats']} "
          f"interleaved round(s) × {result['calls']} call(s); RTF = seconds / audio seconds (lower is faster)")
    print("| preset | path | input frames | model ms | RTF model | e2e ms (PCM → text) | RTF e2e |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for preset, r in result["presets"].items():
        f = r["features"]
        print(f"| {preset} | features only (numpy log-mel) | {r['input_frames']} | | | {f['ms_median']:.1f} | "
              f"{f['rtf']:.4f} |")
        for name, m in r["methods"].items():
            frames = r["input_frames"] if name == "checkpoint" else r["n_frames"]
            if "skipped" in m:
                print(f"| {preset} | {LABELS[name]} | {frames} | skipped: {m['skipped'].splitlines()[0][:120]} "
                      "| | | |")
                continue
            e2e = m.get("e2e")
            e2e_cells = f"{e2e['ms_median']:.1f} | {e2e['rtf']:.4f}" if e2e else "— | —"
            print(f"| {preset} | {LABELS[name]} | {frames} | {m['model']['ms_median']:.1f} | "
                  f"{m['model']['rtf']:.4f} | {e2e_cells} |")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    presets = {}
    for preset in args.presets:
        presets[preset] = run_worker(args, preset)
    result = {
        "benchmark": "inference real-time factor on CPU, batch 1 (exported MindIR, checkpoint, C++ runner on Lite)",
        "seconds": args.seconds, "repeats": args.repeats, "calls": args.calls, "threads": args.threads,
        "n_frames": args.n_frames, "methods": args.methods, **machine_info(load_before),
        "wall_s": round(time.perf_counter() - started, 1), "presets": presets,
    }
    print_table(result)
    write_result(args.output, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
