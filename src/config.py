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


FRONT_ENDS = ("logmel", "spectrogram", "mfcc")


@dataclass(frozen=True)
class FeatureConfig:
    """The front end (src/audio/features.py), chosen by ``kind``:

    * ``logmel``: NVIDIA Jasper's log-mel filterbank, ``n_mels`` rows, per-feature normalisation;
    * ``spectrogram``: deepspeech.pytorch's log1p |STFT|, ``n_fft // 2 + 1`` rows, one mean/std per utterance;
    * ``mfcc``: TensorFlow speech_commands' MFCC, ``n_mfcc`` rows (``n_mels`` mel channels fmin..fmax).
    """
    kind: str = "logmel"
    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 320          # 20 ms symmetric Hann, centred in the n_fft frame
    hop_length: int = 160          # 10 ms
    window: str = "hann"           # hann | hamming (spectrogram)
    n_mels: int = 64
    n_mfcc: int = 10               # mfcc only
    fmin: float = 0.0
    fmax: float = 0.0              # 0: sample_rate / 2
    preemph: float = 0.97          # logmel only
    log_zero_guard: float = 1e-20
    norm_eps: float = 1e-5         # added to the per-feature standard deviation
    dither: float = 1e-5           # training only
    pad_to: int = 16               # batched frame counts are padded to a multiple of this
    trim_db: float = 0.0           # > 0: cut edge silence, this many dB under the loudest 10 ms (src/audio/trim.py)
    trim_margin: float = 0.1       # seconds kept before and after the loud part when trimming

    @property
    def feature_dim(self) -> int:
        """Rows of the feature matrix: the model's ``in_features``."""
        return {"logmel": self.n_mels, "spectrogram": self.n_fft // 2 + 1, "mfcc": self.n_mfcc}[self.kind]

    def validate(self) -> None:
        _one_of("features.kind", self.kind, FRONT_ENDS)
        _one_of("features.window", self.window, ("hann", "hamming"))
        for key in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "n_mfcc", "pad_to"):
            _at_least(f"features.{key}", getattr(self, key), 1)
        if self.win_length > self.n_fft:
            raise ConfigError(f"features.win_length={self.win_length} exceeds features.n_fft={self.n_fft}")
        for key in ("dither", "trim_db", "trim_margin", "fmin", "fmax"):
            _at_least(f"features.{key}", getattr(self, key), 0)


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

    def validate(self) -> None:
        for key in ("batch_size", "num_buckets", "num_parallel_workers"):
            _at_least(f"data.{key}", getattr(self, key), 1)
        _greater("data.max_duration", self.max_duration, 0)
        _at_least("data.sortagrad", self.sortagrad, 0)


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and per-step learning-rate schedule (src/training/{optim,lr_schedule}.py)."""
    name: str = "novograd"      # novograd | adamw | adam | sgd
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
    nesterov: bool = False      # sgd: Nesterov momentum
    boundaries: tuple[int, ...] = ()      # piecewise: steps where the rate changes
    lr_values: tuple[float, ...] = ()     # piecewise: one more rate than boundaries

    def validate(self) -> None:
        _one_of("optim.name", self.name, ("novograd", "adamw", "adam", "sgd"))
        _one_of("optim.decay", self.decay, ("exponential", "polynomial", "constant", "piecewise"))
        _greater("optim.lr", self.lr, 0)
        for key in ("eps", "weight_decay", "grad_clip", "warmup_steps", "hold_steps", "min_lr", "momentum"):
            _at_least(f"optim.{key}", getattr(self, key), 0)
        for i, b in enumerate(self.betas):
            _in_range(f"optim.betas[{i}]", b, 0, 1)


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

    def validate(self) -> None:
        for key in ("epochs", "max_steps", "max_minutes", "eval_every"):
            _at_least(f"train.{key}", getattr(self, key), 0)
        for key in ("accumulate", "log_every", "checkpoint_every", "keep_checkpoints", "loss_scale_window"):
            _at_least(f"train.{key}", getattr(self, key), 1)
        _in_range("train.ema", self.ema, 0, 1)
        _greater("train.loss_scale_init", self.loss_scale_init, 0)


@dataclass(frozen=True)
class KwsConfig:
    """Keyword spotting as TensorFlow's speech_commands example defines it (src/tasks/kws.py)."""
    wanted_words: tuple[str, ...] = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
    clip_duration_ms: int = 1000
    silence_percentage: float = 10.0   # of every split, drawn from _background_noise_
    unknown_percentage: float = 10.0   # of every split, drawn from the other words
    time_shift_ms: float = 100.0       # training: shift uniform in ±this, zero fill
    background_frequency: float = 0.8  # training: probability of mixing in background noise
    background_volume: float = 0.1     # training: noise volume uniform in [0, this]
    # streaming detection (TensorFlow's RecognizeCommands)
    stride_ms: float = 20.0
    average_window_ms: float = 1000.0
    detection_threshold: float = 0.7
    suppression_ms: float = 1500.0

    @property
    def labels(self) -> tuple[str, ...]:
        """Class names in output order: _silence_, _unknown_, then the wanted words."""
        return ("_silence_", "_unknown_", *self.wanted_words)

    def validate(self) -> None:
        if not self.wanted_words or len(set(self.wanted_words)) != len(self.wanted_words):
            raise ConfigError(f"kws.wanted_words must be distinct words, got {list(self.wanted_words)}")
        _at_least("kws.clip_duration_ms", self.clip_duration_ms, 1)
        for key in ("silence_percentage", "unknown_percentage", "time_shift_ms", "background_volume", "stride_ms",
                    "average_window_ms", "suppression_ms"):
            _at_least(f"kws.{key}", getattr(self, key), 0)
        for key in ("background_frequency", "detection_threshold"):
            _in_range(f"kws.{key}", getattr(self, key), 0, 1)


TASKS = ("asr", "kws")


@dataclass(frozen=True)
class Config:
    task: str = "asr"                  # asr (CTC transcription) | kws (keyword classification)
    labels_path: str = "labels.json"   # asr: output symbols (CTC blank last)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: Any = None                  # the family's config dataclass (src/models), typed by model.name
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    kws: KwsConfig = field(default_factory=KwsConfig)

    def validate(self) -> None:
        _one_of("task", self.task, TASKS)
        frames = getattr(self.model, "input_frames", None)
        if self.task == "kws" and frames is not None:
            from src.audio.features import frame_count
            clip = self.features.sample_rate * self.kws.clip_duration_ms // 1000
            if frame_count(clip, self.features) != frames:
                raise ConfigError(f"model.input_frames={frames} but a {self.kws.clip_duration_ms} ms clip gives "
                                  f"{frame_count(clip, self.features)} frames with these features")


DEFAULT_CONFIG = "src/configs/jasper_tiny.yaml"   # what entry points use without --config


class ConfigError(ValueError):
    """A configuration file or override that does not fit the schema."""


def _at_least(key: str, value: float, low: float) -> None:
    if value < low:
        raise ConfigError(f"{key}={value} must be >= {low}")


def _greater(key: str, value: float, low: float) -> None:
    if not value > low:
        raise ConfigError(f"{key}={value} must be > {low}")


def _in_range(key: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{key}={value} must be within [{low}, {high}]")


def _one_of(key: str, value: str, choices: Iterable[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r} must be one of {list(choices)}")


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
        key = f"{where}.{name}" if where else name
        if cls is Config and name == "model":
            kwargs[name] = _build_model_section(value, key)
        else:
            kwargs[name] = _check_type(value, hints[name], key)
    if cls is Config and "model" not in kwargs:
        kwargs["model"] = _build_model_section({}, "model")
    try:
        built = cls(**kwargs)
    except TypeError as e:  # a required field is missing
        raise ConfigError(f"{where or 'config'}: {e}") from None
    if hasattr(built, "validate"):
        try:
            built.validate()
        except ConfigError:
            raise
        except ValueError as e:   # a family's own check
            raise ConfigError(str(e)) from None
    return built


def _build_model_section(value: Any, where: str) -> Any:
    """The ``model:`` mapping as the config dataclass of the family its ``name`` selects."""
    from src.models import model_config_class

    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    name = value.get("name", "jasper")
    try:
        cls = model_config_class(name)
    except ValueError as e:
        raise ConfigError(f"{where}.name: {e}") from None
    return _build(cls, value, where)


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


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: str, line: int, first: int) -> None:
        super().__init__(f"duplicate key {key} on line {line} (first on line {first})")
        self.key, self.line, self.first = key, line, first


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (PyYAML keeps the
    last value silently, so a forgotten earlier setting would win or lose unnoticed).  Keys brought in by
    a merge (``<<: *anchor``) may be overridden, as YAML intends."""

    def compose_document(self):
        node = super().compose_document()
        _check_unique_keys(node, "", set())
        return node


def _check_unique_keys(node: yaml.Node, where: str, visited: set[int]) -> None:
    """Raise _DuplicateKey (dotted key, its line, the first line) for a key repeated in a mapping."""
    if id(node) in visited:   # an alias of a node already checked
        return
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            line = key_node.start_mark.line + 1
            name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else f"<key of line {line}>"
            key = f"{where}.{name}" if where else name
            if key in first_line:
                raise _DuplicateKey(key, line, first_line[key])
            first_line[key] = line
            _check_unique_keys(value_node, key, visited)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_unique_keys(item, f"{where}[{i}]", visited)


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Read a YAML config (``None`` gives the defaults) and apply ``key=value`` overrides."""
    tree: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            tree = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
        except _DuplicateKey as e:
            raise ConfigError(f"{path}: line {e.line}: key {e.key} is given twice (first on line {e.first}); "
                              "keep one of them") from None
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
