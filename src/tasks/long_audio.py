"""Speech recognition of recordings of any length with bounded memory: the model runs on overlapping
chunks, the central part of each chunk's output is kept, and the concatenated log-probabilities are
decoded once.

Run in one pass, a convolutional model holds activations for every frame of the recording at once
(10 minutes took 1.8 GB with jasper_tiny and 7.1 GB with jasper5x3, growing linearly).  Here a
recording of ``T`` feature frames is cut into chunks of ``C`` frames; the model sees each chunk with
``O`` frames of context on either side (a *window*) and only the output frames of the chunk's own
``C`` frames are kept::

    frames     |0 ............................................................. T|
    chunk k          [k*C ........ (k+1)*C)
    window k     [k*C - O ...................... (k+1)*C + O)     (clipped to 0 and T)
    kept             outputs (k*C)/s ... (k+1)*C/s  of the window's output, s = the model's time stride

Chunk starts are multiples of the model's stride ``s``, so output frame ``j`` of a window is output
frame ``window_start / s + j`` of the recording (a CTC model emits ``ceil(L / s)`` frames for ``L``
input frames, each centred on input frame ``j * s``).  When ``O`` covers half the model's receptive
field, every kept frame saw exactly the context it sees in one pass, so the log-probabilities, and
the greedy text, are those of one pass.  Convolutional models (Jasper) satisfy this with the default
overlap (at least 2 s, more when the model's receptive field is wider); a recurrent model
(DeepSpeech2) sees all of the recording in one pass, so its chunked output is an approximation near
chunk edges.  Every window is zero-padded to one length (the model masks frames past ``lengths``), so
one compiled graph serves all chunks.

Feature normalisation.  The front ends normalise with statistics of the whole utterance (log-mel:
mean and standard deviation per mel band; spectrogram: one mean and standard deviation), so features
of a chunk normalised on their own would differ from one pass.  Instead a first streaming pass over
the recording accumulates the statistics of all its frames (in float64, combined piece by piece), and
every window is normalised with them: the features are those of one pass up to float rounding
(~1e-6).  Raw (unnormalised) frames of a window are computed from the samples around it with enough
margin that pre-emphasis and the STFT's edge padding only ever apply at the recording's own ends, so
they equal the one-pass frames.  Edge-silence trimming (``features.trim_db``) is applied once to the
whole recording, as one pass would.

Memory: the recording's samples (held by the caller, 64 kB per second as float32), one window of
features and activations, and the kept log-probabilities (``T / s`` × classes floats: about 4 kB per
second of audio for 29 classes at stride 3).  Measured peak RSS of transcribe.py on CPU with random
weights: jasper_tiny, 10 minutes 1.84 GB in one pass and 0.78 GB in chunks (0.70 GB for a 5-second
file; 30 minutes in chunks 0.86 GB); jasper5x3, 10 minutes in chunks 1.82 GB (7.1 GB in one pass).
"""
from __future__ import annotations

import dataclasses
import logging
import math
from typing import Callable, Sequence

import numpy as np

from src.audio import features as fe
from src.audio.trim import trim_silence
from src.config import FeatureConfig

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SECONDS = 20.0
DEFAULT_OVERLAP_SECONDS = 2.0
_PIECE_FRAMES = 4000          # frames per piece of the statistics pass (40 s of audio at a 10 ms hop)

Predict = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
Decode = Callable[[np.ndarray, np.ndarray], list[str]]


# ---------------------------------------------------------------------------------------------
# Front ends, frame by frame
# ---------------------------------------------------------------------------------------------

class _FrameSource:
    """Unnormalised feature frames ``[a, b)`` of one recording, equal to the frames one pass over the
    whole recording computes before its normalisation."""

    def __init__(self, audio: np.ndarray, cfg: FeatureConfig) -> None:
        if cfg.kind not in ("logmel", "spectrogram"):
            raise ValueError(f"chunked transcription supports the logmel and spectrogram front ends, not "
                             f"features.kind={cfg.kind!r}")
        self.audio, self.cfg, self.hop = audio, cfg, cfg.hop_length
        n = len(audio)
        if cfg.kind == "logmel":
            # frame t reads pre-emphasised samples [t*hop - left, t*hop + right); pre-emphasis reads one before
            self.left = cfg.n_fft // 2 - (cfg.n_fft - cfg.win_length) // 2 + 1
            self.right = cfg.win_length - (self.left - 1)
            self.frames = int(fe.valid_frames(n, self.hop))
        else:
            # frame t reads samples [t*hop - n_fft/2, t*hop + n_fft/2) of the zero-padded signal
            self.left = self.right = cfg.n_fft // 2
            self.frames = int(fe.frame_count(n, cfg))
        self.margin = -(-self.left // self.hop)      # whole frames of context before a piece

    def raw(self, a: int, b: int) -> np.ndarray:
        """Frames ``a`` to ``b - 1`` (0 <= a < b <= self.frames): (feature_dim, b - a), float32 for
        log-mel, float64 for the spectrogram (as its front end computes them)."""
        first = max(0, a - self.margin)             # the piece starts on a frame boundary
        start = first * self.hop
        stop = min(len(self.audio), (b - 1) * self.hop + self.right)
        segment = self.audio[start:stop]
        cfg = self.cfg
        if cfg.kind == "logmel":
            frames = fe._windowed_frames(segment, None, cfg)
            out = np.empty((cfg.n_mels, frames.shape[0]), dtype=np.float32)
            fe._log_mel_into(frames, out, cfg)
        else:
            from src.audio.spectrogram import log_magnitude
            out = log_magnitude(segment, cfg.n_fft, cfg.hop_length, cfg.win_length, cfg.window)
        return out[:, a - first:b - first]

    def statistics(self, piece_frames: int = _PIECE_FRAMES) -> tuple[np.ndarray, np.ndarray]:
        """``(shift, scale)`` such that ``(raw - shift) / scale`` is the front end's normalisation over the
        whole recording, accumulated piece by piece (Chan et al.'s pairwise update, in float64)."""
        per_row = self.cfg.kind == "logmel"
        count, mean, m2 = 0, 0.0, 0.0
        for a in range(0, self.frames, piece_frames):
            x = self.raw(a, min(self.frames, a + piece_frames)).astype(np.float64)
            x = x if per_row else x.reshape(1, -1)
            n = x.shape[1]
            piece_mean = x.mean(axis=1, keepdims=True)
            piece_m2 = np.square(x - piece_mean).sum(axis=1, keepdims=True)
            delta = piece_mean - mean
            total = count + n
            mean = mean + delta * n / total
            m2 = m2 + piece_m2 + np.square(delta) * count * n / total
            count = total
        var = m2 / (count - 1) if count > 1 else np.zeros_like(mean)
        std = np.sqrt(var)
        if per_row:   # (x - mean) / (std + eps); one frame has no spread: its centred value 0 stays 0
            return mean, std + self.cfg.norm_eps
        return mean, np.where(std > 0, std, 1.0)    # spectrogram: divided by 1 where the std is 0


# ---------------------------------------------------------------------------------------------
# The plan of chunks
# ---------------------------------------------------------------------------------------------

def receptive_half_frames(length_convs: Sequence[Sequence[int]]) -> int:
    """Input frames a convolution stack (``(kernel, stride, dilation, padding)`` each, in order) looks at
    on either side of an output frame's centre."""
    reach, jump = 0, 1
    for kernel, stride, dilation, _ in length_convs:
        reach += (kernel - 1) * dilation * jump
        jump *= stride
    return -(-reach // 2)


@dataclasses.dataclass(frozen=True)
class ChunkPlan:
    """Windows over ``frames`` input frames.  ``chunk`` and ``overlap`` are multiples of ``stride``."""
    frames: int
    chunk: int
    overlap: int
    stride: int

    @property
    def window(self) -> int:
        """The longest window: every window is padded to this many frames."""
        return min(self.frames, self.chunk + 2 * self.overlap)

    def windows(self) -> list[tuple[int, int, int]]:
        """``(window_start, window_stop, chunk_start)`` per chunk, in order."""
        out = []
        for c0 in range(0, self.frames, self.chunk):
            out.append((max(0, c0 - self.overlap), min(self.frames, c0 + self.chunk + self.overlap), c0))
        return out


def plan_chunks(frames: int, stride: int, chunk_frames: int, overlap_frames: int,
                max_window: int | None = None) -> ChunkPlan:
    """Round the chunk down and the overlap up to multiples of ``stride``; with ``max_window`` (a model of
    fixed input length) the chunk shrinks so that a window fits.  Raises ValueError when nothing fits."""
    if stride < 1:
        raise ValueError(f"the model's time stride must be >= 1, got {stride}")
    overlap = -(-max(0, overlap_frames) // stride) * stride
    chunk = max(stride, chunk_frames // stride * stride)
    if max_window is not None and chunk + 2 * overlap > max_window:
        chunk = (max_window - 2 * overlap) // stride * stride
        if chunk < stride:
            raise ValueError(f"the model takes at most {max_window} frames, too few for chunks with {overlap} "
                             f"frames of context on either side; export it with --n_frames >= "
                             f"{2 * overlap + 10 * stride} or --dynamic")
    return ChunkPlan(frames, chunk, overlap, stride)


# ---------------------------------------------------------------------------------------------
# Transcription
# ---------------------------------------------------------------------------------------------

def chunked_log_probs(predict: Predict, audio: np.ndarray, cfg: FeatureConfig, stride: int,
                      chunk_seconds: float = DEFAULT_CHUNK_SECONDS, overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
                      max_window: int | None = None) -> np.ndarray:
    """The model's log-probabilities for a whole recording, computed chunk by chunk.

    Args:
        predict: ``predict(features (1, F, W) float32, lengths (1,) int32) -> (log_probs (1, W', C),
            out_lengths (1,))`` as numpy arrays (src.tasks.asr.predict bound to a model).
        audio: float32 mono (n,) at ``cfg.sample_rate``.
        cfg: the model's front end.
        stride: input frames per output frame (``model.time_stride``, or from an export's length rule).
        chunk_seconds, overlap_seconds: chunk length and context on either side.
        max_window: the most input frames the model accepts (a fixed-shape export), if any.

    Returns:
        float32 (T', C): the output frames of the whole recording, as one pass gives them.
    """
    if chunk_seconds <= 0 or overlap_seconds < 0:
        raise ValueError(f"chunk_seconds must be > 0 and overlap_seconds >= 0, got {chunk_seconds} and "
                         f"{overlap_seconds}")
    audio = trim_silence(fe._check_audio(audio), cfg)           # once, as one pass over the recording would
    cfg = dataclasses.replace(cfg, trim_db=0.0)
    source = _FrameSource(audio, cfg)
    per_second = cfg.sample_rate / cfg.hop_length
    plan = plan_chunks(source.frames, stride, int(round(chunk_seconds * per_second)),
                       int(math.ceil(overlap_seconds * per_second)), max_window)
    shift, scale = source.statistics()
    padded = int(fe.padded_frames(plan.window, cfg.pad_to))
    if max_window is not None:
        padded = min(padded, max_window)
    kept: list[np.ndarray] = []
    windows = plan.windows()
    log.debug("%d frames in %d chunks of %d frames, %d frames of context each side", plan.frames, len(windows),
              plan.chunk, plan.overlap)
    for w0, w1, c0 in windows:
        feats = np.zeros((1, cfg.feature_dim, padded), dtype=np.float32)
        feats[0, :, :w1 - w0] = (source.raw(w0, w1) - shift) / scale
        log_probs, out_lengths = predict(feats, np.array([w1 - w0], dtype=np.int32))
        first = (c0 - w0) // stride
        last = min(first + plan.chunk // stride, int(out_lengths[0]))
        kept.append(np.asarray(log_probs[0, first:last], dtype=np.float32))
    return np.concatenate(kept)


def transcribe_long(predict: Predict, decode: Decode, audio: np.ndarray, cfg: FeatureConfig, stride: int,
                    chunk_seconds: float = DEFAULT_CHUNK_SECONDS, overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
                    max_window: int | None = None) -> str:
    """The transcript of one recording: :func:`chunked_log_probs`, then ``decode`` once over all of it (so
    a word across a chunk boundary is decoded as in one pass, and a language model sees whole sentences)."""
    log_probs = chunked_log_probs(predict, audio, cfg, stride, chunk_seconds, overlap_seconds, max_window)
    return decode(log_probs[None], np.array([len(log_probs)]))[0]


def overlap_for(length_convs: Sequence[Sequence[int]] | None, cfg: FeatureConfig,
                minimum_seconds: float = DEFAULT_OVERLAP_SECONDS) -> float:
    """Context on either side of a chunk: at least ``minimum_seconds``, and at least half the receptive
    field of the model's convolutions (``length_convs``) so that chunked output equals one pass."""
    if not length_convs:
        return minimum_seconds
    return max(minimum_seconds, receptive_half_frames(length_convs) * cfg.hop_length / cfg.sample_rate)


def model_geometry(model, mindir: str | None = None) -> tuple[int | None, list | None, int | None]:
    """``(stride, length_convs, max_window)`` of a registry model or a loaded MindIR (its sidecar gives the
    length rule; a fixed-shape export its input length).  Unknown values are None."""
    convs = getattr(model, "length_convs", None)
    stride = getattr(model, "time_stride", None)
    if mindir and not convs:
        from src.deploy.sidecar import read_info
        info = read_info(mindir)
        convs = info.length_convs if info is not None else None
    if stride is None and convs:
        stride = int(np.prod([c[1] for c in convs]))
    return stride, (list(convs) if convs else None), getattr(model, "n_frames", None)


def probe_stride(predict: Predict, feature_dim: int, frames: int = 960) -> int:
    """The time stride of a model that does not state it: input frames per output frame of a test input."""
    _, out_lengths = predict(np.zeros((1, feature_dim, frames), np.float32), np.array([frames], np.int32))
    return max(1, int(round(frames / max(1, int(out_lengths[0])))))
