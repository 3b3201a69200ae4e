"""Exporting a registry model: MindIR (fixed or dynamic shape), ONNX or AIR, plus its sidecar."""
from __future__ import annotations

import os
from pathlib import Path

from src.config import Config
from src.deploy.sidecar import make_info, sidecar_path
from src.fileio import atomic_write_json

FORMATS = {"MINDIR": ".mindir", "ONNX": ".onnx", "AIR": ".air"}


def export_model(model, config: Config, classes: list[str], file_name: str, file_format: str = "MINDIR",
                 n_frames: int | None = None, batch_size: int = 1, dynamic: bool = False) -> Path:
    """Export ``model`` (a registry model in inference mode) to ``file_name`` + the format's suffix and write
    its sidecar.  ``n_frames`` fixes the time axis (a multiple of ``features.pad_to``; ignored by models of
    fixed-length clips); ``dynamic`` leaves batch and time open (MindIR only).  Returns the model file."""
    import mindspore as ms

    if file_format not in FORMATS:
        raise ValueError(f"file format must be one of {sorted(FORMATS)}, got {file_format!r}")
    if dynamic:
        if file_format != "MINDIR":
            raise ValueError(f"--dynamic works for MINDIR only; {file_format} needs a fixed --n_frames")
        inputs = model.export_inputs(None, None)
    else:
        pad_to = config.features.pad_to
        if model.fixed_frames is None and (n_frames is None or n_frames <= 0 or n_frames % pad_to):
            raise ValueError(f"--n_frames must be a positive multiple of features.pad_to={pad_to}, got {n_frames}")
        if batch_size <= 0:
            raise ValueError(f"--batch_size must be positive, got {batch_size}")
        inputs = model.export_inputs(batch_size, n_frames)
    target = Path(f"{file_name}{FORMATS[file_format]}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_stem = target.with_name(f".{target.stem}.{os.getpid()}.tmp")
    try:
        with model.exported_form(file_format):
            ms.export(model, *inputs, file_name=str(tmp_stem), file_format=file_format)
        os.replace(f"{tmp_stem}{FORMATS[file_format]}", target)  # appears complete or not at all
    finally:
        Path(f"{tmp_stem}{FORMATS[file_format]}").unlink(missing_ok=True)
    info = make_info(config, model, classes, batch_size, n_frames, dynamic)
    atomic_write_json(sidecar_path(target), info.to_json())
    return target
