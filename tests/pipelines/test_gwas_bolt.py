"""gimtool gwas --backend bolt: same numbers as running `bolt --lmm` directly; BOLT's errors and a
missing `bolt` reported clearly. A 6,000-SNP subset of EUR_subset keeps BOLT to a few seconds."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from gimtool.io.plink import Bfile, write_bfile
from gimtool.io.sumstats import read_sumstats
from tests.conftest import gimtool, require_program, run


@pytest.fixture(scope="module")
def bolt_inputs(eur_bfile, tmp_path_factory):
    d = tmp_path_factory.mktemp("bolt")
    bf = Bfile(eur_bfile)
    chrom = bf.bim["CHR"].to_numpy()
    # every 4th SNP of chromosomes 21-22: two chromosomes, as BOLT's leave-one-chromosome-out needs
    idx = np.flatnonzero(np.isin(chrom, ["21", "22"]))[::2][:6000]
    write_bfile(d / "sub", bf.read(snps=idx), bf.fam, bf.bim[idx])
    one = np.flatnonzero(chrom == "22")[:2000]
    write_bfile(d / "one", bf.read(snps=one), bf.fam, bf.bim[one])
    rng = np.random.default_rng(7)
    n = bf.n_samples
    # polygenic traits (h2 0.7): BOLT stops when its heritability estimate is near 0
    g = bf.read(snps=idx, dtype="float64")
    x = (g - g.mean(0)) / np.where(g.std(0) > 0, g.std(0), 1)
    y = x @ rng.standard_normal((len(idx), 2)) / np.sqrt(len(idx)) * np.sqrt(0.7) + rng.standard_normal((n, 2)) * np.sqrt(0.3)
    with open(d / "pheno.tsv", "w") as fh:
        fh.write("FID\tIID\tY1\tY2\n")
        for k, (f, i) in enumerate(zip(bf.fam["FID"], bf.fam["IID"])):
            a, b = y[k]
            fh.write(f"{f}\t{i}\t{'NA' if k % 17 == 0 else f'{a:.6f}'}\t{b:.6f}\n")
    with open(d / "covar.tsv", "w") as fh:
        fh.write("FID\tIID\tAGE\tSEX\n")
        for f, i in zip(bf.fam["FID"], bf.fam["IID"]):
            fh.write(f"{f}\t{i}\t{rng.normal(50, 10):.3f}\t{rng.integers(1, 3)}\n")
    return d


@pytest.mark.slow
def test_bolt_backend_equals_direct_bolt(bolt_inputs):
    bolt = require_program("bolt")
    d = bolt_inputs
    gimtool("gwas", "--backend", "bolt", "--bfile", d / "sub", "--pheno", d / "pheno.tsv", "--covar", d / "covar.tsv",
            "--out", d / "g", "--threads", "2", "--no-plots")
    for ph in ("Y1", "Y2"):
        run([bolt, f"--bfile={d / 'sub'}", f"--phenoFile={d / 'pheno.tsv'}", f"--phenoCol={ph}",
             f"--covarFile={d / 'covar.tsv'}", "--qCovarCol=AGE", "--qCovarCol=SEX", "--lmm", "--LDscoresUseChip",
             "--numThreads=1", f"--statsFile={d / ph}.direct.stats"])
        ours = read_sumstats(d / f"g.{ph}.sumstats.gz")
        ref = read_sumstats(d / f"{ph}.direct.stats")
        assert ours.height == ref.height > 5000
        for col in ("SNP", "ALLELE1", "ALLELE0", "BETA", "SE", "P", "A1FREQ"):
            assert ours[col].equals(ref[col]), col
        assert (d / f"g.{ph}.bolt.log").read_text().count("Total elapsed time") == 1
    assert "BOLT log" in (d / "g.log").read_text()


def test_bolt_error_is_surfaced(bolt_inputs):
    require_program("bolt")
    d = bolt_inputs
    r = gimtool("gwas", "--backend", "bolt", "--bfile", d / "one", "--pheno", d / "pheno.tsv", "--pheno-name", "Y2",
                "--out", d / "err", "--no-plots", check=False)
    assert r.returncode != 0
    assert "Error: bolt failed" in r.stderr and "requires >= 2 chromosomes" in r.stderr
    assert (d / "err.Y2.bolt.log").is_file()


def test_missing_bolt_program(bolt_inputs, tmp_path):
    d = bolt_inputs
    env = dict(os.environ, PATH=str(tmp_path))  # nothing on PATH
    r = subprocess.run([sys.executable, "-m", "gimtool", "gwas", "--backend", "bolt", "--bfile", str(d / "one"),
                        "--pheno", str(d / "pheno.tsv"), "--out", str(tmp_path / "x"), "--no-plots"],
                       capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "bolt not found on PATH" in r.stderr and "apt-get install bolt-lmm" in r.stderr
