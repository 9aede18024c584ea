"""The cohort simulator: genotypes (LD, frequencies, map), factor heritability, images and truth."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import polars as pl
import pytest

from gimtool.io.genmap import read_genetic_map
from gimtool.imaging.grids import mni_grid
from gimtool.io.plink import Bfile
from gimtool.io.tables import read_ids, read_table
from gimtool.sim.cohort import preset, simulate_cohort
from gimtool.sim.genotypes import simulate_genotypes
from gimtool.sim.traits import simulate_traits
from tests.conftest import gimtool, require_program, run

pytest.importorskip("msprime")
pytest.importorskip("nilearn")


@pytest.fixture(scope="module")
def gwas_cohort(tmp_path_factory) -> Path:
    """2,000 people, 2 x 4 Mb, no images: the association and genotype checks."""
    d = tmp_path_factory.mktemp("gwas_cohort")
    simulate_cohort(d, preset("gwas", n_chromosomes=2, chrom_length_mb=4.0, n_snps=6_000, n_factors=2, n_causal=3,
                              h2=[0.5], seed=11))
    return d


@pytest.fixture(scope="module")
def image_cohort(tmp_path_factory) -> Path:
    """160 people with 4 mm volumes and strong factor effects (the image checks)."""
    d = tmp_path_factory.mktemp("image_cohort")
    simulate_cohort(d, preset("tiny", n_samples=160, voxel=4.0, n_factors=3, effect_scale=2.0, seed=3), threads=2)
    return d


# -- genotypes -------------------------------------------------------------------------------


def test_genotypes_are_plink_like(gwas_cohort):
    bf = Bfile(gwas_cohort / "geno")
    G = bf.read()
    assert G.shape == (2000, 6000)
    assert set(np.unique(G)) <= {0, 1, 2}
    freq = G.mean(0) / 2
    # A1 is the minor allele, MAF >= 1 %
    assert freq.max() <= 0.5 + 1e-12 and freq.min() >= 0.01 - 1e-12
    bim = bf.bim
    assert bim["SNP"].n_unique() == bim.height
    for c in bim["CHR"].unique().to_list():
        sub = bim.filter(pl.col("CHR") == c)
        assert np.all(np.diff(sub["BP"].to_numpy()) > 0)
        assert np.all(np.diff(sub["CM"].to_numpy()) >= 0)
        # ~1.2 cM/Mb on average over 4 Mb
        assert 2.0 < sub["CM"].max() < 8.0
    # the frequency spectrum of a real population: many SNPs below 10 %, common ones too
    maf = np.minimum(freq, 1 - freq)
    assert 0.15 < np.mean(maf < 0.1) < 0.7 and np.mean(maf > 0.3) > 0.1


def test_recombination_map_rate_and_hotspots():
    from gimtool.sim.genotypes import recombination_map

    edges, rates = recombination_map(20_000_000, np.random.default_rng(0), mean_cm_per_mb=1.2, hotspot_share=0.6)
    widths = np.diff(edges)
    assert edges[0] == 0 and edges[-1] == 20_000_000 and np.all(widths > 0)
    mass = rates * widths
    assert mass.sum() * 100 == pytest.approx(1.2 * 20, rel=1e-9)  # cM over 20 Mb
    hot = widths == 2_000
    # ~60 % of crossovers in hotspots covering a few % of the sequence
    assert 0.5 < mass[hot].sum() / mass.sum() < 0.7 and widths[hot].sum() / edges[-1] < 0.05


def test_genetic_map_file_matches_bim(gwas_cohort):
    gm = read_genetic_map(gwas_cohort / "genetic_map.txt")
    bim = Bfile(gwas_cohort / "geno").bim
    for c, (bp, cm) in gm.items():
        sub = bim.filter(pl.col("CHR") == str(c))
        interp = np.interp(sub["BP"].to_numpy(), bp, cm)
        np.testing.assert_allclose(interp, sub["CM"].to_numpy(), atol=1e-4)
        rate = np.diff(cm) / np.diff(bp) * 1e6
        # hotspots: the rate varies over more than an order of magnitude
        assert rate.max() > 10 * np.median(rate)


def test_ld_decays_with_cm(gwas_cohort):
    bf = Bfile(gwas_cohort / "geno")
    bim = bf.bim
    sel = np.flatnonzero((bim["CHR"] == "1").to_numpy())
    X = bf.read(snps=sel, dtype="float64")
    X = (X - X.mean(0)) / X.std(0)
    R2 = (X.T @ X / X.shape[0]) ** 2
    cm = bim["CM"].to_numpy()[sel]
    dist = np.abs(cm[:, None] - cm[None, :])
    iu = np.triu_indices(sel.size, 1)
    d, r2 = dist[iu], R2[iu]
    bins = [(0, 0.005), (0.005, 0.05), (0.05, 0.5), (1.0, np.inf)]
    means = [r2[(d >= a) & (d < b)].mean() for a, b in bins]
    assert all(x > y for x, y in zip(means, means[1:])), means
    assert means[0] > 0.1  # strong LD between neighbours
    assert means[-1] < 5.0 / X.shape[0]  # none beyond 1 cM beyond sampling noise (1/N)


def test_plink2_reads_files(gwas_cohort, tmp_path):
    plink2 = require_program("plink2")
    run([plink2, "--bfile", str(gwas_cohort / "geno"), "--freq", "--out", str(tmp_path / "f"), "--threads", "1"])
    af = pl.read_csv(tmp_path / "f.afreq", separator="\t")
    G = Bfile(gwas_cohort / "geno").read()
    bim = Bfile(gwas_cohort / "geno").bim
    assert af["ID"].to_list() == bim["SNP"].to_list()
    assert af["ALT"].to_list() == bim["A1"].to_list()  # PLINK 1 A1 is PLINK 2's ALT
    np.testing.assert_allclose(af["ALT_FREQS"].to_numpy(), G.mean(0) / 2, atol=1e-6)


# -- factors -----------------------------------------------------------------------------------


def test_constant_population_is_more_related():
    """--growth none (constant Ne 10,000) gives more cryptic relatedness than recent growth."""
    share = {}
    for growth in ("recent", "none"):
        s = simulate_genotypes(400, n_chromosomes=2, chrom_length_mb=3.0, growth=growth, seed=9)
        assert s.params["growth"] == growth and set(s.population) == {"pop0"}
        X = s.G.astype(np.float64)
        X = (X - X.mean(0)) / X.std(0)
        K = X @ X.T / X.shape[1]
        share[growth] = K[np.triu_indices(400, 1)].std()
    assert share["none"] > 1.05 * share["recent"], share  # 1.11-1.25 over seeds
    with pytest.raises(ValueError, match="growth must be one of"):
        simulate_genotypes(10, growth="fast")


def test_realized_h2_within_sampling_error():
    s = simulate_genotypes(600, n_chromosomes=1, chrom_length_mb=2.0, n_snps=1500, seed=4)
    n = s.n_samples
    for h2 in (0.2, 0.5, 0.8):
        tr = simulate_traits(s.G, h2, n_causal=50, n_traits=40, seed=int(h2 * 10))
        realized = tr.genetic.var(0) / tr.values.var(0)
        # var(g) = h2 exactly; var(y) = h2 + var(e) + 2 cov(g, e): delta-method sd of the ratio
        se = h2 * np.sqrt(2 * (1 - h2**2) / n)
        assert abs(realized.mean() - h2) < 4 * se / np.sqrt(40), (h2, realized.mean())
        assert 0.5 * se < realized.std() < 2 * se
        # betas are per copy of the counted allele and reproduce the genetic values
        for t in range(3):
            Xc = s.G[:, tr.causal[t]].astype(float)
            np.testing.assert_allclose((Xc - Xc.mean(0)) @ tr.betas[t], tr.genetic[:, t], atol=1e-9)


def test_association_finds_causal_loci(gwas_cohort):
    bf = Bfile(gwas_cohort / "geno")
    X = bf.read(dtype="float64")
    X -= X.mean(0)
    X /= X.std(0)
    Z = read_table(gwas_cohort / "truth" / "factors.tsv")
    causal = pl.read_csv(gwas_cohort / "truth" / "causal.tsv", separator="\t", schema_overrides={"CHR": pl.Utf8})
    loci = pl.read_csv(gwas_cohort / "truth" / "loci.tsv", separator="\t", schema_overrides={"CHR": pl.Utf8})
    bim = bf.bim
    chrom, bp = bim["CHR"].to_numpy(), bim["BP"].to_numpy()
    n = X.shape[0]
    from scipy import stats

    for f in ("F1", "F2"):
        y = Z[f].to_numpy()
        y = (y - y.mean()) / y.std()
        r = X.T @ y / n
        t = r * np.sqrt((n - 2) / (1 - r**2))
        p = 2 * stats.t.sf(np.abs(t), n - 2)
        sig = p < 5e-8
        fl = loci.filter(pl.col("FACTOR") == f)
        assert fl.height == 3
        in_locus = np.zeros(bim.height, bool)
        for c, a, b in fl.select("CHR", "START", "END").iter_rows():
            win = (chrom == c) & (bp >= a) & (bp <= b)
            in_locus |= win
            assert sig[win].any(), f"{f}: causal locus {c}:{a}-{b} not found (min P {p[win].min():.2g})"
        # hits away from every causal SNP of this factor (1 Mb) are rare: the truth is complete
        near = np.zeros(bim.height, bool)
        for c, b0 in causal.filter(pl.col("FACTOR") == f).select("CHR", "BP").iter_rows():
            near |= (chrom == c) & (np.abs(bp - b0) < 1_000_000)
        assert sig[~near].sum() <= 2


# -- images ------------------------------------------------------------------------------------


def _template_com_mm() -> np.ndarray:
    """Centre of mass (mm) of the template's brain, on the template's own 1 mm grid."""
    from scipy.ndimage import center_of_mass

    from gimtool.sim.template import _load_raw

    raw, affine = _load_raw()
    ijk = np.array(center_of_mass(raw["t1"] > 0.02))
    return affine[:3, :3] @ ijk + affine[:3, 3]


def test_nifti_geometry_and_centre_of_mass(image_cohort):
    from scipy.ndimage import center_of_mass

    shape, affine = mni_grid(4.0)
    lst = pl.read_csv(image_cohort / "images.tsv", separator="\t")
    assert lst.columns == ["FID", "IID", "PATH"] and lst.height == 160
    ref = _template_com_mm()
    coms = []
    for path in lst["PATH"].to_list():
        img = nib.load(image_cohort / path)
        assert img.shape == shape
        np.testing.assert_allclose(img.affine, affine, atol=1e-6)
        data = img.get_fdata()
        assert np.isfinite(data).all() and data.max() > 500 and (data > 0).mean() > 0.1
        coms.append(affine[:3, :3] @ np.array(center_of_mass(data > 0)) + affine[:3, 3])
    off = np.array(coms) - ref
    # the affines put the brains where the template's brain is: on average to a quarter voxel,
    # each person within one voxel per axis but for the few that the individual deformation and
    # residual misregistration (both simulated on purpose) move further
    assert np.abs(off.mean(0)).max() < 1.0, off.mean(0)
    assert np.mean(np.abs(off) < 4.0) > 0.95 and np.abs(off).max() < 8.0
    # the template on the grid agrees to a fraction of a voxel
    t = nib.load(image_cohort / "truth" / "template.nii.gz").get_fdata()
    tcom = affine[:3, :3] @ np.array(center_of_mass(t > 20)) + affine[:3, 3]
    assert np.abs(tcom - ref).max() < 1.0, tcom - ref


def test_masks_overlap_correlated_voxels(image_cohort):
    lst = pl.read_csv(image_cohort / "images.tsv", separator="\t")
    vols = np.stack([nib.load(image_cohort / p).get_fdata(dtype=np.float32) for p in lst["PATH"].to_list()])
    Z = read_table(image_cohort / "truth" / "factors.tsv")
    assert Z["IID"].to_list() == lst["IID"].to_list()
    V = vols.reshape(len(vols), -1)
    V = V - V.mean(0)
    sd = V.std(0)
    params = json.loads((image_cohort / "truth" / "params.json").read_text())
    for spec in params["factors"]:
        z = Z[spec["name"]].to_numpy()
        z = (z - z.mean()) / z.std()
        corr = np.where(sd > 0, (V * z[:, None]).mean(0) / np.where(sd > 0, sd, 1), 0.0)
        mask = nib.load(image_cohort / "truth" / "masks" / f"{spec['name']}.nii.gz").get_fdata().ravel() > 0
        assert mask.sum() > 20
        top = np.argsort(-np.abs(corr))[:30]
        assert mask[top].mean() >= 0.8, (spec, mask[top].mean())
        assert np.abs(corr[mask]).mean() > 2 * np.abs(corr[~mask & (sd > 0)]).mean()


def test_truth_tables(image_cohort):
    d = image_cohort
    ids = {k: read_ids(d / f"{k}.ids") for k in ("train", "val", "test")}
    allids = pl.concat(list(ids.values()))
    assert allids.height == 160 and allids.select("FID", "IID").is_unique().all()
    cov = read_table(d / "covariates.tsv")
    assert cov.columns == ["FID", "IID", "age", "sex", "ancestry"]
    assert cov["age"].min() >= 45 and cov["age"].max() <= 80 and set(cov["sex"].to_list()) == {1.0, 2.0}
    causal = pl.read_csv(d / "truth" / "causal.tsv", separator="\t", schema_overrides={"CHR": pl.Utf8})
    bim = Bfile(d / "geno").bim
    merged = causal.join(bim.select("SNP", "CHR", "BP", "A1"), on="SNP", suffix="_bim")
    assert merged.height == causal.height
    assert (merged["BP"] == merged["BP_bim"]).all() and (merged["A1"] == merged["A1_bim"]).all()
    params = json.loads((d / "truth" / "params.json").read_text())
    assert [f["name"] for f in params["factors"]] == ["F1", "F2", "F3"]
    assert {f["kind"] for f in params["factors"]} == {"volume", "contrast", "shape"}


def test_demes_mixed_train_one_group_test(tmp_path):
    simulate_cohort(tmp_path, preset("tiny", n_samples=300, demes=2, images=False, seed=5))
    cov = read_table(tmp_path / "covariates.tsv")
    anc = dict(zip(cov["IID"].to_list(), cov["ancestry"].to_list()))
    test = read_ids(tmp_path / "test.ids")["IID"].to_list()
    train = read_ids(tmp_path / "train.ids")["IID"].to_list()
    assert {anc[i] for i in test} == {0.0}
    assert {anc[i] for i in train} == {0.0, 1.0}
    # ancestry shows in the genotypes: the first PC separates the demes
    G = Bfile(tmp_path / "geno").read(dtype="float64")
    G -= G.mean(0)
    u = np.linalg.svd(G, full_matrices=False)[0][:, 0]
    a = cov["ancestry"].to_numpy()
    assert abs(np.corrcoef(u, a)[0, 1]) > 0.9


# -- command line ------------------------------------------------------------------------------


def _digests(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file() and p.name != "simulate.log"}


# OpenBLAS (numpy's, built for many CPUs) picks its kernel at start-up from the CPU, or from
# OPENBLAS_CORETYPE; another kernel sums in another order, as on another machine.
OTHER_BLAS = {"OPENBLAS_CORETYPE": "Prescott", "OPENBLAS_NUM_THREADS": "2"}


def _in_subprocess(code: str, env: dict[str, str] | None = None) -> None:
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **(env or {})})
    assert p.returncode == 0, p.stderr[-3000:]


def test_same_seed_same_truth_across_blas_kernels(tmp_path):
    """Issue 3: identical geno.bed but different F2 values in truth/ (factor values, genetic
    parts, betas) because the genetic score went through BLAS, whose rounding depends on the CPU."""
    code = ("import sys; from gimtool.sim.cohort import simulate_cohort, preset; simulate_cohort(sys.argv[1], "
            "preset('tiny', n_samples=1000, images=False, n_snps=300, split=(0.2, 0.1, 0.7)))")
    _in_subprocess(code.replace("sys.argv[1]", repr(str(tmp_path / "a"))), {"OPENBLAS_NUM_THREADS": "1"})
    _in_subprocess(code.replace("sys.argv[1]", repr(str(tmp_path / "b"))), OTHER_BLAS)
    a, b = (_digests(tmp_path / x) for x in "ab")
    assert {"geno.bed", "covariates.tsv", "train.ids", "truth/causal.tsv", "truth/factors.tsv",
            "truth/genetic.tsv", "truth/loci.tsv", "truth/params.json"} <= set(a)
    assert a == b, sorted(k for k in a if a[k] != b.get(k))


def _gimtool_env(*args, env: dict[str, str]) -> None:
    _in_subprocess("import runpy, sys; sys.argv = ['gimtool'] + " + repr([str(x) for x in args])
                   + "; runpy.run_module('gimtool', run_name='__main__', alter_sys=True)", env)


@pytest.mark.slow
def test_same_seed_same_files(tmp_path):
    args = ["simulate", "--preset", "tiny", "--n", "40", "--seed", "7"]
    gimtool(*args, "--out", tmp_path / "a", "--threads", "1")
    _gimtool_env(*args, "--out", tmp_path / "b", "--threads", "2", env=OTHER_BLAS)
    simulate_cohort(tmp_path / "c", preset("tiny", n_samples=40, seed=8))
    a, b, c = (_digests(tmp_path / x) for x in "abc")
    assert len(a) > 40 and a == b, sorted(k for k in a if a[k] != b.get(k))
    assert {"truth/factors.tsv", "truth/causal.tsv", "truth/template.nii.gz", "truth/masks/F1.nii.gz",
            "truth/params.json", "images/S01.nii.gz"} <= set(a)
    assert a["geno.bed"] != c["geno.bed"] and a["images/S01.nii.gz"] != c["images/S01.nii.gz"]
    assert "status: ok" in (tmp_path / "a" / "simulate.log").read_text()


def test_cli_bfile_real_genotypes(eur_bfile, tmp_path):
    out = tmp_path / "eur"
    gimtool("simulate", "--bfile", eur_bfile, "--no-images", "--factors", "2", "--causal", "2", "--out", out)
    bim = Bfile(out / "geno").bim
    assert bim.height == 54051
    # EUR_subset's bim is in Morgans: the simulated cohort's is in cM
    assert 100 < bim.filter(pl.col("CHR") == "17")["CM"].max() < 200
    assert read_table(out / "truth" / "factors.tsv").height == 379
    assert "Morgans" in (out / "simulate.log").read_text()
    gm = read_genetic_map(out / "genetic_map.txt")
    assert set(gm) == {17, 18, 19, 20, 21, 22}


@pytest.mark.parametrize("args, message", [
    (["--h2", "1.5"], "--h2 1.5: each value must be between 0 and 1"),
    (["--h2", "0.5,0.5,0.5"], "--h2: h2: give one value or 2"),
    (["--split", "0.5,0.5"], "--split 0.5,0.5: expected three"),
    (["--growth", "fast"], "--growth fast: expected recent or none"),
    (["--bfile", "/nonexistent/x"], "/nonexistent/x.bed: file not found"),
    (["--causal", "400", "--n", "40"], "cannot place 800 causal loci"),
])
def test_cli_bad_input(tmp_path, args, message, capsys):
    from gimtool.cli import main

    # in-process (the real CLI entry point, without a new interpreter per case)
    code = main(["simulate", "--preset", "tiny", "--no-images", "--out", str(tmp_path / "x"), *args])
    err = capsys.readouterr().err
    assert code != 0
    assert message in err, err
    assert err.strip().count("\n") == 0  # one line
