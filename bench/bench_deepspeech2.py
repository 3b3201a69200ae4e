"""Benchmark of DeepSpeech2 on CPU: the training step and its peak memory against PyTorch running the same
network, and the inference real-time factor through the checkpoint, the MindIR and the 310 runner.

Usage:
    python bench/bench_deepspeech2.py [--presets deepspeech2_tiny,deepspeech2] [--parts train,infer]
                                      [--batch B] [--seconds 5] [--steps N] [--repeats 2] [--threads 2]
                                      [--frameworks mindspore,pytorch] [--infer_presets deepspeech2_tiny,deepspeech2]
                                      [--infer_seconds 10] [--methods checkpoint,mindir,lite] [--calls 2]
                                      [--rounds 3] [--set section.key=value ...] [--work_dir DIR] [--quick]
                                      [--output bench/results/adhoc/deepspeech2.json]

``train``: for each preset (``src/configs/<preset>.yaml``) both frameworks train the same DeepSpeech2
from random weights on one fixed batch: random spectrogram features (B, F, T) of ``--seconds`` of audio
each (F = the front end's rows, 161; T = the valid frames padded to ``features.pad_to``; every
utterance full length), random character targets of about 15 per second.

    mindspore  GRAPH_MODE, src.training.train_step.TrainStep around the task's CTC loss with the
               preset's optimizer, clipping and EMA, as bench/bench_train.py and train.py build it
    pytorch    bench/torch_deepspeech2.py (deepspeech.pytorch's network: packed sequences, nn.LSTM),
               log-softmax, F.ctc_loss with the same reduction, backward, global gradient norm and
               finite check, clipping and EMA as configured (TorchCTCStep, as bench/torch_jasper.py's
               TrainStep); the preset's optimizer (AdamW, Adam, SGD with momentum, or NovoGrad)

Every (framework, preset, round) runs in its own process, so each reports its own peak RSS (ru_maxrss,
the high-water mark of resident memory; the PyTorch process reads the config as plain values and never
loads MindSpore, whose import alone holds about 0.47 GB, and keeps PyTorch's own oneDNN settings rather
than the AVX2 cap of src/runtime.py), and the frameworks alternate (MindSpore, PyTorch, ...) so
machine load affects both alike.  A process times its first step (MindSpore's includes the graph
compilation) and ``--steps`` more.  Reported per preset and framework: median s/step, utterances/s,
audio-seconds/s, peak RSS; and the median over rounds of each round's MindSpore / PyTorch step ratio.
Default batches: deepspeech2_tiny 8, deepspeech2 (5 × 1024 BiLSTM, 86.6 M parameters) 2, × 5 s.

``infer``: for each ``--infer_presets`` preset (own process) a model with random weights is saved as a
checkpoint, loaded back by src.deploy.loading and exported by src.deploy.export.export_model for a fixed
input (1, F, N) (N: the utterance's frames rounded up to ``features.pad_to``) as MindIR (and ONNX for
the runner), recurrences in the preset's ``model.export_rnn`` form (``--set model.export_rnn=...`` to
choose another).  One utterance of ``--infer_seconds`` of synthetic speech-like audio is run:

    checkpoint  the cell from the checkpoint, GRAPH_MODE (``model.rnn_impl``: the fused LSTM kernel)
    mindir      load_mindir_model (mindspore.load + nn.GraphCell, what eval.py --mindir runs)
    lite        the Ascend-310 C++ runner (ascend310_infer/) on the MindSpore Lite 2.0 CPU runtime, on
                the model converted ONNX → Lite as scripts/run_infer_310.sh does; its own Predict() time;
                reported as skipped, with the reason, if it cannot be built or run

"model" times the forward pass (numpy features in, numpy log-probabilities out); "e2e" adds PCM →
spectrogram and greedy decoding (MindSpore paths).  Each round runs every path ``--calls`` times (the
runner: one process, after a warm-up process); medians over ``--rounds`` rounds of per-round medians;
the real-time factor (RTF) is seconds / audio seconds.  Export and first-call (compile) times are
reported too.

``--quick``: a smoke run (deepspeech2_tiny, batch 2 × 1 s, 2 steps, 1 round, 2 s of audio, 1 call,
no runner).
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

from bench import adhoc_output, choice_list, machine_info, preset_list, preset_path, run_worker, write_result  # noqa: E402
from src.config import Config, load_config  # noqa: E402
from src.fileio import atomic_write_json  # noqa: E402

PARTS = ("train", "infer")
FRAMEWORKS = ("mindspore", "pytorch")
METHODS = ("checkpoint", "mindir", "lite")
LABELS = {"checkpoint": "checkpoint, GRAPH_MODE", "mindir": "MindIR (mindspore.load + GraphCell)",
          "lite": "C++ runner, MindSpore Lite 2.0"}
# preset → (batch, timed steps) of the training step
TRAIN_DEFAULTS = {"deepspeech2_tiny": (8, 5), "deepspeech2": (2, 3)}
CHARS_PER_SECOND = 15  # LibriSpeech reads at about 15 characters per second
QUICK = {"presets": "deepspeech2_tiny", "infer_presets": "deepspeech2_tiny", "batch": 2, "seconds": 1.0,
         "steps": 2, "repeats": 1, "infer_seconds": 2.0, "calls": 1, "rounds": 1, "methods": "checkpoint,mindir"}
DEFAULTS = {"presets": "deepspeech2_tiny,deepspeech2", "infer_presets": "deepspeech2_tiny,deepspeech2", "batch": None,
            "seconds": 5.0, "steps": None, "repeats": 2, "infer_seconds": 10.0, "calls": 2, "rounds": 3,
            "methods": ",".join(METHODS)}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default=None, help="training: comma-separated DeepSpeech2 configs in src/configs "
                   "(default deepspeech2_tiny,deepspeech2) or YAML paths")
    p.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of " + ", ".join(PARTS))
    p.add_argument("--batch", type=int, default=None, help="training batch for every preset (default: per preset)")
    p.add_argument("--seconds", type=float, default=None, help="audio seconds per training utterance (5)")
    p.add_argument("--steps", type=int, default=None, help="timed training steps per process (default: per preset)")
    p.add_argument("--repeats", type=int, default=None, help="training rounds, each framework once per round (2)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads of both frameworks")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS), help="comma-separated subset of "
                   + ", ".join(FRAMEWORKS))
    p.add_argument("--infer_presets", default=None,
                   help="inference: comma-separated presets (default deepspeech2_tiny,deepspeech2)")
    p.add_argument("--infer_seconds", type=float, default=None, help="audio seconds of the utterance (10)")
    p.add_argument("--methods", default=None, help="inference paths, subset of " + ", ".join(METHODS))
    p.add_argument("--calls", type=int, default=None, help="calls of each inference path per round (2)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved inference rounds (3)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every preset and both parts, e.g. model.export_rnn=fused (repeatable)")
    p.add_argument("--work_dir", default=None, help="keep the exported models here (default: a temporary folder)")
    p.add_argument("--quick", action="store_true", help="a smoke run: " + ", ".join(f"{k} {v}" for k, v in QUICK.items()))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=adhoc_output("deepspeech2"), help="JSON result file")
    # internal: one measurement in this process
    p.add_argument("--worker", choices=FRAMEWORKS + ("infer",), help=argparse.SUPPRESS)
    p.add_argument("--preset", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--data_dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.parts = choice_list(p, "--parts", args.parts, PARTS)
    # a worker measures one preset, named by --preset
    args.presets = preset_list(p, args.presets) if "train" in args.parts and not args.worker else []
    args.infer_presets = preset_list(p, args.infer_presets) if "infer" in args.parts and not args.worker else []
    if args.worker and not preset_path(args.preset or "").is_file():
        p.error(f"--preset: no {preset_path(args.preset or '')}")
    args.frameworks = choice_list(p, "--frameworks", args.frameworks, FRAMEWORKS)
    args.methods = choice_list(p, "--methods", args.methods, METHODS)
    for name in ("batch", "steps", "repeats", "threads", "calls", "rounds"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name} must be >= 1")
    for name in ("seconds", "infer_seconds"):
        if getattr(args, name) <= 0:
            p.error(f"--{name} must be > 0")
    return args


def ds2_config(preset: str, overrides: Sequence[str]) -> Config:
    config = load_config(preset_path(preset), overrides)
    if config.model.name != "deepspeech2":
        raise SystemExit(f"{preset}: model.name {config.model.name!r}, not deepspeech2")
    return config


def batch_size_and_steps(args: argparse.Namespace, preset: str) -> tuple[int, int]:
    batch, steps = TRAIN_DEFAULTS.get(Path(preset).stem, (4, 3))
    return args.batch or batch, args.steps or steps


def synthetic_batch(config: Config, batch: int, seconds: float,
                    seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """features (B, F, T) float32, lengths (B,) int32 (every utterance ``seconds`` long), tokens (B, S) int32
    of the labels' symbols (no blank), token lengths (B,) int32 in [0.8·S, S]."""
    from src.text.labels import load_labels

    fc = config.features
    samples = int(round(seconds * fc.sample_rate))
    valid = 1 + samples // fc.hop_length
    frames = -(-valid // fc.pad_to) * fc.pad_to
    rng = np.random.default_rng(seed)
    feats = rng.standard_normal((batch, fc.feature_dim, frames)).astype(np.float32)
    feats[:, :, valid:] = 0.0
    lengths = np.full(batch, valid, np.int32)
    labels = load_labels(config.labels_path)
    symbols = [i for i in range(labels.num_classes) if i != labels.blank]
    max_tokens = max(1, int(seconds * CHARS_PER_SECOND))
    tokens = rng.choice(symbols, (batch, max_tokens)).astype(np.int32)
    token_lengths = rng.integers(int(0.8 * max_tokens), max_tokens + 1, batch).astype(np.int32)
    return feats, lengths, tokens, token_lengths


# ------------------------------------------------------------------------------------------------
# training (one framework per process)
# ------------------------------------------------------------------------------------------------

def write_inputs(folder: Path, config: Config, data: tuple[np.ndarray, ...]) -> None:
    """What both training processes read: the batch (``batch.npz``) and, for the PyTorch one, the config as
    plain values (``config.json``: typing it would load the MindSpore model registry into that process)."""
    from src.config import config_to_dict
    from src.text.labels import load_labels

    labels = load_labels(config.labels_path)
    np.savez(folder / "batch.npz", *data)
    atomic_write_json(folder / "config.json", {**config_to_dict(config), "num_classes": labels.num_classes,
                                               "blank": labels.blank, "feature_dim": config.features.feature_dim})


def read_inputs(folder: Path) -> tuple[SimpleNamespace, tuple[np.ndarray, ...]]:
    """``write_inputs``' files: the plain config (attributes, as the typed one) and the batch."""
    plain = json.loads((folder / "config.json").read_text(), object_hook=lambda d: SimpleNamespace(**d))
    with np.load(folder / "batch.npz") as npz:
        data = tuple(npz[f"arr_{i}"] for i in range(len(npz.files)))
    return plain, data


def torch_optimizer(params, opt):
    """The preset's optimizer (``config.optim``) in PyTorch."""
    import torch

    if opt.name == "adamw":
        return torch.optim.AdamW(params, lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps, weight_decay=opt.weight_decay)
    if opt.name == "adam":
        return torch.optim.Adam(params, lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps, weight_decay=opt.weight_decay)
    if opt.name == "sgd":
        return torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay,
                               nesterov=opt.nesterov)
    if opt.name == "novograd":   # (bench/torch_jasper.py loads MindSpore's Jasper config too: RSS + 0.47 GB)
        from bench.torch_jasper import NovoGrad
        return NovoGrad(params, lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps, weight_decay=opt.weight_decay)
    raise SystemExit(f"no PyTorch optimizer for optim.name {opt.name!r}")


class TorchCTCStep:
    """The PyTorch counterpart of ``src.training.train_step.TrainStep`` at fp32 without loss scaling, as
    bench/torch_jasper.py's (which this process does not import: it loads MindSpore): each utterance's
    CTC loss summed over its tokens, mean over the batch (zero_infinity), backward, global gradient norm,
    and when it is finite optional clipping, the optimizer step and an optional EMA of the weights."""

    def __init__(self, model, optimizer, blank: int, grad_clip: float = 0.0, ema_decay: float = 0.0) -> None:
        self.model, self.optimizer, self.blank = model, optimizer, blank
        self.grad_clip, self.ema_decay = grad_clip, ema_decay
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.ema = [p.detach().clone() for p in self.params] if ema_decay > 0 else []

    def __call__(self, feats, feat_lens, tokens, token_lens):
        import torch
        import torch.nn.functional as F

        self.optimizer.zero_grad(set_to_none=True)
        scores, out_lens = self.model(feats, feat_lens)          # deepspeech.pytorch: raw scores in training
        log_probs = F.log_softmax(scores, dim=-1).transpose(0, 1)
        loss = F.ctc_loss(log_probs, tokens, out_lens.long(), token_lens, blank=self.blank, reduction="none",
                          zero_infinity=True).mean()
        loss.backward()
        norm = torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
        if torch.isfinite(norm):
            if self.grad_clip > 0:
                torch.nn.utils.clip_grads_with_norm_(self.params, self.grad_clip, norm)
            self.optimizer.step()
            with torch.no_grad():
                for average, weight in zip(self.ema, self.params):
                    average.lerp_(weight, 1.0 - self.ema_decay)
        return loss.detach()


def run_pytorch(config: SimpleNamespace, data: tuple[np.ndarray, ...], steps: int, threads: int, seed: int) -> dict:
    import torch

    from bench.bench_train import _timed_steps
    from bench.torch_deepspeech2 import build_torch_deepspeech2

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = build_torch_deepspeech2(config.model, config.num_classes, config.feature_dim)
    model.train()
    optimizer = torch_optimizer([p for p in model.parameters() if p.requires_grad], config.optim)
    step = TorchCTCStep(model, optimizer, config.blank, grad_clip=config.optim.grad_clip, ema_decay=config.train.ema)
    feats, lengths, tokens, token_lengths = (torch.from_numpy(a) for a in data)
    args = (feats, lengths.long(), tokens.long(), token_lengths.long())
    losses: list[float] = []

    def run_step() -> None:
        losses.append(step(*args).item())

    first, times = _timed_steps(run_step, steps)
    return {"first_step_s": first, "step_s": times, "losses": losses, "torch": torch.__version__,
            "optimizer": type(optimizer).__name__,
            "params": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def train_worker(args: argparse.Namespace) -> int:
    from bench.bench_train import current_rss_mb, peak_rss_mb, run_mindspore

    started = time.perf_counter()
    plain, data = read_inputs(Path(args.data_dir))
    _, steps = batch_size_and_steps(args, args.preset)
    if args.worker == "mindspore":
        result = run_mindspore(ds2_config(args.preset, args.overrides), data, steps, args.threads, args.seed)
    else:
        result = run_pytorch(plain, data, steps, args.threads, args.seed)
    result.update({"setup_s": time.perf_counter() - started - result["first_step_s"] - sum(result["step_s"]),
                   "peak_rss_mb": peak_rss_mb(), "final_rss_mb": current_rss_mb(),
                   "batch": int(data[0].shape[0]), "frames": int(data[0].shape[-1]),
                   "mindspore_loaded": "mindspore" in sys.modules, "torch_loaded": "torch" in sys.modules})
    atomic_write_json(args.result, result)
    return 0


# ------------------------------------------------------------------------------------------------
# inference (one MindSpore process per preset)
# ------------------------------------------------------------------------------------------------

def infer_worker(args: argparse.Namespace) -> int:
    os.environ.setdefault("GLOG_v", "3")
    os.environ["MS_CPU_THREADS"] = str(args.threads)
    import mindspore as ms

    from bench.bench_features import synthetic_speech
    from bench.bench_infer import LiteRunner, summarize, time_calls
    from src.audio.features import batch_features, padded_frames
    from src.audio.io import float_to_int16, int16_to_float
    from src.decoding.greedy import greedy_decode
    from src.deploy.bins import fit_frames
    from src.deploy.export import export_model
    from src.deploy.loading import load_checkpoint_model, load_mindir_model
    from src.models import build_model, count_parameters  # caps oneDNN's ISA before any kernel
    from src.runtime import configure_device
    from src.tasks.asr import predict
    from src.text.labels import load_labels
    from src.training.checkpoint import write_checkpoint

    started = time.perf_counter()
    config = ds2_config(args.preset, args.overrides)
    fc = config.features
    labels = load_labels(config.labels_path)
    configure_device("CPU", seed=args.seed)
    rng = np.random.default_rng(args.seed)
    pcm = float_to_int16(synthetic_speech(args.infer_seconds, fc.sample_rate, rng))
    audio_seconds = len(pcm) / fc.sample_rate
    feats, lengths = batch_features([int16_to_float(pcm)], fc)
    n_frames = int(padded_frames(feats.shape[2], fc.pad_to))

    work_ctx = tempfile.TemporaryDirectory(prefix="bench_ds2_") if args.work_dir is None else None
    work = Path(work_ctx.name if work_ctx else args.work_dir) / Path(args.preset).stem
    work.mkdir(parents=True, exist_ok=True)
    try:
        model = build_model(config)
        params, _ = count_parameters(model)
        write_checkpoint([{"name": p.name, "data": p} for p in model.get_parameters()], work / "random.ckpt")
        del model
        checkpoint_model = load_checkpoint_model(config, work / "random.ckpt")
        result: dict[str, Any] = {
            "params": params, "audio_seconds": audio_seconds, "valid_frames": int(lengths[0]),
            "input_frames": int(feats.shape[2]), "n_frames": n_frames, "export_rnn": config.model.export_rnn,
            "rnn_impl": config.model.rnn_impl, "mindspore": ms.__version__, "methods": {}}
        models: dict[str, Callable] = {}
        if "checkpoint" in args.methods:
            models["checkpoint"] = checkpoint_model
        mindir = None
        if "mindir" in args.methods or "lite" in args.methods:
            start = time.perf_counter()
            mindir = export_model(checkpoint_model, config, labels.symbols, str(work / "deepspeech2"), "MINDIR",
                                  n_frames)
            result["export_s"] = round(time.perf_counter() - start, 2)
            result["mindir_mb"] = round(mindir.stat().st_size / 2**20, 2)
            if "mindir" in args.methods:
                models["mindir"] = load_mindir_model(mindir)

        def forward(model) -> Callable[[], Any]:
            return lambda: predict(model, feats, lengths)

        def end_to_end(model) -> Callable[[], Any]:
            def run() -> list[str]:
                f, n = batch_features([int16_to_float(pcm)], fc)
                log_probs, out_lengths = predict(model, f, n)
                return greedy_decode(log_probs, out_lengths, labels)
            return run

        first: dict[str, float] = {}
        outputs: dict[str, np.ndarray] = {}
        for name, model in models.items():   # warm-up: graph compilation, first allocations
            start = time.perf_counter()
            log_probs, out_lengths = predict(model, feats, lengths)
            first[name] = time.perf_counter() - start
            outputs[name] = log_probs[0, :int(out_lengths[0])]
            end_to_end(model)()
        if len(outputs) == 2:
            result["max_abs_diff_mindir_vs_checkpoint"] = float(np.abs(outputs["mindir"] - outputs["checkpoint"]).max())

        runner, runner_error = None, None
        if "lite" in args.methods:
            try:
                start = time.perf_counter()
                export_model(checkpoint_model, config, labels.symbols, str(work / "deepspeech2"), "ONNX", n_frames)
                result["onnx_export_s"] = round(time.perf_counter() - start, 2)
                padded = fit_frames(feats, int(lengths[0]), n_frames, fc.pad_to, "bench")
                runner = LiteRunner(mindir, work, padded, int(lengths[0]), args.calls)
                runner.run()                      # warm-up process: page cache, first load
                reference = next(iter(outputs.values()), None)
                got = runner.outputs()
                if reference is not None and got.size % reference.shape[1] == 0:
                    got = got.reshape(-1, reference.shape[1])[:reference.shape[0]]
                    result["max_abs_diff_lite_vs_mindspore"] = float(np.abs(got - reference).max())
                print(f"{args.preset}: runner built/checked in {runner.build_s:.1f} s, model converted in "
                      f"{runner.convert_s:.1f} s", flush=True)
            except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError, IndexError) as e:
                runner, runner_error = None, str(e).strip()[:1500]
                print(f"{args.preset}: C++ runner skipped: {e}", flush=True)

        timings: dict[str, list[list[float]]] = {"features": []}
        for name in models:
            timings[f"{name}/model"], timings[f"{name}/e2e"] = [], []
        if runner:
            timings["lite/model"] = []
        loads = []
        for round_index in range(args.rounds):
            loads.append(round(os.getloadavg()[0], 2))
            timings["features"].append(time_calls(lambda: batch_features([int16_to_float(pcm)], fc), args.calls))
            for name, model in models.items():
                timings[f"{name}/model"].append(time_calls(forward(model), args.calls))
            for name, model in models.items():
                timings[f"{name}/e2e"].append(time_calls(end_to_end(model), args.calls))
            if runner:
                timings["lite/model"].append(runner.run())
            print(f"{args.preset} round {round_index + 1}/{args.rounds}: " + ", ".join(
                f"{k} {1000 * statistics.median(v[-1]):.1f} ms" for k, v in timings.items()), flush=True)

        result["load_1min_per_round"] = loads
        result["features"] = summarize(timings["features"], audio_seconds)
        for name in models:
            result["methods"][name] = {"first_call_s": round(first[name], 3),
                                       "model": summarize(timings[f"{name}/model"], audio_seconds),
                                       "e2e": summarize(timings[f"{name}/e2e"], audio_seconds)}
        if "lite" in args.methods:
            result["methods"]["lite"] = ({"build_s": round(runner.build_s, 2), "convert_s": round(runner.convert_s, 2),
                                          "model": summarize(timings["lite/model"], audio_seconds)} if runner
                                         else {"skipped": runner_error})
        result["wall_s"] = round(time.perf_counter() - started, 1)
        atomic_write_json(args.result, result)
    finally:
        if work_ctx:
            work_ctx.cleanup()
    return 0


# ------------------------------------------------------------------------------------------------
# driver
# ------------------------------------------------------------------------------------------------

def run_child(args: argparse.Namespace, worker: str, preset: str, data_dir: Path | None = None) -> dict:
    """One measurement in a fresh interpreter (its output shown as it comes); returns its result dict."""
    with tempfile.TemporaryDirectory(prefix="bench_ds2_") as tmp:
        result_path = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", worker, "--preset", preset,
               "--result", str(result_path),
               "--threads", str(args.threads), "--seed", str(args.seed), "--seconds", str(args.seconds),
               "--repeats", str(args.repeats), "--infer_seconds", str(args.infer_seconds),
               "--methods", ",".join(args.methods), "--calls", str(args.calls), "--rounds", str(args.rounds)]
        for name in ("batch", "steps"):
            if getattr(args, name) is not None:
                cmd += [f"--{name}", str(getattr(args, name))]
        for override in args.overrides:
            cmd += ["--set", override]
        if args.work_dir:
            cmd += ["--work_dir", str(Path(args.work_dir).resolve())]
        if data_dir:
            cmd += ["--data_dir", str(data_dir)]
        return run_worker(cmd, result_path, f"{worker} {preset}")


def run_training(args: argparse.Namespace) -> dict:
    from bench.bench_train import summarize

    presets = {}
    for preset in args.presets:
        config = ds2_config(preset, args.overrides)
        batch, _ = batch_size_and_steps(args, preset)
        runs: dict[str, list[dict]] = {f: [] for f in args.frameworks}
        with tempfile.TemporaryDirectory(prefix="bench_ds2_data_") as data_dir:
            write_inputs(Path(data_dir), config, synthetic_batch(config, batch, args.seconds, args.seed))
            for round_index in range(args.repeats):
                for framework in args.frameworks:   # A B, A B, ...: adjacent runs see the same machine load
                    r = run_child(args, framework, preset, Path(data_dir))
                    runs[framework].append(r)
                    print(f"{preset} round {round_index + 1}/{args.repeats} {framework}: first step "
                          f"{r['first_step_s']:.1f} s, median step {statistics.median(r['step_s']):.3f} s, "
                          f"peak RSS {r['peak_rss_mb'] / 1024:.2f} GB", flush=True)
        presets[preset] = summarize(runs, args.seconds)
        for framework in args.frameworks:
            presets[preset][framework]["other_framework_loaded"] = any(
                r["mindspore_loaded"] and r["torch_loaded"] for r in runs[framework])
            presets[preset][framework]["load_1min_per_round"] = [r["load_1min_before"] for r in runs[framework]]
        if "pytorch" in runs:
            presets[preset]["params"] = runs["pytorch"][0]["params"]
    return presets


def print_tables(result: dict) -> None:
    train = result.get("train")
    if train:
        print(f"\nDeepSpeech2 training step on CPU ({result['threads']} threads), {result['seconds']:g} s utterances, "
              f"medians of {result['repeats']} alternating round(s)")
        print("| preset | framework | optimizer | batch | first step s | s/step | utt/s | audio-s/s | peak RSS GB |"
              " MS/PT step (per round) |")
        print("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
        for preset, summary in train.items():
            ratio = summary.get("ratio_mindspore_over_pytorch")
            for framework in FRAMEWORKS:
                if framework not in summary:
                    continue
                s = summary[framework]
                cell = (f"{ratio['median']:.2f} ({', '.join(f'{r:.2f}' for r in ratio['per_round'])})"
                        if ratio and framework == "mindspore" else "")
                print(f"| {preset} | {framework} | {s['optimizer']} | {s['batch']} | {s['first_step_s']:.1f} | "
                      f"{s['step_s_median']:.3f} | {s['utt_per_s']:.2f} | {s['audio_s_per_s']:.1f} | "
                      f"{s['peak_rss_mb'] / 1024:.2f} | {cell} |")
    infer = result.get("infer")
    if infer:
        print(f"\nDeepSpeech2 inference on CPU, batch 1, {result['infer_seconds']:g} s of audio; medians of "
              f"{result['rounds']} round(s) × {result['calls']} call(s); RTF = seconds / audio seconds")
        print("| preset | path | model ms | RTF model | e2e ms (PCM → text) | RTF e2e | first call s |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for preset, r in infer.items():
            f = r["features"]
            print(f"| {preset} | features only (spectrogram) | | | {f['ms_median']:.1f} | {f['rtf']:.4f} | |")
            for name, m in r["methods"].items():
                if "skipped" in m:
                    print(f"| {preset} | {LABELS[name]} | skipped: {m['skipped'].strip().splitlines()[0][:100]} | | | | |")
                    continue
                e2e = m.get("e2e")
                e2e_cells = f"{e2e['ms_median']:.1f} | {e2e['rtf']:.4f}" if e2e else "— | —"
                print(f"| {preset} | {LABELS[name]} | {m['model']['ms_median']:.1f} | {m['model']['rtf']:.4f} | "
                      f"{e2e_cells} | {m.get('first_call_s', '')} |")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker in FRAMEWORKS:
        return train_worker(args)
    if args.worker == "infer":
        return infer_worker(args)
    for preset in {*args.presets, *args.infer_presets}:   # fail early on a bad preset or override
        ds2_config(preset, args.overrides)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "DeepSpeech2 on CPU: training step and peak RSS, MindSpore vs PyTorch (same network); "
                     "inference RTF (checkpoint, MindIR, C++ runner on Lite)",
        "quick": args.quick, "threads": args.threads, "overrides": args.overrides}
    if "train" in args.parts:
        result.update({"seconds": args.seconds, "repeats": args.repeats})
        result["train"] = run_training(args)
    if "infer" in args.parts:
        result.update({"infer_seconds": args.infer_seconds, "calls": args.calls, "rounds": args.rounds,
                       "methods": args.methods})
        result["infer"] = {preset: run_child(args, "infer", preset) for preset in args.infer_presets}
    result.update(machine_info(load_before))
    result["wall_s"] = round(time.perf_counter() - started, 1)
    print_tables(result)
    write_result(args.output, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
