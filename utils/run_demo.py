"""The end-to-end demo of a model family on a corpus the project generates (called by scripts/run_demo.sh).

Usage:
    python utils/run_demo.py [--model jasper|deepspeech2|dscnn] [--quick] [--work_dir DIR] [--from STAGE] [--jobs N]

``--model jasper`` (default, work dir ``demo_work``) and ``--model deepspeech2`` (``demo_work_deepspeech2``)
walk the speech-recognition path on a generated LibriSpeech-layout corpus; ``--model dscnn``
(``demo_work_dscnn``) walks the keyword-spotting path on a generated Speech-Commands-layout corpus
(utils/kws_demo.py).  Speech-recognition stages: corpus → convert → mindrecord → train → eval → export → eval_mindir → infer_310 → lm → probe.
Each stage after ``mindrecord`` runs the project's own command line (printed, so it can be re-run
by hand).  Every stage keeps its outputs and reuses them when they are complete (generated chapters,
wavs, shards, a finished training run, exported files), so a second run is quick; ``--from STAGE``
redoes that stage and the later ones.  Writes ``<work_dir>/summary.json`` — per stage its seconds
and artifacts, per inference path (checkpoint, mindir, 310) and split (dev, test) its WER and CER —
and prints a table.  The last stage, ``lm``, builds a 3-gram ARPA from the training transcripts, tunes
beam search's LM weights on dev (tune_lm.py) and scores the test set with them (summary key ``lm``,
next to greedy decoding of the same checkpoint); /usr/share/dict/words, when present, is the lexicon
that lets the search spell words the training transcripts never had.  ``probe`` re-renders training
utterances as they were, with held-out voices, and with the pitch, tempo or channel changed, plus
held-out texts in training voices (utils/probe_corpus.py), and scores the checkpoint on each (summary
key ``probe``): how much of the test WER is new voices, how much new text.
"""
from __future__ import annotations

import argparse
import collections
import functools
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from src.data.librispeech import convert_librispeech  # noqa: E402
from src.data.manifest import read_manifest  # noqa: E402
from utils.corpus.probe import ALL_PROBE_SETS, load_plan  # noqa: E402
from src.config import Config, load_config  # noqa: E402
from utils.corpus.synthetic import make_corpus, resolve_config  # noqa: E402
from src.fileio import atomic_write_json  # noqa: E402
from src.log import setup_logging  # noqa: E402
from src.metrics.breakdown import read_report, wer_by_group, word_accuracy_by_frequency  # noqa: E402
from src.training.trainer import RUN_SUMMARY  # noqa: E402

log = logging.getLogger("demo")

STAGES = ("corpus", "convert", "mindrecord", "train", "eval", "export", "eval_mindir", "infer_310", "lm", "probe")
SPLITS = {"train": "train-clean", "dev": "dev-clean", "test": "test-clean"}
# --model → (training preset, default work dir)
MODELS = {"jasper": ("src/configs/jasper_tiny.yaml", "demo_work"),
          "deepspeech2": ("src/configs/deepspeech2_tiny.yaml", "demo_work_deepspeech2"),
          "dscnn": ("src/configs/dscnn_s.yaml", "demo_work_dscnn")}
LEXICON = Path("/usr/share/dict/words")  # wamerican: spelling vocabulary for beam search with the LM
LM_ORDER = 3
PROBE_UTTERANCES = {"full": 40, "quick": 4}  # per probe set
# --quick: the tiny corpus and a handful of steps; proves every stage runs and agrees, not accuracy.
QUICK_SETTINGS = ["data.batch_size=2", "train.max_steps=12", "train.log_every=4", "train.eval_every=12",
                  "train.checkpoint_every=12", "optim.warmup_steps=4"]


class StageError(RuntimeError):
    """A stage's command failed; its output is in the stage log."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(MODELS), default="jasper", help="the model family to demonstrate")
    p.add_argument("--quick", action="store_true", help="tiny corpus and a few steps: every stage in minutes")
    p.add_argument("--work_dir", default=None, help="default: demo_work, demo_work_deepspeech2 or demo_work_dscnn")
    p.add_argument("--from", dest="from_stage", default=None, help="redo this stage and later ones")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--config", default=None, help="training preset (default: the family's CPU demo preset)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = p.parse_args(argv)
    preset, work = MODELS[args.model]
    args.config = args.config or str(REPO / preset)
    args.work_dir = args.work_dir or work
    return args


class Demo:
    stages = STAGES

    def __init__(self, args: argparse.Namespace) -> None:
        if args.from_stage is not None and args.from_stage not in self.stages:
            raise SystemExit(f"--from must be one of {', '.join(self.stages)}")
        self.args = args
        self.work = Path(args.work_dir).resolve()
        self.overrides = (QUICK_SETTINGS if args.quick else []) + list(args.set)
        self.summary: dict = {"model": args.model, "mode": "quick" if args.quick else "full", "work_dir": str(self.work),
                              "config": args.config, "overrides": self.overrides, "stages": {}, "inference": {}}
        self.librispeech = self.work / "corpus" / "LibriSpeech"
        self.data, self.mindrecord = self.work / "data", self.work / "mindrecord"
        self.run_dir, self.export_dir = self.work / "train", self.work / "export"

    # --- helpers ---------------------------------------------------------------------------------
    def redo(self, stage: str) -> bool:
        f = self.args.from_stage
        return bool(f) and self.stages.index(stage) >= self.stages.index(f)

    def redo_from(self, stage: str, why: str) -> None:
        """Outputs from ``stage`` on are stale (``why``): redo that stage and every later one."""
        if not self.redo(stage):
            log.warning("%s: redoing stage %s and the later ones", why, stage)
            self.args.from_stage = stage

    def fresh(self, stage: str, *paths: Path) -> None:
        """With --from, remove the cached outputs of this stage (and, by the caller, the later ones)."""
        if self.redo(stage):
            for p in paths:
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)

    def command(self, stage: str, args: list[str]) -> None:
        """Run one of the project's command lines; its output goes to logs/<stage>.log."""
        cmd = [str(c) for c in ([sys.executable, *args] if str(args[0]).endswith(".py") or args[0] == "-m" else args)]
        printable = shlex.join(["python" if c == sys.executable else c for c in cmd])
        log.info("$ %s", printable)
        log_path = self.work / "logs" / f"{stage}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as out:
            out.write(f"$ {printable}\n")
            out.flush()
            result = subprocess.run(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            tail = log_path.read_text(errors="replace").splitlines()[-15:]
            raise StageError(f"stage {stage} failed (exit {result.returncode}); last lines of {log_path}:\n"
                             + "\n".join(tail))

    def run_stage(self, name: str, fn: Callable[[], list[Path]]) -> None:
        log.info("=== stage %s", name)
        start = time.perf_counter()
        artifacts = fn()
        self.summary["stages"][name] = {"seconds": round(time.perf_counter() - start, 2),
                                        "artifacts": [str(a) for a in artifacts]}
        atomic_write_json(self.work / "summary.json", self.summary)

    def manifest(self, split: str) -> Path:
        return self.data / f"{SPLITS[split]}.json"

    @staticmethod
    def split_rates(metrics_file: Path) -> dict[str, dict]:
        """{split: {wer, cer, utterances}} of the dev and test sets in an eval.py metrics.json."""
        metrics = json.loads(metrics_file.read_text())
        rates = {}
        for split in ("dev", "test"):
            m = metrics.get(SPLITS[split]) or metrics.get(split)
            if m:
                rates[split] = {k: m[k] for k in ("wer", "cer", "utterances")}
        return rates

    def record(self, path: str, metrics_file: Path) -> None:
        """Copy WER/CER of the dev and test sets from a metrics.json into the summary."""
        self.summary["inference"].setdefault(path, {}).update(self.split_rates(metrics_file))

    # --- stages ----------------------------------------------------------------------------------
    def corpus(self) -> list[Path]:
        preset = "tiny" if self.args.quick else "demo"
        meta = self.librispeech / "corpus.json"
        # A corpus made by another version of the preset: it and everything made from it are stale.
        if meta.is_file() and json.loads(meta.read_text()).get("config") != resolve_config(preset).to_json():
            self.redo_from("corpus", f"{meta} records other settings than the {preset} preset's")
        self.fresh("corpus", self.work / "corpus")
        return [make_corpus(self.work / "corpus", preset=preset, jobs=self.args.jobs, progress=True)]

    def convert(self) -> list[Path]:
        self.fresh("convert", self.data)
        for split, subset in SPLITS.items():
            report = convert_librispeech(self.librispeech / subset, self.data / f"{subset}-wav",
                                         self.manifest(split), parallel=self.args.jobs)
            log.info("%s: %s", subset, report.summary())
        return [self.manifest(s) for s in SPLITS]

    def mindrecord_stage(self) -> list[Path]:
        self.fresh("mindrecord", self.mindrecord)
        for split in SPLITS:
            shards = 4 if len(read_manifest(self.manifest(split))) >= 400 else 1
            self.command("mindrecord", ["create_mindrecord.py", "--manifest", self.manifest(split), "--output_dir",
                                        self.mindrecord / split, "--num_shards", str(shards), *self.config_args(),
                                        "--no_progress"])
        return [self.mindrecord / s for s in SPLITS]

    @functools.cached_property
    def config(self) -> Config:
        """The training settings asked for: the preset with the overrides."""
        return load_config(self.args.config, self.overrides)

    def checkpoint_args(self) -> list[str]:
        """The trained model for eval, export, LM tuning and probes: its EMA weights when training kept them."""
        return ["--checkpoint", self.checkpoint, *(["--ema"] if self.config.train.ema > 0 else [])]

    def config_args(self) -> list[str]:
        return ["--config", self.args.config] + [a for o in self.overrides for a in ("--set", o)]

    def check_training_settings(self) -> None:
        """A run made with other settings (an older preset, other --set) is not reused or resumed."""
        saved = self.run_dir / "checkpoints" / "config.yaml"
        if saved.is_file() and load_config(saved) != self.config:
            self.redo_from("train", f"{saved} differs from the training settings asked for")

    def train(self) -> list[Path]:
        self.check_training_settings()
        self.fresh("train", self.run_dir)
        finished = self.run_dir / "checkpoints" / RUN_SUMMARY
        if finished.is_file():  # a run that ended (all steps, or the time budget) is reused as it is
            log.info("reusing the finished run in %s (%s)", self.run_dir,
                     json.loads(finished.read_text())["stopped_by"])
        else:  # --resume: an interrupted run continues where it stopped
            self.command("train", ["train.py", *self.config_args(), "--train_data", self.mindrecord / "train",
                                   "--dev_data", self.mindrecord / "dev", "--output_dir", self.run_dir, "--resume",
                                   "--no_progress"])
        from src.training.checkpoint import list_checkpoints
        self.checkpoint = list_checkpoints(self.run_dir / "checkpoints")[-1]
        self.summary["checkpoint"] = str(self.checkpoint)
        log_csv = self.run_dir / "checkpoints" / "train_log.csv"
        return [self.checkpoint, log_csv, log_csv.with_suffix(".png")]

    def eval(self) -> list[Path]:
        out = self.work / "eval_checkpoint"
        self.fresh("eval", out)
        self.command("eval", ["eval.py", *self.config_args(), *self.checkpoint_args(), "--manifest",
                              self.manifest("dev"), self.manifest("test"), "--output_dir", out, "--no_progress"])
        self.record("checkpoint", out / "metrics.json")
        self.summary["breakdown"] = self.breakdown(out)
        return [out / "metrics.json"]

    def breakdown(self, eval_dir: Path) -> dict:
        """Per split: WER per synthesizer of the speakers, and word accuracy by how often a word occurs
        in the training transcripts (the checkpoint's greedy transcripts in ``eval_dir``)."""
        engine = {str(s.speaker): s.voice.engine for s in load_plan(self.work / "corpus").speakers}
        counts, out = self.train_word_counts(), {}
        for split in ("dev", "test"):
            rows = read_report(eval_dir / f"{SPLITS[split]}.tsv")
            out[split] = {"by_voice": wer_by_group(rows, lambda utt: engine.get(utt.split("-")[0], "?")),
                          "by_training_count": word_accuracy_by_frequency(rows, counts)}
        return out

    def train_word_counts(self) -> collections.Counter:
        return collections.Counter(w for u in read_manifest(self.manifest("train")) for w in u.transcript.split())

    def export(self) -> list[Path]:
        self.fresh("export", self.export_dir)
        # One fixed input length that fits the longest dev/test utterance (rounded up to 16 frames).
        from src.audio.features import frame_count, padded_frames
        longest = max(u.num_samples for s in ("dev", "test") for u in read_manifest(self.manifest(s)))
        fc = self.config.features
        self.n_frames = int(padded_frames(frame_count(longest, fc), fc.pad_to))
        files = []
        for fmt in ("MINDIR", "ONNX"):
            self.command("export", ["export.py", *self.config_args(), *self.checkpoint_args(),
                                    "--file_name", self.export_stem, "--file_format", fmt,
                                    "--n_frames", str(self.n_frames), "--batch_size", "1"])
            files.append(self.export_stem.with_suffix(f".{fmt.lower()}"))
        return files

    @property
    def export_stem(self) -> Path:
        return self.export_dir / self.config.model.name

    def eval_mindir(self) -> list[Path]:
        out = self.work / "eval_mindir"
        self.fresh("eval_mindir", out)
        self.command("eval_mindir", ["eval.py", "--mindir", self.export_stem.with_suffix(".mindir"),
                                     "--manifest", self.manifest("dev"), self.manifest("test"), "--output_dir", out,
                                     "--no_progress"])
        self.record("mindir", out / "metrics.json")
        return [out / "metrics.json"]

    def infer_310(self) -> list[Path]:
        out = []
        for split in ("dev", "test"):
            work = self.work / "infer_310" / split
            self.fresh("infer_310", work)
            # The model's sidecar says how to preprocess; the training config passed too is checked against it.
            self.command("infer_310", ["bash", "scripts/run_infer_310.sh", self.export_stem.with_suffix(".mindir"), "y",
                                       "0", "--device_target", "CPU", "--manifest", self.manifest(split),
                                       "--work_dir", work, *self.config_args()])
            metrics = json.loads((work / "result" / "metrics.json").read_text())
            self.summary["inference"].setdefault("310", {})[split] = {
                k: next(iter(metrics.values()))[k] for k in ("wer", "cer", "utterances")}
            out.append(work / "result" / "metrics.json")
        return out

    def lm(self) -> list[Path]:
        out = self.work / "lm"
        self.fresh("lm", out)
        arpa = out / f"train-{LM_ORDER}gram.arpa"
        self.command("lm", ["-m", "src.decoding.arpa", "--input", self.manifest("train"), "--output", arpa,
                            "--order", str(LM_ORDER)])
        lexicon = ["--lexicon", LEXICON] if LEXICON.is_file() else []
        if not lexicon:
            log.warning("%s is missing (Debian package wamerican): beam search can only spell the %d-gram's "
                        "words, so test words unseen in training cannot be recognised", LEXICON, LM_ORDER)
        grid = ["--alphas", "0.25", "0.5", "1", "--betas", "0", "1", "2", "--refine", "1"] if self.args.quick else []
        self.command("lm", ["tune_lm.py", *self.config_args(), *self.checkpoint_args(), "--manifest",
                            self.manifest("dev"), "--lm_path", arpa, *lexicon, *grid, "--output_dir", out / "tuning",
                            "--no_progress"])
        tuning = json.loads((out / "tuning" / "result.json").read_text())
        best = tuning["best"]
        # dev was scored with the best pair during tuning; only the test set is decoded again
        self.command("lm", ["eval.py", *self.config_args(), *self.checkpoint_args(), "--manifest",
                            self.manifest("test"), "--decoder", "beam", "--lm_path", arpa, *lexicon,
                            "--alpha", str(best["alpha"]), "--beta", str(best["beta"]),
                            "--output_dir", out / "eval", "--no_progress"])
        self.summary["lm"] = {"lm_path": str(arpa), "lexicon": str(LEXICON) if lexicon else None,
                              "alpha": best["alpha"], "beta": best["beta"],
                              "dev": {"wer": best["wer"], "cer": best["cer"], "utterances": tuning["utterances"]},
                              **self.split_rates(out / "eval" / "metrics.json")}
        return [arpa, out / "tuning" / "result.json", out / "eval" / "metrics.json"]

    def probe(self) -> list[Path]:
        out = self.work / "probe"
        self.fresh("probe", out)
        self.command("probe", ["utils/probe_corpus.py", "--corpus_dir", self.work / "corpus", "--output_dir", out,
                               "--utterances", str(PROBE_UTTERANCES[self.summary["mode"]]),
                               "--jobs", str(self.args.jobs), "--no_progress"])
        sets = [s for s in ALL_PROBE_SETS if (out / f"{s}.json").is_file()]   # new_engine needs the neural voices
        self.command("probe", ["eval.py", *self.config_args(), *self.checkpoint_args(), "--manifest",
                               *[out / f"{s}.json" for s in sets], "--output_dir", out / "eval", "--no_progress"])
        metrics = json.loads((out / "eval" / "metrics.json").read_text())
        self.summary["probe"] = {s: {k: metrics[s][k] for k in ("wer", "cer", "utterances")} for s in sets}
        # e.g. how many of open_text's words training never had, and how many of them came out right
        counts = self.train_word_counts()
        self.summary["breakdown"]["probe"] = {
            s: word_accuracy_by_frequency(read_report(out / "eval" / f"{s}.tsv"), counts) for s in sets}
        return [out / "eval" / "metrics.json"]

    def run(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        for name in self.stages:
            self.run_stage(name, getattr(self, "mindrecord_stage" if name == "mindrecord" else name))
        self.summary["agree"] = self.paths_agree()
        atomic_write_json(self.work / "summary.json", self.summary)
        self.print_table()

    def paths_agree(self) -> bool:
        """The checkpoint, the exported MindIR and the 310 runner must give the same WER per split."""
        inf = self.summary["inference"]
        return all(len({round(inf[p][s]["wer"], 6) for p in inf if s in inf[p]}) == 1 for s in ("dev", "test"))

    def print_stages(self) -> None:
        """Each stage's seconds and artifacts."""
        rows = [(name, f"{s['seconds']:.1f}", ", ".join(os.path.relpath(a, self.work) for a in s["artifacts"]) or "-")
                for name, s in self.summary["stages"].items()]
        print(f"\n{'stage':<13}{'seconds':>9}  artifacts (under {self.work})")
        print("-" * 100)
        for name, sec, arts in rows:
            print(f"{name:<13}{sec:>9}  {arts}")

    def print_table(self) -> None:
        self.print_stages()
        print(f"\n{'inference path':<16}{'dev WER':>9}{'dev CER':>9}{'test WER':>10}{'test CER':>10}")
        print("-" * 54)
        for path, splits in self.summary["inference"].items():
            dev, test = splits.get("dev", {}), splits.get("test", {})
            print(f"{path:<16}{dev.get('wer', float('nan')):>8.2f}%{dev.get('cer', float('nan')):>8.2f}%"
                  f"{test.get('wer', float('nan')):>9.2f}%{test.get('cer', float('nan')):>9.2f}%")
        if "lm" in self.summary:
            lm = self.summary["lm"]
            print(f"{'beam + LM':<16}{lm['dev']['wer']:>8.2f}%{lm['dev']['cer']:>8.2f}%{lm['test']['wer']:>9.2f}%"
                  f"{lm['test']['cer']:>9.2f}%   (checkpoint; {LM_ORDER}-gram of the training transcripts, "
                  f"alpha {lm['alpha']:g}, beta {lm['beta']:g} tuned on dev)")
        if "breakdown" in self.summary:
            test = self.summary["breakdown"]["test"]
            print("\ntest WER by voice (checkpoint, greedy): "
                  + "   ".join(f"{v} {r['wer']:.1f}% ({r['words']} words)" for v, r in test["by_voice"].items()))
            print("test words right, by their count in the training transcripts: "
                  + "   ".join(f"{b}: {r['correct']}% of {r['words']}" for b, r in test["by_training_count"].items()))
        if "probe" in self.summary:
            print("\nprobe sets (checkpoint, greedy; utils/probe_corpus.py): WER % / CER %")
            print("  " + "   ".join(f"{s} {r['wer']:.1f}/{r['cer']:.1f}" for s, r in self.summary["probe"].items()))
        print(f"\nthe three inference paths {'agree' if self.summary['agree'] else 'DISAGREE'}; "
              f"summary: {self.work / 'summary.json'}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    try:
        if args.model == "dscnn":
            from utils.kws_demo import KwsDemo
            KwsDemo(args).run()
        else:
            Demo(args).run()
    except StageError as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
