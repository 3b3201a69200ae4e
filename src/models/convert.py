"""NVIDIA Jasper state dicts → this model's parameters (pure numpy; no PyTorch needed here).

Three layouts are understood; names below are for layer i, sub-block position j, residual source r:

* DeepLearningExamples (current): ``encoder.layers.{i}.conv.{j}.weight`` (conv, [C_out, C_in, k]),
  BN at ``conv.{j+1}.{weight,bias,running_mean,running_var}``, ``encoder.layers.{i}.res.{r}.{0,1}``,
  ``decoder.layers.0.{weight,bias}``;
* DeepLearningExamples 2019: the same below the prefixes ``jasper_encoder.encoder.`` and
  ``jasper_decoder.decoder_layers.``;
* NeMo: ``encoder.encoder.{i}.mconv.{j}.conv.weight`` (BN at ``mconv.{j+1}``),
  ``encoder.encoder.{i}.res.{r}.0.conv.weight`` (BN ``res.{r}.1``), ``decoder.decoder_layers.0.*``.

Every source tensor must be used exactly once and every parameter of the model filled exactly once
with the right shape; anything else is an error naming the tensors.  ``num_batches_tracked``
counters are dropped; a feature front end stored in the checkpoint (window, mel filterbank) is
compared with ours, since the weights only work on the features they were trained on.
"""
from __future__ import annotations

import re
from typing import Mapping

import numpy as np

from src.audio.features import hann_window, mel_filterbank
from src.config import Config

_BN = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
LAYOUTS = ("dle", "dle2019", "nemo")


class ConversionError(ValueError):
    """A checkpoint that does not map one-to-one onto the model."""


def detect_layout(names: list[str]) -> str:
    if any(n.startswith("encoder.layers.") for n in names):
        return "dle"
    if any(n.startswith("jasper_encoder.encoder.") for n in names):
        return "dle2019"
    if any(n.startswith("encoder.encoder.") for n in names):
        return "nemo"
    raise ConversionError("not a Jasper checkpoint: no tensor named encoder.layers.*, "
                          f"jasper_encoder.encoder.* or encoder.encoder.* (found e.g. {names[:5]})")


def _canonical(name: str, layout: str) -> str | None:
    """Source name → DeepLearningExamples' current name (None for tensors that are not model weights)."""
    if layout == "dle2019":
        name = name.replace("jasper_encoder.encoder.", "encoder.layers.", 1)
        name = name.replace("jasper_decoder.decoder_layers.", "decoder.layers.", 1)
    elif layout == "nemo":
        name = name.replace("decoder.decoder_layers.", "decoder.layers.", 1)
        m = re.match(r"encoder\.encoder\.(\d+)\.(mconv|res)\.(.+)$", name)
        if m:
            i, kind, rest = m.groups()
            rest = re.sub(r"^(\d+)\.conv\.weight$", r"\1.weight", rest)               # mconv.{j}.conv.weight
            rest = re.sub(r"^(\d+)\.0\.conv\.weight$", r"\1.0.weight", rest)          # res.{r}.0.conv.weight
            name = f"encoder.layers.{i}.{'conv' if kind == 'mconv' else 'res'}.{rest}"
    return name if name.startswith(("encoder.layers.", "decoder.layers.")) else None


def to_mindspore_name(dle_name: str) -> str:
    """``encoder.layers.3.conv.1.running_mean`` → ``encoder.layers.3.conv.1.moving_mean`` etc."""
    head, _, leaf = dle_name.rpartition(".")
    is_bn = leaf in ("running_mean", "running_var") or (
        re.search(r"\.(conv\.\d*[13579]|res\.\d+\.1)$", head) is not None and leaf in ("weight", "bias")
        and not head.startswith("decoder."))
    return f"{head}.{_BN[leaf]}" if is_bn else dle_name


def _check_front_end(state: Mapping[str, np.ndarray], config: Config) -> list[str]:
    """Compare a stored window / mel filterbank with ours; returns the names checked."""
    checked = []
    fc = config.features
    for name, value in state.items():
        if not name.endswith(("featurizer.window", "featurizer.fb")):
            continue
        ours = hann_window(fc.win_length) if name.endswith("window") else mel_filterbank(
            fc.sample_rate, fc.n_fft, fc.n_mels)
        theirs = np.asarray(value, dtype=np.float64).reshape(ours.shape) if value.size == ours.size else None
        if theirs is None or not np.allclose(theirs, ours, atol=1e-4):
            raise ConversionError(f"{name} differs from this project's front end (src/audio/features.py): the "
                                  "weights expect other features; check features.* in --config")
        checked.append(name)
    return checked


def convert_state_dict(state: Mapping[str, np.ndarray], expected: Mapping[str, tuple[int, ...]],
                       config: Config) -> dict[str, np.ndarray]:
    """Map a Jasper state dict (numpy arrays) onto the parameters ``expected`` (name → shape) of the
    MindSpore model built from ``config``.  Raises ConversionError naming every problem tensor."""
    names = list(state)
    layout = detect_layout(names)
    out: dict[str, np.ndarray] = {}
    unused, problems = [], []
    consumed = set(_check_front_end(state, config))
    for name in names:
        if name in consumed or name.endswith("num_batches_tracked"):
            continue
        canonical = _canonical(name, layout)
        if canonical is None:
            unused.append(name)
            continue
        target = to_mindspore_name(canonical)
        if target not in expected:
            unused.append(name)
            continue
        if target in out:
            problems.append(f"{name} fills {target} a second time")
            continue
        value = np.asarray(state[name], dtype=np.float32)
        shape = tuple(expected[target])
        if value.ndim == 3 and len(shape) == 4:      # conv [C_out, C_in, k] → MindSpore's (C_out, C_in, 1, k)
            value = value[:, :, None, :]
        if value.shape != shape:
            problems.append(f"{name} has shape {tuple(state[name].shape)}; {target} needs {shape}")
            continue
        out[target] = np.ascontiguousarray(value)
    missing = sorted(set(expected) - set(out))
    if unused:
        problems.append(f"{len(unused)} tensors of the checkpoint have no place in the model: {unused[:8]}")
    if missing:
        problems.append(f"{len(missing)} model parameters are not in the checkpoint: {missing[:8]}")
    if problems:
        raise ConversionError(f"{layout} checkpoint does not fit --config {config.model.name}:\n  "
                              + "\n  ".join(problems))
    return out
