"""Every subcommand through a table of bad options and files: a non-zero exit, exactly one
`Error: ...` line, and no traceback. A new option or input that fails with a traceback fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import gimtool
from tests.train.test_train_data import ids_of, make_geno_store, make_image_store, write_ids

BAD = Path(__file__).parent / "data" / "bad"
HEADER_ONLY = BAD / "table_header_only.tsv"


@pytest.fixture(scope="module")
def f(tmp_path_factory, eur_bfile):
    d = tmp_path_factory.mktemp("bad_input")
    ids = ids_of(12)
    make_image_store(d / "img", ids, shape=(8, 10, 8))
    make_geno_store(d / "geno", ids, n_snps=60)
    write_ids(d / "ids", ids)
    (d / "a_file").write_text("x\n")
    (d / "pheno.tsv").write_text("FID\tIID\tP1\n" + "".join(f"{a}\t{b}\t{k}\n" for k, (a, b) in enumerate(ids)))
    return {"d": d, "bfile": eur_bfile, "under_file": d / "a_file" / "out", "img": d / "img", "geno": d / "geno",
            "pheno": d / "pheno.tsv", "eur_pheno": Path(eur_bfile).parent / "EUR_subset.pheno.covars"}


CASES = {
    # gwas
    "gwas header-only pheno": lambda f: ["gwas", "--bfile", f["bfile"], "--pheno", HEADER_ONLY, "--out", f["d"] / "g"],
    "gwas header-only covar": lambda f: ["gwas", "--bfile", f["bfile"], "--pheno", f["eur_pheno"], "--pheno-name", "PHENO",
                                         "--covar", HEADER_ONLY, "--out", f["d"] / "g"],
    "gwas mixed categorical": lambda f: ["gwas", "--bfile", f["bfile"], "--pheno", f["eur_pheno"], "--pheno-name", "PHENO",
                                         "--covar", BAD / "covar_mixed_categorical.tsv", "--out", f["d"] / "g"],
    "gwas --device gpu": lambda f: ["gwas", "--bfile", f["bfile"], "--pheno", f["eur_pheno"], "--device", "gpu", "--out", f["d"] / "g"],
    "gwas --device tpu": lambda f: ["gwas", "--bfile", f["bfile"], "--pheno", f["eur_pheno"], "--device", "tpu", "--out", f["d"] / "g"],
    "gwas --out under a file": lambda f: ["gwas", "--bfile", f["bfile"], "--pheno", f["eur_pheno"], "--out", f["under_file"]],
    "gwas no pheno file": lambda f: ["gwas", "--bfile", f["bfile"], "--pheno", f["d"] / "none.tsv", "--out", f["d"] / "g"],
    "gwas bad bed": lambda f: ["gwas", "--bfile", BAD / "bad_magic", "--pheno", f["eur_pheno"], "--out", f["d"] / "g"],
    # h2
    "h2 greml header-only pheno": lambda f: ["h2", "--method", "greml", "--bfile", f["bfile"], "--pheno", HEADER_ONLY,
                                             "--out", f["d"] / "h"],
    "h2 greml --device tpu": lambda f: ["h2", "--method", "greml", "--bfile", f["bfile"], "--pheno", f["eur_pheno"],
                                        "--pheno-name", "PHENO", "--device", "tpu", "--out", f["d"] / "h"],
    "h2 --out under a file": lambda f: ["h2", "--sumstats", f["d"] / "none.gz", "--out", f["under_file"]],
    "h2 no sumstats file": lambda f: ["h2", "--bfile", f["bfile"], "--sumstats", f["d"] / "none.gz", "--out", f["d"] / "h"],
    # pcs
    "pcs header-only embeddings": lambda f: ["pcs", "--pheno", HEADER_ONLY, "--out", f["d"] / "p"],
    "pcs --out under a file": lambda f: ["pcs", "--pheno", f["pheno"], "--out", f["under_file"]],
    "pcs bad bed": lambda f: ["pcs", "--bfile", BAD / "bad_magic", "--out", f["d"] / "p"],
    # mi
    "mi header-only representation": lambda f: ["mi", "--pheno", HEADER_ONLY, "--geno", f["geno"], "--out", f["d"] / "m"],
    "mi --device gpu": lambda f: ["mi", "--pheno", f["pheno"], "--geno", f["geno"], "--device", "gpu", "--out", f["d"] / "m"],
    "mi --out under a file": lambda f: ["mi", "--pheno", f["pheno"], "--geno", f["geno"], "--out", f["under_file"]],
    # clump
    "clump no sumstats file": lambda f: ["clump", "--bfile", f["bfile"], "--sumstats", f["d"] / "none.gz", "--out", f["d"] / "c"],
    "clump sumstats missing columns": lambda f: ["clump", "--bfile", f["bfile"], "--sumstats", BAD / "sumstats_missing_columns.tsv",
                                                 "--out", f["d"] / "c"],
    "clump --out under a file": lambda f: ["clump", "--bfile", f["bfile"], "--sumstats", f["d"] / "none.gz", "--out", f["under_file"]],
    # prep-geno
    "prep-geno bad bed": lambda f: ["prep-geno", "--bfile", BAD / "bad_magic", "--out", f["d"] / "pg"],
    "prep-geno --out under a file": lambda f: ["prep-geno", "--bfile", f["bfile"], "--out", f["under_file"]],
    "prep-geno keep one column": lambda f: ["prep-geno", "--bfile", f["bfile"], "--keep", BAD / "ids_one_column.txt", "--out", f["d"] / "pg"],
    # prep-mri
    "prep-mri no such folder": lambda f: ["prep-mri", "--dir", f["d"] / "no_scans", "--out", f["d"] / "pm"],
    "prep-mri --out under a file": lambda f: ["prep-mri", "--dir", f["d"] / "no_scans", "--out", f["under_file"]],
    # simulate
    "simulate --out under a file": lambda f: ["simulate", "--out", f["under_file"], "--n", "20"],
    # train
    "train --device gpu": lambda f: ["train", "--images", f["img"], "--method", "autoencoder", "--device", "gpu", "--out", f["d"] / "t"],
    "train --out under a file": lambda f: ["train", "--images", f["img"], "--method", "autoencoder", "--out", f["under_file"]],
    "train no image store": lambda f: ["train", "--images", f["d"] / "none", "--out", f["d"] / "t2"],
    "train keep header-only": lambda f: ["train", "--images", f["img"], "--keep", HEADER_ONLY, "--method", "autoencoder",
                                         "--out", f["d"] / "t3"],
    # embed
    "embed no checkpoint": lambda f: ["embed", "--checkpoint", f["d"] / "none.pt", "--images", f["img"], "--out", f["d"] / "e"],
    "embed --device tpu": lambda f: ["embed", "--checkpoint", f["d"] / "none.pt", "--images", f["img"], "--device", "tpu",
                                     "--out", f["d"] / "e"],
    "embed --out under a file": lambda f: ["embed", "--checkpoint", f["d"] / "none.pt", "--images", f["img"], "--out", f["under_file"]],
    "embed --shard 0/3": lambda f: ["embed", "--checkpoint", f["d"] / "none.pt", "--images", f["img"], "--shard", "0/3", "--out", f["d"] / "e"],
    # merge
    "merge no parts": lambda f: ["merge", "--out", f["d"] / "no_parts"],
    "merge --out under a file": lambda f: ["merge", "--out", f["under_file"]],
    "merge gwas chunk missing": lambda f: ["merge", "--gwas", f["d"] / "no_chunk", "--out", f["d"] / "gm"],
    "prep-mri --shard 4/3": lambda f: ["prep-mri", "--dir", f["d"] / "no_scans", "--shard", "4/3", "--out", f["d"] / "pm"],
}


def test_every_subcommand_is_covered():
    from gimtool.cli import COMMANDS

    covered = {case.split()[0] for case in CASES}
    assert covered == set(COMMANDS), f"no bad-input case for: {sorted(set(COMMANDS) - covered)}"


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_one_error_line(f, case):
    p = gimtool(*CASES[case](f), check=False)
    out = p.stdout + p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("Error:")]
    assert p.returncode != 0, out
    assert "Traceback" not in out, out
    assert len(errors) == 1, out
