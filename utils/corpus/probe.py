"""Probe sets: what a model trained on a generated corpus depends on, measured by re-synthesis.

Every synthetic utterance is reproducible from the corpus plan (voice settings, text, noise seed), so
an utterance can be rendered again with exactly one thing changed.  The WER of each set below, next
to ``seen``, says how much the model relies on that thing:

    seen       training utterances exactly as in the corpus (voice, text and noise unchanged)
    new_voice  the same training texts read by the held-out speakers' voices
    new_text   held-out texts read by training speakers' voices
    pitch      training utterances with the voice 3 semitones higher or lower (towards mid-range)
    tempo      training utterances 10 % faster or slower
    channel    training utterances recorded through another channel (filters, treble, reverb)
    open_text  unrestricted sentences of the same text sources (any word, as with ``vocabulary`` 0),
               none of them in the corpus, read by the held-out voices: the test set without the
               corpus's vocabulary limit
    new_engine the training texts (as ``new_voice``) read by voices of a synthesizer family that no
               training speaker uses (by preference hibari, then Piper when allowed, Kokoro, then a
               Debian voice the corpus left out): how far the model transfers to another engine

A model that generalises scores about the same on all of them; a model that memorised its corpus is
good on ``seen`` only.  ``new_engine`` needs such a family installed here (the neural voices come with
``requirements-voices.txt``); ``available_sets`` lists what a plan allows.  Each set is written as ``OUTPUT_DIR/<set>/<utt_id>.wav`` plus
``OUTPUT_DIR/<set>.json``, a manifest eval.py reads (``--manifest OUTPUT_DIR/*.json``).
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import itertools
import json
import logging
import shutil
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from tqdm import tqdm

from src.audio.io import AudioError, audio_info, write_wav
from src.data.manifest import audio_file_entry, manifest_entry, write_manifest
from src.fileio import atomic_write_text
from utils.corpus import neural
from utils.corpus.synthetic import (_KEY_ACOUSTICS, _KEY_PROBE, DEBIAN_ENGINES, NEURAL_ENGINES, SAMPLE_RATE, Chapter,
                                    CorpusConfig, CorpusPlan, SubsetSpec, SynthesisError, Utterance, Voice, _rng,
                                    draw_acoustics, draw_voice, plan_corpus, select_sentences, synthesize_utterance)

log = logging.getLogger(__name__)

# Sets every corpus can render with the Debian tools alone (utils/run_demo.py evaluates these).
PROBE_SETS = ("seen", "new_voice", "new_text", "pitch", "tempo", "channel", "open_text")
# Sets that need an engine family absent from training to be installed.
TRANSFER_SETS = ("new_engine",)
ALL_PROBE_SETS = PROBE_SETS + TRANSFER_SETS
# Preference for the new_engine voice: the most speech-like family that training did not use.
NEW_ENGINE_ORDER = ("hibari", "piper", "kokoro", "flite-rms", "festival-kal", "flite-kal16", "espeak")
NEW_ENGINE_VOICES = 4        # distinct speakers (pitch, rate, channel draws) of the new engine
PITCH_STEP_CENTS = 300
TEMPO_STEP = 0.10
MID_PITCH_CENTS = 100        # middle of the generator's -300..+500 cents range


def load_plan(corpus_dir: str | Path) -> CorpusPlan:
    """The plan of a corpus made by utils/make_synthetic_corpus.py, from its corpus.json.

    ``corpus_dir`` is the folder holding corpus.json (``.../LibriSpeech``) or its parent.
    """
    root = Path(corpus_dir)
    meta_path = next((p for p in (root / "corpus.json", root / "LibriSpeech" / "corpus.json") if p.is_file()), None)
    if meta_path is None:
        raise FileNotFoundError(f"no corpus.json in {root} or {root / 'LibriSpeech'}: probe sets need a corpus "
                                "made by utils/make_synthetic_corpus.py")
    try:
        config = CorpusConfig.from_json(json.loads(meta_path.read_text(encoding="utf-8"))["config"])
    except (json.JSONDecodeError, KeyError, ValueError) as e:
        raise ValueError(f"{meta_path}: unreadable corpus settings ({e}); regenerate the corpus") from None
    return plan_corpus(config)


def shifted_pitch(v: Voice) -> Voice:
    step = PITCH_STEP_CENTS if v.pitch_cents < MID_PITCH_CENTS else -PITCH_STEP_CENTS
    return dataclasses.replace(v, pitch_cents=v.pitch_cents + step)


def shifted_tempo(v: Voice) -> Voice:
    return dataclasses.replace(v, tempo=round(v.tempo * (1 + TEMPO_STEP if v.tempo < 1 else 1 - TEMPO_STEP), 3))


def other_channel(v: Voice) -> Voice:
    return dataclasses.replace(v, highpass_hz=0.0 if v.highpass_hz else 60.0, lowpass_hz=0.0 if v.lowpass_hz else 6000.0,
                               treble_db=-v.treble_db, reverberance=0.0 if v.reverberance > 20 else 30.0,
                               room_scale=v.room_scale or 30.0, reverb_wet_db=v.reverb_wet_db or -5.0)


def open_texts(plan: CorpusPlan, n: int) -> list[Utterance]:
    """``n`` sentences of the corpus's text sources with no vocabulary limit, none used in the corpus;
    with the corpus's acoustic variety when it has any."""
    config = plan.config
    wider = dataclasses.replace(config, vocabulary=0, seed=config.seed + 1, subsets=(
        SubsetSpec("open", 1, 1, n + sum(s.utterances for s in config.subsets)),))
    used = {u.text for c in plan.chapters for u in c.utterances}
    texts = [t for t in select_sentences(wider)[0] if t not in used][:n]
    return [Utterance(f"open-{i:04d}", t, int(np.random.default_rng([config.seed, i]).integers(2 ** 63)),
                      draw_acoustics(_rng(config.seed, _KEY_PROBE, _KEY_ACOUSTICS, i), config.acoustics)
                      if config.acoustics else None)
            for i, t in enumerate(texts)]


def engine_available(engine: str, allow_piper: bool = False) -> bool:
    """Whether ``engine`` can synthesize here (Piper only when allowed)."""
    if engine == "piper" and not allow_piper:
        return False
    if engine in NEURAL_ENGINES:
        return neural.is_installed(engine)
    return shutil.which(DEBIAN_ENGINES[engine][0]) is not None


def new_engine_for(plan: CorpusPlan, train_subset: str | None = None, allow_piper: bool = False,
                   engine: str | None = None) -> str | None:
    """The engine family of the new_engine set: ``engine`` when given (checked), otherwise the first of
    NEW_ENGINE_ORDER that no training speaker uses and that runs here; None when there is none."""
    train_subset = train_subset or plan.config.subsets[0].name
    used = {s.voice.engine for s in plan.speakers if s.subset == train_subset}
    if engine is not None:
        if engine not in NEW_ENGINE_ORDER:
            raise ValueError(f"new engine {engine!r}: choose from {', '.join(NEW_ENGINE_ORDER)}")
        if engine in used:
            raise ValueError(f"new engine {engine!r} is not new: training speakers of {train_subset} use it")
        if engine == "piper" and not allow_piper:
            raise ValueError("new engine piper needs --allow_piper: " + neural.PIPER_LICENCE_NOTE)
        if engine in NEURAL_ENGINES:
            neural.check_installed(engine)
        return engine
    return next((e for e in NEW_ENGINE_ORDER if e not in used and engine_available(e, allow_piper)), None)


def new_engine_voices(plan: CorpusPlan, engine: str, n: int = NEW_ENGINE_VOICES) -> list[Voice]:
    """``n`` speakers of ``engine`` drawn from the corpus seed (none of them in the corpus)."""
    return [draw_voice(engine, _rng(plan.config.seed, _KEY_PROBE, 100 + NEW_ENGINE_ORDER.index(engine), i))
            for i in range(n)]


def available_sets(plan: CorpusPlan, train_subset: str | None = None, allow_piper: bool = False) -> tuple[str, ...]:
    """The probe sets this plan can be rendered with here."""
    return PROBE_SETS + (("new_engine",) if new_engine_for(plan, train_subset, allow_piper) else ())


def _spread(chapters: Sequence[Chapter], n: int) -> list[tuple[Voice, Utterance]]:
    """``n`` utterances taken round-robin over speakers, then chapters, so that many speakers contribute."""
    by_speaker: dict[int, list[tuple[Voice, Utterance]]] = {}
    for c in chapters:
        by_speaker.setdefault(c.speaker, []).extend((c.voice, u) for u in c.utterances)
    rows = itertools.zip_longest(*by_speaker.values())
    return [item for row in rows for item in row if item is not None][:n]


def probe_items(plan: CorpusPlan, n: int, train_subset: str | None = None, heldout_subset: str | None = None,
                sets: Iterable[str] = PROBE_SETS, allow_piper: bool = False,
                new_engine: str | None = None) -> dict[str, list[tuple[Voice, Utterance]]]:
    """(voice, utterance) pairs of each probe set; subsets default to the plan's first and last.

    ``new_engine`` picks the engine of the new_engine set (default: ``new_engine_for``)."""
    names = [s.name for s in plan.config.subsets]
    train_subset, heldout_subset = train_subset or names[0], heldout_subset or names[-1]
    for name in (train_subset, heldout_subset):
        if name not in names:
            raise ValueError(f"subset {name!r} is not in the corpus (it has {', '.join(names)})")
    if train_subset == heldout_subset:
        raise ValueError("the training and held-out subsets must differ")
    sets = list(sets)
    unknown = sorted(set(sets) - set(ALL_PROBE_SETS))
    if unknown:
        raise ValueError(f"unknown probe sets {unknown}; choose from {', '.join(ALL_PROBE_SETS)}")
    train = _spread([c for c in plan.chapters if c.subset == train_subset], n)
    heldout = _spread([c for c in plan.chapters if c.subset == heldout_subset], n)
    heldout_voices = [s.voice for s in plan.speakers if s.subset == heldout_subset]
    train_voices = [s.voice for s in plan.speakers if s.subset == train_subset]
    changed: dict[str, Callable[[Voice], Voice]] = {"pitch": shifted_pitch, "tempo": shifted_tempo,
                                                    "channel": other_channel}
    out: dict[str, list[tuple[Voice, Utterance]]] = {}
    for name in sets:
        if name == "seen":
            out[name] = train
        elif name == "new_voice":
            out[name] = [(heldout_voices[i % len(heldout_voices)], u) for i, (_, u) in enumerate(train)]
        elif name == "new_text":
            out[name] = [(train_voices[i % len(train_voices)], u) for i, (_, u) in enumerate(heldout)]
        elif name == "open_text":
            out[name] = [(heldout_voices[i % len(heldout_voices)], u) for i, u in enumerate(open_texts(plan, n))]
        elif name == "new_engine":
            engine = new_engine_for(plan, train_subset, allow_piper, new_engine)
            if engine is None:
                raise ValueError(f"no engine family outside training ({train_subset}) can run here for the "
                                 f"new_engine set; {neural.INSTALL_HINT}")
            voices = new_engine_voices(plan, engine)
            out[name] = [(voices[i % len(voices)], u) for i, (_, u) in enumerate(train)]
        else:
            out[name] = [(changed[name](v), u) for v, u in train]
    return out


def _render(job: tuple[Voice, Utterance, Path]) -> tuple[str, dict | str]:
    voice, utt, wav = job
    if wav.is_file():  # complete (atomic writes) unless its header is unreadable
        try:
            frames = audio_info(wav).frames
            return "reused", manifest_entry(utt.text, [audio_file_entry(wav.name, 1.0, frames, SAMPLE_RATE)])
        except AudioError:
            wav.unlink()
    try:
        pcm = synthesize_utterance(voice, utt)
    except SynthesisError as e:
        return "failed", f"{utt.utt_id}: {e}"
    write_wav(wav, pcm, SAMPLE_RATE)
    return "made", manifest_entry(utt.text, [audio_file_entry(wav.name, 1.0, len(pcm), SAMPLE_RATE)])


def _forget_if_changed(folder: Path, pairs: Sequence[tuple[Voice, Utterance]]) -> None:
    """Delete the folder's wavs when they were rendered for other voices or texts (e.g. another new engine)."""
    digest = hashlib.sha256(repr([(v, u) for v, u in pairs]).encode()).hexdigest()
    stamp = folder / ".items"
    if stamp.is_file() and stamp.read_text().strip() == digest:
        return
    for wav in folder.glob("*.wav"):
        wav.unlink()
    atomic_write_text(stamp, digest + "\n")


def write_probe_sets(plan: CorpusPlan, output_dir: str | Path, n: int = 40, jobs: int = 2,
                     sets: Iterable[str] = PROBE_SETS, train_subset: str | None = None,
                     heldout_subset: str | None = None, progress: bool = True, allow_piper: bool = False,
                     new_engine: str | None = None) -> dict[str, Path]:
    """Render the probe sets; returns set name → manifest path.  Existing wavs are reused (resumable);
    an utterance the synthesizer cannot make is left out and reported.  A set's wavs from an earlier
    run are reused only when the set's voices and texts are unchanged (``OUTPUT_DIR/<set>/.items``)."""
    out = Path(output_dir)
    items = probe_items(plan, n, train_subset, heldout_subset, sets, allow_piper, new_engine)
    manifests: dict[str, Path] = {}
    failed: list[str] = []
    with cf.ProcessPoolExecutor(max(1, jobs)) as pool:
        for name, pairs in items.items():
            (out / name).mkdir(parents=True, exist_ok=True)
            _forget_if_changed(out / name, pairs)
            job_list = [(v, u, out / name / f"{u.utt_id}.wav") for v, u in pairs]
            entries = []
            for status, result in tqdm(pool.map(_render, job_list), total=len(job_list), desc=name,
                                       unit="utt", disable=not progress, leave=False):
                if status == "failed":
                    failed.append(f"{name}/{result}")
                else:
                    entries.append(result)
            # Manifest paths are relative to the manifest's folder, like convert_librispeech.py's.
            for e in entries:
                e["files"][0]["fname"] = f"{name}/{e['files'][0]['fname']}"
            manifests[name] = out / f"{name}.json"
            write_manifest(manifests[name], entries)
    for f in failed:
        log.warning("left out: %s", f)
    log.info("probe sets: %s in %s (%d left out)", ", ".join(f"{k} {len(v)}" for k, v in items.items()), out,
             len(failed))
    return manifests
