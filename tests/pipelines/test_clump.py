"""`gimtool clump` against `plink1.9 --clump` on EUR_subset, the locus count, and bad input.

Sumstats come from two simulated phenotypes (30 causal SNPs, h2 0.6) scanned with a plain numpy
least-squares regression and written in gimtool's format; PLINK 1.9 reads the same gzipped files
(its default --clump-field P and --clump-snp-field SNP are gimtool's column names).
"""

from __future__ import annotations

import gzip

import numpy as np
import polars as pl
import pytest

from tests.conftest import gimtool, require_program, run

LOOSE = ["--p1", "1e-3", "--p2", "0.05", "--kb", "250"]


@pytest.fixture(scope="module")
def sumstats(eur_bfile, tmp_path_factory):
    from scipy import stats

    from gimtool.io.plink import Bfile
    from gimtool.io.sumstats import write_sumstats

    d = tmp_path_factory.mktemp("clump")
    bf = Bfile(eur_bfile)
    G = bf.read(dtype="float32")
    n, m = G.shape
    Gc = G - G.mean(0)
    ss = (Gc**2).sum(0)
    poly = ss > 0
    paths = []
    for seed in (1, 2):
        rng = np.random.default_rng(seed)
        causal = rng.choice(np.flatnonzero(poly), 30, replace=False)
        X = (G[:, causal] - G[:, causal].mean(0)) / G[:, causal].std(0)
        y = X @ rng.normal(0, 1, 30) * np.sqrt(0.6 / 30) + rng.normal(0, np.sqrt(0.4), n)
        yc = y - y.mean()
        beta = np.where(poly, Gc.T @ yc / np.where(poly, ss, 1), np.nan)
        resid = ((yc[:, None] - Gc * np.nan_to_num(beta)) ** 2).sum(0)
        se = np.sqrt(resid / (n - 2) / np.where(poly, ss, 1))
        t = beta / se
        p = 2 * stats.t.sf(np.abs(t), n - 2)
        df = pl.DataFrame({
            "SNP": bf.bim["SNP"], "CHR": bf.bim["CHR"], "BP": bf.bim["BP"], "GENPOS": bf.bim["CM"],
            "ALLELE1": bf.bim["A1"], "ALLELE0": bf.bim["A2"], "A1FREQ": G.mean(0) / 2, "N": np.full(m, n),
            "BETA": beta, "SE": se, "CHISQ": t * t, "P": p,
        })
        path = d / f"PC{seed}.sumstats.gz"
        write_sumstats(df, path)
        paths.append(path)
    return d, paths


def parse_plink_clumped(path) -> list[tuple]:
    rows = []
    for line in open(path):
        t = line.split()
        if not t or t[0] == "CHR":
            continue
        sp2 = [] if t[11] == "NONE" else t[11].split(",")
        rows.append((t[2], int(t[1]), int(t[5]), tuple(map(int, t[6:11])), sp2))
    return rows


def parse_gimtool_clumped(path) -> list[tuple]:
    df = pl.read_csv(path, separator="\t", infer_schema=False)
    return [
        (r["SNP"], int(r["F"]), int(r["TOTAL"]), tuple(int(r[c]) for c in ("NSIG", "S05", "S01", "S001", "S0001")),
         [] if r["SP2"] == "NONE" else r["SP2"].split(","))
        for r in df.iter_rows(named=True)
    ]


def parse_plink_verbose(path) -> dict[tuple[str, str, int], str]:
    """(index SNP, member SNP, F) -> RSQ as PLINK printed it."""
    out, index, after_header = {}, None, False
    for line in open(path):
        t = line.split()
        if t[:2] == ["CHR", "F"]:
            after_header = True
            continue
        if after_header and t:
            index, after_header = t[2], False
            continue
        if len(t) == 6 and "/" in t[3] and index is not None:
            out[(index, t[0], int(t[4]))] = t[2]
    return out


@pytest.mark.parametrize("r2", ["0.1", "0.5"])
def test_clump_equals_plink19(eur_bfile, sumstats, tmp_path, r2):
    plink = require_program("plink1.9")
    d, paths = sumstats
    for files in ([paths[0]], [paths[1]], paths):
        run([plink, "--bfile", eur_bfile, "--clump", *map(str, files), "--clump-p1", "1e-3", "--clump-p2", "0.05",
             "--clump-r2", r2, "--clump-kb", "250", "--out", str(tmp_path / "plink"), "--silent"])
        gimtool("clump", "--bfile", eur_bfile, "--sumstats", ",".join(map(str, files)), "--out", str(tmp_path / "gim"),
                *LOOSE, "--r2", r2)
        want = parse_plink_clumped(tmp_path / "plink.clumped")
        got = parse_gimtool_clumped(tmp_path / "gim.clumped")
        assert len(want) > 10
        # index SNPs, files, counts and member lists (in PLINK's order), clump by clump
        assert got == want


def test_em_r2_equals_plink_verbose(eur_bfile, sumstats, tmp_path):
    plink = require_program("plink1.9")
    d, paths = sumstats
    run([plink, "--bfile", eur_bfile, "--clump", str(paths[0]), "--clump-p1", "1e-3", "--clump-p2", "0.05",
         "--clump-r2", "0.1", "--clump-kb", "250", "--clump-verbose", "--out", str(tmp_path / "plink"), "--silent"])
    want = parse_plink_verbose(tmp_path / "plink.clumped")
    gimtool("clump", "--bfile", eur_bfile, "--sumstats", str(paths[0]), "--out", str(tmp_path / "gim"), *LOOSE, "--r2", "0.1")
    mem = pl.read_csv(tmp_path / "gim.clumped.members.tsv", separator="\t")
    got = {(r["INDEX"], r["SNP"], r["F"]): r["R2"] for r in mem.iter_rows(named=True)}
    assert len(want) > 100 and set(got) == set(want)
    for key, printed in want.items():
        # PLINK prints 3 significant digits
        assert f"{got[key]:.3g}" == f"{float(printed):.3g}", (key, got[key], printed)


def test_corr_r2_option(eur_bfile, sumstats, tmp_path):
    from gimtool.io.plink import Bfile

    d, paths = sumstats
    gimtool("clump", "--bfile", eur_bfile, "--sumstats", str(paths[0]), "--out", str(tmp_path / "c"), *LOOSE,
            "--r2", "0.1", "--r2-method", "corr")
    mem = pl.read_csv(tmp_path / "c.clumped.members.tsv", separator="\t")
    assert mem.height > 50
    bf = Bfile(eur_bfile)
    ids = {s: i for i, s in enumerate(bf.bim["SNP"].to_list())}
    sub = mem.head(40)
    for r in sub.iter_rows(named=True):
        g = bf.read(snps=[ids[r["INDEX"]], ids[r["SNP"]]], dtype="float64")
        assert r["R2"] == pytest.approx(np.corrcoef(g.T)[0, 1] ** 2, rel=1e-9)
        assert r["R2"] > 0.1


def test_loci_and_compare(eur_bfile, sumstats, tmp_path):
    d, paths = sumstats
    out = tmp_path / "a"
    p = gimtool("clump", "--bfile", eur_bfile, "--sumstats", ",".join(map(str, paths)), "--out", str(out),
                *LOOSE, "--loci", "--loci-p", "1e-6")
    loci = pl.read_csv(f"{out}.loci.tsv", separator="\t", infer_schema=False)
    # the same count by hand: pool significant SNPs, split at gaps > 250 kb
    frames = [pl.read_csv(x, separator="\t", null_values="NA") for x in paths]
    sig = pl.concat([f.filter((pl.col("P") < 1e-6) & (pl.min_horizontal(pl.col("A1FREQ"), 1 - pl.col("A1FREQ")) >= 0.01))
                     .select(pl.col("CHR").cast(pl.Int64), "BP") for f in frames]).unique().sort("CHR", "BP")
    chrom, bp = sig["CHR"].to_numpy(), sig["BP"].to_numpy()
    expected = 1 + int(np.sum((chrom[1:] != chrom[:-1]) | (np.diff(bp) > 250_000)))
    assert loci.height == expected >= 2
    assert f"loci count: {expected}" in open(f"{out}.log").read()
    assert f"{expected} loci" in p.stdout
    # compare against a set holding only the first locus: every other locus is unique
    other = tmp_path / "other.loci.tsv"
    loci.head(1).write_csv(other, separator="\t")
    gimtool("clump", "--bfile", eur_bfile, "--sumstats", str(paths[0]), str(paths[1]), "--out", str(tmp_path / "b"),
            *LOOSE, "--loci-p", "1e-6", "--compare", str(other))
    b = pl.read_csv(tmp_path / "b.loci.tsv", separator="\t")
    assert b["UNIQUE"].to_list() == [0] + [1] * (b.height - 1)


def test_missing_column_lists_expected_and_found(eur_bfile, tmp_path):
    bad = tmp_path / "bad.glm.linear"
    bad.write_text("#CHROM\tPOS\tID\tREF\tALT\tA1\tBETA\tSE\n20\t1\trs6077439\tA\tG\tA\t0.1\t0.01\n")
    p = gimtool("clump", "--bfile", eur_bfile, "--sumstats", str(bad), "--out", str(tmp_path / "x"), check=False)
    assert p.returncode != 0
    err = p.stderr.strip().splitlines()[-1]
    assert err.startswith("Error: ") and str(bad) in err
    assert "lack column(s) P" in err and "expected" in err and "found #CHROM POS ID REF ALT A1 BETA SE" in err


def test_little_overlap_is_counted_in_log(eur_bfile, sumstats, tmp_path):
    d, paths = sumstats
    df = pl.read_csv(paths[0], separator="\t", null_values="NA")
    # keep 1,000 SNPs as they are, rename the rest so the reference does not know them
    df = df.with_columns(pl.when(pl.int_range(pl.len()) < 1000).then(pl.col("SNP")).otherwise(pl.lit("x") + pl.col("SNP")).alias("SNP"))
    f = tmp_path / "renamed.tsv.gz"
    with gzip.open(f, "wt") as fh:
        fh.write(df.write_csv(separator="\t", null_value="NA"))
    top_missing = df.slice(1000).filter(pl.col("P") <= 1e-3).height
    found = df.head(1000).filter(pl.col("P").is_not_null()).height
    missing = df.slice(1000).filter(pl.col("P").is_not_null()).height
    p = gimtool("clump", "--bfile", eur_bfile, "--sumstats", str(f), "--out", str(tmp_path / "o"), *LOOSE)
    log = open(tmp_path / "o.log").read()
    assert f"{df.height:,} rows" in log and f"{found:,} in the reference" in log
    assert f"{missing:,} not in it ({top_missing:,} of them with P <= p1)" in log
    assert f"only {found:,} of" in p.stderr
    assert top_missing > 0 and "missing from the reference" in p.stderr


def test_bad_thresholds(eur_bfile, sumstats, tmp_path):
    d, paths = sumstats
    p = gimtool("clump", "--bfile", eur_bfile, "--sumstats", str(paths[0]), "--out", str(tmp_path / "o"),
                "--p1", "0.01", "--p2", "0.001", check=False)
    assert p.returncode != 0 and "--p2 0.001: expected p1 (0.01) <= p2 <= 1" in p.stderr
    p = gimtool("clump", "--bfile", eur_bfile, "--sumstats", str(paths[0]), "--out", str(tmp_path / "o"),
                "--r2-method", "dprime", check=False)
    assert p.returncode != 0 and "--r2-method dprime: expected em or corr" in p.stderr
