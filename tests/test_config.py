"""Strict typed config: unknown keys, types, ranges, overrides, inheritance, YAML errors."""

from pathlib import Path

import pytest

from translate.config import (Config, ConfigError, Precision, Schedule, Source, config_from_dict, config_to_dict,
                              load_config)

from conftest import REPO, tiny_config, write_config


def test_shipped_configs_load():
    for name in ("demo", "wmt14_base", "wmt14_base_ls0"):
        cfg = load_config(REPO / "configs" / f"{name}.yaml")
        assert cfg.name == name
    base = load_config(REPO / "configs" / "wmt14_base.yaml")
    assert (base.model.d_model, base.model.d_ff, base.model.n_heads, base.model.n_encoder_layers) == (512, 2048, 8, 6)
    assert base.data.train.source == Source.HUGGINGFACE and base.data.vocab_size == 32000
    assert base.train.precision == Precision.BF16 and base.train.label_smoothing == 0.1


def test_label_smoothing_ablation_differs_in_one_value():
    base = config_to_dict(load_config(REPO / "configs" / "wmt14_base.yaml"))
    ls0 = config_to_dict(load_config(REPO / "configs" / "wmt14_base_ls0.yaml"))
    assert ls0["train"]["label_smoothing"] == 0.0
    ls0["train"]["label_smoothing"] = base["train"]["label_smoothing"]
    ls0["name"] = base["name"]
    assert ls0 == base


def test_unknown_key_names_dotted_path_and_valid_keys(tmp_path):
    raw = tiny_config(tmp_path)
    raw["model"]["d_modle"] = 64
    with pytest.raises(ConfigError) as e:
        config_from_dict(raw)
    message = str(e.value)
    assert "unknown config key 'model.d_modle'" in message
    assert "did you mean 'd_model'" in message
    assert "n_heads" in message  # the valid keys are listed


def test_unknown_section(tmp_path):
    raw = tiny_config(tmp_path)
    raw["optimizer"] = {"lr": 1}
    with pytest.raises(ConfigError, match="unknown config key 'optimizer'"):
        config_from_dict(raw)


def test_all_problems_collected_in_one_message(tmp_path):
    raw = tiny_config(tmp_path)
    raw["model"].update(d_model=500, n_heads=8, dropout="high")
    raw["train"]["label_smoothing"] = 1.0
    raw["optim"]["warmup_steps"] = -5
    with pytest.raises(ConfigError) as e:
        config_from_dict(raw)
    message = str(e.value)
    assert "model.dropout ('high') must be a number" in message
    # Type errors stop range checks of the same object from running on garbage, so check ranges alone:
    raw["model"]["dropout"] = 0.1
    with pytest.raises(ConfigError) as e:
        config_from_dict(raw)
    lines = str(e.value).splitlines()
    assert "model.d_model (500) must be divisible by model.n_heads (8)" in str(e.value)
    assert "train.label_smoothing (1.0) must be in [0, 1)" in str(e.value)
    assert "optim.warmup_steps (-5) must not be negative" in str(e.value)
    assert len(lines) == 4  # header + three problems


@pytest.mark.parametrize("section,key,value,fragment", [
    ("train", "max_steps", "ten", "train.max_steps ('ten') must be an integer"),
    ("train", "compile", "yes", "train.compile ('yes') must be true or false"),
    ("train", "precision", "fp8", "train.precision ('fp8') must be one of ['fp32', 'bf16', 'fp16']"),
    ("optim", "betas", [0.9], "optim.betas ([0.9]) must be a list of 2 values"),
    ("train", "max_tokens", 10, "train.max_tokens (10) must be at least the longest allowed sentence"),
    ("data", "train", "corpus.txt", "data.train must be a mapping of keys"),
    ("train", "divergence_grace_steps", -1, "train.divergence_grace_steps (-1) must not be negative"),
])
def test_type_and_range_errors(tmp_path, section, key, value, fragment):
    raw = tiny_config(tmp_path)
    raw[section][key] = value
    with pytest.raises(ConfigError, match=__import__("re").escape(fragment)):
        config_from_dict(raw)


def test_overrides_are_typed(tmp_path):
    path = write_config(tmp_path / "c.yaml", tiny_config(tmp_path))
    cfg = load_config(path, ["optim.lr=5e-4", "train.compile=true", "optim.schedule=noam", "optim.betas=[0.9, 0.99]",
                             "data.train.prefix=/x/y", "data.train.source=files"])
    assert cfg.optim.lr == 5e-4 and cfg.train.compile is True and cfg.optim.schedule == Schedule.NOAM
    assert cfg.optim.betas == (0.9, 0.99)
    assert cfg.data.train.source == Source.FILES and cfg.data.train.prefix == "/x/y"
    with pytest.raises(ConfigError, match="train.max_steps"):
        load_config(path, ["train.max_steps=abc"])
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_config(path, ["train.max_steps"])
    with pytest.raises(ConfigError, match="unknown config key 'train.nope'"):
        load_config(path, ["train.nope=1"])


def test_preset_fills_sizes_unless_explicit(tmp_path):
    raw = tiny_config(tmp_path)
    raw["model"] = {"preset": "base", "n_encoder_layers": 3, "max_positions": 256}
    cfg = config_from_dict(raw)
    assert (cfg.model.d_model, cfg.model.n_encoder_layers, cfg.model.n_decoder_layers) == (512, 3, 6)
    raw["model"] = {"preset": "huge"}
    with pytest.raises(ConfigError, match="model.preset"):
        config_from_dict(raw)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  train: {source: synthetic\nmodel:\n  d_model: 64\n")
    with pytest.raises(ConfigError, match=r"bad.yaml, line \d+"):
        load_config(path)


@pytest.mark.parametrize("text,fragment", [("", "is empty"), ("- a\n- b\n", "must hold a mapping"),
                                           ("data: 3\n", "data must be a mapping")])
def test_malformed_files(tmp_path, text, fragment):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_round_trip_through_dict(tmp_path):
    cfg = config_from_dict(tiny_config(tmp_path))
    again = config_from_dict(config_to_dict(cfg))
    assert again == cfg and isinstance(again, Config)


def test_circular_base(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="circular"):
        load_config(tmp_path / "a.yaml")


def test_default_run_dir_from_config_name(tmp_path):
    raw = tiny_config(tmp_path)
    raw["train"].pop("out_dir")
    path = write_config(tmp_path / "myexp.yaml", raw)
    assert load_config(path).run_dir == Path("runs/myexp")
