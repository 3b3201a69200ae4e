"""The end-to-end demo on a generated LibriSpeech-layout corpus (called by scripts/run_demo.sh).

Usage:
    python utils/run_demo.py [--quick] [--work_dir demo_work] [--from STAGE] [--jobs N]

Stages: corpus → convert → mindrecord → loader.  Every stage is cached by the stage itself
(generated chapters, converted wavs and MindRecord shards are reused when their inputs are
unchanged), so a second run is quick; ``--from STAGE`` forces that stage and the later ones to redo
their work.  Writes ``<work_dir>/summary.json`` (per stage: seconds and artifacts) and prints a
table.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.config import load_config  # noqa: E402
from src.data.librispeech import convert_librispeech  # noqa: E402
from src.data.manifest import read_manifest  # noqa: E402
from src.data.mindrecord import write_mindrecord  # noqa: E402
from src.data.synthetic import make_corpus  # noqa: E402
from src.fileio import atomic_write_json  # noqa: E402
from src.log import setup_logging  # noqa: E402
from src.text.labels import load_labels  # noqa: E402

log = logging.getLogger("demo")

STAGES = ("corpus", "convert", "mindrecord", "loader")
SPLITS = {"train": "train-clean", "dev": "dev-clean", "test": "test-clean"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny corpus, a few minutes end to end")
    p.add_argument("--work_dir", default="demo_work")
    p.add_argument("--from", dest="from_stage", choices=STAGES, default=None, help="redo this stage and later ones")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--config", default=None, help="YAML config (default: built-in defaults)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    return p.parse_args(argv)


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.work_dir).resolve()
        self.config = load_config(args.config, args.set)
        self.summary: dict = {"mode": "quick" if args.quick else "full", "work_dir": str(self.work),
                              "stages": {}, "inference": {}}

    def _fresh(self, stage: str, *paths: Path) -> None:
        """With --from, remove the cached outputs of this stage and the later ones."""
        f = self.args.from_stage
        if f and STAGES.index(stage) >= STAGES.index(f):
            for p in paths:
                shutil.rmtree(p, ignore_errors=True)

    def run_stage(self, name: str, fn: Callable[[], list[str]]) -> None:
        log.info("=== stage %s", name)
        start = time.perf_counter()
        artifacts = fn()
        self.summary["stages"][name] = {"seconds": round(time.perf_counter() - start, 2), "artifacts": artifacts}
        atomic_write_json(self.work / "summary.json", self.summary)

    def corpus(self) -> list[str]:
        out = self.work / "corpus"
        self._fresh("corpus", out)
        root = make_corpus(out, preset="tiny" if self.args.quick else "demo", jobs=self.args.jobs, progress=True)
        self.librispeech = root
        return [str(root)]

    def convert(self) -> list[str]:
        data = self.work / "data"
        self._fresh("convert", data)
        out = []
        for split, subset in SPLITS.items():
            manifest = data / f"{subset}.json"
            report = convert_librispeech(self.librispeech / subset, data / f"{subset}-wav", manifest,
                                         parallel=self.args.jobs)
            log.info("%s: %s", subset, report.summary())
            out.append(str(manifest))
        return out

    def mindrecord(self) -> list[str]:
        root = self.work / "mindrecord"
        self._fresh("mindrecord", root)
        out, labels = [], load_labels(self.config.labels_path)
        for split, subset in SPLITS.items():
            utts = read_manifest(self.work / "data" / f"{subset}.json")
            shards = 4 if split == "train" and len(utts) >= 400 else 1
            index = write_mindrecord(utts, root / split, shards, labels, feature_cfg=self.config.features,
                                     parallel=self.args.jobs)
            log.info("%s: %d records, %.2f h in %d shards", split, index["records"], index["hours"], shards)
            out.append(str(root / split))
        return out

    def loader(self) -> list[str]:
        """Read one training epoch through the real pipeline: proves shards, features and buckets."""
        from src.data.dataset import SpeechData
        data = SpeechData(self.work / "mindrecord" / "train", self.config, train=True)
        start, n_utts = time.perf_counter(), 0
        for feats, *_ in data.pipeline(0).create_tuple_iterator(num_epochs=1, output_numpy=True):
            n_utts += feats.shape[0]
        seconds = time.perf_counter() - start
        stats = {"batches": data.steps_per_epoch(), "utterances": n_utts, "shapes": data.shapes(),
                 "padding_overhead": round(data.padding_overhead(0), 4),
                 "utterances_per_second": round(n_utts / seconds, 1)}
        self.summary["loader"] = stats
        log.info("loader: %s", stats)
        return []

    def run(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        for name in STAGES:
            self.run_stage(name, getattr(self, name))
        self.print_table()

    def print_table(self) -> None:
        rows = [(name, f"{s['seconds']:.1f}", ", ".join(os.path.relpath(a, self.work) for a in s["artifacts"]) or "-")
                for name, s in self.summary["stages"].items()]
        width = max(len(r[2]) for r in rows)
        print(f"\n{'stage':<12}{'seconds':>9}  artifacts (under {self.work})")
        print("-" * (23 + width))
        for name, sec, arts in rows:
            print(f"{name:<12}{sec:>9}  {arts}")
        ld = self.summary.get("loader")
        if ld:
            print(f"\nloader: {ld['utterances']} utterances in {ld['batches']} batches, "
                  f"{len(ld['shapes'])} shapes, padding overhead {100 * ld['padding_overhead']:.1f} %, "
                  f"{ld['utterances_per_second']} utterances/s")
        print(f"summary: {self.work / 'summary.json'}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    Demo(args).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
