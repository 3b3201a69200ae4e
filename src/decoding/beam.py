"""CTC prefix beam search, optionally fused with a KenLM word n-gram language model.

The search runs in flashlight-text's C++ decoders (the PyPI wheel carries KenLM, so nothing is
compiled on install):

* without an LM, a lexicon-free beam search over the label sequence (hypotheses that collapse to the
  same prefix are merged by log-add, as in CTC prefix beam search);
* with an LM, a lexicon-constrained search: every word is spelled in a trie of the LM's vocabulary
  (read from the ARPA unigrams, or a word list for binary LMs), and each finished word adds
  ``alpha · ln P_lm(word | history) + beta`` to the hypothesis score.  The trie carries each
  prefix's best unigram score, so partial words are ranked with that look-ahead.  Words outside the
  vocabulary cannot be produced: use an LM whose vocabulary covers the domain (the LibriSpeech LMs
  have 200k words), or widen what can be spelled with a ``lexicon`` (a word list, such as
  /usr/share/dict/words); its words outside the LM score as the LM's ``<unk>``.

Scores: ``log_probs`` are natural-log CTC posteriors (the model output); KenLM's log10 scores are
converted, so ``alpha`` weights natural-log LM probabilities and ``beta`` is in nats per word.

LM files: ARPA (plain or ``.gz``, e.g. OpenSLR's LibriSpeech 3-gram/4-gram files, whose upper-case
words are matched case-insensitively) or KenLM binary (then pass ``lm_vocab``: a word list, a lexicon
or the ARPA it was built from, first field of each line).  Loading a large ARPA takes minutes; KenLM
prints its progress bar on stderr.
"""
from __future__ import annotations

import argparse
import gzip
import logging
import math
import multiprocessing as mp
import os
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from tqdm import tqdm

from src.decoding.greedy import greedy_decode
from src.text.labels import Labels, load_labels

log = logging.getLogger(__name__)

DECODERS = ("greedy", "beam")
LN10 = math.log(10.0)          # KenLM scores are log10
KENLM_BINARY_MAGIC = b"mmap lm "
_SPECIAL_WORDS = ("<s>", "</s>", "<unk>")
_IMPOSSIBLE = -1e10            # log-probability of a symbol that cannot occur (finite: no inf arithmetic)

Transcriber = Callable[[np.ndarray, Sequence[int] | np.ndarray], list[str]]


# ---- LM files -------------------------------------------------------------------------------------

def _open_text(path: Path):
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt", encoding="utf-8", errors="replace") if gzipped else \
        open(path, "r", encoding="utf-8", errors="replace")


def lm_format(path: str | os.PathLike) -> str:
    """'arpa' or 'binary'; FileNotFoundError / ValueError naming the file otherwise."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"language model not found: {path}")
    if not path.is_file():
        raise ValueError(f"{path}: not a language model file (it is a directory or a device)")
    with open(path, "rb") as f:
        head = f.read(len(KENLM_BINARY_MAGIC))
    if head == KENLM_BINARY_MAGIC:
        return "binary"
    try:
        with _open_text(path) as f:
            for line in f:
                if line.strip():
                    if line.strip() == "\\data\\":
                        return "arpa"
                    break
    except (OSError, EOFError, UnicodeDecodeError):  # e.g. a truncated .gz
        pass
    raise ValueError(f"{path}: not a language model: neither an ARPA file (which starts with \\data\\) "
                     "nor a KenLM binary")


def read_arpa_unigrams(path: str | os.PathLike) -> list[tuple[str, float]]:
    """(word, log10 probability) of the 1-grams of an ARPA file (plain or gzip), in file order.
    Only the file's head is read: the 1-gram section comes first."""
    path = Path(path)
    expected, words, section = None, [], None
    with _open_text(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if section is None:
                if line.startswith("ngram 1="):
                    expected = int(line.split("=", 1)[1])
                elif line == "\\1-grams:":
                    section = 1
                continue
            if not line:
                continue
            if line.startswith("\\"):
                break
            parts = line.split()
            try:
                words.append((parts[1], float(parts[0])))
            except (IndexError, ValueError):
                raise ValueError(f"{path}:{number}: malformed 1-gram line {line[:80]!r}") from None
    if section is None:
        raise ValueError(f"{path}: no \\1-grams: section; not an ARPA file")
    if expected is not None and expected != len(words):
        raise ValueError(f"{path}: header announces {expected} 1-grams, the section has {len(words)}")
    return words


def read_vocabulary(path: str | os.PathLike) -> list[str]:
    """Words of an ARPA file's 1-grams, or the first field of each line of a word list / lexicon."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LM vocabulary file not found: {path}")
    try:
        if lm_format(path) == "arpa":
            return [w for w, _ in read_arpa_unigrams(path)]
    except ValueError:
        pass
    with _open_text(path) as f:
        return [line.split()[0] for line in f if line.strip()]


# ---- the decoder ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _LMParts:
    """What the LM-fused search needs and every weight setting shares: the KenLM model (or its
    hotword wrapper), the word dictionary, the spelling trie and each word's output text."""
    lm: object
    trie: object
    words: list[str]                    # word index → text written in transcripts
    unk_index: int
    keep_alive: tuple = field(default=())


class BeamSearchDecoder:
    """CTC beam search over ``labels`` (blank = ``labels.blank``, last), optionally with a KenLM LM.

    Args:
        labels: the model's output symbols; " " separates words.
        beam_width: hypotheses kept per frame.
        lm_path: ARPA (plain or .gz) or KenLM binary file; None for beam search without an LM.
        alpha: weight of the natural-log LM probability of each word.
        beta: score added per word (nats); counters the LM's bias towards short outputs.
        hotwords: words to favour (they are added to the vocabulary when the LM lacks them).
        hotword_weight: nats added to a hotword's LM log-probability (so scaled by ``alpha``).
        lm_vocab: the vocabulary of a binary LM (word list, lexicon or ARPA; first field per line).
        lexicon: more words the search may spell (word list or lexicon, first field per line); those
            the LM does not know get its ``<unk>`` probability.  Needs an LM.
        beam_threshold: hypotheses scoring this far (nats) below the best are dropped.
        token_beam: only this many most likely symbols of each frame extend hypotheses (speed;
            None: all).
        log_add: merge hypotheses with the same output by log-add (prefix beam search) rather than max.
    """

    def __init__(self, labels: Labels, beam_width: int = 32, lm_path: str | os.PathLike | None = None,
                 alpha: float = 0.5, beta: float = 1.0, hotwords: Iterable[str] | None = None,
                 hotword_weight: float = 5.0, lm_vocab: str | os.PathLike | None = None,
                 lexicon: str | os.PathLike | None = None,
                 beam_threshold: float = 25.0, token_beam: int | None = 12, log_add: bool = True) -> None:
        if beam_width < 1 or (token_beam is not None and token_beam < 1):
            raise ValueError(f"beam_width and token_beam must be at least 1, got {beam_width}, {token_beam}")
        if " " not in labels:
            raise ValueError("labels need the word separator ' '")
        self.labels = labels
        self.beam_width = int(beam_width)
        self.lm_path = None if lm_path is None else str(lm_path)
        self.alpha, self.beta = float(alpha), float(beta)
        self.hotwords = tuple(dict.fromkeys(w for phrase in (hotwords or ()) for w in phrase.lower().split()))
        self.hotword_weight = float(hotword_weight)
        self.lm_vocab = None if lm_vocab is None else str(lm_vocab)
        self.lexicon = None if lexicon is None else str(lexicon)
        self.beam_threshold = float(beam_threshold)
        self.token_beam = labels.num_classes if token_beam is None else min(int(token_beam), labels.num_classes)
        self.log_add = bool(log_add)
        self._sil = labels.symbols.index(" ")
        self._pool = None
        if self.hotwords and self.lm_path is None:
            raise ValueError("hotwords need a language model (lm_path)")
        if self.lexicon and self.lm_path is None:
            raise ValueError("a lexicon needs a language model (lm_path); without one the search "
                             "spells freely")
        self._lm = self._load_lm() if self.lm_path is not None else None
        self._decoder = self._make_search()

    # -- construction --

    def spec(self) -> dict:
        """Constructor arguments: enough to build the same decoder in another process."""
        return {"labels": self.labels, "beam_width": self.beam_width, "lm_path": self.lm_path,
                "alpha": self.alpha, "beta": self.beta, "hotwords": self.hotwords,
                "hotword_weight": self.hotword_weight, "lm_vocab": self.lm_vocab, "lexicon": self.lexicon,
                "beam_threshold": self.beam_threshold, "token_beam": self.token_beam, "log_add": self.log_add}

    def _load_lm(self) -> _LMParts:
        from flashlight.lib.text.decoder import SmearingMode, Trie
        from flashlight.lib.text.decoder.kenlm import KenLM
        from flashlight.lib.text.dictionary import Dictionary

        path = Path(self.lm_path)
        kind = lm_format(path)
        if kind == "arpa":
            lm_words = [w for w, _ in read_arpa_unigrams(path)]
        elif self.lm_vocab is None:
            raise ValueError(f"{path}: a KenLM binary does not expose its vocabulary; pass lm_vocab "
                             "(--lm_vocab): a word list, a lexicon or the ARPA file it was built from")
        else:
            lm_words = read_vocabulary(self.lm_vocab)
        # Spell each LM word with the labels (case-insensitively: OpenSLR's LMs are upper case).
        candidates: dict[str, list[str]] = {}
        for w in lm_words:
            text = w.lower()
            if w in _SPECIAL_WORDS or not text or any(c == " " or c not in self.labels for c in text):
                continue
            candidates.setdefault(text, []).append(w)
        if not candidates:
            raise ValueError(f"{path}: no word of the LM can be spelled with the labels")
        for text in self.hotwords:
            if any(c not in self.labels for c in text):
                raise ValueError(f"hotword {text!r} has characters outside the labels")
        oov_hotwords = [w for w in self.hotwords if w not in candidates]
        # Lexicon words the LM lacks: spelled in the trie, scored by the LM as <unk>.
        lexicon_words = [t for t in dict.fromkeys(w.lower() for w in read_vocabulary(self.lexicon))
                         if t not in candidates and t not in oov_hotwords and t not in _SPECIAL_WORDS
                         and all(c != " " and c in self.labels for c in t)] if self.lexicon else []
        entries = ["<unk>", *dict.fromkeys(w for spellings in candidates.values() for w in spellings),
                   *oov_hotwords, *lexicon_words]
        dictionary = Dictionary()
        for w in entries:
            dictionary.add_entry(w)
        dictionary.set_default_index(0)
        try:
            kenlm = KenLM(str(path), dictionary)
        except RuntimeError as e:
            raise ValueError(f"{path}: KenLM cannot load it ({str(e).strip().splitlines()[-1]})") from None

        start = kenlm.start(False)
        index = {w: i for i, w in enumerate(entries)}
        unigram = {i: kenlm.score(start, i)[1] for i in range(1, len(entries))}
        lm = kenlm
        keep_alive: tuple = (kenlm, dictionary)
        if self.hotwords:
            floor = min(unigram.values())  # an OOV hotword scores like the rarest known word
            bonus = self.hotword_weight / LN10
            boosts = {index[w]: bonus for w in oov_hotwords}
            boosts.update({index[s]: bonus for w in self.hotwords if w in candidates for s in candidates[w]})
            replace = {index[w]: floor for w in oov_hotwords}
            for i, b in boosts.items():
                unigram[i] = replace.get(i, unigram[i]) + b
            lm = _boosted_lm(kenlm, boosts, replace)
            keep_alive += (lm,)
        words = [""] * len(entries)
        trie = Trie(self.labels.num_classes, self._sil)
        for text, spellings in candidates.items():
            best = max(spellings, key=lambda s: unigram[index[s]])  # one spelling per output word
            ids = [int(t) for t in self.labels.encode(text)] + [self._sil]
            trie.insert(ids, index[best], unigram[index[best]])
            words[index[best]] = text
        for w in oov_hotwords + lexicon_words:
            trie.insert([int(t) for t in self.labels.encode(w)] + [self._sil], index[w], unigram[index[w]])
            words[index[w]] = w
        trie.smear(SmearingMode.MAX)
        log.info("%s: %d words spelled with the labels (%d LM entries)%s", path, len(candidates), len(lm_words),
                 f", {len(lexicon_words)} more from {self.lexicon} scored as <unk>" if self.lexicon else "")
        return _LMParts(lm, trie, words, 0, keep_alive)

    def _make_search(self):
        from flashlight.lib.text.decoder import (CriterionType, LexiconDecoder, LexiconDecoderOptions,
                                                 LexiconFreeDecoder, LexiconFreeDecoderOptions, ZeroLM)

        if self._lm is None:
            options = LexiconFreeDecoderOptions(
                beam_size=self.beam_width, beam_size_token=self.token_beam, beam_threshold=self.beam_threshold,
                lm_weight=0.0, sil_score=0.0, log_add=self.log_add, criterion_type=CriterionType.CTC)
            self._zero_lm = ZeroLM()
            return LexiconFreeDecoder(options, self._zero_lm, self._sil, self.labels.blank, [])
        options = LexiconDecoderOptions(
            beam_size=self.beam_width, beam_size_token=self.token_beam, beam_threshold=self.beam_threshold,
            lm_weight=self.alpha * LN10, word_score=self.beta, unk_score=-math.inf, sil_score=0.0,
            log_add=self.log_add, criterion_type=CriterionType.CTC)
        return LexiconDecoder(options, self._lm.trie, self._lm.lm, self._sil, self.labels.blank,
                              self._lm.unk_index, [], False)

    def replace(self, **changes) -> "BeamSearchDecoder":
        """The same decoder with other search settings (``alpha``, ``beta``, ``beam_width``,
        ``beam_threshold``, ``token_beam``, ``log_add``), sharing the loaded LM and trie: cheap,
        for weight tuning."""
        allowed = {"alpha", "beta", "beam_width", "beam_threshold", "token_beam", "log_add"}
        if set(changes) - allowed:
            raise TypeError(f"replace() takes only {sorted(allowed)}, got {sorted(set(changes) - allowed)}")
        other = object.__new__(BeamSearchDecoder)
        other.__dict__.update(self.__dict__)
        for name, value in changes.items():
            setattr(other, name, type(getattr(self, name))(value))
        if other.beam_width < 1 or other.token_beam < 1:
            raise ValueError(f"beam_width and token_beam must be at least 1, got {other.beam_width}, "
                             f"{other.token_beam}")
        other._pool = None
        other._decoder = other._make_search()
        return other

    # -- decoding --

    def decode(self, log_probs: np.ndarray, length: int | None = None) -> str:
        """One utterance: log_probs (T', C) natural-log posteriors, ``length`` valid frames → text."""
        if log_probs.ndim != 2 or log_probs.shape[1] != self.labels.num_classes:
            raise ValueError(f"log_probs must be (T', {self.labels.num_classes}), got {log_probs.shape}")
        length = log_probs.shape[0] if length is None else min(int(length), log_probs.shape[0])
        if length <= 0:
            return ""
        emissions = np.asarray(log_probs[:length], dtype=np.float32)
        if self._lm is not None:
            # Words are spelled with a closing " "; one certain " " frame ends the last word for free.
            end = np.full((1, emissions.shape[1]), _IMPOSSIBLE, dtype=np.float32)
            end[0, self._sil] = 0.0
            emissions = np.concatenate([emissions, end])
        emissions = np.ascontiguousarray(emissions)
        results = self._decoder.decode(emissions.ctypes.data, emissions.shape[0], emissions.shape[1])
        if not results:
            return ""
        best = results[0]
        if self._lm is not None:
            return " ".join(self._lm.words[w] for w in best.words if w >= 0)
        path = best.tokens[1:length + 1]  # the decoder pads the frame path with one token each side
        return self.labels.decode(collapse(path, self.labels.blank))

    def decode_batch(self, log_probs: np.ndarray | Sequence[np.ndarray], lengths: Sequence[int] | np.ndarray,
                     num_workers: int = 1, progress: bool = False) -> list[str]:
        """log_probs (B, T', C) (or B arrays (T'_b, C)), lengths (B,) → B transcripts.

        With ``num_workers > 1`` utterances are decoded in worker processes (the search holds the
        GIL).  The pool is started on first use and kept until ``close()``; on Linux workers are
        forked, so a loaded LM is shared with them rather than loaded again.
        """
        items = [(lp[:int(n)], int(n)) for lp, n in zip(log_probs, lengths)]  # no padding sent to workers
        bar = dict(total=len(items), desc="beam search", unit="utt", disable=not progress, leave=False)
        if num_workers <= 1 or len(items) < 2:
            return [self.decode(lp, n) for lp, n in tqdm(items, **bar)]
        pool = self._worker_pool(num_workers)
        chunk = max(1, min(16, len(items) // (4 * num_workers)))
        return list(tqdm(pool.imap(_decode_in_worker, items, chunksize=chunk), **bar))

    __call__ = decode_batch

    def _worker_pool(self, num_workers: int):
        global _WORKER_DECODER
        if self._pool is not None and self._pool[0] == num_workers:
            return self._pool[1]
        self.close()
        if "fork" in mp.get_all_start_methods():
            _WORKER_DECODER = self  # inherited by the forked workers
            pool = mp.get_context("fork").Pool(num_workers, _init_worker, (None,))
            _WORKER_DECODER = None
        else:
            pool = mp.get_context("spawn").Pool(num_workers, _init_worker, (self.spec(),))
        self._pool = (num_workers, pool)
        self._finalizer = weakref.finalize(self, _stop_pool, pool)
        return pool

    def close(self) -> None:
        """Stop the worker processes, if any were started."""
        if self._pool is not None:
            self._finalizer()
            self._pool = None

    def __enter__(self) -> "BeamSearchDecoder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self):
        raise TypeError("BeamSearchDecoder holds C++ objects; pass decoder.spec() to other processes")


def _boosted_lm(inner, boosts: dict[int, float], replace: dict[int, float]):
    """``inner`` (a flashlight LM) with ``boosts[word]`` added to some words' log10 scores, and the
    score of the words in ``replace`` (unknown to ``inner``) set first.  States are ``inner``'s own."""
    from flashlight.lib.text.decoder import LM

    class BoostedLM(LM):
        def start(self, start_with_nothing: bool):
            return inner.start(start_with_nothing)

        def score(self, state, word: int):
            next_state, value = inner.score(state, word)
            if word in boosts:
                value = replace.get(word, value) + boosts[word]
            return next_state, value

        def finish(self, state):
            return inner.finish(state)

    return BoostedLM()


def collapse(path: Sequence[int], blank: int) -> list[int]:
    """A CTC frame path → label ids: repeats merged, then blanks removed."""
    out, previous = [], None
    for t in path:
        if t != previous and t != blank:
            out.append(int(t))
        previous = t
    return out


_WORKER_DECODER: BeamSearchDecoder | None = None


def _init_worker(spec: dict | None) -> None:
    global _WORKER_DECODER
    if spec is not None:
        _WORKER_DECODER = BeamSearchDecoder(**spec)


def _decode_in_worker(item: tuple[np.ndarray, int]) -> str:
    return _WORKER_DECODER.decode(*item)


def _stop_pool(pool) -> None:
    pool.terminate()
    pool.join()


# ---- selection from options and command lines -----------------------------------------------------

@dataclass(frozen=True)
class DecoderOptions:
    """How log-probabilities become text: ``decoder`` 'greedy' or 'beam'; with ``lm_path`` beam search
    is fused with that LM (``alpha``, ``beta`` only matter then).  ``workers``: beam-search processes."""
    decoder: str = "greedy"
    lm_path: str | None = None
    alpha: float = 0.5
    beta: float = 1.0
    beam_width: int = 32
    workers: int = 1
    lm_vocab: str | None = None
    lexicon: str | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.decoder == "greedy" and self.lm_path:
            raise ValueError("a language model (--lm_path) needs --decoder beam")
        if self.beam_width < 1 or self.workers < 1:
            raise ValueError("beam_width and workers must be at least 1")


def make_decoder(options: DecoderOptions, labels: Labels | None = None) -> Transcriber:
    """``decode(log_probs (B, T', C), lengths (B,)) -> B transcripts`` for ``options``.  A beam
    decoder's LM is loaded here, once."""
    labels = labels or load_labels()
    if options.decoder == "greedy":
        return lambda log_probs, lengths: greedy_decode(log_probs, lengths, labels)
    beam = BeamSearchDecoder(labels, beam_width=options.beam_width, lm_path=options.lm_path,
                             alpha=options.alpha, beta=options.beta, lm_vocab=options.lm_vocab,
                             lexicon=options.lexicon)

    def decode(log_probs: np.ndarray, lengths: Sequence[int] | np.ndarray) -> list[str]:
        return beam.decode_batch(log_probs, lengths, num_workers=options.workers, progress=options.progress)

    decode.decoder = beam  # type: ignore[attr-defined]  # for close() and inspection
    return decode


def add_decoder_args(parser: argparse.ArgumentParser) -> None:
    """--decoder {greedy,beam} --lm_path --lm_vocab --lexicon --alpha --beta --beam_width --decoder_workers."""
    d = DecoderOptions()
    g = parser.add_argument_group("decoding")
    g.add_argument("--decoder", choices=DECODERS, default=d.decoder,
                   help="greedy (best path) or beam search (default: %(default)s)")
    g.add_argument("--lm_path", default=None, help="KenLM language model for beam search: ARPA (.arpa, .arpa.gz) "
                   "or KenLM binary")
    g.add_argument("--lm_vocab", default=None, help="vocabulary of a binary LM: word list, lexicon or its ARPA")
    g.add_argument("--lexicon", default=None, help="more words beam search may spell (word list, e.g. "
                   "/usr/share/dict/words); the LM scores those it lacks as <unk>")
    g.add_argument("--alpha", type=float, default=d.alpha,
                   help="LM weight, on natural-log probabilities (default: %(default)s; tune with tune_lm.py)")
    g.add_argument("--beta", type=float, default=d.beta,
                   help="bonus per word with an LM, in nats (default: %(default)s; tune with tune_lm.py)")
    g.add_argument("--beam_width", type=int, default=d.beam_width, help="default: %(default)s")
    g.add_argument("--decoder_workers", type=int, default=d.workers,
                   help="processes for beam search (default: %(default)s)")


def options_from_args(args: argparse.Namespace, progress: bool = False) -> DecoderOptions:
    """DecoderOptions from arguments added by ``add_decoder_args``."""
    return DecoderOptions(decoder=args.decoder, lm_path=args.lm_path, alpha=args.alpha, beta=args.beta,
                          beam_width=args.beam_width, workers=args.decoder_workers, lm_vocab=args.lm_vocab,
                          lexicon=args.lexicon, progress=progress)
