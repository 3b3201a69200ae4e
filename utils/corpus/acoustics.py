"""Acoustic conditions drawn per utterance: room reverberation, noise, level and transmission channel.

A synthetic voice heard through one clean channel teaches a model that channel.  With a strength
``s`` in (0, 1] every utterance gets its own draw (from the corpus seed, so it is reproducible):

    room      with probability 0.6 s: a simulated shoe-box room (image source method, pyroomacoustics),
              RT60 0.15 .. 0.15 + 0.75 s seconds, random source and microphone positions
    noise     with probability 0.7 s: coloured Gaussian noise (spectrum ~ f^-tilt, tilt 0..2, sometimes
              with mains hum and slow amplitude modulation) at an SNR of 35 - 30 s .. 35 dB against the
              active speech level
    level     with probability 0.5 s: a recording gain of -18 s .. +6 s dB
    channel   with probability 0.45 s, one of
                telephone  300-3400 Hz band, 8 kHz, G.711 mu-law
                gsm        300-3400 Hz band, 8 kHz, GSM 06.10 full-rate codec
                amr        8 kHz AMR-NB at 4.75 .. 12.2 kbit/s
                mp3        16 kHz MP3 at 16 .. 32 kbit/s
                lowpass    a band limit at 3.5 .. 7 kHz (a poor microphone or a narrow-band link)

The codecs are the real ones in sox (Debian ``libsox-fmt-all``: LAME, libgsm, opencore-amrnb), run
with dither off, so they are deterministic.  ``apply_acoustics`` keeps the signal length.
"""
from __future__ import annotations

import math
import shutil
import subprocess
from dataclasses import dataclass
from typing import Sequence

import numpy as np

SAMPLE_RATE = 16000
CHANNELS = ("telephone", "gsm", "amr", "mp3", "lowpass")
SOUND_SPEED = 343.0
MAX_IMAGE_ORDER = 60
# Probability of each effect at strength 1.
P_ROOM, P_NOISE, P_LEVEL, P_CHANNEL = 0.6, 0.7, 0.5, 0.45


class AcousticsError(RuntimeError):
    """An effect could not be applied (missing tool or library, codec failure)."""


@dataclass(frozen=True)
class Acoustics:
    """One utterance's recording conditions; the defaults change nothing."""
    room: tuple[float, ...] = ()   # (Lx, Ly, Lz, rt60, sx, sy, sz, mx, my, mz) in metres / seconds; () = none
    snr_db: float | None = None    # added noise, against the active speech level; None = none
    noise_tilt: float = 0.0        # noise power spectrum ~ f^-tilt
    hum_hz: float = 0.0            # mains hum (50 or 60 Hz and harmonics) in the noise; 0 = none
    noise_modulation: float = 0.0  # depth of a slow (0.3-2 Hz) amplitude modulation of the noise
    gain_db: float = 0.0
    channel: str = ""              # "" or one of CHANNELS
    channel_param: float = 0.0     # bit rate (kbit/s) for amr and mp3, cut-off (Hz) for lowpass
    seed: int = 0                  # of the noise samples

    @property
    def is_clean(self) -> bool:
        return not self.room and self.snr_db is None and self.gain_db == 0.0 and not self.channel

    def label(self) -> str:
        parts = []
        if self.room:
            parts.append(f"room rt60 {self.room[3]:.2f}s")
        if self.snr_db is not None:
            parts.append(f"noise {self.snr_db:.0f}dB")
        if self.gain_db:
            parts.append(f"gain {self.gain_db:+.0f}dB")
        if self.channel:
            parts.append(self.channel + (f" {self.channel_param:g}" if self.channel_param else ""))
        return ", ".join(parts) or "clean"


AMR_RATES = (4.75, 5.15, 5.9, 6.7, 7.4, 7.95, 10.2, 12.2)   # sox -C 0..7


def draw_acoustics(rng: np.random.Generator, strength: float) -> Acoustics:
    """Conditions of one utterance.  Every draw is made whatever the outcome, so the sequence of
    random numbers (and the other effects) does not depend on which effects fire."""
    s = float(min(max(strength, 0.0), 1.0))
    u = rng.random(4)
    # room
    dims = np.array([rng.uniform(3.0, 10.0), rng.uniform(2.5, 8.0), rng.uniform(2.4, 4.0)])
    rt60 = rng.uniform(0.15, 0.15 + 0.75 * s)
    src = rng.uniform(0.1, 0.9, 3) * (dims - 1.0) + 0.5
    mic = rng.uniform(0.1, 0.9, 3) * (dims - 1.0) + 0.5
    # noise
    snr = rng.uniform(35.0 - 30.0 * s, 35.0)
    tilt = rng.uniform(0.0, 2.0)
    hum = float(rng.choice([50.0, 60.0])) if rng.random() < 0.25 else 0.0
    modulation = rng.uniform(0.0, 0.6) if rng.random() < 0.3 else 0.0
    # level and channel
    gain = rng.uniform(-18.0 * s, 6.0 * s)
    channel = str(rng.choice(CHANNELS))
    param_u = rng.random()
    param = {"amr": AMR_RATES[int(param_u * len(AMR_RATES))], "mp3": float(16 + 8 * int(param_u * 3)),
             "lowpass": round(3500.0 + 3500.0 * param_u, -1)}.get(channel, 0.0)
    seed = int(rng.integers(2 ** 63))
    room = tuple(round(float(v), 3) for v in (*dims, rt60, *src, *mic)) if u[0] < P_ROOM * s else ()
    return Acoustics(room=room,
                     snr_db=round(float(snr), 1) if u[1] < P_NOISE * s else None,
                     noise_tilt=round(float(tilt), 2), hum_hz=hum, noise_modulation=round(float(modulation), 2),
                     gain_db=round(float(gain), 1) if u[2] < P_LEVEL * s else 0.0,
                     channel=channel if u[3] < P_CHANNEL * s else "",
                     channel_param=param if u[3] < P_CHANNEL * s else 0.0, seed=seed)


# --------------------------------------------------------------------------------------------------
# Effects


def active_rms(x: np.ndarray, frame: int = 320) -> float:
    """RMS over frames within 30 dB of the loudest: the level of the speech, not of the pauses."""
    n = len(x) // frame
    if n == 0:
        return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0
    energy = np.mean(np.square(x[: n * frame].reshape(n, frame), dtype=np.float64), axis=1)
    active = energy[energy >= energy.max() * 1e-3]
    return float(np.sqrt(active.mean())) if active.size else 0.0


def room_impulse_response(room: Sequence[float], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The impulse response (float32) from source to microphone in a shoe-box room (image sources)."""
    try:
        import pyroomacoustics as pra
    except ImportError:
        from utils.corpus.neural import INSTALL_HINT
        raise AcousticsError(f"room reverberation needs pyroomacoustics: {INSTALL_HINT}") from None
    lx, ly, lz, rt60, *pos = room
    dims = [lx, ly, lz]
    absorption, order = pra.inverse_sabine(rt60, dims)
    shoebox = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(absorption),
                          max_order=int(min(order, MAX_IMAGE_ORDER)), air_absorption=False, use_rand_ism=False)
    shoebox.add_source(list(pos[:3]))
    shoebox.add_microphone(list(pos[3:6]))
    shoebox.compute_rir()
    return np.asarray(shoebox.rir[0][0], dtype=np.float32)


def reverberate(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``x`` through ``rir``, same length, active level kept; the propagation delay is removed."""
    from scipy.signal import fftconvolve

    start = int(np.argmax(np.abs(rir)))       # the direct path
    y = fftconvolve(x, rir[start:])[: len(x)].astype(np.float32)
    before, after = active_rms(x), active_rms(y)
    return y * (before / after) if after > 0 else y


def noise(n: int, tilt: float, rng: np.random.Generator, hum_hz: float = 0.0, modulation: float = 0.0,
          sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Unit-RMS noise: Gaussian with power spectrum ~ f^-tilt, optional mains hum and slow modulation."""
    white = rng.standard_normal(n)
    if tilt:
        spec = np.fft.rfft(white)
        f = np.arange(len(spec), dtype=float)
        f[0] = 1.0
        white = np.fft.irfft(spec * f ** (-tilt / 2), n)
    out = white / (np.sqrt(np.mean(white ** 2)) + 1e-12)
    t = np.arange(n) / sample_rate
    if hum_hz:
        hum = sum(np.sin(2 * np.pi * k * hum_hz * t + rng.uniform(0, 2 * np.pi)) / k for k in (1, 2, 3, 5))
        out = out + 2.0 * hum / (np.sqrt(np.mean(hum ** 2)) + 1e-12)
    if modulation:
        rate = rng.uniform(0.3, 2.0)
        out = out * (1 + modulation * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)))
    return (out / (np.sqrt(np.mean(out ** 2)) + 1e-12)).astype(np.float32)


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator, tilt: float = 0.0, hum_hz: float = 0.0,
              modulation: float = 0.0) -> np.ndarray:
    """``x`` plus noise whose RMS is ``snr_db`` below the active speech level of ``x``."""
    level = active_rms(x)
    return (x + noise(len(x), tilt, rng, hum_hz, modulation) * (level / 10 ** (snr_db / 20))).astype(np.float32)


def _sox_bytes(args: Sequence[str], data: bytes) -> bytes:
    if shutil.which("sox") is None:
        raise AcousticsError("the codecs need sox (apt-get install sox libsox-fmt-all)")
    try:
        return subprocess.run(["sox", "-V1", "-R", "-D", *args], input=data, capture_output=True, check=True,
                              timeout=60).stdout
    except subprocess.CalledProcessError as e:
        msg = (e.stderr or b"").decode(errors="replace").strip().splitlines()
        raise AcousticsError(f"sox {' '.join(args)}: {msg[-1] if msg else e.returncode}") from None
    except subprocess.TimeoutExpired:
        raise AcousticsError("sox timed out") from None


_F32 = ["-t", "f32", "-r", str(SAMPLE_RATE), "-c", "1"]


def codec(x: np.ndarray, name: str, param: float = 0.0) -> np.ndarray:
    """``x`` (float32, 16 kHz) encoded and decoded by a transmission channel; same length, aligned."""
    if name == "lowpass":
        effects = ["sinc", f"-{param or 3400:g}"]
        out = _sox_bytes([*_F32, "-", *_F32, "-", *effects], x.astype(np.float32).tobytes())
        return _fit(np.frombuffer(out, dtype=np.float32), len(x))
    if name in ("telephone", "gsm"):
        fmt = ["-t", "ul"] if name == "telephone" else ["-t", "gsm"]
        enc = [*fmt, "-r", "8000", "-c", "1", "-", "sinc", "300-3400", "rate", "-h", "8000"]
    elif name == "amr":
        mode = AMR_RATES.index(param) if param in AMR_RATES else 7
        fmt = ["-t", "amr-nb"]
        enc = [*fmt, "-C", str(mode), "-r", "8000", "-c", "1", "-", "rate", "-h", "8000"]
    elif name == "mp3":
        fmt = ["-t", "mp3"]
        enc = [*fmt, "-C", f"{int(param or 24)}", "-r", str(SAMPLE_RATE), "-c", "1", "-"]
    else:
        raise ValueError(f"unknown channel {name!r}; choose from {', '.join(CHANNELS)}")
    coded = _sox_bytes([*_F32, "-", *enc], x.astype(np.float32).tobytes())
    headerless = ["-r", "8000", "-c", "1"] if name in ("telephone", "gsm") else []
    decoded = _sox_bytes([*fmt, *headerless, "-", *_F32, "-", "rate", "-h", str(SAMPLE_RATE)], coded)
    y = np.frombuffer(decoded, dtype=np.float32)
    return _fit(_align(y, x), len(x))


def _align(y: np.ndarray, x: np.ndarray, max_lag: int = 4000) -> np.ndarray:
    """``y`` shifted so that it lines up with ``x`` (codecs add encoder and decoder delay)."""
    n = 1 << int(math.ceil(math.log2(len(x) + len(y) + 1)))
    corr = np.fft.irfft(np.fft.rfft(y, n) * np.conj(np.fft.rfft(x, n)), n)
    lags = np.concatenate([corr[: max_lag + 1], corr[-max_lag:]])
    best = int(np.argmax(np.abs(lags)))
    sign = np.float32(1.0 if lags[best] >= 0 else -1.0)   # sox's band-pass inverts the polarity
    lag = best if best <= max_lag else best - len(lags)
    return sign * (y[lag:] if lag > 0 else np.concatenate([np.zeros(-lag, np.float32), y]))


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    return np.pad(y[:n], (0, max(0, n - len(y)))).astype(np.float32)


def apply_acoustics(x: np.ndarray, a: Acoustics, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``x`` (float32, 16 kHz, with its lead and tail silence) recorded under ``a``: room, then noise,
    then gain, then the channel.  Same length."""
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"acoustics work at {SAMPLE_RATE} Hz, got {sample_rate}")
    y = np.asarray(x, dtype=np.float32)
    if a.room:
        y = reverberate(y, room_impulse_response(a.room, sample_rate))
    if a.snr_db is not None:
        y = add_noise(y, a.snr_db, np.random.default_rng(a.seed), a.noise_tilt, a.hum_hz, a.noise_modulation)
    if a.gain_db:
        y = y * np.float32(10 ** (a.gain_db / 20))
    if a.channel:
        y = codec(np.clip(y, -1.0, 1.0), a.channel, a.channel_param)
    return y.astype(np.float32)
