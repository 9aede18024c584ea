"""gimtool gwas, built-in backend: against plink2 --glm on EUR_subset, the slow numpy reference,
and the bad-input cases of the issue."""

from __future__ import annotations

import gzip

import os

import numpy as np
import polars as pl
import pytest

from gimtool.io.plink import Bfile, write_bfile
from gimtool.io.sumstats import read_sumstats
from gimtool.stats import assoc
from tests.conftest import gimtool, require_program, run

N_PHENO = 10


def _write(path, fam, names, values):
    with open(path, "w") as fh:
        fh.write("FID\tIID\t" + "\t".join(names) + "\n")
        for f, i, row in zip(fam["FID"], fam["IID"], values):
            fh.write(f"{f}\t{i}\t" + "\t".join("NA" if np.isnan(v) else f"{v:.6f}" for v in row) + "\n")


@pytest.fixture(scope="module")
def inputs(eur_bfile, tmp_path_factory):
    """10 phenotypes (8% NA each, one with a real effect) and 2 covariates (one NA) on EUR_subset,
    plus a 3,000-SNP bfile with 2% of calls set missing."""
    d = tmp_path_factory.mktemp("gwas")
    bf = Bfile(eur_bfile)
    rng = np.random.default_rng(5)
    n = bf.n_samples
    g = bf.read(snps=slice(0, 3000))
    y = rng.standard_normal((n, N_PHENO))
    common = int(np.flatnonzero(np.abs(g.mean(0) / 2 - 0.5) < 0.3)[0])
    y[:, 0] += 0.6 * (g[:, common] - g[:, common].mean()) / g[:, common].std()
    y[rng.random(y.shape) < 0.08] = np.nan
    c = np.column_stack([rng.standard_normal(n), 50 + 10 * rng.standard_normal(n)])
    c[4, 0] = np.nan
    _write(d / "pheno.tsv", bf.fam, [f"PH{j}" for j in range(N_PHENO)], y)
    _write(d / "covar.tsv", bf.fam, ["AGE", "SEX"], c)
    gm = g.copy()
    gm[rng.random(gm.shape) < 0.02] = -127
    write_bfile(d / "small", gm, bf.fam, bf.bim[:3000])
    return {"dir": d, "bfile": eur_bfile, "small": str(d / "small"), "pheno": d / "pheno.tsv", "covar": d / "covar.tsv"}


def _plink2_glm(bfile, inp, out, extra=()):
    run([require_program("plink2"), "--bfile", bfile, "--pheno", str(inp["pheno"]), "--covar", str(inp["covar"]),
         "--glm", "hide-covar", "--covar-variance-standardize", "--no-psam-pheno", "--threads", "1", "--out", str(out), *extra])


def _assert_same_as_plink(ours_prefix, plink_prefix, names):
    for ph in names:
        a = read_sumstats(f"{ours_prefix}.{ph}.sumstats.gz")
        b = read_sumstats(f"{plink_prefix}.{ph}.glm.linear")
        assert a.height == b.height
        assert (a["SNP"] == b["SNP"]).all()
        tested = b["P"].is_not_null().to_numpy()
        assert (a["P"].is_not_null().to_numpy() == tested).all(), f"{ph}: different untestable SNPs"
        assert (a["N"].to_numpy()[tested] == b["N"].to_numpy()[tested]).all(), f"{ph}: sample counts differ"
        flip = np.where(a["ALLELE1"].to_numpy() == b["ALLELE1"].to_numpy(), 1.0, -1.0)[tested]
        pb = b["P"].to_numpy()[tested]
        big = pb > 1e-300
        for col, sign in (("BETA", flip), ("SE", 1.0), ("P", 1.0)):
            x = a[col].to_numpy()[tested] * sign
            ref = b[col].to_numpy()[tested]
            np.testing.assert_allclose(x[big], ref[big], rtol=1e-5, atol=0, err_msg=f"{ph} {col}")


@pytest.fixture(scope="module")
def full_run(inputs):
    d = inputs["dir"]
    gimtool("gwas", "--bfile", inputs["bfile"], "--pheno", inputs["pheno"], "--covar", inputs["covar"],
            "--out", d / "g", "--threads", "2")
    _plink2_glm(inputs["bfile"], inputs, d / "pl")
    return d


@pytest.mark.slow
def test_builtin_equals_plink2_glm_on_eur(full_run):
    _assert_same_as_plink(full_run / "g", full_run / "pl", [f"PH{j}" for j in range(N_PHENO)])


@pytest.mark.slow
def test_outputs_summary_plots_log(full_run):
    d = full_run
    s = pl.read_csv(d / "g.summary.tsv", separator="\t")
    assert s.columns == ["PHENO", "N", "NSNP", "LAMBDA_GC", "MIN_P", "N_P5E8", "N_P_BONF"]
    assert s.height == N_PHENO
    for j in range(N_PHENO):
        b = read_sumstats(d / f"pl.PH{j}.glm.linear")
        assert s["N"][j] == b["N"].max()
        assert s["NSNP"][j] == b["P"].drop_nulls().len()
        assert s["MIN_P"][j] == pytest.approx(b["P"].min(), rel=1e-5)
        for kind in ("manhattan", "qq"):
            png = (d / f"g.PH{j}.{kind}.png").read_bytes()
            assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert s["N_P5E8"][0] >= 1  # the planted effect
    assert 0.8 < s["LAMBDA_GC"][1] < 1.2
    log = (d / "g.log").read_text()
    assert "status: ok" in log and "samples matched" in log
    with gzip.open(d / "g.PH0.sumstats.gz", "rt") as fh:
        assert fh.readline().split() == ["SNP", "CHR", "BP", "GENPOS", "ALLELE1", "ALLELE0", "A1FREQ", "N", "BETA", "SE", "CHISQ", "P"]


def test_missing_genotypes_dropped_per_variant_like_plink2(inputs, tmp_path):
    gimtool("gwas", "--bfile", inputs["small"], "--pheno", inputs["pheno"], "--pheno-name", "PH0,PH3",
            "--covar", inputs["covar"], "--out", tmp_path / "g", "--no-plots", "--chunk-snps", "700")
    _plink2_glm(inputs["small"], inputs, tmp_path / "pl", ["--pheno-name", "PH0,PH3"])
    _assert_same_as_plink(tmp_path / "g", tmp_path / "pl", ["PH0", "PH3"])
    n = read_sumstats(tmp_path / "g.PH0.sumstats.gz")["N"]
    assert n.n_unique() > 5  # OBS_CT really varies per variant


def test_chunks_concatenate_to_whole(inputs, tmp_path):
    args = ["--bfile", inputs["small"], "--pheno", inputs["pheno"], "--pheno-name", "PH1", "--covar", inputs["covar"], "--no-plots"]
    gimtool("gwas", *args, "--out", tmp_path / "all")
    parts = []
    for k in (1, 2, 3):
        gimtool("gwas", *args, "--out", tmp_path / f"c{k}", "--chunk", f"{k}/3")
        parts.append(read_sumstats(tmp_path / f"c{k}.PH1.sumstats.gz"))
    whole = read_sumstats(tmp_path / "all.PH1.sumstats.gz")
    assert all(p.height > 0 for p in parts)
    assert pl.concat(parts).equals(whole)


def test_single_precision_close_to_double(inputs, tmp_path):
    """--precision single: float32 products where they are used (numpy kernel, GPU), the compiled
    double kernel where it is built; either way within 1e-4 of double."""
    args = ["--bfile", inputs["small"], "--pheno", inputs["pheno"], "--pheno-name", "PH0", "--covar", inputs["covar"], "--no-plots"]
    gimtool("gwas", *args, "--out", tmp_path / "d")
    gimtool("gwas", *args, "--out", tmp_path / "s", "--precision", "single")
    d, s = read_sumstats(tmp_path / "d.PH0.sumstats.gz"), read_sumstats(tmp_path / "s.PH0.sumstats.gz")
    np.testing.assert_allclose(s["BETA"].to_numpy(), d["BETA"].to_numpy(), rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(s["N"].to_numpy(), d["N"].to_numpy())


def test_kernel_equals_slow_reference():
    rng = np.random.default_rng(0)
    n, p, m = 150, 4, 25
    y = rng.standard_normal((n, p))
    y[rng.random((n, p)) < 0.2] = np.nan
    c = rng.standard_normal((n, 3))
    c[7, 2] = np.nan
    g = rng.integers(0, 3, (n, m)).astype(float)
    g[rng.random((n, m)) < 0.05] = np.nan
    g[:, 3] = np.nan_to_num(g[:, 3])  # one SNP without missing calls
    prep = assoc.prepare(y, c)
    ref_b, ref_se, ref_n = assoc.linreg_reference(y, c, g)
    for gg in (g[prep.samples], np.where(np.isnan(g), -127, g).astype(np.int8)[prep.samples]):
        r = assoc.scan_chunk(prep, gg)
        np.testing.assert_allclose(r.beta, ref_b, rtol=1e-10)
        np.testing.assert_allclose(r.se, ref_se, rtol=1e-10)
        assert (r.n == ref_n).all()
    # single precision stays close
    prod = assoc.Products(prep, m, dtype="float32")
    r = assoc.scan_chunk(prep, g[prep.samples], prod)
    np.testing.assert_allclose(r.beta, ref_b, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("n,na,ncov", [(150, 0.2, 3), (151, 0.2, 3), (153, 0.2, 3), (150, 0.0, 3), (153, 0.2, 14)])
def test_packed_kernels_equal_dense_kernel(n, na, ncov):
    """The packed .bed kernels (CPU numpy, compiled and torch, blocks not dividing the chunk,
    sample counts not a multiple of 4) give the dense kernel's results, missing calls included,
    with and without phenotype NA, with few covariates and with many (wider compiled blocks)."""
    from gimtool.io.plink import encode_bed_chunk

    rng = np.random.default_rng(n)
    p, m = 4, 37
    y = rng.standard_normal((n, p))
    y[rng.random((n, p)) < na] = np.nan
    y[:, 1] = np.where(np.isnan(y[:, 1]), 0.5, y[:, 1])  # one phenotype without NA
    c = rng.standard_normal((n, ncov))
    c[7, 2] = np.nan
    g = rng.integers(0, 3, (n, m)).astype(np.int8)
    g[rng.random((n, m)) < 0.05] = -127
    g[:, 3] = np.where(g[:, 3] < 0, 0, g[:, 3])
    prep = assoc.prepare(y, c)
    raw = np.frombuffer(encode_bed_chunk(g), dtype=np.uint8).reshape(m, -1)
    ref = assoc.scan_chunk(prep, g[prep.samples])
    assert np.isfinite(ref.beta).sum() > 0.9 * ref.beta.size
    import torch

    kernels = [assoc.PackedScan(prep, n, block=5, kernel="numpy"), assoc.PackedScan(prep, n, block=7, tile=8, kernel="numpy"),
               assoc.TorchPackedScan(prep, n, "cpu")]
    # the compiled kernel: built by `pip install` (setup.py); CI must have it
    compiled = assoc.PackedScan(prep, n)
    assert compiled.compiled or not os.environ.get("CI"), "gimtool._speedups was not built"
    if compiled.compiled:
        kernels.append(compiled)
        for m_sub in (1, 3, 4, 5):  # SNP counts below and off the kernel's 4-SNP block
            sub = compiled(raw[:m_sub])
            np.testing.assert_allclose(sub.beta, ref.beta[:m_sub], rtol=1e-10)
    if torch.cuda.is_available():  # on a GPU machine the device kernel is checked too
        kernels.append(assoc.TorchPackedScan(prep, n, "cuda"))
    for kernel in kernels:
        r = kernel(raw)
        for f in ("beta", "se", "n", "freq", "freq0", "dof"):
            np.testing.assert_allclose(getattr(r, f), getattr(ref, f), rtol=1e-10, err_msg=f"{type(kernel).__name__} {f}")


def test_kernel_constant_snp_is_nan():
    rng = np.random.default_rng(1)
    y = rng.standard_normal((50, 2))
    g = np.ones((50, 2))
    g[:, 1] = rng.integers(0, 3, 50)
    r = assoc.scan_chunk(assoc.prepare(y, None), g)
    assert np.isnan(r.beta[0]).all() and np.isfinite(r.beta[1]).all()


def test_inverse_normal_transform(inputs, tmp_path):
    from scipy.stats import rankdata

    from gimtool.stats.phenostats import inverse_normal_transform

    rng = np.random.default_rng(3)
    y = rng.exponential(size=(200, 2))
    y[5, 0] = np.nan
    c = rng.standard_normal((200, 1))
    t = inverse_normal_transform(y, c)
    assert np.isnan(t[5, 0]) and np.isfinite(t[:, 1]).all()
    ok = np.isfinite(y[:, 0])
    w = np.column_stack([np.ones(ok.sum()), c[ok]])
    resid = y[ok, 0] - w @ np.linalg.lstsq(w, y[ok, 0], rcond=None)[0]
    assert (rankdata(t[ok, 0]) == rankdata(resid)).all()
    assert abs(t[ok, 0].mean()) < 1e-9 and 0.95 < t[ok, 0].std() < 1.0
    gimtool("gwas", "--bfile", inputs["small"], "--pheno", inputs["pheno"], "--pheno-name", "PH2",
            "--covar", inputs["covar"], "--pheno-transform", "int", "--out", tmp_path / "i", "--no-plots")
    assert "inverse-normal" in (tmp_path / "i.log").read_text()


# -- bad input ------------------------------------------------------------------------------

def _fail(inputs, tmp_path, pheno=None, covar=None, *extra):
    args = ["gwas", "--bfile", inputs["small"], "--pheno", pheno or inputs["pheno"], "--out", tmp_path / "bad", "--no-plots"]
    if covar is not False:
        args += ["--covar", covar or inputs["covar"]]
    return gimtool(*args, *extra, check=False)


def test_error_no_fid_iid_header(inputs, tmp_path):
    p = tmp_path / "nohead.tsv"
    p.write_text("1 HG00096 0.5\n3 HG00099 0.1\n")
    r = _fail(inputs, tmp_path, p)
    assert r.returncode != 0
    assert "nohead.tsv: line 1: expected a header starting with 'FID IID'" in r.stderr


def test_error_no_ids_in_common(inputs, tmp_path):
    p = tmp_path / "other.tsv"
    p.write_text("FID\tIID\tY\nA\tB\t1\nC\tD\t2\n")
    r = _fail(inputs, tmp_path, p)
    assert r.returncode != 0 and "no sample IDs in common with the .fam" in r.stderr


def test_warning_few_ids_in_common(inputs, tmp_path):
    fam = Bfile(inputs["small"]).fam
    rows = [f"{f}\t{i}\t{v}" for f, i, v in zip(fam["FID"][:100], fam["IID"][:100], np.random.default_rng(0).standard_normal(100))]
    p = tmp_path / "few.tsv"
    p.write_text("FID\tIID\tY\n" + "\n".join(rows) + "\nX1\tX2\t0.3\n")
    r = _fail(inputs, tmp_path, p)
    assert r.returncode == 0, r.stderr
    assert "Warning:" in r.stderr and "few samples in common" in r.stderr and "100 samples matched" in r.stderr


def test_error_constant_phenotype(inputs, tmp_path):
    fam = Bfile(inputs["small"]).fam
    p = tmp_path / "const.tsv"
    p.write_text("FID\tIID\tOK\tFLAT\n" + "\n".join(f"{f}\t{i}\t{k % 7}\t3.5" for k, (f, i) in enumerate(zip(fam["FID"], fam["IID"]))))
    r = _fail(inputs, tmp_path, p)
    assert r.returncode != 0 and "phenotype FLAT is constant" in r.stderr


def test_error_all_na_phenotype(inputs, tmp_path):
    fam = Bfile(inputs["small"]).fam
    p = tmp_path / "na.tsv"
    p.write_text("FID\tIID\tOK\tEMPTY\n" + "\n".join(f"{f}\t{i}\t{k % 7}\tNA" for k, (f, i) in enumerate(zip(fam["FID"], fam["IID"]))))
    r = _fail(inputs, tmp_path, p)
    assert r.returncode != 0 and "phenotype EMPTY is NA for every sample" in r.stderr


def test_error_collinear_covariates_named(inputs, tmp_path):
    fam = Bfile(inputs["small"]).fam
    rng = np.random.default_rng(2)
    a = rng.standard_normal(fam.height)
    b = rng.standard_normal(fam.height)
    p = tmp_path / "cov.tsv"
    p.write_text("FID\tIID\tA\tB\tSUM\n" + "\n".join(f"{f}\t{i}\t{x}\t{y}\t{2 * x - y + 1}" for f, i, x, y in zip(fam["FID"], fam["IID"], a, b)))
    r = _fail(inputs, tmp_path, None, p)
    assert r.returncode != 0 and "covariate(s) SUM are constant or collinear" in r.stderr


def test_error_bad_chunk_and_device(inputs, tmp_path):
    r = _fail(inputs, tmp_path, None, None, "--chunk", "4/3")
    assert r.returncode != 0 and "--chunk 4/3" in r.stderr
    import torch

    if not torch.cuda.is_available():
        r = _fail(inputs, tmp_path, None, None, "--device", "cuda")
        assert r.returncode != 0 and "CUDA was asked for" in r.stderr
