"""Benchmark of CTC decoding speed: greedy vs beam search of several widths, without and with an LM.

Usage:
    python bench/bench_decode.py [--num_utts 16] [--frames 500] [--beam_widths 1 8 32 128] [--repeats 3]
                                 [--lm PATH] [--output bench/results/adhoc/decode.json]

The acoustic input is synthetic: log-probabilities shaped like Jasper's output for ~10 s utterances
(T' = 500 frames of 20 ms, C = 29), each character held 1-2 frames and followed by 0-3 blank frames,
with noisy logits and occasional confusions between similar characters, so greedy decoding makes
errors an LM can correct.  Sentences come from a seeded random bigram model over a vocabulary taken
from /usr/share/dict/words (wamerican) when present, else over made-up words; the LM (an ARPA
3-gram built by src.decoding.arpa) is estimated on other sentences of the same model, or ``--lm``
names a real one (e.g. OpenSLR's LibriSpeech 3-gram; the utterances are then unrelated to it, so
only its speed means something).  Configurations are timed in interleaved rounds (the machine is
shared) and the median utterances/s reported, single process; one extra row shows beam search with
the LM on 2 worker processes.  WER against the sentences is given for orientation.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench import adhoc_output  # noqa: E402
from src.decoding.arpa import write_arpa  # noqa: E402
from src.decoding.beam import BeamSearchDecoder  # noqa: E402
from src.decoding.greedy import greedy_decode  # noqa: E402
from src.fileio import atomic_write_json  # noqa: E402
from src.log import setup_logging  # noqa: E402
from src.metrics.wer import ErrorRates  # noqa: E402
from src.text.labels import Labels, load_labels  # noqa: E402

DICT_PATH = Path("/usr/share/dict/words")
# Characters an acoustic model tends to confuse: a frame of one may get the other's logit.
CONFUSABLE = {"a": "e", "e": "i", "i": "e", "o": "u", "u": "o", "b": "p", "p": "b", "d": "t", "t": "d",
              "g": "k", "k": "c", "c": "k", "m": "n", "n": "m", "s": "z", "z": "s", "f": "v", "v": "f",
              "l": "r", "r": "l", "h": "a", "y": "i", "w": "u", "j": "g", "q": "k", "x": "s", "'": " "}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num_utts", type=int, default=16, help="utterances per timed pass")
    p.add_argument("--frames", type=int, default=500, help="T' per utterance (500 ≈ 10 s for Jasper)")
    p.add_argument("--beam_widths", type=int, nargs="+", default=[1, 8, 32, 128])
    p.add_argument("--repeats", type=int, default=3, help="interleaved timed rounds")
    p.add_argument("--vocab", type=int, default=10000, help="words of the synthetic language")
    p.add_argument("--lm_sentences", type=int, default=30000, help="sentences the built LM is estimated on")
    p.add_argument("--lm", help="use this ARPA/binary LM instead of building one")
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=adhoc_output("decode"))
    return p.parse_args(argv)


def vocabulary(size: int, labels: Labels, rng: np.random.Generator) -> list[str]:
    """``size`` distinct lower-case words spelled with the labels."""
    words: list[str] = []
    if DICT_PATH.is_file():
        seen = dict.fromkeys(w.strip().lower() for w in DICT_PATH.read_text(errors="ignore").splitlines())
        words = [w for w in seen if w and " " not in w and all(c in labels for c in w)]
        rng.shuffle(words)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    made_up = set(words)
    while len(words) < size:
        w = "".join(rng.choice(letters, int(rng.integers(2, 9))))
        if w not in made_up:
            made_up.add(w)
            words.append(w)
    return words[:size]


class BigramLanguage:
    """Sentences from a random bigram model: Zipfian unigrams, each word with a few likely successors."""

    def __init__(self, words: list[str], rng: np.random.Generator, successors: int = 20) -> None:
        self.words, self.rng = words, rng
        ranks = np.arange(1, len(words) + 1)
        self.unigram = (1.0 / ranks) / (1.0 / ranks).sum()
        self.next = rng.choice(len(words), size=(len(words), successors), p=self.unigram)

    def sentence(self, num_words: int) -> str:
        w = self.rng.choice(len(self.words), p=self.unigram)
        out = [w]
        for _ in range(num_words - 1):
            w = self.next[w, self.rng.integers(self.next.shape[1])] if self.rng.random() < 0.8 else \
                self.rng.choice(len(self.words), p=self.unigram)
            out.append(w)
        return " ".join(self.words[i] for i in out)


def jasper_like_log_probs(text: str, frames: int, labels: Labels, rng: np.random.Generator,
                          confusion: float = 0.03) -> np.ndarray | None:
    """(frames, C) float32 log-softmax posteriors spelling ``text``, or None if it does not fit.
    Per character: 1-2 peaked frames, then 0-3 blank frames (at least 1 before a repeat); with
    probability ``confusion`` a character's frames favour a confusable neighbour about as much;
    silence after the text."""
    c = labels.num_classes
    logits = rng.normal(0.0, 1.5, size=(frames, c)).astype(np.float32)
    t = 0
    for i, ch in enumerate(text):
        k = int(labels.encode(ch)[0])
        other = int(labels.encode(CONFUSABLE.get(ch, ch))[0])
        confused = other != k and rng.random() < confusion
        for _ in range(int(rng.integers(1, 3))):
            if t >= frames:
                return None
            logits[t, k] += rng.normal(8.0, 1.0)
            if confused:
                logits[t, other] += rng.normal(8.5, 1.0)
            t += 1
        doubled = i + 1 < len(text) and text[i + 1] == ch  # CTC needs a blank between repeats
        for _ in range(int(rng.integers(1 if doubled else 0, 4))):
            if t < frames:
                logits[t, labels.blank] += rng.normal(8.0, 1.0)
                t += 1
    logits[t:, labels.blank] += 10.0
    logits -= logits.max(axis=1, keepdims=True)
    return (logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))).astype(np.float32)


def make_utterances(language: BigramLanguage, n: int, frames: int, labels: Labels, rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """n utterances of about ``frames`` frames of speech: log_probs (n, frames, C), lengths (n,), texts."""
    log_probs, refs = [], []
    for _ in range(n):
        words: list[str] = []
        while len(" ".join(words)) < frames / 3.3:  # 3 frames per character on average
            words.extend(language.sentence(8).split())
        while (lp := jasper_like_log_probs(" ".join(words), frames, labels, rng)) is None:
            words.pop()
        log_probs.append(lp)
        refs.append(" ".join(words))
    return np.stack(log_probs), np.full(n, frames, np.int32), refs


def time_pass(fn: Callable[[], list[str]]) -> tuple[float, list[str]]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging("WARNING")
    labels = load_labels()
    rng = np.random.default_rng(args.seed)
    language = BigramLanguage(vocabulary(args.vocab, labels, rng), rng)
    log_probs, lengths, refs = make_utterances(language, args.num_utts, args.frames, labels, rng)

    with tempfile.TemporaryDirectory() as tmp:
        lm_info: dict = {}
        lm_path = args.lm
        if lm_path is None:
            start = time.perf_counter()
            lm_path = write_arpa(Path(tmp) / "bench.arpa", (language.sentence(int(rng.integers(5, 20)))
                                                             for _ in range(args.lm_sentences)), order=3)
            lm_info.update(built_from_sentences=args.lm_sentences, build_seconds=time.perf_counter() - start)
        start = time.perf_counter()
        with_lm = BeamSearchDecoder(labels, beam_width=args.beam_widths[0], lm_path=lm_path, alpha=args.alpha,
                                    beta=args.beta)
        lm_info.update(path=str(args.lm or "built (3-gram)"), load_seconds=time.perf_counter() - start,
                       vocabulary=sum(1 for w in with_lm._lm.words if w))

        configs: dict[str, Callable[[], list[str]]] = {
            "greedy": lambda: greedy_decode(log_probs, lengths, labels)}
        for width in args.beam_widths:
            plain = BeamSearchDecoder(labels, beam_width=width)
            fused = with_lm.replace(beam_width=width)
            configs[f"beam {width}"] = lambda d=plain: d.decode_batch(log_probs, lengths)
            configs[f"beam {width} + LM"] = lambda d=fused: d.decode_batch(log_probs, lengths)
        parallel_width = 32 if 32 in args.beam_widths else args.beam_widths[-1]
        parallel = with_lm.replace(beam_width=parallel_width)
        parallel.decode_batch(log_probs[:2], lengths[:2], num_workers=2)  # start the pool outside the timing
        configs[f"beam {parallel_width} + LM, 2 workers"] = lambda: parallel.decode_batch(log_probs, lengths,
                                                                                          num_workers=2)

        times: dict[str, list[float]] = {name: [] for name in configs}
        outputs: dict[str, list[str]] = {}
        for _ in range(args.repeats):
            for name, fn in configs.items():  # interleaved: load changes hit every configuration alike
                seconds, outputs[name] = time_pass(fn)
                times[name].append(seconds)
        parallel.close()

    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        rates = ErrorRates.of(refs, outputs[name])
        rows.append({"decoder": name, "utterances_per_s": args.num_utts / med,
                     "ms_per_utterance": 1000 * med / args.num_utts, "wer": round(rates.wer, 2),
                     "cer": round(rates.cer, 2), "seconds": ts})
    result = {"setup": {"num_utts": args.num_utts, "frames": args.frames, "classes": labels.num_classes,
                        "repeats": args.repeats, "alpha": args.alpha, "beta": args.beta, "lm": lm_info,
                        "machine": platform.platform(), "python": platform.python_version()},
              "rows": rows}
    atomic_write_json(args.output, result)
    print(f"Decoding {args.num_utts} synthetic utterances of {args.frames} frames × {labels.num_classes} classes "
          f"(median of {args.repeats} interleaved rounds); LM: {lm_info['path']}, "
          f"{lm_info['vocabulary']} words, loaded in {lm_info['load_seconds']:.2f} s")
    print(f"{'decoder':<30}{'utt/s':>9}{'ms/utt':>9}{'WER %':>8}{'CER %':>8}")
    for r in rows:
        print(f"{r['decoder']:<30}{r['utterances_per_s']:>9.1f}{r['ms_per_utterance']:>9.1f}{r['wer']:>8.2f}"
              f"{r['cer']:>8.2f}")
    print(f"results: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
