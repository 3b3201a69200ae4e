"""Files of the 310 path, between preprocess.py, the C++ runner (ascend310_infer/) and postprocess.py.

``PRE/inputs.txt`` (read by the runner): a header naming the model's inputs in order, then per item
its input files as ``relative_path:dtype:shape``::

    #utt_id<TAB>features<TAB>lengths
    1089-134686-0000<TAB>features/1089-134686-0000.bin:float32:1x64x1616<TAB>lengths/1089-134686-0000.bin:int32:1

``PRE/utterances.txt`` (read by postprocess): ``utt_id<TAB>frames<TAB>reference`` per item (the
reference is a transcript, or a class name for keyword spotting).  ``PRE/model.json`` is the model's
sidecar, so postprocess needs no config.  The runner writes output k of item ``id`` to
``RESULT/<id>_<k>.bin``.  Every file is a raw little-endian array, written atomically; the lists are
written last, so a complete list means every file it names is complete.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from src.fileio import atomic_path, atomic_write_text

INPUT_LIST = "inputs.txt"
UTTERANCE_LIST = "utterances.txt"
MODEL_INFO = "model.json"
_DTYPES = {"float32": "<f4", "int32": "<i4", "int64": "<i8", "float16": "<f2"}


def write_array(path: Path, array: np.ndarray) -> None:
    """Raw little-endian bytes, renamed into place when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        array.astype(array.dtype.newbyteorder("<"), copy=False).tofile(tmp)


def read_array(path: Path, dtype: str) -> np.ndarray:
    """A runner output or preprocess input as a flat array of ``dtype`` (float32, int32, ...)."""
    try:
        return np.fromfile(path, dtype=_DTYPES.get(dtype, dtype))
    except FileNotFoundError:
        raise FileNotFoundError(f"missing file {path}: run the runner (again) for this preprocess folder") from None


def input_field(rel_path: str, array: np.ndarray) -> str:
    dtype = {np.dtype("float32"): "float32", np.dtype("int32"): "int32", np.dtype("int64"): "int64",
             np.dtype("float16"): "float16"}[array.dtype]
    return f"{rel_path}:{dtype}:{'x'.join(str(d) for d in array.shape)}"


@dataclass(frozen=True)
class ListedItem:
    utt_id: str
    frames: int       # padded frame count T of the features file
    reference: str


class ListWriter:
    """Writes an item's input arrays now and both lists at ``close`` (so they appear complete or not at all)."""

    def __init__(self, out_dir: Path, input_names: Sequence[str]) -> None:
        self.out, self.names = Path(out_dir), list(input_names)
        self.inputs = ["#utt_id\t" + "\t".join(self.names) + "\n"]
        self.items: list[str] = []
        self.seen: set[str] = set()

    def add(self, utt_id: str, arrays: Sequence[np.ndarray], reference: str) -> None:
        if utt_id in self.seen:
            raise ValueError(f"item id {utt_id} appears twice; ids name the output files")
        if not utt_id or "/" in utt_id or any(c in utt_id for c in "\t\r\n"):
            raise ValueError(f"item id {utt_id!r} is empty or holds '/', a tab or a line break")
        if any(c in reference for c in "\t\r\n"):
            raise ValueError(f"the reference of {utt_id} contains a tab or line break")
        if len(arrays) != len(self.names):
            raise ValueError(f"{utt_id}: {len(arrays)} arrays for the model's {len(self.names)} inputs")
        fields = []
        for name, array in zip(self.names, arrays):
            rel = f"{name}/{utt_id}.bin"
            write_array(self.out / rel, array)
            fields.append(input_field(rel, array))
        self.seen.add(utt_id)
        self.inputs.append(utt_id + "\t" + "\t".join(fields) + "\n")
        frames = arrays[0].shape[-1] if arrays[0].ndim >= 2 else 1
        self.items.append(f"{utt_id}\t{frames}\t{reference}\n")

    def close(self) -> None:
        atomic_write_text(self.out / UTTERANCE_LIST, "".join(self.items))
        atomic_write_text(self.out / INPUT_LIST, "".join(self.inputs))


def read_utterance_list(preprocess_dir: Path) -> list[ListedItem]:
    path = Path(preprocess_dir) / UTTERANCE_LIST
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found: run preprocess.py first") from None
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        parts = line.split("\t")
        if len(parts) != 3 or not parts[1].isdigit():
            raise ValueError(f"{path}:{number}: expected 'utt_id<TAB>frames<TAB>reference', got {line!r}")
        out.append(ListedItem(parts[0], int(parts[1]), parts[2]))
    if not out:
        raise ValueError(f"{path} lists no utterances")
    return out


def fit_frames(feats, valid: int, n_frames: int | None, pad_to: int, utt_id: str):
    """features (1, F, T) → (1, F, T_pad): T_pad = ``n_frames`` or T rounded up to ``pad_to``.
    Raises ValueError naming the item when it does not fit ``n_frames``."""
    from src.audio.features import padded_frames

    if n_frames is None:
        n_frames = int(padded_frames(feats.shape[2], pad_to))
    elif valid > n_frames:
        raise ValueError(f"item {utt_id} has {valid} frames, more than the model's {n_frames}: export the model "
                         f"with --n_frames {padded_frames(valid, pad_to)} or more (or --dynamic) and preprocess again")
    out = np.zeros((1, feats.shape[1], n_frames), np.float32)
    kept = min(n_frames, feats.shape[2])  # frames after the valid ones are zero either way
    out[:, :, :kept] = feats[:, :, :kept]
    return out
