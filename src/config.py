"""One typed configuration, loaded from YAML.

Every section is a frozen dataclass; a YAML key that names no field is an error, and so is a value
of the wrong type.  Overrides use dotted keys: ``--set features.dither=0 --set data.batch_size=8``
(values are parsed as YAML, so ``1e-3``, ``true`` and ``[1, 2]`` work).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from src.fileio import atomic_write_text


@dataclass(frozen=True)
class FeatureConfig:
    """Log-mel front end of NVIDIA's Jasper (see src/audio/features.py)."""
    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 320          # 20 ms symmetric Hann, centred in the n_fft frame
    hop_length: int = 160          # 10 ms
    n_mels: int = 64
    preemph: float = 0.97
    log_zero_guard: float = 1e-20
    norm_eps: float = 1e-5         # added to the per-feature standard deviation
    dither: float = 1e-5           # training only
    pad_to: int = 16               # batched frame counts are padded to a multiple of this
    trim_db: float = 0.0           # > 0: cut edge silence, this many dB under the loudest 10 ms (src/audio/trim.py)
    trim_margin: float = 0.1       # seconds kept before and after the loud part when trimming


@dataclass(frozen=True)
class AugmentConfig:
    """Online augmentation, drawn afresh for every utterance in every epoch (training only)."""
    speed_perturb: bool = True
    min_speed: float = 0.85
    max_speed: float = 1.15
    spec_augment: bool = True
    spec_augment_from_epoch: int = 0  # masks start at this epoch: a model still on the CTC plateau learns faster without
    freq_masks: int = 2
    max_freq_width: int = 20
    time_masks: int = 2
    max_time_width: int = 75
    freq_warp: float = 0.0          # spectrum scaled in frequency by a factor ~ U[1-w, 1+w] per utterance (0: off)


@dataclass(frozen=True)
class DataConfig:
    """Batching of MindRecord data (see src/data/dataset.py)."""
    batch_size: int = 16
    max_duration: float = 16.7     # seconds; longer utterances are skipped and counted, never cropped
    num_buckets: int = 8           # length buckets: one padded shape each (bench: 7.9 % padding on LibriSpeech-like data)
    num_parallel_workers: int = 2
    shuffle: bool = True
    sortagrad: int = 0             # the first N epochs go shortest batches first (DeepSpeech2's SortaGrad)
    seed: int = 42


@dataclass(frozen=True)
class BlockConfig:
    """One Jasper block: ``repeat`` sub-blocks of conv → BN → ReLU → dropout (the last one's ReLU and
    dropout come after the residual sum)."""
    filters: int
    repeat: int = 1
    kernel: int = 11
    stride: int = 1
    dilation: int = 1
    dropout: float = 0.0
    residual: bool = False      # takes (dense) residual inputs from earlier blocks


@dataclass(frozen=True)
class ModelConfig:
    """A Jasper network: prologue, B blocks and epilogue as one list (src/models/jasper.py)."""
    name: str = "jasper"
    blocks: tuple[BlockConfig, ...] = ()
    dense_residual: bool = True  # each residual block sees every earlier block's output (Jasper "DR")
    bn_eps: float = 1e-3
    bn_momentum: float = 0.1     # PyTorch convention (weight of the new batch statistic)
    init: str = "xavier_uniform"

    def residual_plan(self, in_channels: int) -> list[tuple[BlockConfig, int, tuple[int, ...], bool]]:
        """Per block: (block, input channels, channels of its residual sources, whether its output
        joins the sources of later blocks).  NVIDIA's rule: the sources start with the encoder input,
        a dense residual block appends its output, any other block restarts them with its own."""
        if not self.blocks:
            raise ValueError("model.blocks is empty")
        plan, channels, sources = [], in_channels, [in_channels]
        for block in self.blocks:
            keep = block.residual and self.dense_residual
            plan.append((block, channels, tuple(sources) if block.residual else (), keep))
            sources = sources + [block.filters] if keep else [block.filters]
            channels = block.filters
        return plan


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and per-step learning-rate schedule (src/training/{optim,lr_schedule}.py)."""
    name: str = "novograd"      # novograd | adamw | sgd
    lr: float = 1e-2
    betas: tuple[float, ...] = (0.95, 0.98)   # novograd / adamw
    momentum: float = 0.9       # sgd
    eps: float = 1e-8
    weight_decay: float = 1e-3
    decay_norm_and_bias: bool = True  # NVIDIA's recipe decays every parameter; false: conv/dense weights only
    grad_clip: float = 0.0      # max global gradient norm; 0 = off
    warmup_steps: int = 0
    hold_steps: int = 0
    decay: str = "exponential"  # exponential | polynomial | constant, from lr down to min_lr at the end
    min_lr: float = 1e-5
    power: float = 2.0          # polynomial decay exponent


@dataclass(frozen=True)
class TrainConfig:
    """Training loop settings (src/training/)."""
    epochs: int = 10
    max_steps: int = 0          # stop after this many optimizer steps; 0 = epochs decide
    max_minutes: float = 0.0    # wall-clock budget of one run (checkpoint saved, then stop); 0 = none
    schedule_to_budget: bool = False  # max_minutes would stop the run early: end the LR decay with it
    loss_scale: str = "none"    # none | dynamic | a fixed number such as "1024"
    loss_scale_init: float = 65536.0
    loss_scale_factor: int = 2
    loss_scale_window: int = 1000
    amp_level: str = "auto"     # auto = O0 on CPU, O2 on GPU/Ascend; or O0 | O1 | O2 | O3
    accumulate: int = 1         # micro-batches per optimizer step
    ema: float = 0.0            # EMA decay of the weights; 0 = off
    log_every: int = 10         # optimizer steps between log lines
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    eval_every: int = 0         # optimizer steps between dev evaluations; 0 = at each epoch end
    seed: int = 1


@dataclass(frozen=True)
class Config:
    labels_path: str = "labels.json"
    features: FeatureConfig = field(default_factory=FeatureConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


class ConfigError(ValueError):
    """A configuration file or override that does not fit the schema."""


def _check_type(value: Any, tp: Any, where: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _check_type(value, option, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {value!r} does not fit {tp}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)  # tuple[X, ...] and list[X] alike
        items = [_check_type(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        # PyYAML follows YAML 1.1, where 5e-3 (no dot) is a string, not a float
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected float, got {value!r}") from None
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # e.g. loss_scale: 1024
    if tp in (int, float) and isinstance(value, bool) or not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def _build(cls: type, data: dict, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(names)}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _check_type(value, hints[name], f"{where}.{name}" if where else name)
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field is missing
        raise ConfigError(f"{where or 'config'}: {e}") from None


def _apply_override(tree: dict, override: str) -> None:
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like section.key=value")
    key, raw = override.split("=", 1)
    *parents, leaf = key.strip().split(".")
    node = tree
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {p!r} is not a section")
    node[leaf] = yaml.safe_load(raw) if raw.strip() else ""


def config_from_dict(tree: dict, overrides: Iterable[str] = ()) -> Config:
    tree = dict(tree or {})
    for o in overrides:
        _apply_override(tree, o)
    return _build(Config, tree, "")


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Read a YAML config (``None`` gives the defaults) and apply ``key=value`` overrides."""
    tree: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML ({e})") from None
    try:
        return config_from_dict(tree, overrides)
    except ConfigError as e:
        raise ConfigError(f"{path or '<defaults>'}: {e}") from None


def config_to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically), so a run can be reproduced exactly."""
    atomic_write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))
