"""--pfile: the PLINK 2 reader (gimtool.io.pgen) gives what plink2 --make-bed writes.

Reference filesets are made by plink2 from BOLT-LMM's EUR_subset (`plink2 --bfile EUR_subset
--make-pgen`) and from a small VCF with fractional dosages (`plink2 --vcf dos.vcf dosage=DS
--make-pgen`), then converted back with `plink2 --pfile P --make-bed`.
"""

from __future__ import annotations

import numpy as np
import pytest

from gimtool.conventions import MISSING_INT8
from gimtool.errors import InputError
from gimtool.io.genotypes import GenotypeFiles, open_genotypes
from gimtool.io.pgen import Pfile, read_psam, read_pvar
from gimtool.io.plink import Bfile
from tests.conftest import require_program, run


@pytest.fixture(scope="module")
def eur_pfile(eur_bfile, tmp_path_factory) -> str:
    plink2 = require_program("plink2")
    out = tmp_path_factory.mktemp("pgen") / "eur"
    run([plink2, "--bfile", eur_bfile, "--make-pgen", "--out", str(out)])
    return str(out)


def test_pfile_reads_as_the_bed_it_was_made_from(eur_bfile, eur_pfile):
    b, p = Bfile(eur_bfile), Pfile(eur_pfile)
    assert p.fam.equals(b.fam)
    assert p.bim.drop("CM").equals(b.bim.drop("CM"))
    np.testing.assert_array_equal(p.bim["CM"].to_numpy(), b.bim["CM"].to_numpy())  # Morgans, as written
    np.testing.assert_array_equal(p.read(), b.read())
    snps, samples = np.array([5, 3, 40_000, 2, 54_050]), np.array([300, 1, 7])
    np.testing.assert_array_equal(p.read(snps=snps, samples=samples), b.read(snps=snps, samples=samples))
    np.testing.assert_array_equal(p.read(snps=slice(100, 200), dtype="float32"), b.read(snps=slice(100, 200), dtype="float32"))
    np.testing.assert_array_equal(p.packed(slice(10, 500)), b.packed(slice(10, 500)))
    np.testing.assert_array_equal(p.packed(snps), b.packed(snps))
    chunks = [(a, z, g) for a, z, g in p.iter_chunks(20_000, samples=samples)]
    assert [(a, z) for a, z, _ in chunks] == [(0, 20_000), (20_000, 40_000), (40_000, 54_051)]
    np.testing.assert_array_equal(np.hstack([g for *_, g in chunks]), b.read(samples=samples))


def _dosage_vcf(path, D: np.ndarray) -> None:
    """A VCF with only a DS field; D is variants x samples, NaN = missing."""
    m, n = D.shape
    with open(path, "w") as fh:
        fh.write('##fileformat=VCFv4.2\n##contig=<ID=1>\n##FORMAT=<ID=DS,Number=A,Type=Float,Description="dosage">\n')
        fh.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(f"S{i}" for i in range(n)) + "\n")
        for j in range(m):
            ds = "\t".join("." if np.isnan(x) else f"{x:g}" for x in D[j])
            fh.write(f"1\t{1000 + 100 * j}\tv{j}\tA\tG\t.\t.\t.\tDS\t{ds}\n")


def test_dosages_are_hardcalled_as_plink2_make_bed(tmp_path):
    plink2 = require_program("plink2")
    rng = np.random.default_rng(3)
    # values on both sides of plink2's default --hard-call-threshold 0.1
    vals = np.array([0, 0.05, 0.1, 0.1001, 0.11, 0.3, 0.5, 0.7, 0.899, 0.9, 0.95, 1, 1.05, 1.1, 1.12, 1.5, 1.85, 1.9, 1.95, 2])
    D = rng.choice(vals, size=(60, 40))
    D[rng.random(D.shape) < 0.03] = np.nan
    _dosage_vcf(tmp_path / "dos.vcf", D)
    run([plink2, "--vcf", str(tmp_path / "dos.vcf"), "dosage=DS", "--make-pgen", "--out", str(tmp_path / "dos")])
    run([plink2, "--pfile", str(tmp_path / "dos"), "--make-bed", "--out", str(tmp_path / "dosb")])
    p, b = Pfile(tmp_path / "dos"), Bfile(tmp_path / "dosb")
    G = p.read()
    np.testing.assert_array_equal(G, b.read())
    assert p.fam.equals(b.fam)  # '#IID' only: FID 0, as plink2 writes the fam
    # the rule: dosages are stored in 1/16384 steps; round when within 0.1 of an integer, else missing
    q = np.round(D.T * 16384) / 16384
    rule = np.where(np.abs(q - np.round(q)) <= 0.1, np.round(q), MISSING_INT8)
    rule[np.isnan(D.T)] = MISSING_INT8
    np.testing.assert_array_equal(G, rule)
    assert 0 < (G == MISSING_INT8).mean() < 0.6  # the test data has calls of both kinds


def test_pvar_and_psam_variants(tmp_path):
    (tmp_path / "a.pvar").write_text("##fileformat=PVCFv1.0\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                                     "1\t100\trs1\tA\tG\t.\t.\t.\n2\t5\trs2\tC\tT\t.\t.\t.\n")
    bim = read_pvar(tmp_path / "a.pvar")
    assert bim.rows() == [("1", "rs1", 0.0, 100, "G", "A"), ("2", "rs2", 0.0, 5, "T", "C")]
    (tmp_path / "b.pvar").write_text("1 rs1 0.5 100 G A\n")  # headerless: a .bim
    assert read_pvar(tmp_path / "b.pvar").rows() == [("1", "rs1", 0.5, 100, "G", "A")]
    (tmp_path / "a.psam").write_text("#FID\tIID\tSID\tPAT\tMAT\tSEX\tBMI\tAGE\nf1\ti1\ts\ti9\t0\tF\t21.5\t40\nf1\ti2\ts\tNA\tNA\tNA\tNA\t41\n")
    assert read_psam(tmp_path / "a.psam").rows() == [("f1", "i1", "i9", "0", "2", "21.5"), ("f1", "i2", "0", "0", "0", "-9")]
    (tmp_path / "c.pvar").write_text("#CHROM\tPOS\tID\tREF\tALT\n1\t100\trs1\tA\tG,T\n")
    with pytest.raises(InputError, match=r"c\.pvar: variant rs1 has 3 alleles.*--max-alleles 2"):
        read_pvar(tmp_path / "c.pvar")
    (tmp_path / "d.pvar").write_text("#CHROM\tPOS\tID\tREF\tALT\n1\tx\trs1\tA\tG\n")
    with pytest.raises(InputError, match=r"d\.pvar: data row 1 \(line 2\): column POS must be numeric, found 'x'"):
        read_pvar(tmp_path / "d.pvar")
    (tmp_path / "b.psam").write_text("#IID\tSEX\ni1\t1\ni1\t2\n")
    with pytest.raises(InputError, match=r"b\.psam: duplicate sample ID \(FID 0, IID i1\)"):
        read_psam(tmp_path / "b.psam")


def test_one_fileset_flag(eur_bfile, eur_pfile, tmp_path):
    with pytest.raises(InputError, match="^--bfile and --pfile are mutually exclusive"):
        open_genotypes(eur_bfile, eur_pfile)
    with pytest.raises(InputError, match="^no genotypes: give --bfile PREFIX"):
        open_genotypes()
    assert GenotypeFiles.given(None, None) is None
    assert GenotypeFiles.given(None, eur_pfile) == GenotypeFiles(None, eur_pfile)
    with pytest.raises(InputError, match=r"nothing\.pgen: file not found \(--pfile .*nothing needs .pgen, .pvar and .psam\)"):
        Pfile(tmp_path / "nothing")
    # a .pgen whose variant count disagrees with the .pvar
    for ext in ("pgen", "psam"):
        (tmp_path / f"x.{ext}").write_bytes(open(f"{eur_pfile}.{ext}", "rb").read())
    (tmp_path / "x.pvar").write_text("#CHROM\tPOS\tID\tREF\tALT\n1\t100\trs1\tA\tG\n")
    with pytest.raises(InputError, match=r"x\.pgen: holds 54051 variants but .*x\.pvar lists 1"):
        Pfile(tmp_path / "x")
