"""TrainConfig: the paper's defaults, TOML < flags precedence, errors naming the key."""

from __future__ import annotations

import tomllib

import pytest

from gimtool.errors import InputError
from gimtool.train.config import TrainConfig, load_config, parse_epochs, stage_epochs
from tests.train.test_embed import gimtool


def test_paper_defaults():
    c = TrainConfig()
    assert (c.lr, c.batch_size, c.crop_mm, c.geno_crop_p) == (1e-3, 12, 160.0, 0.2)
    assert c.model.lambda_recon == 1.0
    assert round(c.geno_aug_fraction * 658_720) == 65_000
    # gim's stages keep the method's own defaults (the paper's 200/100/50)
    assert stage_epochs(c, ["a", "b", "c"]) == {}
    assert stage_epochs(c, ["train"]) == {"train": 350}


def test_toml_then_flags(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('method = "autoencoder"\nlr = 5e-4\nbatch_size = 6\nepochs = [4, 2, 1]\n[model]\nlambda_recon = 0.5\nconv_channels = [16, 32, 64]\n')
    c = load_config(f, {"lr": 2e-3, "batch_size": None, "epochs": parse_epochs("7")})
    assert c.method == "autoencoder" and c.lr == 2e-3 and c.batch_size == 6 and c.epochs == 7
    assert c.model.lambda_recon == 0.5 and c.model.conv_channels == (16, 32, 64)
    # the saved TOML reproduces the config
    again = TrainConfig.from_dict(tomllib.loads(c.save_toml()))
    assert again.to_dict() == c.to_dict()


@pytest.mark.parametrize("text, match", [
    ("lr = -1", "config key 'lr': expected a positive number"),
    ("batch_size = 2.5", "key 'batch_size': expected int"),
    ("learning_rate = 1e-3", "unknown key 'learning_rate'"),
    ("epochs = [1, -2]", "config key 'epochs'"),
    ("[model]\nwindow = 3", r"\[model\].*window = 3, expected an even number"),
    ("[model]\nwidth = 3", r"\[model\]: unknown key 'width'"),
    ("lr = ", "not valid TOML"),
])
def test_bad_values_name_the_key(tmp_path, text, match):
    f = tmp_path / "bad.toml"
    f.write_text(text + "\n")
    with pytest.raises(InputError, match=match):
        load_config(f)


def test_epochs_per_stage_must_match():
    c = TrainConfig.from_dict({"method": "gim", "epochs": [1, 2]})
    with pytest.raises(InputError, match=r"2 numbers given, but method 'gim' has 3 stage\(s\)"):
        stage_epochs(c, ["frozen-genetic", "genetic-augment", "co-train"])
    assert stage_epochs(c, ["x", "y"]) == {"x": 1, "y": 2}
    with pytest.raises(InputError, match="--epochs '1,a'"):
        parse_epochs("1,a")


def test_cli_bad_flag_and_method(tmp_path, capsys):
    assert gimtool("train", "--images", tmp_path / "none", "--out", tmp_path / "o", "--method", "nope", check=False) == 1
    assert "--method nope: unknown method 'nope'" in capsys.readouterr().err
    assert gimtool("train", "--images", tmp_path / "none", "--out", tmp_path / "o", "--epochs", "x", check=False) == 1
    assert "--epochs 'x'" in capsys.readouterr().err
