"""Run every benchmark in bench/ and summarise their headline numbers in one table.

Usage:
    python bench/run_all.py [--only features,loader,train,decode,infer,convert,kws,deepspeech2] [--quick]
                            [--results_dir DIR]

Runs each benchmark script as a subprocess from the repository root, one after another, with its own
defaults (``--quick``: small sizes and a single round each, a smoke run of a few minutes whose numbers
are only indicative), each writing its JSON to DIR/<name>.json (DIR: bench/results, or
bench/results/quick with ``--quick``, so a smoke run never overwrites full results).  Their output is
shown as it comes (MindSpore's [WARNING] lines filtered out) and kept in DIR/logs/<name>.log.  Then
DIR/all.json collects every result with the command that produced it, its exit code and wall time,
and DIR/summary.md holds one markdown table: the headline number of each benchmark and the command
that reproduces it (also printed).  With ``--only``, the other benchmarks' entries of an earlier
DIR/all.json are kept (and named as such in the summary), so re-running one benchmark does not drop
the rest.  A benchmark that fails is reported in the table and the run goes
on; the exit code is 1 if any failed.

    features  bench_features.py  log-mel front end vs librosa
    loader    bench_loader.py    padding overhead, MindRecord loading speed
    train     bench_train.py     training step, MindSpore vs PyTorch
    decode    bench_decode.py    greedy and beam-search decoding
    infer     bench_infer.py     inference real-time factor (MindIR, checkpoint, C++ runner)
    convert   bench_convert.py   FLAC → wav + manifest → MindRecord throughput
    kws       bench_kws.py       DS-CNN: training step vs PyTorch, inference clips/s (checkpoint, MindIR, C++ runner)
    deepspeech2 bench_deepspeech2.py  DeepSpeech2: training step and peak RSS vs PyTorch, inference RTF
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.fileio import atomic_write_json, atomic_write_text  # noqa: E402


# ------------------------------------------------------------------------------------------------
# headline numbers, one function per benchmark's JSON
# ------------------------------------------------------------------------------------------------

def _num(value, fmt: str = ".3g") -> str:
    return "?" if value is None else format(value, fmt)


def headline_features(r: dict) -> str:
    speed, ratio = r.get("audio_seconds_per_second", {}), r.get("median_ratio_vs_librosa", {})
    return (f"batch_features {_num(speed.get('batched'), ',.0f')} audio-s/s, "
            f"{_num(ratio.get('batched/librosa'), '.2f')}× librosa ({_num(speed.get('librosa'), ',.0f')} audio-s/s)")


def headline_loader(r: dict) -> str:
    parts = []
    for row in r.get("padding", []):
        if row.get("batching") == "planned buckets (8)" and row.get("batch_size") == 16:
            parts.append(f"padding {100 * row['overhead']:.1f} % with 8 buckets (batch 16)")
    loading = r.get("loading", {})
    for mode in ("train", "eval"):
        if mode in loading:
            parts.append(f"{mode} loading {loading[mode]['audio_seconds_per_s']:,.0f} audio-s/s")
    return "; ".join(parts) or "?"


def headline_train(r: dict) -> str:
    parts = []
    for preset, s in r.get("presets", {}).items():
        frameworks = [f"{name} {s[name]['step_s_median']:.3g} s/step (batch {s[name]['batch']})"
                      for name in ("mindspore", "pytorch") if name in s]
        ratio = s.get("ratio_mindspore_over_pytorch")
        parts.append(f"{preset}: " + ", ".join(frameworks)
                     + (f", MS/PT {ratio['median']:.2f}" if ratio else ""))
    return "; ".join(parts) or "?"


def headline_decode(r: dict) -> str:
    rows = {row["decoder"]: row for row in r.get("rows", [])}
    parts = []
    if "greedy" in rows:
        parts.append(f"greedy {rows['greedy']['ms_per_utterance']:.2f} ms/utt")
    with_lm = [name for name in rows if name.endswith("+ LM")]
    pick = "beam 32 + LM" if "beam 32 + LM" in rows else (with_lm[-1] if with_lm else None)
    if pick:
        parts.append(f"{pick} {rows[pick]['ms_per_utterance']:.1f} ms/utt (WER {rows[pick]['wer']:.1f} % vs "
                     f"greedy {rows.get('greedy', {}).get('wer', float('nan')):.1f} %)")
    frames = r.get("setup", {}).get("frames")
    return "; ".join(parts) + (f"; {frames} frames per utterance" if frames else "") if parts else "?"


def headline_infer(r: dict) -> str:
    parts = []
    names = {"mindir": "MindIR", "checkpoint": "checkpoint", "lite": "C++ runner (Lite)"}
    for preset, p in r.get("presets", {}).items():
        cells = []
        for name, m in p.get("methods", {}).items():
            if "skipped" in m:
                cells.append(f"{names.get(name, name)} skipped")
                continue
            e2e = f" (e2e {m['e2e']['rtf']:.3g})" if "e2e" in m else ""
            cells.append(f"{names.get(name, name)} RTF {m['model']['rtf']:.3g}{e2e}")
        parts.append(f"{preset}, {r.get('seconds', '?'):g} s: " + ", ".join(cells))
    return "; ".join(parts) or "?"


def headline_convert(r: dict) -> str:
    stages = r.get("stages", {})
    cells = [f"{name} {stages[key]['audio_hours_per_minute']:.2f}" for key, name in
             (("convert", "FLAC → wav"), ("mindrecord", "→ MindRecord"), ("total", "both")) if key in stages]
    minutes = r.get("audio_seconds", 0) / 60
    return ("audio-hours per wall-minute: " + ", ".join(cells) + f" ({minutes:.1f} min of audio)") if cells else "?"


def headline_kws(r: dict) -> str:
    parts = []
    train = r.get("train")
    if train:
        frameworks = [f"{name} {train[name]['steps_per_s']:.3g} steps/s" for name in ("mindspore", "pytorch")
                      if name in train]
        ratio = train.get("ratio_mindspore_over_pytorch")
        parts.append(f"train batch {train['batch']}: " + ", ".join(frameworks)
                     + (f", MS/PT step {ratio['median']:.2f}" if ratio else ""))
    names = {"checkpoint": "checkpoint", "mindir": "MindIR", "lite": "C++ runner (Lite)"}
    for batch, row in r.get("infer", {}).get("batches", {}).items():
        cells = [f"{names.get(name, name)} skipped" if "skipped" in m else
                 f"{names.get(name, name)} {m['ms_per_clip']:.3g} ms/clip" for name, m in row["methods"].items()]
        parts.append(f"infer batch {batch}: " + ", ".join(cells))
    return "; ".join(parts) or "?"


def headline_deepspeech2(r: dict) -> str:
    parts = []
    for preset, s in r.get("train", {}).items():
        frameworks = [f"{name} {s[name]['step_s_median']:.3g} s/step, {s[name]['peak_rss_mb'] / 1024:.2f} GB"
                      for name in ("mindspore", "pytorch") if name in s]
        ratio = s.get("ratio_mindspore_over_pytorch")
        batch = next((s[name]["batch"] for name in ("mindspore", "pytorch") if name in s), "?")
        parts.append(f"{preset} (batch {batch}): " + ", ".join(frameworks)
                     + (f", MS/PT {ratio['median']:.2f}" if ratio else ""))
    names = {"checkpoint": "checkpoint", "mindir": "MindIR", "lite": "C++ runner (Lite)"}
    for preset, p in r.get("infer", {}).items():
        cells = [f"{names.get(name, name)} skipped" if "skipped" in m else
                 f"{names.get(name, name)} RTF {m['model']['rtf']:.3g}" for name, m in p.get("methods", {}).items()]
        parts.append(f"{preset}, {r.get('infer_seconds', '?'):g} s: " + ", ".join(cells))
    return "; ".join(parts) or "?"


@dataclass(frozen=True)
class Bench:
    script: str
    what: str
    quick: tuple[str, ...]
    headline: Callable[[dict], str]


BENCHES: dict[str, Bench] = {
    "features": Bench("bench_features.py", "log-mel front end", ("--num_utts", "16", "--repeats", "1"),
                      headline_features),
    "loader": Bench("bench_loader.py", "batching and loading", ("--num_index", "2000", "--num_utts", "16",
                                                                 "--repeats", "1"), headline_loader),
    "train": Bench("bench_train.py", "training step on CPU", ("--presets", "jasper_tiny", "--repeats", "1",
                                                              "--steps", "2", "--batch", "4", "--seconds", "2"),
                   headline_train),
    "decode": Bench("bench_decode.py", "CTC decoding", ("--num_utts", "4", "--beam_widths", "1", "8", "--repeats", "1",
                                                        "--vocab", "2000", "--lm_sentences", "2000"), headline_decode),
    "infer": Bench("bench_infer.py", "inference RTF, batch 1", ("--seconds", "2", "--repeats", "1", "--calls", "1"),
                   headline_infer),
    "convert": Bench("bench_convert.py", "data preparation", ("--speakers", "2", "--utts_per_chapter", "3",
                                                              "--repeats", "1"), headline_convert),
    "kws": Bench("bench_kws.py", "keyword spotter (DS-CNN)", ("--quick",), headline_kws),
    "deepspeech2": Bench("bench_deepspeech2.py", "DeepSpeech2 training and inference", ("--quick",),
                         headline_deepspeech2),
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=None, help="comma-separated benchmarks: " + ", ".join(BENCHES))
    p.add_argument("--quick", action="store_true", help="small sizes, one round each (a smoke run)")
    p.add_argument("--results_dir", default=None,
                   help="where the JSON files, logs, all.json and summary.md go "
                        "(default bench/results, or bench/results/quick with --quick)")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown or not names:
        p.error(f"--only: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(BENCHES)}")
    args.only = names
    if args.results_dir is None:
        args.results_dir = "bench/results/quick" if args.quick else "bench/results"
    return args


def shown_path(path: Path) -> str:
    """``path`` relative to the repository root when inside it (as the commands are run from there)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def run_bench(name: str, cmd: list[str], log_path: Path) -> tuple[int, float, str]:
    """Run one benchmark, echoing its output and saving it; returns exit code, wall seconds, output tail."""
    env = dict(os.environ, GLOG_v=os.environ.get("GLOG_v", "3"))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    kept: list[str] = []
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace")
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if line.startswith("[WARN"):
                continue
            print(f"  {line}", end="", flush=True)
            kept = (kept + [line.rstrip()])[-20:]
        code = proc.wait()
    return code, time.perf_counter() - start, "\n".join(kept)


def summary_markdown(report: dict) -> str:
    lines = [f"# Benchmark summary{' (quick smoke run: indicative only)' if report['quick'] else ''}", "",
             f"{report['finished']}, {report['machine']}, {report['cpu_count']} CPUs, load average "
             f"{report['load_average_1min'][0]} → {report['load_average_1min'][1]} (1 min), "
             f"{report['wall_s'] / 60:.1f} min in all.", ""]
    kept = report.get("kept_from_earlier", [])
    if kept:
        lines += ["Not re-run, kept from earlier runs: " + ", ".join(
            f"{name} ({report['benchmarks'][name]['finished']})" for name in kept) + ".", ""]
    lines += ["| benchmark | headline | wall s | reproduce |", "|---|---|---:|---|"]
    for name, b in report["benchmarks"].items():
        if b["exit_code"] == 0:
            headline = b["headline"]
        else:
            last = b.get("error", "").strip().splitlines()[-1:] or ["no output"]
            headline = f"**failed** (exit {b['exit_code']}): {last[0]}"
        headline = headline.replace("|", "\\|")
        lines.append(f"| {name}: {BENCHES[name].what} | {headline} | {b['wall_s']:.0f} | `{b['command']}` |")
    return "\n".join(lines) + "\n"


def earlier_entries(path: Path, quick: bool) -> dict[str, dict]:
    """The benchmark entries of an earlier all.json of the same kind (quick or full), each with the time
    it finished; {} when there is none (an unreadable one is reported: this run replaces it)."""
    if not path.is_file():
        return {}
    try:
        earlier = json.loads(path.read_text())
        if earlier.get("quick") != quick:
            return {}
        return {name: {"finished": earlier["finished"], **entry} for name, entry in earlier["benchmarks"].items()
                if name in BENCHES}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        print(f"warning: {shown_path(path)} is unreadable ({type(e).__name__}: {e}); its entries are not kept",
              file=sys.stderr)
        return {}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results_dir = Path(args.results_dir)
    if not results_dir.is_absolute():
        results_dir = ROOT / results_dir
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    benchmarks: dict[str, dict] = {}
    for name in args.only:
        bench = BENCHES[name]
        output = results_dir / f"{name}.json"
        rel_output = shown_path(output)
        extra = list(bench.quick) if args.quick else []
        cmd = [sys.executable, str(ROOT / "bench" / bench.script), *extra, "--output", str(output)]
        shown = shlex.join(["python", f"bench/{bench.script}", *extra, "--output", rel_output])
        print(f"== {name}: {shown}", flush=True)
        output.unlink(missing_ok=True)  # a stale file must not pass for this run's result
        code, wall, tail = run_bench(name, cmd, results_dir / "logs" / f"{name}.log")
        entry: dict = {"command": shown, "exit_code": code, "wall_s": round(wall, 1), "output": rel_output,
                       "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        if code == 0 and output.is_file():
            result = json.loads(output.read_text())
            entry["result"] = result
            try:
                entry["headline"] = bench.headline(result)
            except (KeyError, TypeError, ValueError) as e:
                entry["headline"] = f"(no headline: {type(e).__name__} {e})"
        else:
            if code == 0:
                entry["exit_code"] = code = 1
                tail += f"\nno result file {rel_output}"
            entry["error"] = tail
        benchmarks[name] = entry
        print(f"== {name}: {'ok' if code == 0 else f'FAILED (exit {code})'} in {wall:.0f} s", flush=True)

    report = {"quick": args.quick, "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
              "machine": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
              "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
              "wall_s": round(time.perf_counter() - started, 1), "benchmarks": benchmarks}
    kept = {n: e for n, e in earlier_entries(results_dir / "all.json", args.quick).items() if n not in benchmarks}
    if kept:
        report["benchmarks"] = {n: benchmarks.get(n) or kept[n] for n in BENCHES if n in benchmarks or n in kept}
        report["kept_from_earlier"] = sorted(kept, key=list(BENCHES).index)
    markdown = summary_markdown(report)
    atomic_write_json(results_dir / "all.json", report)
    atomic_write_text(results_dir / "summary.md", markdown)
    print("\n" + markdown)
    print(f"wrote {shown_path(results_dir / 'all.json')} and {shown_path(results_dir / 'summary.md')}")
    return 0 if all(b["exit_code"] == 0 for b in benchmarks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
