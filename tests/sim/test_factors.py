"""The simulator's heritable factors: the brainlike preset's two kinds (major volume effects among
the largest sources of image variance, subtle regional ones)."""

from __future__ import annotations

import numpy as np
import pytest

from gimtool.sim.cohort import PRESETS, preset
from gimtool.sim.images import MAJOR_FACTORS, choose_factors


def test_major_and_subtle_factors():
    rng = np.random.default_rng(0)
    specs = choose_factors(6, rng, n_major=2, minor_scale=0.5)
    assert [s.kind for s in specs[:2]] == ["volume", "volume"]
    assert [s.region for s in specs[:2]] == [m[0] for m in MAJOR_FACTORS[:2]]
    assert all(s.radius >= 30 for s in specs[:2]) and all(s.radius <= 22 for s in specs[2:])
    # the subtle ones: half the default strength, in regions other than the major ones
    plain = choose_factors(6, np.random.default_rng(0))
    base = {"volume": 0.15, "contrast": 0.10, "shape": 2.5}
    assert all(s.strength == pytest.approx(0.5 * base[s.kind]) for s in specs[2:])
    assert {s.region for s in specs[2:]}.isdisjoint({s.region for s in specs[:2]})
    assert plain[0].strength == pytest.approx(base[plain[0].kind])
    with pytest.raises(ValueError, match="major factors"):
        choose_factors(2, rng, n_major=3)


def test_brainlike_preset():
    c = preset("brainlike")
    assert (c.n_samples, c.n_factors, c.major_factors, c.minor_scale, c.voxel) == (3000, 6, 2, 0.5, 8.0)
    # a preset carries no seed of its own: `simulate --preset brainlike` (seed 0 unless --seed) makes
    # the cohort every brainlike table was made on
    from gimtool.pipelines.simulate import make_config

    assert c.seed == 0 and make_config("brainlike").seed == 0 and make_config("brainlike", seed=5).seed == 5
    assert all("seed" not in p for p in PRESETS.values())
