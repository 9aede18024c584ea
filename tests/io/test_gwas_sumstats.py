"""Sumstats reader/writer: gimtool's own files, BOLT-LMM statsFile and PLINK 2 .glm.linear."""

from __future__ import annotations

import gzip

import numpy as np
import polars as pl
import pytest

from gimtool.errors import InputError
from gimtool.conventions import SUMSTATS_COLS
from gimtool.io.sumstats import read_sumstats, write_sumstats

BOLT = (
    "SNP\tCHR\tBP\tGENPOS\tALLELE1\tALLELE0\tA1FREQ\tF_MISS\tBETA\tSE\tP_BOLT_LMM_INF\tP_BOLT_LMM\n"
    "rs1\t17\t2748\t0\tT\tA\t0.00956284\t0\t0.485396\t0.386711\t2.1E-01\t2.3E-01\n"
    "rs2\t17\t49663\t0.000949\tC\tT\t0.206284\t0\t0.0879632\t0.0896426\t3.3E-01\t2.4E-01\n"
)
BOLT_INF = "\n".join("\t".join(ln.split("\t")[:11]) for ln in BOLT.splitlines()) + "\n"
PLINK2 = (
    "#CHROM\tPOS\tID\tREF\tALT\tA1\tTEST\tOBS_CT\tBETA\tSE\tT_STAT\tP\tERRCODE\n"
    "17\t1665\trs34151105\tC\tT\tT\tADD\t369\t0.0882673\t0.125226\t0.704861\t0.481344\t.\n"
    "17\t1665\trs34151105\tC\tT\tT\tAGE\t369\t0.1\t0.1\t1.0\t0.3\t.\n"
    "17\t2748\trs2\tA\tT\tA\tADD\t368\tNA\tNA\tNA\tNA\tCONST_OMITTED_ALLELE\n"
)


def test_bolt_best_p_and_chisq(tmp_path):
    p = tmp_path / "b.stats"
    p.write_text(BOLT)
    df = read_sumstats(p)
    assert df.columns == list(SUMSTATS_COLS)
    assert df["P"].to_list() == [0.23, 0.24]  # non-infinitesimal P preferred
    assert df["N"].null_count() == 2
    # CHISQ is the 1-df quantile of P
    assert df["CHISQ"][0] == pytest.approx(1.4408, rel=1e-3)
    q = tmp_path / "binf.stats.gz"
    q.write_bytes(gzip.compress(BOLT_INF.encode()))
    assert read_sumstats(q)["P"].to_list() == [0.21, 0.33]


def test_plink2_keeps_add_rows_and_other_allele(tmp_path):
    p = tmp_path / "x.PHENO.glm.linear"
    p.write_text(PLINK2)
    df = read_sumstats(p)
    assert df.height == 2
    assert df["ALLELE1"].to_list() == ["T", "A"]
    assert df["ALLELE0"].to_list() == ["C", "T"]
    assert df["N"].to_list() == [369, 368]
    assert df["CHISQ"][0] == pytest.approx(0.704861**2)
    assert df["P"][1] is None and df["BETA"][1] is None


def test_roundtrip(tmp_path):
    df = pl.DataFrame(
        {
            "SNP": ["a", "b"], "CHR": ["1", "X"], "BP": [10, 20], "GENPOS": [0.1, None],
            "ALLELE1": ["A", "C"], "ALLELE0": ["G", "T"], "A1FREQ": [0.1, 0.5], "N": [100, 99],
            "BETA": [0.123456789012, -1e-3], "SE": [0.1, 0.2], "CHISQ": [1.5, np.nan], "P": [1e-300, None],
        }
    )
    write_sumstats(df, tmp_path / "s.sumstats.gz")
    back = read_sumstats(tmp_path / "s.sumstats.gz")
    assert back["BETA"].to_list() == [0.1234568, -1e-3]  # 7 significant digits
    assert back["P"][0] == pytest.approx(1e-300, rel=1e-12) and back["P"][1] is None
    write_sumstats(df, tmp_path / "full.sumstats.gz", sig_digits=None)
    assert read_sumstats(tmp_path / "full.sumstats.gz")["BETA"].to_list() == [0.123456789012, -1e-3]
    assert back["CHISQ"][1] is None
    assert back["CHR"].to_list() == ["1", "X"]


def test_missing_column_lists_expected_and_found(tmp_path):
    p = tmp_path / "bad.stats"
    p.write_text(BOLT.replace("\tSE\t", "\tSTDERR\t"))
    with pytest.raises(InputError, match=r"lack column\(s\) SE; expected .* found .*STDERR"):
        read_sumstats(p)
    q = tmp_path / "own.sumstats"
    q.write_text("SNP\tCHR\tBP\tP\nrs1\t1\t5\t0.1\n")
    with pytest.raises(InputError, match="gimtool sumstats lack column"):
        read_sumstats(q)


def test_bad_number_names_line(tmp_path):
    p = tmp_path / "bad.glm.linear"
    p.write_text(PLINK2.replace("0.481344", "zero"))
    with pytest.raises(InputError, match="line 2: column P"):
        read_sumstats(p)


def test_shared_snp_writer_writes_what_write_sumstats_writes(tmp_path):
    """Formatting the SNP columns once (the gwas writer) gives the same bytes as the general writer,
    with NaN/None statistics, odd floats and IDs that need CSV quoting."""
    from gimtool.io.sumstats import SharedSnpWriter

    rng = np.random.default_rng(2)
    m = 500
    snps = pl.DataFrame({
        "SNP": [f"rs{i}" for i in range(m - 2)] + ['odd"id', "x,y"],
        "CHR": [str(1 + i % 22) for i in range(m)],
        "BP": np.arange(m) * 997 + 1,
        "GENPOS": rng.random(m) * 1e-3,
        "ALLELE1": ["A"] * m,
        "ALLELE0": ["GT"] * m,
    })
    writer = SharedSnpWriter(snps)
    for k in range(3):
        stats = pl.DataFrame({
            "A1FREQ": rng.random(m), "N": rng.integers(100, 200, m), "BETA": rng.standard_normal(m) * 10.0 ** rng.integers(-12, 3, m),
            "SE": rng.random(m), "CHISQ": rng.random(m) * 50, "P": 10.0 ** -rng.uniform(0, 300, m),
        }).with_columns(pl.when(pl.int_range(m) % 17 == k).then(float("nan")).otherwise(pl.col("BETA")).alias("BETA"))
        df = pl.concat([snps, stats], how="horizontal")
        writer.write(df, tmp_path / "shared.gz")
        write_sumstats(df, tmp_path / "general.gz")
        assert gzip.decompress((tmp_path / "shared.gz").read_bytes()) == gzip.decompress((tmp_path / "general.gz").read_bytes())
    with pytest.raises(ValueError, match="rows"):
        writer.write(df.head(10), tmp_path / "short.gz")
    # no SNPs at all (e.g. every SNP below --maf): a header-only file, as write_sumstats writes
    SharedSnpWriter(snps.head(0)).write(df.head(0), tmp_path / "empty.gz")
    write_sumstats(df.head(0), tmp_path / "general_empty.gz")
    assert gzip.decompress((tmp_path / "empty.gz").read_bytes()) == gzip.decompress((tmp_path / "general_empty.gz").read_bytes())


def test_lambda_gc_equals_chi2_quantile():
    from scipy.special import chdtri

    from gimtool.stats.phenostats import CHISQ_MEDIAN_1DF, lambda_gc

    rng = np.random.default_rng(4)
    for p in (rng.random(1001), rng.random(1000) ** 3, np.array([0.5]), np.array([1e-12, np.nan, 1.0])):
        ok = p[np.isfinite(p)]
        assert lambda_gc(p) == pytest.approx(chdtri(1, np.median(ok)) / CHISQ_MEDIAN_1DF, rel=1e-12)
    assert np.isnan(lambda_gc(np.array([np.nan])))
