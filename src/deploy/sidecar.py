"""The sidecar ``<model file>.json`` written beside every export.

It makes an exported model self-describing, so ``eval.py --mindir``, ``transcribe.py``,
``preprocess.py``/``postprocess.py`` and ``run_infer_310.sh`` compute what the model was trained on
without a config::

    {"format": 2, "family": "jasper", "task": "asr",
     "inputs": [{"name": "features", "dtype": "float32", "shape": [1, 64, 1616]},
                {"name": "lengths", "dtype": "int32", "shape": [1]}],     (null: an open axis)
     "outputs": ["log_probs", "out_lengths"],
     "batch_size": 1, "n_frames": 1616, "dynamic": false,
     "length_convs": [[11, 2, 1, 5], ...],    (kernel, stride, dilation, padding): the output-length rule
     "classes": [...],                        (ASR: the label symbols, blank after them; KWS: class names)
     "config": {...}}                         (the resolved config: front end, task settings, model)
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from src.config import Config, ConfigError, config_from_dict, config_to_dict

FORMAT = 2


def sidecar_path(model_file: str | os.PathLike) -> Path:
    """``jasper.mindir`` → ``jasper.mindir.json``."""
    return Path(f"{model_file}.json")


@dataclass(frozen=True)
class ExportInfo:
    family: str
    task: str
    inputs: list[dict]
    outputs: list[str]
    batch_size: int | None
    n_frames: int | None
    dynamic: bool
    length_convs: list[list[int]]
    classes: list[str]
    config: dict

    def as_config(self) -> Config:
        """The resolved config the model was exported with."""
        return config_from_dict(self.config)

    def to_json(self) -> dict:
        return {"format": FORMAT, **dataclasses.asdict(self)}


def make_info(config: Config, model, classes: list[str], batch_size: int | None, n_frames: int | None,
              dynamic: bool) -> ExportInfo:
    """The sidecar of ``model`` (a registry model) exported with these input dimensions."""
    from src.models.base import ZooModel

    if not isinstance(model, ZooModel):
        raise TypeError("export needs a model built by src.models.build_model")
    inputs = model.export_inputs(None if dynamic else batch_size, None if dynamic else n_frames)
    specs = [{"name": name, "dtype": dtype_name(t.dtype), "shape": [None if d in (-1, None) else int(d) for d in t.shape]}
             for name, t in zip(model.input_names, inputs)]
    return ExportInfo(config.model.name, config.task, specs, list(model.output_names),
                      None if dynamic else batch_size, None if dynamic else (model.fixed_frames or n_frames), dynamic,
                      [list(c) for c in model.length_convs], list(classes), config_to_dict(config))


def dtype_name(dtype) -> str:
    """A MindSpore dtype as the 310 input list spells it (float32, int32, ...)."""
    return str(dtype).lower()


def read_info(model_file: str | os.PathLike) -> ExportInfo | None:
    """The sidecar of ``model_file``; None when there is none.  Old (format 1) sidecars, which only
    recorded the input shape, give None too: such a model needs ``--config``."""
    path = sidecar_path(model_file)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable sidecar ({e}); export the model again") from None
    if data.get("format") != FORMAT:
        return None
    data.pop("format")
    try:
        return ExportInfo(**data)
    except TypeError as e:
        raise ValueError(f"{path}: not a sidecar of this version ({e}); export the model again") from None


def raw_shape_info(model_file: str | os.PathLike) -> dict | None:
    """The input dimensions recorded beside ``model_file`` by any version: {batch_size, n_frames, dynamic}."""
    path = sidecar_path(model_file)
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return {"batch_size": data.get("batch_size"), "n_frames": data.get("n_frames"),
            "dynamic": bool(data.get("dynamic"))}


def _differences(a: Any, b: Any, where: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _differences(a.get(key), b.get(key), f"{where}.{key}" if where else key)
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        a, b = list(a), list(b)
    return [] if a == b else [f"{where}: {a!r} in the model, {b!r} in --config"]


def resolve_config(model_file: str | os.PathLike, config_path: str | None, overrides=()) -> tuple[Config, ExportInfo | None]:
    """The config to pre-/postprocess an exported model with: its sidecar's, checked against a
    ``--config`` when one is given (the front end, task, classes and model must agree)."""
    info = read_info(model_file)
    if info is None:
        if config_path is None:
            raise ConfigError(f"{model_file} has no sidecar {sidecar_path(model_file).name} describing its front end: "
                              "pass the --config it was trained with, or export it again with export.py")
        from src.config import load_config
        return load_config(config_path, overrides), None
    exported = info.as_config()
    if config_path is None and not overrides:
        return exported, info
    from src.config import load_config
    given = load_config(config_path, overrides) if config_path else config_from_dict(info.config, overrides)
    problems = []
    if given.task == "asr":
        from src.text.labels import load_labels
        symbols = load_labels(given.labels_path).symbols
        if list(symbols) != info.classes:
            problems.append(f"labels: {len(info.classes)} symbols in the model, {len(symbols)} in "
                            f"{given.labels_path}")
    _check_agrees(exported, given, str(model_file), problems)
    return exported, info


def _check_agrees(exported: Config, given: Config, source: str, problems: list[str]) -> None:
    """Refuse a ``--config`` whose task, front end, model or keyword settings differ from the export's
    (a training-only dither difference is harmless)."""
    for section in ("task", "features", "model", "kws"):
        problems += _differences(config_to_dict(exported)[section], config_to_dict(given)[section], section)
    problems = [p for p in problems if not p.startswith("features.dither")]
    if problems:
        raise ConfigError(f"--config disagrees with what {source} was exported with:\n  " + "\n  ".join(problems)
                          + "\nleave --config out (the model's sidecar is used) or export the model again")


def processing_info(model_json: Path, config_path: str | None, overrides=()) -> tuple[Config, dict]:
    """The config and sidecar data of a preprocess folder's ``model.json`` (checked against ``--config``
    like ``resolve_config``); without the file, ``--config`` alone."""
    from src.config import load_config

    model_json = Path(model_json)
    if not model_json.is_file():
        if config_path is None:
            raise ConfigError(f"{model_json} not found: preprocess with preprocess.py --mindir, or pass --config")
        config = load_config(config_path, overrides)
        return config, {"config": config_to_dict(config), "length_convs": None}
    data = json.loads(model_json.read_text())
    exported = config_from_dict(data["config"])
    if config_path is not None or overrides:
        given = load_config(config_path, overrides) if config_path else config_from_dict(data["config"], overrides)
        _check_agrees(exported, given, str(model_json), [])
    return exported, data
