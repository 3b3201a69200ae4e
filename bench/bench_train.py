"""Benchmark of the training step on CPU: MindSpore (the project's TrainStep) against PyTorch.

Usage:
    python bench/bench_train.py [--presets jasper_tiny,jasper5x3,jasper10x5dr] [--batch B] [--seconds 5]
                                [--steps N] [--repeats 2] [--threads 2]
                                [--torch_optimizer auto|novograd|adamw|sgd]
                                [--frameworks mindspore,pytorch] [--set section.key=value ...] [--profile N]
                                [--output bench/results/adhoc/train.json]

For each preset (``src/configs/<preset>.yaml``) both frameworks train the identical Jasper network
(tests/test_torch_reference.py shows equal outputs, gradients and NovoGrad updates) on one fixed
batch: random features (B, n_mels, T) of ``--seconds`` of audio each (T = the valid frames padded to
``features.pad_to``), random targets of about 15 characters per second.

    mindspore  GRAPH_MODE, src.training.train_step.TrainStep with the preset's optimizer, loss
               scaling, clipping and EMA settings, exactly as train.py builds it (fp32 on CPU)
    pytorch    bench/torch_jasper.py: forward, F.ctc_loss, backward, global grad norm and finite check,
               clipping and EMA as configured; the optimizer follows the preset (``auto``): NovoGrad
               written like the project's, torch.optim.AdamW, or torch.optim.SGD with momentum

Every (framework, preset, round) runs in its own subprocess, so each reports its own peak RSS
(ru_maxrss), and the two frameworks alternate (MindSpore, PyTorch, MindSpore, PyTorch, ...) so machine
load affects both alike.  A child times its first step (MindSpore's includes the graph compilation),
then ``--steps`` steady-state steps.  Reported per preset and framework: setup seconds, first step,
median seconds per step, utterances/s, audio-seconds/s, peak RSS; and the median over rounds of the
per-round ratio MindSpore step / PyTorch step.  Default batches: tiny 16, 5x3 8, 10x5dr 2 (× 5 s).

``--profile N``: after its timed steps, each MindSpore child runs N more under ``mindspore.Profiler`` and
reports each op type's share of the kernel time (``op_share_pct``, printed for the first round): where a
step's time goes.  The timed steps are not profiled.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench import adhoc_output, choice_list, machine_info, preset_list, preset_path, write_result  # noqa: E402
from src.config import Config, load_config  # noqa: E402
from src.fileio import atomic_write_json  # noqa: E402

FRAMEWORKS = ("mindspore", "pytorch")
TORCH_OPTIMIZERS = ("novograd", "adamw", "sgd")
# preset → (batch, timed steps): under a minute of steps per child on 2 idle cores
DEFAULTS = {"jasper_tiny": (16, 8), "jasper5x3": (8, 3), "jasper10x5dr": (2, 3)}
CHARS_PER_SECOND = 15  # LibriSpeech reads at about 15 characters per second


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="jasper_tiny,jasper5x3,jasper10x5dr",
                   help="comma-separated config names in src/configs (tiny, 5x3, 10x5dr also accepted) or YAML paths")
    p.add_argument("--batch", type=int, default=None, help="batch size for every preset (default: per preset)")
    p.add_argument("--seconds", type=float, default=5.0, help="audio seconds per utterance")
    p.add_argument("--steps", type=int, default=None, help="timed steps per run (default: per preset)")
    p.add_argument("--repeats", type=int, default=2, help="rounds; each runs every framework once per preset")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for both frameworks")
    p.add_argument("--torch_optimizer", choices=("auto",) + TORCH_OPTIMIZERS, default="auto",
                   help="PyTorch optimizer; auto = the preset's optim.name")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS), help="comma-separated subset of "
                   + ", ".join(FRAMEWORKS))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override applied to both frameworks, e.g. train.ema=0 (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="MindSpore: profile N extra steps and report the share of each op type (0 = off)")
    p.add_argument("--output", default=adhoc_output("train"), help="JSON result file")
    # internal: one measurement in this process
    p.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    p.add_argument("--preset", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.presets = preset_list(p, args.presets)
    args.frameworks = choice_list(p, "--frameworks", args.frameworks, FRAMEWORKS)
    if args.profile < 0:
        p.error("--profile must be >= 0")
    for name in ("batch", "steps", "repeats", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name} must be >= 1")
    if args.seconds <= 0:
        p.error("--seconds must be > 0")
    return args


def preset_config(name: str, overrides: Sequence[str]) -> Config:
    return load_config(preset_path(name), overrides)


def batch_size_and_steps(args: argparse.Namespace, preset: str) -> tuple[int, int]:
    batch, steps = DEFAULTS.get(preset, (8, 5))
    return args.batch or batch, args.steps or steps


def synthetic_batch(config: Config, batch: int, seconds: float,
                    seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """features (B, n_mels, T) float32, lengths (B,) int32 (all the valid frames of ``seconds``),
    tokens (B, S) int32 in [0, blank), token lengths (B,) int32 in [0.8·S, S]."""
    fc = config.features
    samples = int(round(seconds * fc.sample_rate))
    valid = -(-samples // fc.hop_length)                 # frames holding audio
    frames = -(-(1 + samples // fc.hop_length) // fc.pad_to) * fc.pad_to
    rng = np.random.default_rng(seed)
    feats = rng.standard_normal((batch, fc.n_mels, frames)).astype(np.float32)
    feats[:, :, valid:] = 0.0
    lengths = np.full(batch, valid, np.int32)
    max_tokens = max(1, int(seconds * CHARS_PER_SECOND))
    tokens = rng.integers(0, 28, (batch, max_tokens)).astype(np.int32)
    token_lengths = rng.integers(int(0.8 * max_tokens), max_tokens + 1, batch).astype(np.int32)
    return feats, lengths, tokens, token_lengths


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def current_rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _timed_steps(run_step, steps: int) -> tuple[float, list[float]]:
    """Seconds of the first call and of ``steps`` more; ``run_step`` must block until the step is done."""
    start = time.perf_counter()
    run_step()
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        run_step()
        times.append(time.perf_counter() - start)
    return first, times


def op_shares(profile_dir: Path) -> dict[str, float]:
    """Percent of the profiled kernel time per op type, largest first, from the CPU profiler's
    ``cpu_op_type_info_*.csv`` (columns ``op_type`` and ``total_compute_time``)."""
    import csv

    tables = sorted(profile_dir.rglob("cpu_op_type_info_*.csv"))
    if not tables:
        raise RuntimeError(f"mindspore.Profiler wrote no cpu_op_type_info_*.csv under {profile_dir}")
    with open(tables[0], newline="", encoding="utf-8") as f:
        times = {row["op_type"]: float(row["total_compute_time"]) for row in csv.DictReader(f)}
    total = sum(times.values())
    return {op: round(100 * t / total, 2) for op, t in sorted(times.items(), key=lambda kv: -kv[1])}


def run_mindspore(config: Config, data: tuple[np.ndarray, ...], steps: int, threads: int, seed: int,
                  profile_steps: int = 0) -> dict:
    import mindspore as ms
    from mindspore import Tensor

    from src.models import build_model  # the family's module sets the oneDNN ISA cap before the first kernel
    from src.tasks import get_task
    from src.training.optim import build_optimizer, weights_only
    from src.training.train_step import TrainStep, make_loss_scaler

    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.device_context.cpu.op_tuning.threads_num(threads)
    ms.set_seed(seed)
    model = build_model(config)
    model.set_train(True)
    optimizer = build_optimizer(model.trainable_params(), config.optim, total_steps=100_000,
                                decay_filter=None if config.optim.decay_norm_and_bias else weights_only)
    step_cell = TrainStep(get_task(config).loss_cell(model, config), optimizer, make_loss_scaler(config.train),
                          grad_clip=config.optim.grad_clip, ema_decay=config.train.ema)
    args = tuple(Tensor(a) for a in data)
    losses: list[float] = []

    def run_step() -> None:
        loss, finite, _, _ = step_cell(*args)
        losses.append(float(loss.asnumpy()))  # waits for the step

    first, times = _timed_steps(run_step, steps)
    result = {"first_step_s": first, "step_s": times, "losses": losses, "mindspore": ms.__version__,
              "optimizer": type(optimizer).__name__, "skipped_steps": int(step_cell.skipped_steps.asnumpy())}
    if profile_steps:
        with tempfile.TemporaryDirectory(prefix="bench_train_profile_") as tmp:
            profiler = ms.Profiler(output_path=tmp)
            for _ in range(profile_steps):
                run_step()
            profiler.analyse()
            result["op_share_pct"] = op_shares(Path(tmp))
    return result


def run_pytorch(config: Config, data: tuple[np.ndarray, ...], steps: int, threads: int, seed: int,
                optimizer_name: str) -> dict:
    import torch

    from bench.torch_jasper import NovoGrad, TrainStep, build_torch_model
    from src.text.labels import load_labels

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = build_torch_model(config)
    model.train()
    opt = config.optim
    if optimizer_name == "auto":
        optimizer_name = opt.name
    if optimizer_name == "novograd":
        optimizer = NovoGrad(model.parameters(), lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps,
                             weight_decay=opt.weight_decay)
    elif optimizer_name == "adamw":
        optimizer = torch.optim.AdamW(model.parameters(), lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps,
                                      weight_decay=opt.weight_decay)
    elif optimizer_name == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=opt.lr, momentum=opt.momentum,
                                    weight_decay=opt.weight_decay)
    else:
        raise ValueError(f"no PyTorch optimizer for {optimizer_name!r}")
    step = TrainStep(model, optimizer, load_labels(config.labels_path).blank, grad_clip=opt.grad_clip,
                     ema_decay=config.train.ema)
    feats, lengths, tokens, token_lengths = (torch.from_numpy(a) for a in data)
    args = (feats, lengths.long(), tokens.long(), token_lengths.long())
    losses: list[float] = []

    def run_step() -> None:
        loss, _, _ = step(*args)
        losses.append(loss.item())

    first, times = _timed_steps(run_step, steps)
    return {"first_step_s": first, "step_s": times, "losses": losses, "torch": torch.__version__,
            "optimizer": optimizer_name}


def worker(args: argparse.Namespace) -> int:
    """One framework, one preset: measure and write the result JSON."""
    started = time.perf_counter()
    config = preset_config(args.preset, args.overrides)
    batch, steps = batch_size_and_steps(args, args.preset)
    data = synthetic_batch(config, batch, args.seconds, args.seed)
    if args.worker == "mindspore":
        result = run_mindspore(config, data, steps, args.threads, args.seed, args.profile)
    else:
        result = run_pytorch(config, data, steps, args.threads, args.seed, args.torch_optimizer)
    result.update({"setup_s": time.perf_counter() - started - result["first_step_s"] - sum(result["step_s"]),
                   "peak_rss_mb": peak_rss_mb(), "final_rss_mb": current_rss_mb(),
                   "batch": batch, "frames": int(data[0].shape[-1])})
    atomic_write_json(args.result, result)
    return 0


def run_child(args: argparse.Namespace, framework: str, preset: str) -> dict:
    """Run one measurement in a fresh interpreter; returns its result dict."""
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        result_path = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", framework, "--preset", preset,
               "--result", str(result_path), "--seconds", str(args.seconds), "--threads", str(args.threads),
               "--torch_optimizer", args.torch_optimizer, "--seed", str(args.seed), "--profile", str(args.profile)]
        for name in ("batch", "steps"):
            if getattr(args, name) is not None:
                cmd += [f"--{name}", str(getattr(args, name))]
        for override in args.overrides:
            cmd += ["--set", override]
        env = dict(os.environ, GLOG_v=os.environ.get("GLOG_v", "3"))  # MindSpore: errors only
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not result_path.is_file():
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
            raise RuntimeError(f"{framework} {preset} failed (exit {proc.returncode}):\n{tail}")
        return json.loads(result_path.read_text())


def summarize(runs: dict[str, list[dict]], seconds: float) -> dict:
    """Per framework: medians over every timed step of every round; ratios per round."""
    out: dict[str, Any] = {}
    for framework, rounds in runs.items():
        steps = [t for r in rounds for t in r["step_s"]]
        median = statistics.median(steps)
        batch = rounds[0]["batch"]
        out[framework] = {
            "batch": batch, "frames": rounds[0]["frames"],
            "setup_s": round(statistics.median(r["setup_s"] for r in rounds), 2),
            "first_step_s": round(statistics.median(r["first_step_s"] for r in rounds), 2),
            # first step minus a steady one: MindSpore's graph compilation, PyTorch's allocator warm-up
            "compile_s": round(statistics.median(r["first_step_s"] - statistics.median(r["step_s"])
                                                 for r in rounds), 2),
            "step_s_median": round(median, 4),
            "step_s_min": round(min(steps), 4),
            "step_s_max": round(max(steps), 4),
            "utt_per_s": round(batch / median, 3),
            "audio_s_per_s": round(batch * seconds / median, 2),
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in rounds)),
            "per_round_step_s": [round(statistics.median(r["step_s"]), 4) for r in rounds],
            "per_step_s": [[round(t, 4) for t in r["step_s"]] for r in rounds],
            "version": rounds[0].get("mindspore") or rounds[0].get("torch"),
            "optimizer": rounds[0]["optimizer"],
            "first_loss": round(rounds[0]["losses"][0], 3),
            "last_loss": round(rounds[0]["losses"][-1], 3),
        }
        if "op_share_pct" in rounds[0]:
            out[framework]["op_share_pct"] = rounds[0]["op_share_pct"]
    if set(FRAMEWORKS) <= set(runs):
        ms_rounds, pt_rounds = out["mindspore"]["per_round_step_s"], out["pytorch"]["per_round_step_s"]
        ratios = [m / p for m, p in zip(ms_rounds, pt_rounds)]
        out["ratio_mindspore_over_pytorch"] = {"median": round(statistics.median(ratios), 3),
                                               "per_round": [round(r, 3) for r in ratios]}
        out["peak_rss_ratio"] = round(out["mindspore"]["peak_rss_mb"] / out["pytorch"]["peak_rss_mb"], 2)
    return out


def print_table(result: dict) -> None:
    print(f"\nTraining step on CPU ({result['threads']} threads), {result['seconds']:g} s utterances, "
          f"{result['repeats']} interleaved round(s); medians")
    print("| preset | framework | optimizer | batch | setup s | first step s | s/step | utt/s | audio-s/s |"
          " peak RSS GB | MS/PT step |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for preset, summary in result["presets"].items():
        ratio = summary.get("ratio_mindspore_over_pytorch")
        for framework in FRAMEWORKS:
            if framework not in summary:
                continue
            s = summary[framework]
            cell = ""
            if ratio and framework == "mindspore":
                cell = f"{ratio['median']:.2f} ({', '.join(f'{r:.2f}' for r in ratio['per_round'])})"
            print(f"| {preset} | {framework} | {s['optimizer']} | {s['batch']} | {s['setup_s']:.1f} | "
                  f"{s['first_step_s']:.1f} | {s['step_s_median']:.3f} | {s['utt_per_s']:.2f} | "
                  f"{s['audio_s_per_s']:.1f} | {s['peak_rss_mb'] / 1024:.2f} | {cell} |")
    for preset, summary in result["presets"].items():
        shares = summary.get("mindspore", {}).get("op_share_pct")
        if shares:
            print(f"\n{preset}, MindSpore kernel time by op type (%): "
                  + ", ".join(f"{op} {pct:.1f}" for op, pct in list(shares.items())[:10]))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    for preset in args.presets:  # fail early on a bad override
        preset_config(preset, args.overrides)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    presets: dict[str, dict] = {}
    for preset in args.presets:
        runs: dict[str, list[dict]] = {f: [] for f in args.frameworks}
        for round_index in range(args.repeats):
            for framework in args.frameworks:  # A B, A B, ...: adjacent runs see the same machine load
                r = run_child(args, framework, preset)
                runs[framework].append(r)
                print(f"{preset} round {round_index + 1}/{args.repeats} {framework}: first step "
                      f"{r['first_step_s']:.1f} s, median step {statistics.median(r['step_s']):.3f} s, "
                      f"peak RSS {r['peak_rss_mb'] / 1024:.2f} GB", flush=True)
        presets[preset] = summarize(runs, args.seconds)
    result = {
        "benchmark": "training step throughput on CPU, MindSpore TrainStep vs PyTorch (identical Jasper)",
        "seconds": args.seconds, "repeats": args.repeats, "threads": args.threads,
        "torch_optimizer": args.torch_optimizer, "overrides": args.overrides,
        **machine_info(load_before), "wall_s": round(time.perf_counter() - started, 1), "presets": presets,
    }
    print_table(result)
    write_result(args.output, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
