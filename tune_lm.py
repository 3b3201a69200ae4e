"""Tune the language-model weights of beam search (alpha: LM weight, beta: word bonus) on a dev set.

Usage:
    python tune_lm.py --config src/configs/jasper10x5dr.yaml --checkpoint CKPT --manifest dev-clean.json \\
        --lm_path 3-gram.arpa.gz [--output_dir lm_tuning] [--beam_width 32] [--workers 2]
    python tune_lm.py --mindir jasper.mindir --manifest DIR_OR_JSON --lm_path LM ...
    python tune_lm.py --cache lm_tuning/logprobs.npz --lm_path LM [--alphas 0 0.5 1 1.5 2] [--betas -1 0 1 2 3]

The acoustic model runs once: its log-probabilities for the dev set are saved in an .npz cache
(``--cache``, default OUTPUT_DIR/logprobs.npz, with utt_ids, lengths and reference transcripts) and
reused by later runs, which then need no model.  The search scores every (alpha, beta) of the grid by
the corpus WER of beam search with the LM (src.metrics.wer, the WER of eval.py), then refines around
the best pair with halved steps (``--refine`` rounds).  The pair given by --alpha/--beta (the
decoder's defaults) is always scored too, so the result is never worse than it.  Writes
OUTPUT_DIR/result.json (best pair, its WER/CER, the greedy and default-pair WER, every point tried)
and prints the same.  Use the pair with eval.py/transcribe.py: ``--decoder beam --lm_path LM --alpha A
--beta B``.
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

log = logging.getLogger("tune_lm")

DEFAULT_ALPHAS = (0.0, 0.5, 1.0, 1.5, 2.0)
DEFAULT_BETAS = (-1.0, 0.0, 1.0, 2.0, 3.0)


@dataclass
class DevSet:
    """Acoustic log-probabilities of a data set: log_probs[i] (T'_i, C) natural-log posteriors."""
    utt_ids: list[str]
    log_probs: list[np.ndarray]
    references: list[str]
    meta: dict

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(lp) for lp in self.log_probs], dtype=np.int32)


@dataclass(frozen=True)
class Point:
    alpha: float
    beta: float
    wer: float
    cer: float
    word_errors: int


def save_devset(path: str | Path, dev: DevSet) -> None:
    """One .npz: the frames of all utterances concatenated ((sum T', C) float32) plus lengths (B,),
    utt_ids, references and a JSON ``meta`` (model, data, labels)."""
    from src.fileio import atomic_path

    flat = np.concatenate(dev.log_probs) if dev.log_probs else np.zeros((0, 0), np.float32)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object: np.savez would add .npz to the temporary name
            np.savez(f, log_probs=flat.astype(np.float32), lengths=dev.lengths, utt_ids=np.array(dev.utt_ids),
                     references=np.array(dev.references), meta=np.array(json.dumps(dev.meta)))


def load_devset(path: str | Path) -> DevSet:
    try:
        with np.load(path, allow_pickle=False) as z:
            flat, lengths = z["log_probs"], z["lengths"]
            ends = np.cumsum(lengths)
            return DevSet([str(u) for u in z["utt_ids"]], np.split(flat, ends[:-1]) if len(ends) else [],
                          [str(r) for r in z["references"]], json.loads(str(z["meta"])))
    except FileNotFoundError:
        raise FileNotFoundError(f"log-probability cache not found: {path}") from None
    except (KeyError, ValueError, OSError) as e:
        raise ValueError(f"{path}: not a log-probability cache written by tune_lm.py ({e})") from None


def collect_devset(model, data, labels, meta: dict, progress: bool = True) -> DevSet:
    """Run ``model`` over ``data`` (a SpeechData with train=False) once, keeping each utterance's
    valid output frames and its reference."""
    from src.tasks.asr import iterate_predictions

    dev = DevSet([], [], [], meta)
    for utt_ids, log_probs, out_lengths, tokens, token_lengths in iterate_predictions(model, data, progress,
                                                                                      "log-probs"):
        for utt_id, lp, n, tok, tn in zip(utt_ids, log_probs, out_lengths, tokens, token_lengths):
            dev.utt_ids.append(utt_id)
            dev.log_probs.append(np.array(lp[:int(n)], dtype=np.float32))
            dev.references.append(labels.decode(tok[:int(tn)]))
    return dev


def score(decoder, dev: DevSet, alpha: float, beta: float, workers: int = 1) -> Point:
    """Corpus WER/CER of beam search with (alpha, beta) over ``dev``."""
    from src.metrics.wer import ErrorRates

    search = decoder.replace(alpha=alpha, beta=beta)
    try:
        hypotheses = search.decode_batch(dev.log_probs, dev.lengths, num_workers=workers)
    finally:
        search.close()
    rates = ErrorRates.of(dev.references, hypotheses)
    return Point(float(alpha), float(beta), rates.wer, rates.cer, rates.words.errors)


def _key(alpha: float, beta: float) -> tuple[float, float]:
    return round(alpha, 6), round(beta, 6)


def best_point(points: Iterable[Point]) -> Point:
    """Lowest WER; ties go to lower CER, then to the smaller weights (the more conservative pair)."""
    return min(points, key=lambda p: (p.word_errors, p.cer, abs(p.alpha), abs(p.beta)))


def search_weights(decoder, dev: DevSet, alphas: Sequence[float] = DEFAULT_ALPHAS,
                   betas: Sequence[float] = DEFAULT_BETAS, refine: int = 2, extra: Sequence[tuple[float, float]] = (),
                   workers: int = 1, progress: bool = False) -> list[Point]:
    """Grid search of (alpha, beta), then ``refine`` rounds on a 3×3 grid of halved steps around the
    best pair.  ``extra`` pairs (e.g. the defaults) are scored as well.  Returns every point scored."""
    from tqdm import tqdm

    points: dict[tuple[float, float], Point] = {}

    def run(pairs: Iterable[tuple[float, float]]) -> None:
        todo = [p for p in dict.fromkeys(_key(a, b) for a, b in pairs) if p not in points]
        for a, b in tqdm(todo, desc="alpha/beta", unit="pair", disable=not progress, leave=False):
            points[(a, b)] = score(decoder, dev, a, b, workers)
            log.debug("alpha %.3f beta %.3f: WER %.2f %%", a, b, points[(a, b)].wer)

    run([*itertools.product(alphas, betas), *extra])
    step_a = _step(alphas)
    step_b = _step(betas)
    for _ in range(refine):
        step_a, step_b = step_a / 2, step_b / 2
        best = best_point(points.values())
        run((max(0.0, best.alpha + i * step_a), best.beta + j * step_b) for i in (-1, 0, 1) for j in (-1, 0, 1))
    return list(points.values())


def _step(values: Sequence[float]) -> float:
    """The smallest spacing of a grid axis (1 for an axis of one value)."""
    v = sorted(set(values))
    return min((b - a for a, b in zip(v, v[1:])), default=1.0)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from src.decoding.beam import DecoderOptions

    d = DecoderOptions()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from src.deploy.loading import add_model_args
    add_model_args(p, required=False)   # no model needed when the log-probability cache exists
    p.add_argument("--manifest", "--data", dest="manifest", help="dev manifest JSON or MindRecord folder")
    p.add_argument("--output_dir", default="lm_tuning")
    p.add_argument("--cache", help="log-probability cache (default: OUTPUT_DIR/logprobs.npz)")
    p.add_argument("--recompute", action="store_true", help="run the model even if the cache exists")
    p.add_argument("--batch_size", type=int, default=None, help="default: data.batch_size of the config")
    p.add_argument("--lm_path", required=True, help="ARPA (.arpa, .arpa.gz) or KenLM binary")
    p.add_argument("--lm_vocab", help="vocabulary of a binary LM: word list, lexicon or its ARPA")
    p.add_argument("--lexicon", help="more words beam search may spell (word list); the LM scores those it "
                   "lacks as <unk>")
    p.add_argument("--beam_width", type=int, default=d.beam_width)
    p.add_argument("--alphas", type=float, nargs="+", default=list(DEFAULT_ALPHAS), help="grid of LM weights")
    p.add_argument("--betas", type=float, nargs="+", default=list(DEFAULT_BETAS), help="grid of word bonuses")
    p.add_argument("--refine", type=int, default=2, help="rounds of refinement around the best pair")
    p.add_argument("--alpha", type=float, default=d.alpha, help="reference pair, always scored")
    p.add_argument("--beta", type=float, default=d.beta, help="reference pair, always scored")
    p.add_argument("--max_utts", type=int, default=None, help="tune on the first N utterances only")
    p.add_argument("--workers", type=int, default=1, help="processes for beam search")
    p.add_argument("--no_progress", action="store_true")
    return p.parse_args(argv)


def acoustic_devset(args: argparse.Namespace, cache: Path) -> DevSet:
    """The cached log-probabilities, or the model's on the dev set (then cached)."""
    source = args.checkpoint or args.mindir
    wanted = {"model": source, "data": args.manifest}
    wanted = {k: str(Path(v).resolve()) for k, v in wanted.items() if v is not None}
    if cache.is_file() and not args.recompute:
        dev = load_devset(cache)
        stale = [f"{k} {dev.meta.get(k)!r}" for k, v in wanted.items() if dev.meta.get(k) != v]
        if stale:
            raise ValueError(f"{cache} holds log-probabilities of {', '.join(stale)}; pass --recompute "
                             "or another --cache")
        log.info("%s: %d cached utterances", cache, len(dev.utt_ids))
        return dev
    if source is None or args.manifest is None:
        raise ValueError(f"no cache at {cache}: pass --checkpoint or --mindir and --manifest to compute it")
    from src.deploy.loading import config_for, load_model
    from src.runtime import configure_device
    from src.tasks import get_task

    config = config_for(args)
    configure_device(args.device_target, args.device_id)
    task = get_task(config)
    if task.name != "asr":
        raise ValueError(f"tune_lm.py tunes the LM weights of a speech-recognition model; {args.config} is {task.name}")
    labels = task.labels(config)
    model = load_model(args, config)
    data = task.open_data(args.manifest, config, train=False, cache_dir=Path(args.output_dir) / "mindrecord",
                          batch_size=args.batch_size)
    dev = collect_devset(model, data, labels, {**wanted, "labels": labels.symbols}, progress=not args.no_progress)
    save_devset(cache, dev)
    log.info("%s: log-probabilities of %d utterances saved", cache, len(dev.utt_ids))
    return dev


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from src.log import setup_logging
    setup_logging()
    from src.config import ConfigError
    from src.data.manifest import ManifestError
    from src.decoding.beam import BeamSearchDecoder
    from src.decoding.greedy import greedy_decode
    from src.fileio import atomic_write_json
    from src.metrics.wer import ErrorRates
    from src.text.labels import Labels, load_labels

    out = Path(args.output_dir)
    cache = Path(args.cache) if args.cache else out / "logprobs.npz"
    try:
        dev = acoustic_devset(args, cache)
        if args.max_utts:
            dev = DevSet(dev.utt_ids[:args.max_utts], dev.log_probs[:args.max_utts],
                         dev.references[:args.max_utts], dev.meta)
        if not dev.utt_ids:
            raise ValueError(f"{cache}: no utterances")
        labels = Labels(dev.meta["labels"]) if "labels" in dev.meta else load_labels()
        if dev.log_probs[0].shape[1] != labels.num_classes:
            raise ValueError(f"{cache}: {dev.log_probs[0].shape[1]} classes, labels have {labels.num_classes}")
        decoder = BeamSearchDecoder(labels, beam_width=args.beam_width, lm_path=args.lm_path, alpha=args.alpha,
                                    beta=args.beta, lm_vocab=args.lm_vocab, lexicon=args.lexicon)
        greedy = ErrorRates.of(dev.references, [greedy_decode(lp[None], [len(lp)], labels)[0]
                                                for lp in dev.log_probs])
        points = search_weights(decoder, dev, args.alphas, args.betas, args.refine, extra=[(args.alpha, args.beta)],
                                workers=args.workers, progress=not args.no_progress)
    except (ConfigError, ManifestError, FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        return 1
    best = best_point(points)
    reference = next(p for p in points if _key(p.alpha, p.beta) == _key(args.alpha, args.beta))
    result = {"best": asdict(best), "greedy": {"wer": greedy.wer, "cer": greedy.cer},
              "reference_pair": asdict(reference), "lm_path": args.lm_path, "beam_width": args.beam_width,
              "utterances": len(dev.utt_ids), "words": greedy.words.reference_length, "cache": str(cache),
              "points": [asdict(p) for p in sorted(points, key=lambda p: (p.alpha, p.beta))]}
    atomic_write_json(out / "result.json", result)
    print(f"{len(dev.utt_ids)} utterances, {greedy.words.reference_length} words, {len(points)} (alpha, beta) pairs")
    print(f"greedy                          WER {greedy.wer:6.2f} %  CER {greedy.cer:6.2f} %")
    print(f"beam, alpha {reference.alpha:<5g} beta {reference.beta:<5g}   WER {reference.wer:6.2f} %  "
          f"CER {reference.cer:6.2f} %")
    print(f"best, alpha {best.alpha:<5g} beta {best.beta:<5g}   WER {best.wer:6.2f} %  CER {best.cer:6.2f} %")
    print(f"result: {out / 'result.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
