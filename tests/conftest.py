"""Shared fixtures: small LibriSpeech-layout corpora built in the test session."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

TRANSCRIPTS = [
    "HELLO WORLD", "THE QUICK BROWN FOX", "IT'S A FINE DAY", "JUMPS OVER THE LAZY DOG",
    "SPEECH RECOGNITION WITH CONVOLUTIONS", "A B C", "MISTER SMITH WENT HOME", "ONE TWO THREE FOUR FIVE",
]


def speech_like(num_samples: int, sample_rate: int, seed: int) -> np.ndarray:
    """Harmonics of a gliding pitch, amplitude-modulated like syllables, plus light noise: (T,) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sample_rate
    f0 = 110 + 40 * rng.random() + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 3.5 * t + rng.random() * 6)) ** 2
    x = 0.1 * voice * envelope + 0.003 * rng.standard_normal(num_samples)
    return (x / (np.abs(x).max() + 1e-9) * 0.6).astype(np.float32)


def write_librispeech_folder(root: Path, utterances: list[tuple[str, str, np.ndarray, int]],
                             ext: str = "flac") -> Path:
    """Write (utt_id 'S-C-NNNN', transcript, audio, rate) in LibriSpeech's layout under ``root``."""
    by_chapter: dict[tuple[str, str], list[str]] = {}
    for utt_id, text, audio, sr in utterances:
        spk, chap, _ = utt_id.split("-")
        folder = root / spk / chap
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"{utt_id}.{ext}", audio, sr, subtype="PCM_16")
        by_chapter.setdefault((spk, chap), []).append(f"{utt_id} {text}")
    for (spk, chap), lines in by_chapter.items():
        (root / spk / chap / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    """A subset folder: 2 speakers × 2 chapters × 2 utterances, 0.5–3 s, 16 kHz FLAC."""
    utts = []
    for i in range(8):
        spk, chap = 100 + i // 4, 10 + (i // 2) % 2
        n = int(16000 * (0.5 + 0.35 * i))
        utts.append((f"{spk}-{chap}-{i:04d}", TRANSCRIPTS[i], speech_like(n, 16000, i), 16000))
    return write_librispeech_folder(tmp_path / "LibriSpeech" / "dev-clean", utts)


WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]


@pytest.fixture(scope="session")
def mindrecord_dir(tmp_path_factory) -> Path:
    """22 utterances (0.6–3.5 s, 3 speakers, 3-word transcripts): ``m.json`` manifest, ``mr/`` MindRecord."""
    from src.data.librispeech import convert_librispeech
    from src.data.manifest import read_manifest
    from src.data.mindrecord import write_mindrecord
    from src.text.labels import load_labels

    tmp = tmp_path_factory.mktemp("ds")
    rng = np.random.default_rng(0)
    utts = []
    for i in range(22):
        n = int(16000 * rng.uniform(0.6, 3.5))
        text = " ".join(rng.choice(WORDS, 3)).upper()
        utts.append((f"{7 + i % 3}-1-{i:04d}", text, speech_like(n, 16000, i), 16000))
    root = write_librispeech_folder(tmp / "corpus", utts)
    convert_librispeech(root, tmp / "wav", tmp / "m.json", progress=False)
    write_mindrecord(read_manifest(tmp / "m.json"), tmp / "mr", 2, load_labels(), progress=False)
    return tmp


@pytest.fixture(scope="module")
def graph_mode_on_cpu():
    """MindSpore on CPU in GRAPH_MODE for a test module (``pytestmark = pytest.mark.usefixtures(...)``),
    the previous execution mode restored afterwards."""
    import mindspore as ms

    previous = ms.get_context("mode")
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    yield
    ms.set_context(mode=previous)


@pytest.fixture
def restore_logging():
    """Entry points' main() installs its own root handler; give later tests the set-up they had."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
