"""Benchmark of data preparation: LibriSpeech FLAC → wav + manifest → MindRecord, in audio-hours per wall-minute.

Usage:
    python bench/bench_convert.py [--speakers 30] [--utts_per_chapter 30] [--voices V] [--repeats 3]
                                  [--parallel 2] [--num_shards 2] [--work_dir DIR]
                                  [--output bench/results/adhoc/convert.json]

A corpus in LibriSpeech's layout (one subset, ``dev-clean``: ``--speakers`` speakers × 1 chapter ×
``--utts_per_chapter`` utterances; the defaults give about an hour of audio, so start-up costs matter
little) is generated once with utils/make_synthetic_corpus.py (demo preset's voices unless ``--voices``) and cached under
``--work_dir`` (default: <system temp>/jasper_bench_convert), keyed by its settings.  Every round then
runs, each into a fresh folder so nothing is reused from an earlier round:

    convert     utils/convert_librispeech.py --parallel P: FLAC → 16 kHz int16 wav + manifest JSON
    mindrecord  create_mindrecord.py --num_shards S --parallel P: manifest → MindRecord shards (PCM)

as the command-line tools a user runs, so each stage's wall time includes starting Python and
importing its libraries (a fixed cost of a second or two that weighs more on a small corpus than on
LibriSpeech).  Each tool also logs the seconds of its own work (after its module imports, 0.1 s
resolution); that is reported too, as ``tool_s`` (create_mindrecord.py's includes its worker
processes importing MindSpore's MindRecord writer).  Reported per stage: the median wall seconds over ``--repeats``
rounds, audio-hours converted per wall-minute (audio seconds from the manifest written, i.e. the
utterances actually converted), the same per minute of the tool's own time, and the real-time
multiple.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import adhoc_output  # noqa: E402
from src.fileio import atomic_write_json  # noqa: E402

SUBSET = "dev-clean"
STAGES = ("convert", "mindrecord")
# The closing log line of both tools ends with the seconds of their own work: "... in 12.3 s".
TOOL_SECONDS = re.compile(r" in ([0-9]+(?:\.[0-9]+)?) s\s*$")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--speakers", type=int, default=30, help="speakers of the generated subset")
    p.add_argument("--utts_per_chapter", type=int, default=30, help="utterances per speaker (one chapter each)")
    p.add_argument("--voices", default=None, help="make_synthetic_corpus.py --voices (default: the demo mix)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated corpus")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (each runs both stages)")
    p.add_argument("--parallel", type=int, default=os.cpu_count() or 1, help="worker processes of both tools")
    p.add_argument("--num_shards", type=int, default=2, help="MindRecord shards")
    p.add_argument("--work_dir", default=str(Path(tempfile.gettempdir()) / "jasper_bench_convert"),
                   help="cache of the generated corpus and scratch space for the rounds")
    p.add_argument("--output", default=adhoc_output("convert"), help="JSON result file")
    args = p.parse_args(argv)
    for name in ("speakers", "utts_per_chapter", "repeats", "parallel", "num_shards"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    return args


def significant(x: float, digits: int = 4) -> float:
    """``x`` rounded to ``digits`` significant digits (rates span orders of magnitude)."""
    return float(f"{x:.{digits}g}")


def tail(text: str, lines: int = 15) -> str:
    return "\n".join([line for line in text.splitlines() if not line.startswith("[WARN")][-lines:])


def run_tool(cmd: list[str], what: str) -> tuple[float, float | None]:
    """Run a command from the repository root; returns its wall seconds and the seconds its last log
    line reports (None without one); raises with its output's tail when it fails."""
    env = dict(os.environ, GLOG_v=os.environ.get("GLOG_v", "3"), PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                           f"{tail(proc.stdout + proc.stderr)}")
    reported = [float(m.group(1)) for line in (proc.stdout + proc.stderr).splitlines()
                if (m := TOOL_SECONDS.search(line))]
    return seconds, (reported[-1] if reported else None)


def make_corpus(args: argparse.Namespace, work: Path) -> tuple[Path, dict, float]:
    """The cached corpus subset folder, its generator stats and the seconds spent making it (0 if cached)."""
    key = f"{args.speakers}x{args.utts_per_chapter}-seed{args.seed}"
    if args.voices:
        key += "-" + hashlib.sha1(args.voices.encode()).hexdigest()[:8]
    out = work / f"corpus-{key}"
    meta_path = out / "LibriSpeech" / "corpus.json"

    def complete() -> bool:
        try:
            return bool(json.loads(meta_path.read_text()).get("complete"))
        except (OSError, ValueError):
            return False

    seconds = 0.0
    if not complete():
        cmd = [sys.executable, str(ROOT / "utils" / "make_synthetic_corpus.py"), "--output_dir", str(out),
               "--preset", "demo", "--subsets", SUBSET, "--speakers", str(args.speakers),
               "--chapters_per_speaker", "1", "--utts_per_chapter", str(args.utts_per_chapter),
               "--seed", str(args.seed), "--jobs", str(args.parallel), "--no_progress"]
        if args.voices:
            cmd += ["--voices", args.voices]
        print(f"generating the corpus into {out} ...", flush=True)
        seconds = run_tool(cmd, "make_synthetic_corpus.py")[0]
    meta = json.loads(meta_path.read_text())
    return out / "LibriSpeech" / SUBSET, meta.get("stats", {}).get(SUBSET, {}), seconds


def manifest_audio_seconds(manifest: Path) -> tuple[int, float]:
    entries = json.loads(manifest.read_text())
    return len(entries), float(sum(e["original_duration"] for e in entries))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(args.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    corpus, corpus_stats, generate_s = make_corpus(args, work)
    flac_files = sorted(corpus.rglob("*.flac"))
    flac_mb = sum(f.stat().st_size for f in flac_files) / 2**20

    load_before = os.getloadavg()[0]
    scratch = work / f"round-{os.getpid()}"
    times: dict[str, list[float]] = {s: [] for s in STAGES}
    tool_times: dict[str, list[float | None]] = {s: [] for s in STAGES}
    utterances, audio_seconds, wav_mb, mindrecord_mb = 0, 0.0, 0.0, 0.0
    try:
        for round_index in range(args.repeats):
            shutil.rmtree(scratch, ignore_errors=True)
            manifest, wav_dir, mr_dir = scratch / f"{SUBSET}.json", scratch / f"{SUBSET}-wav", scratch / "mindrecord"
            commands = {
                "convert": [sys.executable, str(ROOT / "utils" / "convert_librispeech.py"), "--input_dir", str(corpus),
                            "--dest_dir", str(wav_dir), "--output_json", str(manifest),
                            "--parallel", str(args.parallel), "--no_progress"],
                "mindrecord": [sys.executable, str(ROOT / "create_mindrecord.py"), "--manifest", str(manifest),
                               "--output_dir", str(mr_dir), "--num_shards", str(args.num_shards),
                               "--parallel", str(args.parallel), "--no_progress"]}
            for stage in STAGES:  # in pipeline order: the second consumes the first's manifest
                wall, own = run_tool(commands[stage], Path(commands[stage][1]).name)
                times[stage].append(wall)
                tool_times[stage].append(own)
            utterances, audio_seconds = manifest_audio_seconds(manifest)
            wav_mb = sum(f.stat().st_size for f in wav_dir.rglob("*.wav")) / 2**20
            mindrecord_mb = sum(f.stat().st_size for f in mr_dir.rglob("*") if f.is_file()) / 2**20
            print(f"round {round_index + 1}/{args.repeats}: " + ", ".join(
                f"{s} {times[s][-1]:.2f} s (tool's own {tool_times[s][-1]} s)" for s in STAGES), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if audio_seconds <= 0:
        raise SystemExit("the conversion produced no audio")

    hours = audio_seconds / 3600.0
    stages = {}
    for stage in STAGES + ("total",):
        parts = STAGES if stage == "total" else (stage,)
        per_round = [sum(times[s][i] for s in parts) for i in range(args.repeats)]
        own = [None if any(tool_times[s][i] is None for s in parts) else sum(tool_times[s][i] for s in parts)
               for i in range(args.repeats)]
        wall = statistics.median(per_round)
        known = [t for t in own if t is not None]
        own_median = statistics.median(known) if known else None
        stages[stage] = {"wall_s_median": round(wall, 3), "wall_s_min": round(min(per_round), 3),
                         "wall_s_max": round(max(per_round), 3),
                         "audio_hours_per_minute": significant(hours / (wall / 60.0)),
                         "x_real_time": round(audio_seconds / wall, 1),
                         "tool_s_median": own_median,
                         # the tools round to 0.1 s: no rate from a time that rounded to 0
                         "audio_hours_per_tool_minute": (significant(hours / (own_median / 60.0))
                                                         if own_median else None),
                         "per_round_s": [round(t, 3) for t in per_round], "per_round_tool_s": own}
    result = {
        "benchmark": "data preparation: convert_librispeech.py (FLAC → wav + manifest) and create_mindrecord.py",
        "corpus": {"path": str(corpus), "speakers": args.speakers, "utts_per_chapter": args.utts_per_chapter,
                   "voices": args.voices or "demo preset", "seed": args.seed, "generator_stats": corpus_stats,
                   "generate_s": round(generate_s, 1), "flac_files": len(flac_files), "flac_mb": round(flac_mb, 2)},
        "utterances": utterances, "audio_seconds": round(audio_seconds, 2), "wav_mb": round(wav_mb, 2),
        "mindrecord_mb": round(mindrecord_mb, 2), "repeats": args.repeats, "parallel": args.parallel,
        "num_shards": args.num_shards, "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "python": platform.python_version(),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "stages": stages,
    }
    print(f"\nData preparation of {utterances} utterances, {audio_seconds / 60:.1f} min of audio "
          f"({len(flac_files)} FLAC files, {flac_mb:.1f} MB), --parallel {args.parallel}, "
          f"median of {args.repeats} round(s); wall time of the command-line tool, Python start-up included")
    print("| stage | wall s | audio-hours / wall-minute | × real time | tool's own s | audio-hours / tool-minute |")
    print("|---|---:|---:|---:|---:|---:|")
    names = {"convert": "convert_librispeech.py (FLAC → wav + manifest)",
             "mindrecord": f"create_mindrecord.py ({args.num_shards} shards, PCM)", "total": "both"}
    for stage, s in stages.items():
        own = "—" if s["tool_s_median"] is None else f"{s['tool_s_median']:.1f}"
        own_rate = "—" if s["audio_hours_per_tool_minute"] is None else f"{s['audio_hours_per_tool_minute']:.3f}"
        print(f"| {names[stage]} | {s['wall_s_median']:.2f} | {s['audio_hours_per_minute']:.3f} | "
              f"{s['x_real_time']:.0f} | {own} | {own_rate} |")
    atomic_write_json(args.output, result)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
