import pytest

from src.config import ConfigError, load_config, save_config


def test_defaults_are_nvidia_front_end():
    c = load_config(None)
    f = c.features
    assert (f.sample_rate, f.n_fft, f.win_length, f.hop_length, f.n_mels, f.pad_to) == (16000, 512, 320, 160, 64, 16)
    assert (c.augment.freq_masks, c.augment.max_freq_width, c.augment.time_masks, c.augment.max_time_width) == (2, 20, 2, 75)


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data:\n  batch_size: 4\nfeatures:\n  dither: 0\n")
    c = load_config(p, ["data.batch_size=8", "augment.spec_augment=false", "augment.min_speed=0.9"])
    assert c.data.batch_size == 8 and c.features.dither == 0.0 and not c.augment.spec_augment
    assert c.augment.min_speed == 0.9
    # YAML 1.1 reads 5e-3 (no dot) as a string; float fields accept it all the same
    assert load_config(None, ["optim.lr=5e-3"]).optim.lr == 0.005


def test_saved_config_loads_back_identically(tmp_path):
    c = load_config(None, ["data.seed=7"])
    save_config(c, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == c


@pytest.mark.parametrize("override, message", [
    ("data.bogus=1", "unknown key"), ("nosection.x=1", "unknown key"), ("data.batch_size=big", "expected int"),
    ("optim.lr=fast", "expected float"),
    ("augment.spec_augment=3", "expected bool"), ("data.batch_size", "section.key=value"),
])
def test_bad_overrides_are_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)
