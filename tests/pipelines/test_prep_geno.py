"""prep-geno against plink2 on real genotypes (EUR_subset), genetic positions, and bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from gimtool.io.genostore import GenoStore
from gimtool.io.plink import MISSING_INT8, Bfile, write_bfile
from tests.conftest import gimtool, require_program, run


def _plink2_keep(prefix, out, *flags):
    run([require_program("plink2"), "--bfile", prefix, *flags, "--write-snplist", "--write-samples", "--out", out])
    snps = Path(out + ".snplist").read_text().split()
    samples = [tuple(ln.split()[:2]) for ln in Path(out + ".id").read_text().splitlines()[1:]]
    return snps, samples


def test_snps_match_plink2_on_eur_subset(eur_bfile, tmp_path):
    out = str(tmp_path / "qc")
    gimtool("prep-geno", "--bfile", eur_bfile, "--out", out, "--maf", "0.05", "--geno", "0.02", "--hwe", "1e-6")
    ref_snps, _ = _plink2_keep(eur_bfile, str(tmp_path / "p2"), "--maf", "0.05", "--geno", "0.02", "--hwe", "1e-6")
    ours = Bfile(out)
    assert ours.bim["SNP"].to_list() == ref_snps
    assert 30_000 < len(ref_snps) < 54_051  # the filters really removed something
    log = Path(out + ".log").read_text()
    assert "Morgans" in log and "--hwe 1e-06" in log


@pytest.fixture(scope="module")
def messy_bfile(eur_bfile, tmp_path_factory):
    """EUR_subset with missing genotypes at uneven rates per sample and per SNP, and two trios'
    worth of parents declared (non-founders), so --mind, --geno and founder handling matter."""
    bf = Bfile(eur_bfile)
    G = bf.read(snps=slice(0, 8000))
    rng = np.random.default_rng(7)
    sample_rate = rng.choice([0.0, 0.01, 0.08], size=G.shape[0], p=[0.7, 0.2, 0.1])
    snp_rate = rng.choice([0.0, 0.01, 0.06], size=G.shape[1], p=[0.6, 0.3, 0.1])
    miss = rng.random(G.shape) < (sample_rate[:, None] + snp_rate[None, :])
    G[miss] = MISSING_INT8
    fam = bf.fam.clone()
    father = fam["FATHER"].to_list()
    mother = fam["MOTHER"].to_list()
    fids = fam["FID"].to_list()
    iids = fam["IID"].to_list()
    for child, (pa, ma) in ((10, (11, 12)), (20, (21, 22))):
        fids[pa] = fids[ma] = fids[child]
        father[child], mother[child] = iids[pa], iids[ma]
    fam = fam.with_columns(pl.Series("FID", fids), pl.Series("FATHER", father), pl.Series("MOTHER", mother))
    prefix = str(tmp_path_factory.mktemp("messy") / "messy")
    write_bfile(prefix, G, fam, bf.bim[:8000])
    return prefix


def test_mind_geno_maf_hwe_match_plink2_with_missing_data(messy_bfile, tmp_path):
    flags = ["--mind", "0.05", "--geno", "0.04", "--maf", "0.05", "--hwe", "1e-4"]
    out = str(tmp_path / "qc")
    gimtool("prep-geno", "--bfile", messy_bfile, "--out", out, *flags)
    ref_snps, ref_samples = _plink2_keep(messy_bfile, str(tmp_path / "p2"), *flags)
    ours = Bfile(out)
    assert list(zip(ours.fam["FID"], ours.fam["IID"])) == ref_samples
    assert len(ref_samples) < 379  # --mind removed people
    assert ours.bim["SNP"].to_list() == ref_snps


def test_store_equals_bed(eur_bfile, tmp_path):
    out = str(tmp_path / "qc")
    keep = tmp_path / "keep.txt"
    fam = Bfile(eur_bfile).fam
    keep.write_text("".join(f"{f} {i}\n" for f, i in zip(fam["FID"][::3], fam["IID"][::3])))
    gimtool("prep-geno", "--bfile", eur_bfile, "--out", out, "--keep", keep, "--chr", "21-22")
    store = GenoStore(out + ".geno")
    G = Bfile(out).read()
    assert store.genotypes.shape == G.shape == (len(fam["FID"][::3]), store.n_snps)
    np.testing.assert_array_equal(np.asarray(store.genotypes), G)
    assert set(store.snps["CHR"].unique().to_list()) == {21, 22}
    assert store.samples["IID"].to_list() == fam["IID"][::3].to_list()
    # cM column: Morgans converted to cM, identical in bim and store
    np.testing.assert_allclose(Bfile(out).bim["CM"].to_numpy(), store.snps["CM"].to_numpy())
    assert store.snps["CM"].max() > 50


def test_genetic_map_interpolation(eur_bfile, tmp_path):
    # a map with two points per chromosome at 2 cM/Mb inside, checks interpolation and extrapolation
    bim = Bfile(eur_bfile).bim
    lines = ["chr position COMBINED_rate(cM/Mb) Genetic_Map(cM)"]
    for c in range(17, 23):
        lines += [f"{c} 10000000 2.0 5.0", f"{c} 20000000 2.0 25.0"]
    gm = tmp_path / "map.txt.gz"
    with gzip.open(gm, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    out = str(tmp_path / "qc")
    gimtool("prep-geno", "--bfile", eur_bfile, "--out", out, "--genetic-map", gm, "--maf", "0")
    got = Bfile(out).bim
    bp = got["BP"].to_numpy()
    np.testing.assert_allclose(got["CM"].to_numpy(), 5.0 + (bp - 10_000_000) * 2e-6, rtol=1e-9, atol=1e-9)
    assert got.height == bim.height  # --maf 0 keeps monomorphic SNPs, as plink2 does


def test_zero_cm_filled_with_warning(eur_bfile, tmp_path):
    bf = Bfile(eur_bfile)
    G = bf.read(snps=slice(0, 500))
    prefix = str(tmp_path / "zero")
    write_bfile(prefix, G, bf.fam, bf.bim[:500].with_columns(pl.lit(0.0).alias("CM")))
    p = gimtool("prep-geno", "--bfile", prefix, "--out", str(tmp_path / "qc"), "--cm-per-mb", "1.5", "--maf", "0")
    assert "all zero" in p.stderr
    got = Bfile(str(tmp_path / "qc")).bim
    np.testing.assert_allclose(got["CM"].to_numpy(), got["BP"].to_numpy() / 1e6 * 1.5)


def test_other_chromosomes_dropped_and_counted(eur_bfile, tmp_path):
    bf = Bfile(eur_bfile)
    G = bf.read(snps=slice(0, 300))
    bim = bf.bim[:300].with_columns(pl.Series("CHR", ["17"] * 200 + ["X"] * 50 + ["MT"] * 50))
    prefix = str(tmp_path / "x")
    write_bfile(prefix, G, bf.fam, bim)
    out = str(tmp_path / "qc")
    gimtool("prep-geno", "--bfile", prefix, "--out", out, "--maf", "0")
    assert set(Bfile(out).bim["CHR"].to_list()) == {"17"}
    assert "100 SNPs on other chromosomes dropped" in Path(out + ".log").read_text()


# ---------------------------------------------------------------------------- bad input
def _copy_fileset(src: str, dst: Path) -> str:
    for ext in (".bed", ".bim", ".fam"):
        (dst.parent / (dst.name + ext)).write_bytes(Path(src + ext).read_bytes())
    return str(dst)


def _fails(*args, match: str):
    p = gimtool(*args, check=False)
    assert p.returncode != 0
    assert match in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
    return p


def test_bad_bed_size(eur_bfile, tmp_path):
    prefix = _copy_fileset(eur_bfile, tmp_path / "b")
    with open(prefix + ".bed", "ab") as fh:
        fh.write(b"\0" * 7)
    _fails("prep-geno", "--bfile", prefix, "--out", str(tmp_path / "o"), match="does not fit 54051 SNPs")


def test_bad_magic(eur_bfile, tmp_path):
    prefix = _copy_fileset(eur_bfile, tmp_path / "b")
    data = bytearray(Path(prefix + ".bed").read_bytes())
    data[0] = 0
    Path(prefix + ".bed").write_bytes(bytes(data))
    _fails("prep-geno", "--bfile", prefix, "--out", str(tmp_path / "o"), match="not a SNP-major PLINK .bed")


def test_missing_bim(eur_bfile, tmp_path):
    prefix = _copy_fileset(eur_bfile, tmp_path / "b")
    Path(prefix + ".bim").unlink()
    _fails("prep-geno", "--bfile", prefix, "--out", str(tmp_path / "o"), match="b.bim: file not found")


def test_duplicate_iid(eur_bfile, tmp_path):
    prefix = _copy_fileset(eur_bfile, tmp_path / "b")
    lines = Path(prefix + ".fam").read_text().splitlines()
    lines[5] = lines[4]
    Path(prefix + ".fam").write_text("\n".join(lines) + "\n")
    _fails("prep-geno", "--bfile", prefix, "--out", str(tmp_path / "o"), match="line 6: duplicate sample ID")


def test_map_without_needed_chromosome(eur_bfile, tmp_path):
    gm = tmp_path / "map.txt"
    gm.write_text("chr position COMBINED_rate(cM/Mb) Genetic_Map(cM)\n17 1 1.0 0.0\n17 90000000 1.0 90.0\n")
    _fails("prep-geno", "--bfile", eur_bfile, "--out", str(tmp_path / "o"), "--genetic-map", gm,
           match="genetic map has no chromosome 18")


def test_keep_with_unknown_ids(eur_bfile, tmp_path):
    # as plink2: IDs not in the data (people dropped by QC) are ignored and counted
    keep = tmp_path / "keep.txt"
    fam = Path(eur_bfile + ".fam").read_text().splitlines()
    keep.write_text("nobody nobody\n" + "\n".join(fam[:3]) + "\n")
    gimtool("prep-geno", "--bfile", eur_bfile, "--out", str(tmp_path / "o"), "--keep", keep, "--maf", "0")
    assert "3 of 4 IDs matched, 1 not in the data (ignored); 3 samples remain" in (tmp_path / "o.log").read_text()
    assert len((tmp_path / "o.fam").read_text().splitlines()) == 3
    (tmp_path / "none.txt").write_text("nobody nobody\n")
    _fails("prep-geno", "--bfile", eur_bfile, "--out", str(tmp_path / "o2"), "--keep", tmp_path / "none.txt",
           match="the keep list selects no one (none of its 1 IDs is in the data, e.g. nobody nobody)")


def test_failed_run_leaves_no_outputs(eur_bfile, tmp_path):
    out = tmp_path / "o"
    gm = tmp_path / "map.txt"
    gm.write_text("chr position COMBINED_rate(cM/Mb) Genetic_Map(cM)\n17 1 1.0 0.0\n")
    gimtool("prep-geno", "--bfile", eur_bfile, "--out", out, "--genetic-map", gm, check=False)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["map.txt", "o.log"]
    assert "status: failed" in (tmp_path / "o.log").read_text()


def test_bed_equals_plink2_make_bed_when_people_are_removed(messy_bfile, tmp_path):
    """--mind and --keep remove people, so every .bed row is repacked (not copied): the bytes must
    be plink2's, and the store must hold the same genotypes."""
    keep = tmp_path / "keep.txt"
    fam = Bfile(messy_bfile).fam
    keep.write_text("".join(f"{f} {i}\n" for k, (f, i) in enumerate(zip(fam["FID"], fam["IID"])) if k % 7 != 3))
    flags = ["--mind", "0.05", "--geno", "0.04", "--maf", "0.05", "--keep", str(keep)]
    out = str(tmp_path / "qc")
    gimtool("prep-geno", "--bfile", messy_bfile, "--out", out, *flags)
    run([require_program("plink2"), "--bfile", messy_bfile, *flags, "--make-bed", "--out", str(tmp_path / "p2")])
    assert Path(out + ".bed").read_bytes() == Path(tmp_path / "p2.bed").read_bytes()
    store = GenoStore(out + ".geno")
    assert store.n_samples < 379 * 6 / 7
    np.testing.assert_array_equal(np.asarray(store.genotypes), Bfile(out).read())
