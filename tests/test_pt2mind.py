"""pt2mind.py: NVIDIA-layout PyTorch checkpoints (DeepLearningExamples, 2019, NeMo) convert into
this model with matching outputs; wrong or partial checkpoints are refused naming the tensors."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bench.torch_jasper import build_torch_model, mindspore_state_from_torch  # noqa: E402
from src.audio.features import batch_features  # noqa: E402
from src.config import config_from_dict, load_config  # noqa: E402
from src.deploy.loading import load_checkpoint_model  # noqa: E402
from src.tasks.asr import predict  # noqa: E402
from src.models.convert import ConversionError, convert_state_dict  # noqa: E402
from src.models.jasper import build_model  # noqa: E402
from src.runtime import configure_device  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SMALL = {"model": {"name": "jasper", "blocks": [
    {"filters": 32, "kernel": 11, "stride": 2},
    {"filters": 32, "repeat": 3, "kernel": 11, "residual": True},
    {"filters": 40, "repeat": 2, "kernel": 13, "residual": True},
    {"filters": 48, "kernel": 15, "dilation": 2},
    {"filters": 56, "kernel": 1}]}}


def nemo_name(name: str) -> str:
    name = name.replace("decoder.layers.", "decoder.decoder_layers.")
    m = re.match(r"encoder\.layers\.(\d+)\.(conv|res)\.(.+)$", name)
    if not m:
        return name
    i, kind, rest = m.groups()
    if kind == "conv":
        rest = re.sub(r"^(\d+)\.weight$", lambda g: f"{g.group(1)}.conv.weight" if int(g.group(1)) % 4 == 0
                      else f"{g.group(1)}.weight", rest)
        return f"encoder.encoder.{i}.mconv.{rest}"
    rest = re.sub(r"^(\d+)\.0\.weight$", r"\1.0.conv.weight", rest)
    return f"encoder.encoder.{i}.res.{rest}"


LAYOUTS = {
    "dle": lambda n: n,
    "dle2019": lambda n: n.replace("encoder.layers.", "jasper_encoder.encoder.").replace(
        "decoder.layers.", "jasper_decoder.decoder_layers."),
    "nemo": nemo_name,
}


def randomized_torch_model(config, seed):
    torch.manual_seed(seed)
    model = build_torch_model(config)
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.2)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
    return model.eval()


def features(n_frames_list=(301, 160, 77)):
    rng = np.random.default_rng(0)
    return batch_features([rng.standard_normal(160 * t).astype(np.float32) * 0.1 for t in n_frames_list])


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    configure_device("CPU")
    tmp = tmp_path_factory.mktemp("pt2mind")
    cfg_path = tmp / "small.yaml"
    cfg_path.write_text(json.dumps(SMALL))  # JSON is YAML
    config = config_from_dict(SMALL)
    return tmp, cfg_path, config, randomized_torch_model(config, 0), randomized_torch_model(config, 1)


def convert(tmp, cfg_path, pt_file, *extra):
    out = tmp / f"{pt_file.stem}{''.join(extra).replace('-', '')}.ckpt"
    r = subprocess.run([sys.executable, str(REPO / "pt2mind.py"), "--pt_checkpoint", str(pt_file), "--config",
                        str(cfg_path), "--output", str(out), *extra], capture_output=True, text=True, cwd=REPO)
    return r, out


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_converted_model_matches_pytorch(small, layout):
    tmp, cfg_path, config, model, ema_model = small
    rename = LAYOUTS[layout]
    state = {rename(k): v for k, v in model.state_dict().items()}
    pt_file = tmp / f"{layout}.pt"
    if layout == "nemo":
        torch.save(state, pt_file)                      # NeMo: a bare state dict
    else:
        torch.save({"state_dict": state, "ema_state_dict": {rename(k): v for k, v in ema_model.state_dict().items()},
                    "epoch": 3}, pt_file)
    r, out = convert(tmp, cfg_path, pt_file)
    assert r.returncode == 0, r.stderr[-2000:]
    feats, lengths = features()
    ms_model = load_checkpoint_model(config, out)
    got, got_len = predict(ms_model, feats, lengths)
    with torch.no_grad():
        want, want_len = model(torch.from_numpy(feats), torch.from_numpy(lengths.astype(np.int64)))
    np.testing.assert_array_equal(got_len, want_len.numpy())
    for g, w, n in zip(got, want.numpy(), got_len):
        np.testing.assert_allclose(g[:n], w[:n], atol=1e-4)
    if layout != "nemo":                                # --ema takes the averaged weights
        r, out = convert(tmp, cfg_path, pt_file, "--ema")
        assert r.returncode == 0, r.stderr[-2000:]
        got, _ = predict(load_checkpoint_model(config, out), feats, lengths)
        with torch.no_grad():
            want, _ = ema_model(torch.from_numpy(feats), torch.from_numpy(lengths.astype(np.int64)))
        np.testing.assert_allclose(got[0][:got_len[0]], want.numpy()[0][:got_len[0]], atol=1e-4)


def test_name_mapping_agrees_with_a_module_walk(small):
    _, _, config, model, _ = small
    expected = {p.name: tuple(p.shape) for p in build_model(config).get_parameters()}
    by_name = convert_state_dict({k: v.numpy() for k, v in model.state_dict().items()}, expected, config)
    by_module = mindspore_state_from_torch(model)
    assert by_name.keys() == by_module.keys() == expected.keys()
    for k in by_name:
        np.testing.assert_array_equal(by_name[k], by_module[k])


def test_jasper10x5dr_layout_maps_one_to_one():
    config = load_config(REPO / "src" / "configs" / "jasper10x5dr.yaml")
    with torch.device("meta"):                         # names and shapes only, no memory
        state = build_torch_model(config).state_dict()
    assert len(state) == 650 and sum(not k.endswith("num_batches_tracked") for k in state) == 542
    arrays = {k: np.broadcast_to(np.float32(0), tuple(v.shape)) for k, v in state.items()}
    expected = {p.name: tuple(p.shape) for p in build_model(config).get_parameters()}
    assert len(convert_state_dict(arrays, expected, config)) == 542


@pytest.mark.parametrize("damage, message", [
    (lambda s: s.pop("encoder.layers.2.conv.5.running_var"), r"not in the checkpoint: \['encoder\.layers\.2\.conv\.5\.moving_variance'\]"),
    (lambda s: s.__setitem__("encoder.layers.9.conv.0.weight", torch.zeros(3)), r"no place in the model: \['encoder\.layers\.9\.conv\.0\.weight'\]"),
    (lambda s: s.__setitem__("decoder.layers.0.weight", torch.zeros(29, 50, 1)), r"decoder\.layers\.0\.weight has shape \(29, 50, 1\)"),
])
def test_wrong_or_partial_checkpoints_name_the_tensors(small, damage, message):
    tmp, cfg_path, _, model, _ = small
    state = dict(model.state_dict())
    damage(state)
    pt_file = tmp / "damaged.pt"
    torch.save({"state_dict": state}, pt_file)
    r, _ = convert(tmp, cfg_path, pt_file)
    assert r.returncode == 1 and re.search(message, r.stderr), r.stderr[-1500:]


def test_unsafe_or_unusable_files_are_refused(small, tmp_path):
    tmp, cfg_path, _, model, _ = small

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"state_dict": {"x": Payload()}}, tmp_path / "pickle.pt")
    r, _ = convert(tmp, cfg_path, tmp_path / "pickle.pt")
    assert r.returncode == 1 and "weights_only=True" in r.stderr and "this must never run" not in r.stdout
    torch.save({"state_dict": model.state_dict()}, tmp_path / "no_ema.pt")
    r, _ = convert(tmp, cfg_path, tmp_path / "no_ema.pt", "--ema")
    assert r.returncode == 1 and "ema_state_dict" in r.stderr
    torch.save({"fc.weight": torch.zeros(2)}, tmp_path / "other.pt")
    r, _ = convert(tmp, cfg_path, tmp_path / "other.pt")
    assert r.returncode == 1 and "not a Jasper checkpoint" in r.stderr
    torch.save({"weights": {"a": torch.zeros(2)}}, tmp_path / "nested.pt")
    r, _ = convert(tmp, cfg_path, tmp_path / "nested.pt")
    assert r.returncode == 1 and "entry 'weights' is not a tensor" in r.stderr
    with pytest.raises(ConversionError, match="not a Jasper checkpoint"):
        convert_state_dict({"fc.weight": np.zeros(2)}, {}, config_from_dict(SMALL))
