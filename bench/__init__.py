"""Benchmarks (run them all with ``python bench/run_all.py``); shared command-line helpers."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterable

ROOT = Path(__file__).resolve().parents[1]
# Short names accepted by --presets
PRESET_ALIASES = {"tiny": "jasper_tiny", "5x3": "jasper5x3", "10x5dr": "jasper10x5dr"}


def preset_path(name: str) -> Path:
    """A preset name (``src/configs/<name>.yaml``) or the path of a YAML config of one's own."""
    return Path(name) if name.endswith((".yaml", ".yml")) else ROOT / "src" / "configs" / f"{name}.yaml"


def preset_list(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """Comma-separated preset names (aliases allowed) or YAML paths; an unknown one is a usage error."""
    names = [PRESET_ALIASES.get(n.strip(), n.strip()) for n in text.split(",") if n.strip()]
    for name in names:
        if not preset_path(name).is_file():
            parser.error(f"--presets: no {preset_path(name)}")
    return names


def choice_list(parser: argparse.ArgumentParser, option: str, text: str, allowed: Iterable[str]) -> list[str]:
    """Comma-separated names, each one of ``allowed``; at least one."""
    names, allowed = [n.strip() for n in text.split(",") if n.strip()], tuple(allowed)
    for n in names:
        if n not in allowed:
            parser.error(f"{option}: unknown {n!r} (choose from {', '.join(allowed)})")
    if not names:
        parser.error(f"{option}: name at least one")
    return names


def machine_info(load_before: float) -> dict:
    """Where a benchmark ran: cores, architecture, Python, and the 1-minute load average before and
    after (the machines are shared; a high load flags a noisy result)."""
    import os
    import platform

    return {"cpu_count": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
            "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


# Where a benchmark run on its own writes (git-ignored): bench/run_all.py alone writes bench/results/,
# so a one-off comparison never replaces the results the README quotes.
ADHOC_RESULTS = "bench/results/adhoc"


def adhoc_output(name: str) -> str:
    return f"{ADHOC_RESULTS}/{name}.json"


def write_result(path: str | Path, result: dict) -> None:
    """Write a benchmark's JSON atomically and say where."""
    from src.fileio import atomic_write_json

    atomic_write_json(path, result)
    print(f"wrote {path}")


def run_worker(cmd: list[str], result_path: Path, what: str) -> dict:
    """Run a benchmark worker process (MindSpore logging errors only), then read the JSON it wrote to
    ``result_path``; the 1-minute load average before it started is added (the machines are shared)."""
    import json
    import os
    import subprocess

    env = dict(os.environ, GLOG_v=os.environ.get("GLOG_v", "3"))
    load = os.getloadavg()[0]
    with open(result_path.with_name("stderr.txt"), "w+") as err:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stderr=err, text=True)
        err.seek(0)
        stderr = err.read()
    if proc.returncode != 0 or not result_path.is_file():
        from bench.bench_infer import tail
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{tail(stderr, 30)}")
    return {**json.loads(result_path.read_text()), "load_1min_before": round(load, 2)}

