"""Every command that reads genotypes gives the same outputs through --pfile as through --bfile.

The two filesets are made by plink2 from chromosomes 21-22 of EUR_subset:
  plink2 --bfile EUR_subset --chr 21-22 --make-bed  --out sub
  plink2 --bfile EUR_subset --chr 21-22 --make-pgen --out sub
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import gimtool, require_program, run


@pytest.fixture(scope="module")
def filesets(eur_dir, tmp_path_factory) -> dict:
    plink2 = require_program("plink2")
    d = tmp_path_factory.mktemp("pfile_cmds")
    for fmt in ("--make-bed", "--make-pgen"):
        run([plink2, "--bfile", str(eur_dir / "EUR_subset"), "--chr", "21-22", fmt, "--out", str(d / "sub")])
    return {"dir": d, "b": ["--bfile", str(d / "sub")], "p": ["--pfile", str(d / "sub")],
            "pheno": eur_dir / "EUR_subset.pheno.covars"}


def _same(a: str, b: str, suffixes) -> None:
    for s in suffixes:
        pa, pb = Path(a + s), Path(b + s)
        if pa.is_dir():
            names = sorted(p.name for p in pa.iterdir())
            assert names == sorted(p.name for p in pb.iterdir()), s
            _same(str(pa) + "/", str(pb) + "/", names)
            continue
        read = (lambda p: gzip.open(p).read()) if s.endswith(".gz") else (lambda p: p.read_bytes())
        assert read(pa) == read(pb), f"{pa} differs from {pb}"


def _both(filesets, tmp_path, *args) -> tuple[str, str]:
    outs = []
    for k in ("b", "p"):
        out = str(tmp_path / k)
        gimtool(*args, *filesets[k], "--out", out)
        outs.append(out)
    log = Path(outs[1] + ".log").read_text()
    assert "pfile" in log and ".pgen" in log  # the log names what was read
    return outs[0], outs[1]


def test_gwas(filesets, tmp_path):
    b, p = _both(filesets, tmp_path, "gwas", "--pheno", filesets["pheno"], "--pheno-name", "PHENO",
                 "--covar", filesets["pheno"], "--covar-name", "QCOV1,QCOV2,CAT_COV", "--no-plots")
    _same(b, p, [".PHENO.sumstats.gz", ".summary.tsv"])


def test_pcs(filesets, tmp_path):
    b, p = _both(filesets, tmp_path, "pcs", "--n-pcs", "4")
    _same(b, p, [".eigenvec", ".eigenval", ".prune.in"])


def test_h2_ld_scores_and_greml(filesets, tmp_path):
    b, p = _both(filesets, tmp_path, "h2")
    _same(b, p, [".l2.ldscore.gz", ".l2.M", ".l2.M_5_50"])
    grms = []
    for k in ("b", "p"):
        gimtool("h2", "--method", "greml", *filesets[k], "--pheno", filesets["pheno"], "--pheno-name", "PHENO",
                "--grm-out", str(tmp_path / f"{k}.npz"), "--out", str(tmp_path / f"greml_{k}"))
        grms.append(np.load(tmp_path / f"{k}.npz"))
    _same(str(tmp_path / "greml_b"), str(tmp_path / "greml_p"), [".h2.tsv"])
    assert grms[0]["K"].shape == (369, 369)  # the people with a phenotype
    for name in ("K", "lam", "U", "FID", "IID"):
        np.testing.assert_array_equal(grms[0][name], grms[1][name], err_msg=name)


def test_clump(filesets, tmp_path):
    gimtool("gwas", *filesets["b"], "--pheno", filesets["pheno"], "--pheno-name", "PHENO", "--no-plots",
            "--out", str(tmp_path / "g"))
    b, p = _both(filesets, tmp_path, "clump", "--p1", "1e-3", "--p2", "0.05", "--loci", "--loci-p", "1e-3",
                 str(tmp_path / "g.PHENO.sumstats.gz"))
    _same(b, p, [".clumped", ".clumped.members.tsv", ".loci.tsv"])
    assert len(Path(b + ".clumped").read_text().splitlines()) > 5


def test_prep_geno_with_genetic_map_for_a_pvar_without_cm(filesets, tmp_path):
    """A .pvar without CM (and a .bim with zero cM) both take their positions from --genetic-map."""
    d = filesets["dir"]
    for ext in ("pgen", "psam", "bed", "fam"):
        shutil.copy(d / f"sub.{ext}", tmp_path / f"nocm.{ext}")
    pvar = [ln.split("\t") for ln in (d / "sub.pvar").read_text().splitlines()]
    assert pvar[0][-1] == "CM"
    (tmp_path / "nocm.pvar").write_text("".join("\t".join(r[:-1]) + "\n" for r in pvar))
    bim = [ln.split("\t") for ln in (d / "sub.bim").read_text().splitlines()]
    (tmp_path / "nocm.bim").write_text("".join("\t".join(r[:2] + ["0"] + r[3:]) + "\n" for r in bim))
    gm = tmp_path / "map.txt"
    gm.write_text("chr position COMBINED_rate(cM/Mb) Genetic_Map(cM)\n"
                  + "".join(f"{c} {a} 2.0 {cm}\n" for c in (21, 22) for a, cm in ((10_000_000, 5.0), (40_000_000, 65.0))))
    outs = {}
    for flag in ("--bfile", "--pfile"):
        outs[flag] = str(tmp_path / flag.strip("-"))
        gimtool("prep-geno", flag, tmp_path / "nocm", "--genetic-map", gm, "--out", outs[flag])
    _same(outs["--bfile"], outs["--pfile"], [".bed", ".bim", ".fam", ".geno"])
    rows = [ln.split("\t") for ln in Path(outs["--pfile"] + ".bim").read_text().splitlines()]
    cm, bp = np.array([float(r[2]) for r in rows]), np.array([int(r[3]) for r in rows])
    np.testing.assert_allclose(cm, 5.0 + 2.0 * (bp - 10_000_000) / 1e6, rtol=1e-9)  # from the map (2 cM/Mb), not 0


def test_bfile_and_pfile_together_is_one_clear_error(filesets, tmp_path):
    for cmd in (["prep-geno"], ["pcs"], ["clump", "x.sumstats.gz"], ["gwas", "--pheno", str(filesets["pheno"])], ["h2"]):
        p = gimtool(*cmd, *filesets["b"], *filesets["p"], "--out", str(tmp_path / "x"), check=False)
        assert p.returncode != 0
        assert "--bfile and --pfile are mutually exclusive" in p.stderr, (cmd, p.stderr)
    p = gimtool("gwas", *filesets["p"], "--pheno", filesets["pheno"], "--backend", "bolt", "--out", str(tmp_path / "y"),
                check=False)
    assert p.returncode != 0 and "--backend bolt reads PLINK 1 filesets: give --bfile" in p.stderr
