"""`gimtool embed`: FID IID z1..z128 for every person, batch-size invariant, --keep, whole
volumes or the validation centre crop, refusal of a store on another grid. Uses random-init
(the seeded untrained encoder), which `train` saves without training."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from gimtool.cli import main
from tests.train.test_train_data import ids_of, make_image_store, write_ids


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("embed")
    ids = ids_of(9)
    make_image_store(d / "img", ids, shape=(8, 10, 8))
    (d / "m.toml").write_text("crop_mm = 24.0\n[model]\nconv_channels = [8, 8, 8]\nflatten_grid = [2, 2, 2]\nflatten_mm = 0.0\n")
    gimtool("train", "--images", d / "img", "--method", "random-init", "--config", d / "m.toml", "--seed", "4",
            "--out", d / "run", "--no-progress")
    return d, ids


def gimtool(*args, check=True):
    """The CLI in this process (saves a torch import per call); returns the exit code."""
    code = main([str(a) for a in args])
    if check:
        assert code == 0, args
    return code


def _read(prefix):
    return pl.read_csv(f"{prefix}.tsv", separator="\t")


def test_embed_all_batch_invariant_keep_and_crop(model, tmp_path):
    d, ids = model
    ck = d / "run" / "model.pt"
    gimtool("embed", "--checkpoint", ck, "--images", d / "img", "--out", tmp_path / "a", "--batch-size", "1", "--no-progress")
    gimtool("embed", "--checkpoint", ck, "--images", d / "img", "--out", tmp_path / "b", "--batch-size", "4", "--no-progress")
    a, b = _read(tmp_path / "a"), _read(tmp_path / "b")
    assert a.columns == ["FID", "IID", *[f"z{k}" for k in range(1, 129)]]
    assert a["IID"].to_list() == [i for _, i in ids]
    np.testing.assert_allclose(a.drop("FID", "IID").to_numpy(), b.drop("FID", "IID").to_numpy(), rtol=1e-4, atol=1e-5)
    assert np.ptp(a["z1"].to_numpy()) > 0
    write_ids(tmp_path / "k.ids", ids[3:5])
    gimtool("embed", "--checkpoint", ck, "--images", d / "img", "--keep", tmp_path / "k.ids", "--out", tmp_path / "k", "--no-progress")
    k = _read(tmp_path / "k")
    assert k["IID"].to_list() == ["I3", "I4"]
    np.testing.assert_allclose(k.drop("FID", "IID").to_numpy(), a.drop("FID", "IID").to_numpy()[3:5], rtol=1e-4, atol=1e-5)
    gimtool("embed", "--checkpoint", ck, "--images", d / "img", "--center-crop", "--out", tmp_path / "c", "--no-progress")
    c = _read(tmp_path / "c")
    assert not np.allclose(c["z1"].to_numpy(), a["z1"].to_numpy())
    assert "centre crop (6, 6, 6)" in (tmp_path / "c.log").read_text()


def test_embed_refusals(model, tmp_path, capsys):
    d, ids = model
    ck = d / "run" / "model.pt"
    make_image_store(tmp_path / "shifted", ids, shape=(8, 10, 8), origin=(-10.0, -20.0, -16.0))
    assert gimtool("embed", "--checkpoint", ck, "--images", tmp_path / "shifted", "--out", tmp_path / "x", check=False) == 1
    err = capsys.readouterr().err
    assert "origin (-16.0, -20.0, -16.0)" in err and "the image store has shape (8, 10, 8), voxel (4.0, 4.0, 4.0) mm, origin (-10.0, -20.0, -16.0)" in err
    assert not (tmp_path / "x.tsv").exists() and "status: failed" in (tmp_path / "x.log").read_text()
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert gimtool("embed", "--checkpoint", tmp_path / "junk.pt", "--images", d / "img", "--out", tmp_path / "y", check=False) == 1
    assert "junk.pt: not a readable gimtool checkpoint" in capsys.readouterr().err


def test_train_resolves_the_flatten_grid_and_embed_builds_it(tmp_path):
    """flatten_mm: `train` fixes the dense layer's grid from the crop (8 x 10 x 8 voxels of 4 mm,
    last maps 2 x 3 x 2; 16 mm cells: 2 x 3 x 2, 32 mm cells: 1 x 2 x 1) and stores it, so that
    `embed` builds the same layer; flatten_mm = 0 keeps flatten_grid as given."""
    from gimtool.train.embedding import load_model

    ids = ids_of(5)
    make_image_store(tmp_path / "img", ids, shape=(8, 10, 8))
    expect = {"16.0": (2, 3, 2), "32.0": (1, 2, 1), "0.0": (2, 2, 2)}
    for mm, grid in expect.items():
        (tmp_path / f"{mm}.toml").write_text(f"[model]\nconv_channels = [8, 8, 8]\nflatten_grid = [2, 2, 2]\nflatten_mm = {mm}\n")
        run = tmp_path / f"run{mm}"
        gimtool("train", "--images", tmp_path / "img", "--method", "random-init", "--config", tmp_path / f"{mm}.toml",
                "--out", run, "--no-progress")
        _, modules, cfg, _ = load_model(run / "model.pt", torch.device("cpu"))
        assert cfg.model.flatten_grid == grid
        assert modules["encoder"].dense.in_features == 8 * grid[0] * grid[1] * grid[2]
        log = (run / "train.log").read_text()
        assert f"dense layer on {'x'.join(map(str, grid))} cells" in log
        # the log's config line shows the grid used, as config.toml stores it, not the TOML's [2, 2, 2]
        assert f"'flatten_grid': {list(grid)}" in log
        gimtool("embed", "--checkpoint", run, "--images", tmp_path / "img", "--out", tmp_path / f"e{mm}", "--no-progress")
        assert _read(tmp_path / f"e{mm}").height == 5
