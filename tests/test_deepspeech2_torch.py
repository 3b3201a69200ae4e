"""deepspeech.pytorch checkpoints → DeepSpeech2 (src/models/convert_deepspeech2.py, pt2mind.py), against the
PyTorch network of bench/torch_deepspeech2.py: same outputs after conversion, Lightning checkpoints whose
hyper-parameters hold OmegaConf / dataclass / enum records are read without running any of their code,
malicious pickles and mismatching configs are refused."""
from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import mindspore as ms  # noqa: E402
from mindspore import Tensor  # noqa: E402

from bench.torch_deepspeech2 import DEEPSPEECH_LABELS, build_torch_deepspeech2  # noqa: E402
from src.config import config_from_dict  # noqa: E402
from src.models import build_model  # noqa: E402
from src.models.convert_deepspeech2 import (ConversionError, UnsafeCheckpointError, class_permutation,  # noqa: E402
                                            convert_deepspeech2_checkpoint, read_deepspeech_checkpoint)
from src.text.labels import load_labels  # noqa: E402

pytestmark = pytest.mark.usefixtures("graph_mode_on_cpu")

REPO = Path(__file__).resolve().parents[1]
SPECTROGRAM = {"kind": "spectrogram", "n_fft": 320, "win_length": 320, "hop_length": 160, "window": "hamming"}
LABELS = load_labels(REPO / "labels.json").symbols
#: records whose code ran while a checkpoint was read (must stay empty)
RAN: list[str] = []


def tree(**model) -> dict:
    return {"features": SPECTROGRAM,
            "model": {"name": "deepspeech2", "hidden_size": 16, "hidden_layers": 2, "conv_channels": 4, **model}}


# ---------------------------------------------------------------------------------------------
# Files that look like deepspeech.pytorch's: classes registered under their real module names while
# torch.save pickles them, removed before the converter reads the file.
# ---------------------------------------------------------------------------------------------

def _fake_modules() -> dict[str, types.ModuleType]:
    mods = {name: types.ModuleType(name) for name in (
        "omegaconf", "omegaconf.base", "omegaconf.nodes", "omegaconf.dictconfig", "deepspeech_pytorch",
        "deepspeech_pytorch.enums", "deepspeech_pytorch.configs", "deepspeech_pytorch.configs.train_config",
        "pytorch_lightning", "pytorch_lightning.utilities", "pytorch_lightning.utilities.parsing")}

    def define(module: str, cls: type) -> type:
        cls.__module__, cls.__qualname__ = module, cls.__name__
        setattr(mods[module], cls.__name__, cls)
        return cls

    class Recorded:
        """Reading must never call this (the real classes' code stays unrun)."""

        def __setstate__(self, state):
            RAN.append(type(self).__name__)
            self.__dict__.update(state)

    @dataclasses.dataclass
    class Metadata(Recorded):
        ref_type: object = None
        object_type: object = None
        optional: bool = True
        key: object = None
        flags: dict = dataclasses.field(default_factory=dict)

    @dataclasses.dataclass
    class ContainerMetadata(Metadata):
        key_type: object = None
        element_type: object = None

    class ValueNode(Recorded):
        def __init__(self, value, key):
            self._val, self._parent = value, None
            self._metadata = Metadata(ref_type=object, object_type=None, key=key)

    class AnyNode(ValueNode):
        pass

    class EnumNode(ValueNode):
        def __init__(self, value, key):
            super().__init__(value, key)
            self.enum_type = type(value)

    class DictConfig(Recorded):
        def __init__(self, content: dict, object_type):
            self._parent = None
            self._metadata = ContainerMetadata(ref_type=object, object_type=object_type, key_type=str,
                                               element_type=object)
            self._content = {k: (EnumNode if isinstance(v, enum.Enum) else AnyNode)(v, k) for k, v in content.items()}

        def __getstate__(self):
            return dict(self.__dict__)

    class RNNType(enum.Enum):
        lstm = torch.nn.LSTM
        rnn = torch.nn.RNN
        gru = torch.nn.GRU

    class SpectrogramWindow(enum.Enum):
        hamming = "hamming"
        hann = "hann"

    @dataclasses.dataclass
    class BiDirectionalConfig(Recorded):
        rnn_type: object = None
        hidden_size: int = 1024
        hidden_layers: int = 5

    @dataclasses.dataclass
    class UniDirectionalConfig(BiDirectionalConfig):
        lookahead_context: int = 20

    @dataclasses.dataclass
    class SpectConfig(Recorded):
        sample_rate: int = 16000
        window_size: float = .02
        window_stride: float = .01
        window: object = None

    @dataclasses.dataclass
    class AdamConfig(Recorded):
        learning_rate: float = 1.5e-4
        betas: tuple = (0.9, 0.999)

    class AttributeDict(dict):
        def __setitem__(self, key, value):
            RAN.append("AttributeDict")
            super().__setitem__(key, value)

    for module, classes in (("omegaconf.base", (Metadata, ContainerMetadata)), ("omegaconf.nodes", (ValueNode, AnyNode,
                            EnumNode)), ("omegaconf.dictconfig", (DictConfig,)), ("deepspeech_pytorch.enums", (
                            RNNType, SpectrogramWindow)), ("deepspeech_pytorch.configs.train_config", (
                            BiDirectionalConfig, UniDirectionalConfig, SpectConfig, AdamConfig)),
                            ("pytorch_lightning.utilities.parsing", (AttributeDict,))):
        for cls in classes:
            define(module, cls)
    Recorded.__module__ = "omegaconf.base"
    mods["omegaconf.base"].Recorded = Recorded
    return mods


@contextlib.contextmanager
def fake_packages():
    mods = _fake_modules()
    saved = {name: sys.modules.get(name) for name in mods}
    sys.modules.update(mods)
    try:
        yield {name: vars(m) for name, m in mods.items()}
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:  # pragma: no cover - the real packages are not installed here
                sys.modules[name] = module


def lightning_checkpoint(model, cfg, path: Path, labels=DEEPSPEECH_LABELS, omegaconf: bool = True,
                         window: str = "hamming", extra: dict | None = None) -> Path:
    """A file shaped like a deepspeech.pytorch V3 Lightning checkpoint of the PyTorch ``model``."""
    with fake_packages() as m:
        enums, configs = m["deepspeech_pytorch.enums"], m["deepspeech_pytorch.configs.train_config"]
        fields = {"rnn_type": getattr(enums["RNNType"], cfg.rnn_type), "hidden_size": cfg.hidden_size,
                  "hidden_layers": cfg.hidden_layers}
        kind = configs["BiDirectionalConfig"] if cfg.bidirectional else configs["UniDirectionalConfig"]
        if not cfg.bidirectional:
            fields["lookahead_context"] = cfg.lookahead_context
        model_cfg = m["omegaconf.dictconfig"]["DictConfig"](fields, kind) if omegaconf else kind(**fields)
        hyper = m["pytorch_lightning.utilities.parsing"]["AttributeDict"](
            labels=list(labels), model_cfg=model_cfg, precision=16, optim_cfg=configs["AdamConfig"](),
            spect_cfg=configs["SpectConfig"](window=getattr(enums["SpectrogramWindow"], window)))
        optimizer = torch.optim.AdamW(model.parameters())
        RAN.clear()
        torch.save({"epoch": 3, "global_step": 120, "pytorch-lightning_version": "1.1.0",
                    "state_dict": model.state_dict(), "hyper_parameters": hyper,
                    "optimizer_states": [optimizer.state_dict()], "lr_schedulers": [{"gamma": 0.99}],
                    **(extra or {})}, path)
    return path


def torch_model(cfg, seed: int = 0):
    torch.manual_seed(seed)
    model = build_torch_deepspeech2(cfg, len(DEEPSPEECH_LABELS), 161)
    with torch.no_grad():
        for name, t in list(model.named_buffers()) + list(model.named_parameters()):
            leaf = name.rsplit(".", 1)[-1]
            bn = "batch_norm" in name or "seq_module.1." in name or "seq_module.4." in name or "fc.0.module.0." in name
            if leaf == "running_mean":
                t.normal_(0, 0.3)
            elif leaf == "running_var":
                t.uniform_(0.5, 2.0)
            elif bn and leaf == "weight":
                t.uniform_(0.5, 1.5)
            elif bn and leaf == "bias":
                t.normal_(0, 0.2)
    return model.eval()


def features(lengths=(57, 40, 13), seed: int = 0):
    rng = np.random.default_rng(seed)
    feats = rng.standard_normal((len(lengths), 161, max(lengths))).astype(np.float32)
    for b, n in enumerate(lengths):
        feats[b, :, n:] = 0
    return feats, np.asarray(lengths, np.int32)


def convert_into_model(path: Path, config):
    model = build_model(config, num_classes=len(LABELS) + 1)
    expected = {p.name: tuple(p.shape) for p in model.get_parameters()}
    params = convert_deepspeech2_checkpoint(path, config, expected, LABELS)
    ms.load_param_into_net(model, {k: ms.Parameter(Tensor(v), name=k) for k, v in params.items()}, strict_load=True)
    model.set_train(False)
    return model


def assert_same_probabilities(ours_model, theirs_model, atol=1e-4):
    feats, lengths = features()
    log_probs, out_lengths = ours_model(Tensor(feats), Tensor(lengths))
    with torch.no_grad():
        probs, their_lengths = theirs_model(torch.from_numpy(feats), torch.from_numpy(lengths))
    np.testing.assert_array_equal(out_lengths.asnumpy(), their_lengths.numpy())
    theirs = probs.numpy()[..., class_permutation(DEEPSPEECH_LABELS, LABELS)]
    ours = np.exp(log_probs.asnumpy())
    for b, n in enumerate(out_lengths.asnumpy()):
        np.testing.assert_allclose(ours[b, :n], theirs[b, :n], atol=atol, rtol=0)


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model_cfg", [
    {},
    {"rnn_type": "gru"},
    {"rnn_type": "rnn", "bidirectional": False, "lookahead_context": 5},
], ids=["bilstm", "bigru", "rnn-lookahead"])
def test_converted_model_matches_pytorch(model_cfg, tmp_path):
    config = config_from_dict(tree(**model_cfg))
    theirs = torch_model(config.model)
    path = lightning_checkpoint(theirs, config.model, tmp_path / "ds2.ckpt")
    assert_same_probabilities(convert_into_model(path, config), theirs)


def test_bn_stats_all_trains_with_deepspeech_pytorchs_batch_statistics(tmp_path):
    """In training mode with ``bn_stats: all`` a forward pass equals deepspeech.pytorch's (BatchNorm over
    the whole padded batch, padded frames as zeros), running statistics included."""
    config = config_from_dict(tree(bn_stats="all"))
    theirs = torch_model(config.model, seed=6)
    path = lightning_checkpoint(theirs, config.model, tmp_path / "ds2.ckpt")
    ours = convert_into_model(path, config)
    ours.set_train(True)
    theirs.train()
    feats, lengths = features()
    log_probs, out_lengths = ours(Tensor(feats), Tensor(lengths))
    with torch.no_grad():
        scores, _ = theirs(torch.from_numpy(feats), torch.from_numpy(lengths))
    want = torch.log_softmax(scores, -1).numpy()[..., class_permutation(DEEPSPEECH_LABELS, LABELS)]
    for b, n in enumerate(out_lengths.asnumpy()):
        np.testing.assert_allclose(log_probs.asnumpy()[b, :n], want[b, :n], atol=1e-4, rtol=0)
    moved = {p.name: p.asnumpy() for p in ours.get_parameters() if p.name.startswith(("conv.seq_module.4.moving",
                                                                                       "fc.0.module.0.moving"))}
    state = theirs.state_dict()
    for name, value in moved.items():
        their_name = name.replace("moving_mean", "running_mean").replace("moving_variance", "running_var")
        np.testing.assert_allclose(value, state[their_name].numpy(), atol=1e-5, err_msg=name)


def test_the_reader_rebuilds_every_tensor_layout(tmp_path):
    from src.models.convert_deepspeech2 import load_torch_file

    x = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    tensors = {"transposed": x.t(), "offset": x[1:, 2:], "strided": x[:, ::2], "scalar": x[2, 3], "empty": x[:0],
               "half": x.half(), "bfloat16": x.bfloat16(), "long": torch.arange(5), "bool": x > 10,
               "parameter": torch.nn.Parameter(x.clone())}
    torch.save(tensors, tmp_path / "t.pt")
    loaded = load_torch_file(tmp_path / "t.pt")
    for name, t in tensors.items():
        want = t.detach().float().numpy() if name == "bfloat16" else t.detach().numpy()
        np.testing.assert_array_equal(loaded[name], want, err_msg=name)
        assert loaded[name].shape == tuple(t.shape), name


def test_class_permutation_moves_the_blank_last_and_maps_upper_case():
    perm = class_permutation(DEEPSPEECH_LABELS, LABELS)
    assert [DEEPSPEECH_LABELS[i] for i in perm] == [c.upper() for c in LABELS] + ["_"]
    with pytest.raises(ConversionError, match="do not match labels.json"):
        class_permutation(["_", "A", "B"], LABELS)


@pytest.mark.parametrize("omegaconf", [True, False], ids=["omegaconf-records", "dataclasses"])
def test_lightning_hyper_parameters_become_plain_values_without_running_code(omegaconf, tmp_path):
    config = config_from_dict(tree(bidirectional=False, lookahead_context=6))
    path = lightning_checkpoint(torch_model(config.model), config.model, tmp_path / "uni.ckpt", omegaconf=omegaconf)
    assert "deepspeech_pytorch" not in sys.modules and "omegaconf" not in sys.modules
    ckpt = read_deepspeech_checkpoint(path)
    assert RAN == []                                   # no __setstate__/__setitem__ of the file's classes ran
    assert "deepspeech_pytorch" not in sys.modules and "omegaconf" not in sys.modules
    hp = ckpt.hyper_parameters
    assert hp["labels"] == list(DEEPSPEECH_LABELS) and hp["precision"] == 16
    model_cfg = hp["model_cfg"]
    assert model_cfg["hidden_size"] == 16 and model_cfg["hidden_layers"] == 2 and model_cfg["lookahead_context"] == 6
    assert model_cfg["rnn_type"] == "torch.nn.modules.rnn.LSTM"
    assert model_cfg["__type__"].endswith("train_config.UniDirectionalConfig")
    assert hp["spect_cfg"]["window"] == "hamming" and hp["spect_cfg"]["window_size"] == 0.02
    assert all(isinstance(v, np.ndarray) for v in ckpt.state.values())
    assert "conv.seq_module.1.num_batches_tracked" in ckpt.state
    convert_into_model(path, config)                  # and the declared architecture fits --config


class Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_malicious_pickle_is_refused(tmp_path):
    config = config_from_dict(tree())
    marker = tmp_path / "ran"
    path = lightning_checkpoint(torch_model(config.model), config.model, tmp_path / "evil.ckpt",
                                extra={"callbacks": {"x": Exploit(marker)}})
    with pytest.raises(UnsafeCheckpointError, match=r"holds objects this converter does not load \((posix|os)\.system\)"):
        read_deepspeech_checkpoint(path)
    assert not marker.exists()
    cfg_path = tmp_path / "ds2.yaml"
    cfg_path.write_text(json.dumps(tree()))
    r = run_pt2mind(path, cfg_path, tmp_path / "out.ckpt")
    assert r.returncode == 1 and "does not load" in r.stderr and "weights_only" not in r.stderr, r.stderr[-1500:]
    assert not marker.exists() and not (tmp_path / "out.ckpt").exists()


@pytest.mark.parametrize("override, message", [
    ({"model": {"hidden_size": 32}}, r"model\.hidden_size=32 but the checkpoint has 16"),
    ({"model": {"rnn_type": "gru"}}, r"model\.rnn_type='gru' but the checkpoint has 'lstm'"),
    ({"model": {"bidirectional": False}}, r"model\.bidirectional=False but the checkpoint has True"),
    ({"model": {"conv_channels": 32}}, r"model\.conv_channels=32 but the checkpoint has 4"),
    ({"features": {"window": "hann"}}, r"features\.window='hann' but spect_cfg\.window='hamming'"),
    ({"features": {"hop_length": 80}}, r"features\.hop_length=80 but spect_cfg\.window_stride=0\.01 s is 160"),
    ({"features": {"kind": "logmel"}}, r"features\.kind='logmel'"),
])
def test_a_config_that_differs_from_the_checkpoint_is_refused(override, message, tmp_path):
    base = config_from_dict(tree())
    path = lightning_checkpoint(torch_model(base.model), base.model, tmp_path / "ds2.ckpt")
    t = tree()
    for section, values in override.items():
        t[section] = {**t[section], **values}
    config = config_from_dict(t)
    model = build_model(config, num_classes=len(LABELS) + 1) if config.features.kind == "spectrogram" else None
    expected = {p.name: tuple(p.shape) for p in model.get_parameters()} if model else {}
    with pytest.raises(ConversionError, match=message):
        convert_deepspeech2_checkpoint(path, config, expected, LABELS)


def test_a_checkpoint_contradicting_itself_is_refused(tmp_path):
    config = config_from_dict(tree())
    theirs = torch_model(config.model)
    declared = config_from_dict(tree(hidden_layers=3)).model
    path = lightning_checkpoint(theirs, declared, tmp_path / "odd.ckpt")
    with pytest.raises(ConversionError, match=r"hyper_parameters\.model_cfg\.hidden_layers=3 but the tensors say 2"):
        convert_deepspeech2_checkpoint(path, config, {}, LABELS)


def run_pt2mind(pt_file: Path, cfg_path: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "pt2mind.py"), "--pt_checkpoint", str(pt_file), "--config",
                           str(cfg_path), "--output", str(out), *extra], capture_output=True, text=True, cwd=REPO)


def test_pt2mind_converts_a_deepspeech_pytorch_checkpoint(tmp_path):
    from src.deploy.loading import load_checkpoint_model

    t = tree()
    config = config_from_dict(t)
    theirs = torch_model(config.model, seed=4)
    path = lightning_checkpoint(theirs, config.model, tmp_path / "ds2.ckpt")
    cfg_path = tmp_path / "ds2.yaml"
    cfg_path.write_text(json.dumps(t))
    r = run_pt2mind(path, cfg_path, tmp_path / "ds2_ms.ckpt")
    assert r.returncode == 0, r.stderr[-2000:]
    assert_same_probabilities(load_checkpoint_model(config, tmp_path / "ds2_ms.ckpt"), theirs)
    r = run_pt2mind(path, cfg_path, tmp_path / "ema.ckpt", "--ema")
    assert r.returncode == 1 and "drop --ema" in r.stderr


def test_a_bare_state_dict_converts_with_deepspeech_pytorchs_labels(tmp_path):
    config = config_from_dict(tree())
    theirs = torch_model(config.model, seed=2)
    torch.save(theirs.state_dict(), tmp_path / "bare.pth")
    assert_same_probabilities(convert_into_model(tmp_path / "bare.pth", config), theirs)


def test_pt2mind_jasper_refusal_never_suggests_unsafe_loading(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"state_dict": {"encoder.layers.0.conv.0.weight": torch.zeros(1)}, "x": Exploit(marker)},
               tmp_path / "evil.pt")
    r = run_pt2mind(tmp_path / "evil.pt", REPO / "src" / "configs" / "jasper_tiny.yaml", tmp_path / "o.ckpt")
    assert r.returncode == 1 and "holds objects this converter does not load" in r.stderr, r.stderr[-1500:]
    assert "weights_only=False" not in r.stderr and "trusted source" not in r.stderr and not marker.exists()
