"""The keyword-spotting demo (``bash scripts/run_demo.sh --model dscnn``): DS-CNN S on a Speech-Commands-layout
corpus generated from the project's voices.

Stages: corpus → convert → mindrecord → train → eval → export → eval_mindir → infer_310 → streaming → arm.
``streaming`` builds a long recording of test-split keywords at known times over background noise and
scores transcribe.py's detections as TensorFlow's test_streaming_accuracy does; ``arm`` converts ARM's
released DS-CNN S/M/L graphs (trained on the real Speech Commands) with tf2mind.py and scores them on the
same generated test split.  ``summary.json`` holds per stage its seconds and artifacts, per inference path
(checkpoint, mindir, 310) and split (dev = validation, test) its accuracy, the streaming counts and the
ARM rows.  Accuracies are on generated speech: not comparable with results on the real corpus.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from utils.run_demo import REPO, Demo

log = logging.getLogger("demo")

KWS_STAGES = ("corpus", "convert", "mindrecord", "train", "eval", "export", "eval_mindir", "infer_310", "streaming",
              "arm")
KWS_SPLITS = {"train": "train", "dev": "validation", "test": "test"}
# The demo's budget: 10 minutes of training on 2 cores (ARM's 30,000-step schedule, scaled to the steps that fit).
DEMO_SETTINGS = ["train.max_steps=1500", "optim.boundaries=[800,1200]", "train.max_minutes=10",
                 "train.eval_every=300", "train.checkpoint_every=300", "train.log_every=50"]
QUICK_SETTINGS = ["data.batch_size=8", "train.max_steps=12", "optim.boundaries=[6,9]", "train.log_every=4",
                  "train.eval_every=12", "train.checkpoint_every=12"]
ARM_MODELS = {"DS_CNN_S": "src/configs/dscnn_s.yaml", "DS_CNN_M": "src/configs/dscnn_m.yaml",
              "DS_CNN_L": "src/configs/dscnn_l.yaml"}
STREAM_KEYWORDS = {"full": 40, "quick": 6}


def arm_models_dir() -> Path | None:
    """Where ARM's frozen graphs are: $ARM_KWS_DIR, a copy beside the checkout, or the downloader's folder."""
    for d in (os.environ.get("ARM_KWS_DIR"), REPO.parent / "shared" / "pretrained" / "arm_kws",
              REPO / ".cache" / "arm_kws"):
        if d and (Path(d) / "DS_CNN_S.pb").is_file():
            return Path(d)
    return None


class KwsDemo(Demo):
    stages = KWS_STAGES

    def __init__(self, args) -> None:
        super().__init__(args)
        self.overrides = (QUICK_SETTINGS if args.quick else DEMO_SETTINGS) + list(args.set)
        self.summary["overrides"] = self.overrides
        self.corpus_dir = self.work / "corpus" / "speech_commands"

    def manifest(self, split: str) -> Path:
        return self.data / f"{KWS_SPLITS[split]}.json"

    @staticmethod
    def split_rates(metrics_file: Path) -> dict[str, dict]:
        metrics = json.loads(metrics_file.read_text())
        rates = {}
        for split, name in (("dev", "validation"), ("test", "test")):
            m = metrics.get(name) or metrics.get(split)
            if m:
                rates[split] = {"accuracy": m["accuracy"], "clips": m["clips"]}
        return rates

    # --- stages ----------------------------------------------------------------------------------
    def corpus(self) -> list[Path]:
        from utils.corpus.kws_corpus import make_kws_corpus

        self.fresh("corpus", self.work / "corpus")
        make_kws_corpus(self.corpus_dir, preset="quick" if self.args.quick else "demo", jobs=self.args.jobs,
                        force=self.redo("corpus"))
        return [self.corpus_dir]

    def convert(self) -> list[Path]:
        self.fresh("convert", self.data)
        self.command("convert", ["utils/convert_speech_commands.py", "--input_dir", self.corpus_dir, "--output_dir",
                                 self.data, "--no_progress"])
        return [self.manifest(s) for s in KWS_SPLITS]

    def mindrecord_stage(self) -> list[Path]:
        self.fresh("mindrecord", self.mindrecord)
        for split in KWS_SPLITS:
            self.command("mindrecord", ["create_mindrecord.py", "--manifest", self.manifest(split), "--output_dir",
                                        self.mindrecord / split, *self.config_args(), "--no_progress"])
        return [self.mindrecord / s for s in KWS_SPLITS]

    def eval(self) -> list[Path]:
        out = self.work / "eval_checkpoint"
        self.fresh("eval", out)
        self.command("eval", ["eval.py", *self.config_args(), *self.checkpoint_args(), "--manifest",
                              self.manifest("dev"), self.manifest("test"), "--output_dir", out, "--no_progress"])
        self.record("checkpoint", out / "metrics.json")
        self.summary["config"] = self.args.config
        return [out / "metrics.json", out / "test_confusion.png"]

    def export(self) -> list[Path]:
        self.fresh("export", self.export_dir)
        files = []
        for fmt in ("MINDIR", "ONNX"):
            self.command("export", ["export.py", *self.config_args(), *self.checkpoint_args(), "--file_name",
                                    self.export_stem, "--file_format", fmt, "--batch_size", "1"])
            files.append(self.export_stem.with_suffix(f".{fmt.lower()}"))
        return files

    def infer_310(self) -> list[Path]:
        out = []
        for split in ("dev", "test"):
            work = self.work / "infer_310" / split
            self.fresh("infer_310", work)
            self.command("infer_310", ["bash", "scripts/run_infer_310.sh", self.export_stem.with_suffix(".mindir"), "y",
                                       "0", "--device_target", "CPU", "--manifest", self.manifest(split),
                                       "--work_dir", work])
            metrics = json.loads((work / "result" / "metrics.json").read_text())
            m = next(iter(metrics.values()))
            self.summary["inference"].setdefault("310", {})[split] = {"accuracy": m["accuracy"], "clips": m["clips"]}
            out.append(work / "result" / "metrics.json")
        return out

    def streaming(self) -> list[Path]:
        """A long recording of test keywords at known times over background noise, through transcribe.py."""
        from src.audio.io import write_wav
        from src.data.speech_commands import load_clip, read_keyword_manifest
        from src.tasks.streaming import Detection, score_detections

        out = self.work / "streaming"
        self.fresh("streaming", out)
        out.mkdir(parents=True, exist_ok=True)
        clips = [c for c in read_keyword_manifest(self.manifest("test")) if c.label not in ("_silence_", "_unknown_")]
        rng = np.random.default_rng(7)
        picked = [clips[i] for i in rng.permutation(len(clips))[:STREAM_KEYWORDS[self.summary["mode"]]]]
        sr, gap = 16000, 2.0   # a keyword every ~3 s: more than the 1.5 s suppression apart
        noise_files = sorted((self.corpus_dir / "_background_noise_").glob("*.wav"))
        total = int(sr * (len(picked) * (1.0 + gap) + gap))
        recording = np.zeros(total, np.float32)
        if noise_files:
            from src.audio.io import load_audio
            noise = load_audio(noise_files[0])[0]
            reps = int(np.ceil(total / len(noise)))
            recording += 0.05 * np.tile(noise, reps)[:total] / (np.abs(noise).max() + 1e-9)
        truth = []
        for k, clip in enumerate(picked):
            start = gap + k * (1.0 + gap) + float(rng.uniform(-0.3, 0.3))
            s = int(start * sr)
            recording[s:s + sr] += load_clip(clip, sr)
            truth.append((start, clip.label))
        wav = out / "keywords.wav"
        write_wav(wav, np.clip(recording, -1, 1), sr)
        (out / "truth.tsv").write_text("".join(f"{t:.3f}\t{label}\n" for t, label in truth))
        log_path = out / "detections.tsv"
        (self.work / "logs" / "streaming.log").unlink(missing_ok=True)
        self.command("streaming", ["transcribe.py", *self.config_args(), *self.checkpoint_args(), wav])
        lines = [line.split("\t") for line in (self.work / "logs" / "streaming.log").read_text().splitlines()
                 if line.startswith(str(wav) + "\t")]
        detections = [Detection(float(t), label, float(score)) for _, t, label, score in lines]
        log_path.write_text("".join(f"{d.time_s:.2f}\t{d.label}\t{d.score:.4f}\n" for d in detections))
        score = score_detections(detections, truth)
        self.summary["streaming"] = {"recording_s": round(total / sr, 1), **score.as_dict()}
        return [wav, out / "truth.tsv", log_path]

    def arm(self) -> list[Path]:
        """ARM's released models (trained on the real Speech Commands) on the generated test split."""
        found = arm_models_dir()
        if found is None:
            log.warning("ARM's DS-CNN graphs not found (set ARM_KWS_DIR, or run utils/download_speech_commands.py "
                        "--arm_models): stage skipped")
            self.summary["arm"] = None
            return []
        out = self.work / "arm"
        self.fresh("arm", out)
        rows, files = {}, []
        for name, config in ARM_MODELS.items():
            ckpt = out / f"{name.lower()}.ckpt"
            if not ckpt.is_file():
                self.command("arm", ["tf2mind.py", "--pb", found / f"{name}.pb", "--config", config, "--output", ckpt])
            self.command("arm", ["eval.py", "--config", config, "--checkpoint", ckpt, "--manifest",
                                 self.manifest("test"), "--output_dir", out / name.lower(), "--no_progress"])
            m = json.loads((out / name.lower() / "metrics.json").read_text())["test"]
            rows[name] = {"accuracy": m["accuracy"], "clips": m["clips"]}
            files += [ckpt, out / name.lower() / "metrics.json"]
        self.summary["arm"] = rows
        return files

    def paths_agree(self) -> bool:
        inf = self.summary["inference"]
        return all(len({round(inf[p][s]["accuracy"], 6) for p in inf if s in inf[p]}) == 1 for s in ("dev", "test"))

    def print_table(self) -> None:
        self.print_stages()
        print(f"\n{'inference path':<16}{'dev accuracy':>14}{'test accuracy':>15}   (generated speech)")
        print("-" * 48)
        for path, splits in self.summary["inference"].items():
            dev, test = splits.get("dev", {}), splits.get("test", {})
            print(f"{path:<16}{dev.get('accuracy', float('nan')):>13.2f}%{test.get('accuracy', float('nan')):>14.2f}%")
        if self.summary.get("streaming"):
            s = self.summary["streaming"]
            print(f"\nstreaming ({s['recording_s']} s, {s['keywords']} keywords): matched {s['matched_pct']:.1f} %, "
                  f"wrong {s['wrong_pct']:.1f} %, false alarms {s['false_alarm_pct']:.1f} %")
        if self.summary.get("arm"):
            print("ARM's released models (real Speech Commands) on this test split: "
                  + "   ".join(f"{n} {r['accuracy']:.2f} %" for n, r in self.summary["arm"].items()))
        print(f"\nthe three inference paths {'agree' if self.summary['agree'] else 'DISAGREE'}; "
              f"summary: {self.work / 'summary.json'}")
