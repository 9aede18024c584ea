"""Job-array parts and `gimtool merge`: prep-mri and embed --shard K/N parts, and gwas --chunk K/N
outputs, merged through the CLI, equal one run byte for byte (logs aside; the gwas summary's
LAMBDA_GC to 1e-6). On a tiny simulated cohort (120 people, 4 mm scans, 2,000 SNPs)."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st_

from gimtool.cli import main
from gimtool.pipelines.gwas import parse_chunk
from gimtool.pipelines.shards import part_bounds
from tests.train.test_embed import model  # noqa: F401  (the fixture: a random-init checkpoint and its store)


def gimtool(*args, code=0):
    got = main([str(a) for a in args])
    assert got == code, args
    return got


def files_of(folder):
    """{relative path: bytes} of every file under `folder`."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@given(total=st_.integers(0, 5000), n=st_.integers(1, 40), align=st_.integers(1, 64))
@settings(max_examples=200, deadline=None)
def test_parts_tile_the_items_in_order(total, n, align):
    parts = [part_bounds(k, n, total, align) for k in range(1, n + 1)]
    assert parts[0][0] == 0 and parts[-1][1] == total
    assert all(a <= b for a, b in parts) and all(parts[k][1] == parts[k + 1][0] for k in range(n - 1))
    assert all(a % align == 0 for a, b in parts if a < total)
    # align 1: the parts of gwas --chunk
    assert [part_bounds(k, n, total) for k in range(1, n + 1)] == [parse_chunk(f"{k}/{n}", total) for k in range(1, n + 1)]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """A tiny simulated cohort; its scan list gains a broken scan (S000, not a NIfTI) in the middle."""
    d = tmp_path_factory.mktemp("cohort")
    gimtool("simulate", "--preset", "tiny", "--seed", "3", "--out", d / "sim")
    lines = (d / "sim" / "images.tsv").read_text().splitlines()
    (d / "sim" / "broken.nii.gz").write_text("not a scan\n")
    lines.insert(50, "S000\tS000\tbroken.nii.gz")
    (d / "sim" / "images.tsv").write_text("\n".join(lines) + "\n")
    return d / "sim"


def test_prep_mri_shards_merge_to_one_run(cohort, tmp_path):
    args = ["prep-mri", "--dir", cohort, "--voxel", "4", "--write-nifti", "--allow-failures", "--dtype", "uint8"]
    gimtool(*args, "--out", tmp_path / "one", "--threads", "2")
    out = tmp_path / "parts" / "cohort.img"
    gimtool(*args, "--out", out, "--shard", "1/3")
    gimtool(*args, "--out", out, "--shard", "2/3", "--threads", "2")
    # part 3 not run yet: the merge names it
    gimtool("merge", "--out", out, code=1)
    assert not out.exists()
    # --resume per part: a part resumes from its own store (or work folder), not the merged one
    gimtool(*args, "--out", out, "--shard", "3/3", "--resume")
    gimtool(*args, "--out", out, "--shard", "2/3", "--resume")
    assert "40 listed scans already in the store, 1 to process" in (tmp_path / "parts" / "cohort.img.shard2of3.log").read_text()
    part2 = pl.read_csv(f"{out}.shard2of3/manifest.tsv", separator="\t", null_values="NA")
    # a part leaves the cohort QC (over everyone) to the merge
    assert part2["CORR_MEAN"].null_count() == 40 and not (tmp_path / "parts" / "cohort.img.shard2of3" / "qc.png").exists()
    assert part2.height == 40 and "--shard 2/3: scans 41-81 of 121" in (tmp_path / "parts" / "cohort.img.shard2of3.log").read_text()
    gimtool("merge", "--out", out)
    one, merged = files_of(tmp_path / "one"), files_of(out)
    assert sorted(merged) == sorted(one) and "nifti/S001_S001.nii.gz" in one
    assert [k for k in one if one[k] != merged[k]] == []
    failed = pl.read_csv(out / "failed.tsv", separator="\t")
    assert failed["IID"].to_list() == ["S000"]


def test_merge_refuses_mixed_or_foreign_parts(cohort, tmp_path):
    args = ["prep-mri", "--dir", cohort, "--voxel", "4", "--allow-failures"]
    gimtool(*args, "--out", tmp_path / "a", "--shard", "1/2")
    gimtool(*args, "--out", tmp_path / "a", "--shard", "2/2", "--voxel", "8")
    gimtool("merge", "--out", tmp_path / "a", code=1)  # another grid
    gimtool(*args, "--out", tmp_path / "a", "--shard", "1/3")
    gimtool("merge", "--out", tmp_path / "a", code=1)  # parts of 2 and of 3
    gimtool("merge", "--out", tmp_path / "none", code=1)
    gimtool("prep-mri", "--dir", cohort, "--voxel", "4", "--out", tmp_path / "b", "--shard", "4/3", code=1)


def test_embed_shards_merge_to_one_run(model, tmp_path):  # noqa: F811
    d, ids = model
    base = ["embed", "--checkpoint", d / "run" / "model.pt", "--images", d / "img", "--no-progress"]
    args = [*base, "--batch-size", "2"]
    gimtool(*args, "--out", tmp_path / "one")
    for k in (1, 2, 3):
        gimtool(*args, "--out", tmp_path / "emb", "--shard", f"{k}/3")
    sizes = [pl.read_csv(tmp_path / f"emb.shard{k}of3.tsv", separator="\t").height for k in (1, 2, 3)]
    assert sizes == [4, 2, 3]  # whole batches of 2: each batch is one of the single run's
    gimtool("merge", "--out", tmp_path / "emb")
    assert (tmp_path / "emb.tsv").read_bytes() == (tmp_path / "one.tsv").read_bytes()
    # merge ends with its summary line, as every command
    assert f"merge: wrote {tmp_path / 'emb'}.tsv (9 people from 3 parts)" in (tmp_path / "emb.log").read_text()
    gimtool(*args, "--out", tmp_path / "x", "--shard", "5/5")  # 9 people, 5 batches: part 5 of 5 is the last one
    # 9 people in batches of 8: two batches for three parts, one of them is empty: an error
    gimtool(*base, "--batch-size", "8", "--out", tmp_path / "y", "--shard", "2/3", code=1)


def test_gwas_chunks_merge_to_one_run(cohort, tmp_path):
    args = ["gwas", "--bfile", cohort / "geno", "--pheno", cohort / "truth" / "factors.tsv", "--covar", cohort / "covariates.tsv",
            "--covar-name", "age,sex", "--maf", "0.05"]
    gimtool(*args, "--out", tmp_path / "one")
    for k in (1, 2, 3):
        gimtool(*args, "--out", tmp_path / f"c{k}", "--chunk", f"{k}/3")
    gimtool("merge", "--out", tmp_path / "all", "--gwas", f"{tmp_path / 'c1'},{tmp_path / 'c2'}", "--gwas", tmp_path / "c3")
    for ph in ("F1", "F2"):
        for suffix in ("sumstats.gz", "manhattan.png", "qq.png"):
            assert (tmp_path / f"all.{ph}.{suffix}").read_bytes() == (tmp_path / f"one.{ph}.{suffix}").read_bytes(), (ph, suffix)
        with gzip.open(tmp_path / f"all.{ph}.sumstats.gz", "rt") as fh:
            assert sum(ln.startswith("SNP\t") for ln in fh) == 1  # one header
    one, merged = (pl.read_csv(tmp_path / f"{p}.summary.tsv", separator="\t") for p in ("one", "all"))
    assert merged.drop("LAMBDA_GC").equals(one.drop("LAMBDA_GC"))
    np.testing.assert_allclose(merged["LAMBDA_GC"].to_numpy(), one["LAMBDA_GC"].to_numpy(), rtol=1e-6)
    assert one["NSNP"][0] < 2000  # --maf dropped some SNPs, in each chunk on its own
    # chunks out of order: the same files, with a warning
    gimtool("merge", "--out", tmp_path / "swapped", "--no-plots", "--gwas", f"{tmp_path / 'c2'},{tmp_path / 'c1'},{tmp_path / 'c3'}")
    assert "give the chunks in --chunk order" in (tmp_path / "swapped.log").read_text()
    gimtool("merge", "--out", tmp_path / "twice", "--gwas", f"{tmp_path / 'c1'},{tmp_path / 'c1'}", code=1)
    for f in ("summary.tsv", "F1.sumstats.gz"):  # c9 lacks F2's sumstats
        shutil.copy(tmp_path / f"c1.{f}", tmp_path / f"c9.{f}")
    gimtool("merge", "--out", tmp_path / "missing", "--gwas", f"{tmp_path / 'c1'},{tmp_path / 'c9'}", code=1)
