"""TrainConfig: the paper's defaults, TOML < flags precedence, errors naming the key."""

from __future__ import annotations

import tomllib

import pytest

from gimtool.errors import InputError
from gimtool.train.config import TrainConfig, load_config, parse_epochs, stage_epochs
from tests.train.test_embed import gimtool


def test_paper_defaults():
    c = TrainConfig()
    assert (c.lr, c.batch_size, c.geno_crop_p) == (1e-3, 12, 0.2)
    # whole volumes by default (crop_mm 0); the paper's random 160 mm crops with --paper
    assert c.crop_mm == 0.0 and load_config(None, {"paper": True}).crop_mm == 160.0
    # gimtool's lambda 10 at a constant rate; the paper's 1 with a cosine per stage under --paper
    assert (c.model.lambda_recon, c.lr_schedule) == (10.0, "constant")
    paper = load_config(None, {"paper": True})
    assert (paper.model.lambda_recon, paper.lr_schedule) == (1.0, "cosine")
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


def test_gim_schedule_cotrain_by_default_paper_one_flag_away(tmp_path):
    from gimtool.model.methods import GIM_STAGES
    from gimtool.train.config import GIM_STAGE_NAMES

    assert GIM_STAGE_NAMES == GIM_STAGES
    c = TrainConfig()
    assert stage_epochs(c, list(GIM_STAGES)) == {"frozen-genetic": 0, "genetic-augment": 0, "co-train": 350}
    c.epochs = 6
    assert stage_epochs(c, list(GIM_STAGES)) == {"frozen-genetic": 0, "genetic-augment": 0, "co-train": 6}
    assert stage_epochs(c, ["train"]) == 6
    c.epochs = [2, 1, 1]  # explicit per-stage epochs win
    assert stage_epochs(c, list(GIM_STAGES)) == {"frozen-genetic": 2, "genetic-augment": 1, "co-train": 1}
    # --paper: every departure back to the paper's value
    p = load_config(None, {"paper": True, "epochs": 7})
    assert p.schedule == "paper" and stage_epochs(p, list(GIM_STAGES)) == 7
    m = p.model
    assert (m.genetic_encoder, m.genetic_input, m.critic_standardize, m.critic_snps) == ("transformer", "classes", False, 0)
    assert m.critic_hidden == (256,) and m.critic_dim == 128
    assert p.geno_aug_min_snps == 0 and p.critic_weight_decay == 0.0
    # a TOML value still overrides the paper preset, and the file can ask for it too
    (tmp_path / "c.toml").write_text("paper = true\n[model]\ngenetic_encoder = \"mlp\"\n")
    q = load_config(tmp_path / "c.toml")
    assert q.paper and q.schedule == "paper" and q.model.genetic_encoder == "mlp" and not q.model.critic_standardize
    d = load_config(None, {})
    assert not d.paper and d.model.critic_standardize and d.model.genetic_encoder == "linear" and d.schedule == "cotrain"


def test_augmentation_density_floor():
    from gimtool.train.config import aug_fraction

    c = TrainConfig()
    assert aug_fraction(c, 658_720) == pytest.approx(65_000 / 658_720, rel=1e-3)  # the paper's array: the paper's 65k
    assert aug_fraction(c, 100_000) == pytest.approx(0.2)  # at least 20,000 SNPs
    assert aug_fraction(c, 1_500) == 1.0  # a small array is kept whole
    c.geno_aug_min_snps = 0
    assert aug_fraction(c, 1_500) == pytest.approx(c.geno_aug_fraction)
