"""deepspeech.pytorch checkpoints → this project's DeepSpeech2 parameters (numpy; PyTorch not needed).

Reads the files deepspeech.pytorch writes: a PyTorch Lightning ``.ckpt`` (``state_dict`` +
``hyper_parameters`` holding ``labels``, ``model_cfg``, ``spect_cfg``, ...) or a bare state dict,
both in PyTorch's zip serialisation (``torch.save`` since PyTorch 1.6).

Safety: nothing in the file is executed.  The pickle inside the archive is read by an unpickler that
resolves only

* the tensor-rebuild functions of ``torch._utils`` / ``torch._tensor`` and the typed storages, replaced
  by functions of this module that build numpy arrays from the archive's raw storage files;
* plain containers (``collections.OrderedDict``, ``set``, ``frozenset``);
* classes of the packages that appear in released checkpoints' hyper-parameters (OmegaConf,
  deepspeech.pytorch's config dataclasses and enums, PyTorch Lightning's ``AttributeDict``,
  ``typing``, ``pathlib``, ``argparse.Namespace``, and the ``torch.nn`` LSTM/GRU/RNN classes an
  ``RNNType`` enum refers to): each becomes an inert record of the arguments and state the pickle gives
  it (:class:`Opaque`), never the real class; :func:`plain` turns those records into dicts, lists and
  strings.

Any other global (``os.system``, ``builtins.eval``, any other class) stops the reading with
:class:`UnsafeCheckpointError` naming it.

Mapping (deepspeech.pytorch V3 → src/models/deepspeech2.py): the names are the same except the
BatchNorm tensors (``weight, bias, running_mean, running_var`` → ``gamma, beta, moving_mean,
moving_variance``; ``num_batches_tracked`` is dropped); the lookahead weight gains a unit axis
((H, 1, k) → (H, 1, 1, k)); LSTM (i, f, g, o) and GRU (r, z, n) gate orders are PyTorch's on both
sides; the rows of the head ``fc.0.module.1.weight`` are permuted from deepspeech.pytorch's labels
(``_`` = CTC blank at 0, ``'``, A-Z, space) to this project's (labels.json, blank last), and no other
tensor changes.  The architecture written in the file (and implied by the tensors) must equal
``--config``'s, and the spectrogram settings the front end's; otherwise :class:`ConversionError`
lists every difference.
"""
from __future__ import annotations

import _compat_pickle
import collections
import io
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from src.models.convert import ConversionError

__all__ = ["ConversionError", "UnsafeCheckpointError", "Opaque", "load_torch_file", "plain",
           "read_deepspeech_checkpoint", "DeepSpeechCheckpoint", "architecture", "check_config",
           "class_permutation", "convert_deepspeech2_state", "convert_deepspeech2_checkpoint",
           "DEEPSPEECH_LABELS", "mindspore_name"]

#: deepspeech.pytorch's English labels (labels.json of its repository): blank "_" first
DEEPSPEECH_LABELS = ("_", "'", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ", " ")
_BLANK = "_"
_BN = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
_BN_PREFIX = re.compile(r"^(conv\.seq_module\.[14]|rnns\.\d+\.batch_norm\.module|fc\.0\.module\.0)\.")
_GATES = {4: "lstm", 3: "gru", 1: "rnn"}


class UnsafeCheckpointError(ConversionError):
    """The file holds objects this converter does not load (it would have to run their code)."""


# ---------------------------------------------------------------------------------------------
# Reading PyTorch's zip serialisation without executing anything
# ---------------------------------------------------------------------------------------------

class Opaque:
    """An inert stand-in for an object of an allowed class: records what the pickle passes to it
    (constructor arguments, ``__setstate__`` state, dict items, list items) and runs nothing."""

    qualname = "?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.args, obj.state, obj.items, obj.elements = args, None, {}, []
        return obj

    def __init__(self, *args, **kwargs) -> None:  # the arguments are kept by __new__
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.elements.append(value)

    def extend(self, values: Any) -> None:
        self.elements.extend(values)

    def __repr__(self) -> str:
        return f"<{self.qualname}>"


_OPAQUE_CLASSES: dict[tuple[str, str], type] = {}
# Packages whose classes appear in released deepspeech.pytorch / Lightning checkpoints' metadata.
_INERT_PACKAGES = ("omegaconf", "deepspeech_pytorch", "pytorch_lightning", "lightning", "lightning_fabric",
                   "typing", "pathlib", "enum", "hydra")
_INERT_GLOBALS = {("argparse", "Namespace"), ("torch.nn.modules.rnn", "LSTM"), ("torch.nn.modules.rnn", "GRU"),
                  ("torch.nn.modules.rnn", "RNN"), ("builtins", "object"), ("builtins", "str"), ("builtins", "int"),
                  ("builtins", "float"), ("builtins", "bool"), ("builtins", "bytes"), ("builtins", "type"),
                  ("builtins", "NoneType"), ("torch", "device")}


def _opaque_class(module: str, name: str) -> type:
    key = (module, name)
    if key not in _OPAQUE_CLASSES:
        _OPAQUE_CLASSES[key] = type(f"Opaque[{module}.{name}]", (Opaque,), {"qualname": f"{module}.{name}"})
    return _OPAQUE_CLASSES[key]


class _StorageType:
    """A torch typed storage class, as the numpy dtype of its raw bytes."""

    def __init__(self, name: str, dtype: Any) -> None:
        self.name, self.dtype = name, dtype


_STORAGES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
             "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32,
             "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
             "UntypedStorage": np.uint8}
_DTYPES = {"float32": np.float32, "float": np.float32, "float64": np.float64, "double": np.float64,
           "float16": np.float16, "half": np.float16, "bfloat16": "bfloat16", "int64": np.int64, "long": np.int64,
           "int32": np.int32, "int": np.int32, "int16": np.int16, "int8": np.int8, "uint8": np.uint8,
           "bool": np.bool_}


def _as_array(raw: bytes, dtype: Any, byteorder: str) -> np.ndarray:
    if dtype == "bfloat16":  # the upper half of a float32
        halves = np.frombuffer(raw, dtype=np.dtype(np.uint16).newbyteorder("<" if byteorder == "little" else ">"))
        return (halves.astype(np.uint32) << 16).view(np.float32)
    dt = np.dtype(dtype).newbyteorder("<" if byteorder == "little" else ">")
    return np.frombuffer(raw, dtype=dt).astype(np.dtype(dtype).newbyteorder("="))


def _rebuild_tensor(storage: np.ndarray, storage_offset: int, size: Sequence[int], stride: Sequence[int],
                    *_ignored: Any) -> np.ndarray:
    """torch._utils._rebuild_tensor(_v2): a copy of the strided view of ``storage`` as a numpy array."""
    if not isinstance(storage, np.ndarray):
        raise pickle.UnpicklingError("a tensor without its storage")
    size, stride, storage_offset = tuple(int(n) for n in size), tuple(int(n) for n in stride), int(storage_offset)
    if len(size) != len(stride) or min(size + stride + (storage_offset,), default=0) < 0:
        raise pickle.UnpicklingError(f"invalid tensor layout: size {size}, stride {stride}, offset {storage_offset}")
    if not size:
        if storage_offset >= storage.shape[0]:
            raise pickle.UnpicklingError("a scalar tensor beyond its storage")
        return storage[storage_offset:storage_offset + 1].reshape(()).copy()
    if 0 in size:
        return np.zeros(size, dtype=storage.dtype)
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.shape[0]:
        raise pickle.UnpicklingError(f"tensor of shape {size} exceeds its storage of {storage.shape[0]} elements")
    base = storage[storage_offset:]
    view = np.lib.stride_tricks.as_strided(base, shape=size, strides=tuple(s * storage.itemsize for s in stride),
                                           writeable=False)
    return np.array(view)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, *_ignored):
    """torch._utils._rebuild_tensor_v3: the storage is raw bytes (an untyped storage) of ``dtype``."""
    if isinstance(storage, np.ndarray) and storage.dtype == np.uint8 and isinstance(dtype, np.dtype) \
            and dtype != np.uint8:
        storage = storage.view(dtype)
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *_ignored):
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    return func(*args)


def _safe_getattr(obj: Any, name: str) -> str:
    """``getattr(EnumClass, 'member')`` as newer Pythons pickle enum members: the member's name."""
    if isinstance(obj, type) and issubclass(obj, Opaque) and isinstance(name, str):
        return f"{obj.qualname}.{name}"
    raise pickle.UnpicklingError(f"getattr on {obj!r}")


_SAFE_FUNCTIONS = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "getattr"): _safe_getattr,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, byteorder: str) -> None:
        super().__init__(io.BytesIO(data), encoding="utf-8")
        self.archive, self.prefix, self.byteorder = archive, prefix, byteorder
        self.storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        # protocol 2 (torch.save's) writes Python 2 names such as __builtin__.set; no Python 3 module has them
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        if module == "torch" and name in _STORAGES:
            return _StorageType(name, _STORAGES[name])
        if module == "torch" and name in _DTYPES:
            dtype = _DTYPES[name]
            return dtype if dtype == "bfloat16" else np.dtype(dtype)
        if (module, name) in _SAFE_FUNCTIONS:
            return _SAFE_FUNCTIONS[(module, name)]
        if (module, name) in _INERT_GLOBALS or module.split(".")[0] in _INERT_PACKAGES:
            return _opaque_class(module, name)
        raise UnsafeCheckpointError(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r:.80}")
        storage_type, key = pid[1], str(pid[2])
        if key not in self.storages:
            dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else np.uint8
            try:
                raw = self.archive.read(f"{self.prefix}/data/{key}")
            except KeyError:
                raise pickle.UnpicklingError(f"storage {key} is missing from the archive") from None
            self.storages[key] = _as_array(raw, dtype, self.byteorder)
        return self.storages[key]


def load_torch_file(path: str | Path) -> Any:
    """The object ``torch.save`` wrote to ``path`` (zip serialisation), tensors as numpy arrays and
    objects of allowed classes as :class:`Opaque` records.  Raises UnsafeCheckpointError for any
    other global the pickle names, ConversionError for files that are no such archive."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        raise ConversionError(f"{path}: not a PyTorch zip archive (torch.save of PyTorch >= 1.6); a file in the "
                              "older format can be re-saved with a current PyTorch: torch.save(torch.load(f), g)")
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ConversionError(f"{path}: a zip archive without PyTorch's <name>/data.pkl")
        prefix = pickles[0].rsplit("/", 1)[0]
        try:
            byteorder = archive.read(f"{prefix}/byteorder").decode().strip()
        except KeyError:
            byteorder = "little"
        unpickler = _RestrictedUnpickler(archive.read(pickles[0]), archive, prefix, byteorder)
        try:
            return unpickler.load()
        except UnsafeCheckpointError as e:
            raise UnsafeCheckpointError(
                f"{path} holds objects this converter does not load ({e}): it reads tensors, plain containers "
                "and the configuration records of deepspeech.pytorch / Lightning checkpoints only") from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
            raise ConversionError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from None


def plain(obj: Any) -> Any:
    """Opaque records → plain data: an OmegaConf node → its value, a DictConfig/ListConfig or a
    dataclass → dict/list (with ``"__type__"``: the config class name where the file records one), an
    enum member → its value (``RNNType.lstm`` → ``"torch.nn.modules.rnn.LSTM"``), other classes →
    their dotted names.  Containers are converted recursively; arrays are kept."""
    return _plain(obj, 0)


def _plain(obj: Any, depth: int) -> Any:
    if depth > 100:
        raise ConversionError("hyper-parameters nested too deeply")
    d = depth + 1
    if isinstance(obj, type) and issubclass(obj, Opaque):
        return obj.qualname
    if isinstance(obj, Opaque):
        state = obj.state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):  # (state, slots)
            state = {**(state[0] or {}), **state[1]}
        if isinstance(state, dict):
            if "_content" in state:                                   # OmegaConf DictConfig / ListConfig
                content = _plain(state["_content"], d)
                object_type = _plain(getattr(state.get("_metadata"), "state", None) or {}, d)
                if isinstance(content, dict) and isinstance(object_type, dict) and \
                        isinstance(object_type.get("object_type"), str):
                    content["__type__"] = object_type["object_type"]
                return content
            if "_val" in state:                                       # OmegaConf value node
                return _plain(state["_val"], d)
            fields = {str(k): _plain(v, d) for k, v in state.items() if not str(k).startswith("_")}
            fields["__type__"] = obj.qualname
            return fields
        if obj.items:
            return {_plain(k, d): _plain(v, d) for k, v in obj.items.items()}
        if obj.elements:
            return [_plain(v, d) for v in obj.elements]
        if len(obj.args) == 1 and not obj.items:                      # enum member: Class(value)
            return _plain(obj.args[0], d)
        return obj.qualname
    if isinstance(obj, dict):
        return {_plain(k, d): _plain(v, d) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain(v, d) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------------
# deepspeech.pytorch checkpoints
# ---------------------------------------------------------------------------------------------

class DeepSpeechCheckpoint:
    """A deepspeech.pytorch checkpoint: ``state`` (name → float32 array, prefixes removed) and
    ``hyper_parameters`` (plain data; empty for a bare state dict)."""

    def __init__(self, state: dict[str, np.ndarray], hyper_parameters: dict[str, Any], source: str) -> None:
        self.state, self.hyper_parameters, self.source = state, hyper_parameters, source


def read_deepspeech_checkpoint(path: str | Path) -> DeepSpeechCheckpoint:
    """Read a Lightning ``.ckpt`` (``state_dict`` + ``hyper_parameters``) or a bare state dict."""
    obj = load_torch_file(path)
    hyper: dict[str, Any] = {}
    if isinstance(obj, Mapping) and "state_dict" in obj:
        hyper = plain(obj.get("hyper_parameters") or {})
        if not isinstance(hyper, dict):
            raise ConversionError(f"{path}: hyper_parameters is a {type(hyper).__name__}, expected a mapping")
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ConversionError(f"{path}: expected a state dict or a checkpoint with 'state_dict', found "
                              f"{type(obj).__name__}")
    state: dict[str, np.ndarray] = {}
    for name, value in obj.items():
        if not isinstance(value, np.ndarray):
            raise ConversionError(f"{path}: state-dict entry {name!r} is not a tensor")
        for prefix in ("module.", "model."):
            name = name.removeprefix(prefix)
        state[str(name)] = value
    return DeepSpeechCheckpoint(state, hyper, str(path))


def _rnn_type_name(value: Any) -> str | None:
    """'torch.nn.modules.rnn.LSTM', 'RNNType.lstm', 'lstm', nn.LSTM → 'lstm' (None if unknown)."""
    text = str(value).rsplit(".", 1)[-1].strip().lower()
    return text if text in ("lstm", "gru", "rnn") else None


def architecture(ckpt: DeepSpeechCheckpoint) -> dict[str, Any]:
    """The network the file describes, from its tensors, checked against its hyper-parameters:
    ``rnn_type, hidden_size, hidden_layers, bidirectional, lookahead_context (or None), num_classes,
    rnn_input_size, conv_channels, labels (or None), spect (dict or None)``."""
    s, src = ckpt.state, ckpt.source
    problems = []
    layers = sorted({int(m.group(1)) for k in s if (m := re.match(r"rnns\.(\d+)\.rnn\.weight_hh_l0$", k))})
    if not layers or "fc.0.module.1.weight" not in s:
        raise ConversionError(f"{src}: not a deepspeech.pytorch DeepSpeech2 state dict (no rnns.0.rnn.weight_hh_l0 "
                              f"or fc.0.module.1.weight; found e.g. {sorted(s)[:6]})")
    if layers != list(range(len(layers))):
        raise ConversionError(f"{src}: recurrent layers {layers} are not numbered 0..{len(layers) - 1}")
    w_hh = s["rnns.0.rnn.weight_hh_l0"]
    hidden = int(w_hh.shape[1])
    gates = int(w_hh.shape[0]) // hidden
    if gates not in _GATES or gates * hidden != w_hh.shape[0]:
        raise ConversionError(f"{src}: rnns.0.rnn.weight_hh_l0 has shape {w_hh.shape}, no LSTM/GRU/RNN layer")
    arch: dict[str, Any] = {
        "rnn_type": _GATES[gates], "hidden_size": hidden, "hidden_layers": len(layers),
        "bidirectional": "rnns.0.rnn.weight_hh_l0_reverse" in s,
        "lookahead_context": int(s["lookahead.0.conv.weight"].shape[-1]) if "lookahead.0.conv.weight" in s else None,
        "num_classes": int(s["fc.0.module.1.weight"].shape[0]),
        "rnn_input_size": int(s["rnns.0.rnn.weight_ih_l0"].shape[1]) if "rnns.0.rnn.weight_ih_l0" in s else None,
        "conv_channels": int(s["conv.seq_module.0.weight"].shape[0]) if "conv.seq_module.0.weight" in s else None,
        "labels": None, "spect": None,
    }
    if not arch["bidirectional"] and arch["lookahead_context"] is None:
        problems.append("a unidirectional model without lookahead.0.conv.weight")
    hp = ckpt.hyper_parameters
    model_cfg = hp.get("model_cfg")
    if isinstance(model_cfg, dict):
        declared = {"hidden_size": model_cfg.get("hidden_size"), "hidden_layers": model_cfg.get("hidden_layers"),
                    "rnn_type": _rnn_type_name(model_cfg.get("rnn_type")) if "rnn_type" in model_cfg else None,
                    "lookahead_context": model_cfg.get("lookahead_context")}
        kind = str(model_cfg.get("__type__", ""))
        if kind.endswith("BiDirectionalConfig"):
            declared["bidirectional"] = True
        elif kind.endswith("UniDirectionalConfig"):
            declared["bidirectional"] = False
        for key, value in declared.items():
            if value is not None and value != arch[key] and not (key == "lookahead_context" and arch["bidirectional"]):
                problems.append(f"hyper_parameters.model_cfg.{key}={value!r} but the tensors say {arch[key]!r}")
    labels = hp.get("labels")
    if labels is not None:
        if not (isinstance(labels, list) and all(isinstance(c, str) for c in labels)):
            problems.append(f"hyper_parameters.labels is not a list of strings: {labels!r:.100}")
        elif len(labels) != arch["num_classes"]:
            problems.append(f"{len(labels)} labels in hyper_parameters but {arch['num_classes']} output classes")
        else:
            arch["labels"] = list(labels)
    if isinstance(hp.get("spect_cfg"), dict):
        arch["spect"] = hp["spect_cfg"]
    if problems:
        raise ConversionError(f"{src} contradicts itself:\n  " + "\n  ".join(problems))
    return arch


def check_config(arch: Mapping[str, Any], config: Any, source: str = "the checkpoint") -> None:
    """Refuse a ``config`` (src.config.Config with a DeepSpeech2 model) that differs from ``arch``."""
    from src.models.deepspeech2 import rnn_input_size

    model, fc = config.model, config.features
    problems = []
    if getattr(model, "name", None) != "deepspeech2":
        raise ConversionError(f"--config has model.name={getattr(model, 'name', None)!r}; a deepspeech.pytorch "
                              "checkpoint needs a deepspeech2 config (e.g. src/configs/deepspeech2.yaml)")
    for key in ("rnn_type", "hidden_size", "hidden_layers", "bidirectional"):
        if getattr(model, key) != arch[key]:
            problems.append(f"model.{key}={getattr(model, key)!r} but the checkpoint has {arch[key]!r}")
    if arch["conv_channels"] is not None and model.conv_channels != arch["conv_channels"]:
        problems.append(f"model.conv_channels={model.conv_channels} but the checkpoint has {arch['conv_channels']}")
    if not arch["bidirectional"] and arch["lookahead_context"] is not None \
            and model.lookahead_context != arch["lookahead_context"]:
        problems.append(f"model.lookahead_context={model.lookahead_context} but the checkpoint has "
                        f"{arch['lookahead_context']}")
    if fc.kind != "spectrogram":
        problems.append(f"features.kind={fc.kind!r} but the checkpoint was trained on deepspeech.pytorch's "
                        "spectrogram (features.kind: spectrogram)")
    elif arch["rnn_input_size"] is not None and arch["conv_channels"] is not None and \
            rnn_input_size(fc.feature_dim, arch["conv_channels"]) != arch["rnn_input_size"]:
        ours = rnn_input_size(fc.feature_dim, arch["conv_channels"])
        problems.append(f"features.n_fft={fc.n_fft} gives {fc.feature_dim} rows ({ours} recurrent inputs) but the "
                        f"checkpoint expects {arch['rnn_input_size']} recurrent inputs")
    spect = arch.get("spect")
    if spect and fc.kind == "spectrogram":
        rate = spect.get("sample_rate")
        if rate is not None and rate != fc.sample_rate:
            problems.append(f"features.sample_rate={fc.sample_rate} but the checkpoint's spect_cfg has {rate}")
        rate = rate or fc.sample_rate
        for key, ours in (("window_size", fc.win_length), ("window_stride", fc.hop_length)):
            seconds = spect.get(key)
            if seconds is not None and int(round(float(seconds) * rate)) != ours:
                name = "win_length" if key == "window_size" else "hop_length"
                problems.append(f"features.{name}={ours} but spect_cfg.{key}={seconds} s is "
                                f"{int(round(float(seconds) * rate))} samples")
        if spect.get("window_size") is not None and int(round(float(spect["window_size"]) * rate)) != fc.n_fft:
            problems.append(f"features.n_fft={fc.n_fft} but deepspeech.pytorch uses n_fft = window_size x "
                            f"sample_rate = {int(round(float(spect['window_size']) * rate))}")
        window = spect.get("window")
        if window is not None and str(window).rsplit(".", 1)[-1].lower() != fc.window:
            problems.append(f"features.window={fc.window!r} but spect_cfg.window={window!r}")
    if problems:
        raise ConversionError(f"{source} does not fit --config:\n  " + "\n  ".join(problems))


def class_permutation(theirs: Sequence[str], ours: Sequence[str]) -> np.ndarray:
    """Row ``j`` of our head = row ``perm[j]`` of theirs.  ``ours`` are this project's labels without
    the blank (index ``len(ours)``, last); ``theirs`` include deepspeech.pytorch's blank ``_``.
    Labels are compared case-insensitively (deepspeech.pytorch's are upper case)."""
    theirs = [str(c) for c in theirs]
    if _BLANK not in theirs:
        raise ConversionError(f"the checkpoint's labels have no CTC blank {_BLANK!r}: {theirs}")
    index = {}
    for i, c in enumerate(theirs):
        key = c if c == _BLANK else c.lower()
        if key in index:
            raise ConversionError(f"the checkpoint's labels repeat {c!r} (case-insensitively)")
        index[key] = i
    ours_keys = [c.lower() for c in ours]
    missing = [c for c in ours_keys if c not in index]
    extra = [theirs[i] for k, i in index.items() if k != _BLANK and k not in ours_keys]
    if missing or extra or len(ours_keys) != len(set(ours_keys)):
        raise ConversionError(f"the checkpoint's labels {theirs} do not match labels.json {list(ours)}: "
                              f"missing {missing}, not in labels.json {extra}")
    return np.array([index[c] for c in ours_keys] + [index[_BLANK]], dtype=np.int64)


def mindspore_name(name: str) -> str | None:
    """deepspeech.pytorch key → our parameter name (None for tensors we drop: num_batches_tracked)."""
    if name.endswith("num_batches_tracked"):
        return None
    m = _BN_PREFIX.match(name)
    if m:
        leaf = name[m.end():]
        return m.group(0) + _BN[leaf] if leaf in _BN else name
    return name


def convert_deepspeech2_state(ckpt: DeepSpeechCheckpoint, expected: Mapping[str, tuple[int, ...]], config: Any,
                              labels: Sequence[str]) -> dict[str, np.ndarray]:
    """Our parameters (name → float32 array) from a deepspeech.pytorch checkpoint, for the model of
    ``config`` whose parameters are ``expected`` (name → shape) and whose classes are ``labels`` + blank."""
    arch = architecture(ckpt)
    check_config(arch, config, ckpt.source)
    if arch["num_classes"] != len(labels) + 1:
        raise ConversionError(f"{ckpt.source} has {arch['num_classes']} output classes; labels.json gives "
                              f"{len(labels)} + blank = {len(labels) + 1}")
    theirs = arch["labels"] or (list(DEEPSPEECH_LABELS) if arch["num_classes"] == len(DEEPSPEECH_LABELS) else None)
    if theirs is None:
        raise ConversionError(f"{ckpt.source} records no labels and has {arch['num_classes']} classes, not "
                              f"deepspeech.pytorch's {len(DEEPSPEECH_LABELS)}: cannot order its outputs")
    perm = class_permutation(theirs, labels)
    out: dict[str, np.ndarray] = {}
    unused, problems = [], []
    for name, value in ckpt.state.items():
        target = mindspore_name(name)
        if target is None:
            continue
        if target not in expected:
            unused.append(name)
            continue
        value = np.asarray(value, dtype=np.float32)
        shape = tuple(expected[target])
        if target == "lookahead.0.conv.weight" and value.ndim == 3:
            value = value[:, :, None, :]
        if target == "fc.0.module.1.weight" and value.ndim == 2:
            value = value[perm]
        if value.shape != shape:
            problems.append(f"{name} has shape {tuple(ckpt.state[name].shape)}; {target} needs {shape}")
            continue
        out[target] = np.ascontiguousarray(value)
    missing = sorted(set(expected) - set(out))
    if unused:
        problems.append(f"{len(unused)} tensors of the checkpoint have no place in the model: {unused[:8]}")
    if missing:
        problems.append(f"{len(missing)} model parameters are not in the checkpoint: {missing[:8]}")
    if problems:
        raise ConversionError(f"{ckpt.source} does not fit --config:\n  " + "\n  ".join(problems))
    return out


def convert_deepspeech2_checkpoint(path: str | Path, config: Any, expected: Mapping[str, tuple[int, ...]],
                                   labels: Sequence[str]) -> dict[str, np.ndarray]:
    """Read ``path`` safely and convert it (see :func:`convert_deepspeech2_state`)."""
    return convert_deepspeech2_state(read_deepspeech_checkpoint(path), expected, config, labels)
