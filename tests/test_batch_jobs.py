"""gimtool in batch jobs (issue 17): every command through the real CLI on a tiny simulated cohort.

Each command ends with one summary line of what it wrote (the last line of stderr, and in its
log); --keep/--remove IDs absent from the data are ignored and counted, a keep list that selects
no one is an error; train --remove; renamed options (pcs --n-pcs, h2 --chunk-snps) keep their old
names with a warning; range errors exit 2; --out DIR/ writes DIR/<command>.*; simulate replaces
its own earlier outputs; h2 and clump --compare check their inputs before writing anything.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import gimtool, require_program
from tests.train.test_train_methods import SMALL_MODEL

STATUS_OK = "status: ok"


def _summary(p, log: Path, start: str) -> str:
    """The command's last stderr line, which must also be in its log before the timings."""
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith(start), p.stderr[-2000:]
    text = log.read_text()
    assert last in text.splitlines() and text.index(last) < text.index("total time:"), text
    assert STATUS_OK in text
    return last


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """simulate (tiny) -> prep-geno -> prep-mri -> train -> embed -> pcs -> gwas -> clump -> h2 -> mi,
    each run once through the CLI; returns the folder and each command's CompletedProcess."""
    d = tmp_path_factory.mktemp("chain")
    c = d / "cohort"
    model = "\n".join(f"{k} = {v}" for k, v in SMALL_MODEL.items())
    (d / "small.toml").write_text(f"batch_size = 8\ncrop_mm = 1000.0\n\n[model]\n{model}\n")
    runs = {}
    runs["simulate"] = gimtool("simulate", "--preset", "tiny", "--out", c, "--seed", "2")
    runs["prep-geno"] = gimtool("prep-geno", "--bfile", c / "geno", "--genetic-map", c / "genetic_map.txt", "--maf", "0.05",
                                "--out", d / "geno")
    runs["prep-mri"] = gimtool("prep-mri", "--images", c / "images.tsv", "--voxel", "8", "--out", d / "mri")
    runs["train"] = gimtool("train", "--images", d / "mri", "--geno", d / "geno.geno", "--keep", c / "train.ids",
                            "--val-keep", c / "val.ids", "--method", "autoencoder", "--epochs", "1",
                            "--config", d / "small.toml", "--out", d / "run")
    runs["embed"] = gimtool("embed", "--checkpoint", d / "run", "--images", d / "mri", "--out", d / "emb")
    runs["pcs"] = gimtool("pcs", "--pheno", d / "emb.tsv", "--fit-keep", c / "train.ids", "--n-pcs", "3", "--out", d / "pcs")
    runs["gwas"] = gimtool("gwas", "--bfile", d / "geno", "--pheno", c / "truth" / "factors.tsv", "--no-plots",
                           "--covar", c / "covariates.tsv", "--covar-name", "age,sex", "--out", d / "gwas")
    ss = sorted(str(p) for p in d.glob("gwas.*.sumstats.gz"))
    runs["clump"] = gimtool("clump", "--bfile", d / "geno", "--loci", "--loci-p", "1e-3", "--p1", "1e-3",
                            "--out", d / "clump", *ss)
    runs["h2"] = gimtool("h2", "--bfile", d / "geno", "--ld-wind-kb", "500", "--out", d / "h2", *ss)
    runs["mi"] = gimtool("mi", "--pheno", d / "pcs.pcs.tsv", "--geno", d / "geno.geno", "--keep", c / "test.ids",
                         "--genetic-encoder", "mlp", "--epochs", "2", "--repeats", "1", "--out", d / "mi")
    return d, runs


SUMMARIES = {  # command: (its log in the chain folder, the start of its summary line)
    "simulate": ("cohort/simulate.log", "simulate: wrote 120 people, "),
    "prep-geno": ("geno.log", "prep-geno: kept 120/120 samples, "),
    "prep-mri": ("mri.log", "prep-mri: wrote the image store "),
    "train": ("run/train.log", "train: wrote "),
    "embed": ("emb.log", "embed: wrote the "),
    "pcs": ("pcs.log", "pcs: wrote 3 PCs of 120 people to "),
    "gwas": ("gwas.log", "gwas: wrote 2 sumstats files (F1, F2), the summary and the log to "),
    "clump": ("clump.log", "clump: wrote "),
    "h2": ("h2.log", "h2: wrote the ldsc h2 of 2 phenotype(s) (F1, F2; mean "),
    "mi": ("mi.log", "mi: wrote the MI estimates of 1 representation file(s) to "),
}


def test_every_command_has_a_summary_case():
    from gimtool.cli import COMMANDS

    assert set(COMMANDS) - {"merge"} <= set(SUMMARIES)


@pytest.mark.parametrize("command", list(SUMMARIES))
def test_command_ends_with_a_summary_line(chain, command):
    d, runs = chain
    log, start = SUMMARIES[command]
    line = _summary(runs[command], d / log, start)
    assert str(d) in line  # where the outputs are


def test_train_summary_names_the_models(chain):
    d, runs = chain
    line = _summary(runs["train"], d / "run" / "train.log", "train: wrote ")
    assert str(d / "run" / "model.pt") in line and "best.pt" in line


# -- --keep and --remove: plink2's semantics in every command ---------------------------------------

@pytest.fixture(scope="module")
def keep_files(chain):
    d, _ = chain
    test_ids = (d / "cohort" / "test.ids").read_text().splitlines()
    (d / "keep_some_unknown.ids").write_text("\n".join(test_ids + ["QC_DROPPED QC_DROPPED", "GONE GONE"]) + "\n")
    (d / "keep_nobody.ids").write_text("GONE GONE\nQC_DROPPED QC_DROPPED\n")
    (d / "remove_some.ids").write_text("\n".join(test_ids[:5] + ["GONE GONE"]) + "\n")
    return d


def _keep_cases(d: Path, keep: Path) -> dict:
    c = d / "cohort"
    return {
        "gwas": ["gwas", "--bfile", d / "geno", "--pheno", c / "truth" / "factors.tsv", "--no-plots", "--keep", keep],
        "pcs": ["pcs", "--bfile", d / "geno", "--n-pcs", "2", "--keep", keep],
        "embed": ["embed", "--checkpoint", d / "run", "--images", d / "mri", "--keep", keep],
        "mi": ["mi", "--pheno", d / "pcs.pcs.tsv", "--geno", d / "geno.geno", "--genetic-encoder", "mlp", "--epochs", "1",
               "--repeats", "1", "--keep", keep],
        "h2": ["h2", "--method", "greml", "--bfile", d / "geno", "--pheno", c / "truth" / "factors.tsv", "--keep", keep],
        "prep-geno": ["prep-geno", "--bfile", c / "geno", "--keep", keep],
        "train": ["train", "--images", d / "mri", "--method", "autoencoder", "--epochs", "1", "--config",
                  d / "small.toml", "--keep", keep],
    }


@pytest.mark.parametrize("command", ["gwas", "pcs", "embed", "mi", "h2", "prep-geno", "train"])
def test_keep_ids_absent_from_the_data_are_ignored_and_counted(keep_files, tmp_path, command):
    d = keep_files
    out = tmp_path / command
    p = gimtool(*_keep_cases(d, d / "keep_some_unknown.ids")[command], "--out", out)
    log = (out / "train.log") if command == "train" else Path(f"{out}.log")
    text = log.read_text()
    assert STATUS_OK in text
    n_test = len((d / "cohort" / "test.ids").read_text().splitlines())
    if command == "train":  # the image store's view: people without an image are dropped
        assert f"{n_test + 2} IDs listed, {n_test} have an image, 2 dropped (no image)" in text
    else:
        assert f"{n_test} of {n_test + 2} IDs matched, 2 not in the data (ignored); {n_test} samples remain" in text, text
    assert "Error" not in p.stderr


@pytest.mark.parametrize("command", ["gwas", "pcs", "embed", "mi", "h2", "prep-geno", "train"])
def test_keep_list_that_selects_no_one_is_its_own_error(keep_files, tmp_path, command):
    d = keep_files
    p = gimtool(*_keep_cases(d, d / "keep_nobody.ids")[command], "--out", tmp_path / command, check=False)
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("Error:")]
    assert p.returncode == 1 and len(errors) == 1 and "Traceback" not in p.stderr, p.stderr
    assert "keep_nobody.ids" in errors[0] and "selects no one" in errors[0], errors[0]


def test_train_remove(keep_files, tmp_path):
    d = keep_files
    c = d / "cohort"
    n_train = len((c / "train.ids").read_text().splitlines())
    (tmp_path / "rm.ids").write_text("".join((c / "train.ids").read_text().splitlines(True)[:4]) + "GONE GONE\n")
    gimtool("train", "--images", d / "mri", "--keep", c / "train.ids", "--remove", tmp_path / "rm.ids", "--method",
            "autoencoder", "--epochs", "1", "--config", d / "small.toml", "--out", tmp_path / "run")
    text = (tmp_path / "run" / "train.log").read_text()
    assert f"4 of the --keep people removed, {n_train - 4} remain" in text
    assert f"training set: {n_train - 4} IDs listed, {n_train - 4} have an image" in text


def test_train_epochs_zero_is_an_error(chain, tmp_path):
    d, _ = chain
    p = gimtool("train", "--images", d / "mri", "--method", "autoencoder", "--epochs", "0", "--config",
                d / "small.toml", "--out", tmp_path / "run", check=False)
    assert p.returncode == 1 and p.stderr.strip().splitlines()[-1].startswith("Error: --epochs 0: no epoch to train")
    assert not (tmp_path / "run" / "model.pt").exists()
    assert "status: failed" in (tmp_path / "run" / "train.log").read_text()


# -- one name per meaning -------------------------------------------------------------------------

def test_pcs_n_pcs_and_the_old_n_with_a_warning(chain, tmp_path):
    d, _ = chain
    new = gimtool("pcs", "--pheno", d / "emb.tsv", "--n-pcs", "2", "--out", tmp_path / "new")
    old = gimtool("pcs", "--pheno", d / "emb.tsv", "--n", "2", "--out", tmp_path / "old")
    assert "deprecated" not in new.stderr
    assert "Warning: pcs --n is deprecated; use --n-pcs" in old.stderr
    assert (tmp_path / "new.pcs.tsv").read_text() == (tmp_path / "old.pcs.tsv").read_text()
    assert "--n-pcs" in gimtool("pcs", "--help").stdout


def test_h2_chunk_snps_and_the_old_chunk_size_with_a_warning(chain, tmp_path):
    d, _ = chain
    args = ["h2", "--method", "greml", "--bfile", d / "geno", "--pheno", d / "cohort" / "truth" / "factors.tsv"]
    new = gimtool(*args, "--chunk-snps", "300", "--out", tmp_path / "new")
    old = gimtool(*args, "--chunk-size=300", "--out", tmp_path / "old")
    assert "Warning: h2 --chunk-size is deprecated; use --chunk-snps" in old.stderr and "deprecated" not in new.stderr
    assert (tmp_path / "new.h2.tsv").read_text() == (tmp_path / "old.h2.tsv").read_text()
    for command in ("gwas", "h2"):
        assert "--chunk-snps" in gimtool(command, "--help").stdout


@pytest.mark.parametrize("option, value", [("--loci-p", "2"), ("--loci-p", "0"), ("--p1", "1.5"), ("--p2", "0"),
                                           ("--r2", "1"), ("--maf", "0.7"), ("--kb", "0")])
def test_clump_ranges_are_usage_errors(chain, tmp_path, option, value):
    d, _ = chain
    ss = next(d.glob("gwas.*.sumstats.gz"))
    p = gimtool("clump", "--bfile", d / "geno", "--loci", option, value, "--out", tmp_path / "c", ss, check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr and option in p.stderr, p.stderr
    assert not list(tmp_path.iterdir())


def test_clump_p2_below_p1_is_a_usage_error_too(chain, tmp_path):
    d, _ = chain
    ss = next(d.glob("gwas.*.sumstats.gz"))
    p = gimtool("clump", "--bfile", d / "geno", "--p1", "0.01", "--p2", "0.001", "--out", tmp_path / "c", ss, check=False)
    assert p.returncode == 2 and "Error: --p2 0.001: expected p1 (0.01) <= p2 <= 1" in p.stderr


def test_gwas_range_error_exits_2_as_clump(chain, tmp_path):
    d, _ = chain
    p = gimtool("gwas", "--bfile", d / "geno", "--pheno", d / "pcs.pcs.tsv", "--maf", "0.9", "--out", tmp_path / "g",
                check=False)
    assert p.returncode == 2 and "--maf" in p.stderr


# -- --out DIR/ -----------------------------------------------------------------------------------

@pytest.mark.parametrize("trailing", ["/", ""])
def test_out_folder_writes_folder_slash_command(chain, tmp_path, trailing):
    d, _ = chain
    folder = tmp_path / "results"
    folder.mkdir()
    p = gimtool("pcs", "--pheno", d / "emb.tsv", "--n-pcs", "2", "--out", f"{folder}{trailing}")
    assert sorted(x.name for x in folder.iterdir()) == ["pcs.explained.tsv", "pcs.loadings.tsv", "pcs.log",
                                                         "pcs.pcs.tsv", "pcs.scree.png"]
    assert str(folder / "pcs.pcs.tsv") in p.stderr.strip().splitlines()[-1]


def test_out_new_folder_with_slash(chain, tmp_path):
    d, _ = chain
    gimtool("gwas", "--bfile", d / "geno", "--pheno", d / "pcs.pcs.tsv", "--pheno-name", "PC1", "--no-plots",
            "--out", f"{tmp_path / 'new'}/")
    assert sorted(x.name for x in (tmp_path / "new").iterdir()) == ["gwas.PC1.sumstats.gz", "gwas.log", "gwas.summary.tsv"]


# -- pcs --bfile: a covariate file that BOLT, REGENIE and plink2 read ---------------------------------

def test_pcs_bfile_covariate_file_read_by_bolt(eur_bfile, tmp_path):
    gimtool("pcs", "--bfile", eur_bfile, "--n-pcs", "2", "--out", tmp_path / "anc")
    lines = (tmp_path / "anc.covar.tsv").read_text().splitlines()
    assert lines[0] == "FID\tIID\tPC1\tPC2" and len(lines) == 1 + 379
    vec = (tmp_path / "anc.eigenvec").read_text().splitlines()
    assert vec[0] == "#" + lines[0] and vec[1:] == lines[1:]  # the same numbers as the PLINK 2 file
    bolt = shutil.which("bolt")
    if bolt is not None:
        from tests.conftest import run

        run([bolt, f"--bfile={eur_bfile}", f"--phenoFile={eur_bfile}.pheno.covars", "--phenoCol=PHENO",
             f"--covarFile={tmp_path / 'anc.covar.tsv'}", "--qCovarCol=PC{1:2}", "--lmmInfOnly", "--LDscoresUseChip",
             "--numThreads=1", f"--statsFile={tmp_path / 'bolt.stats'}"])
        assert (tmp_path / "bolt.stats").stat().st_size > 0
    else:
        plink2 = require_program("plink2")
        from tests.conftest import run

        run([plink2, "--bfile", eur_bfile, "--pheno", f"{eur_bfile}.pheno.covars", "--pheno-name", "PHENO",
             "--covar", tmp_path / "anc.covar.tsv", "--glm", "hide-covar", "--out", tmp_path / "p2"])


# -- simulate into a used folder ------------------------------------------------------------------

def test_simulate_replaces_its_earlier_outputs_and_refuses_other_files(tmp_path):
    out = tmp_path / "c"
    args = ["simulate", "--preset", "tiny", "--n", "40", "--seed", "4", "--out", out]
    gimtool(*args)
    stale = out / "images" / "OLD_PERSON.nii.gz"
    stale.write_bytes(b"stale")
    (out / ".tmp123.partial").write_text("x")
    p = gimtool(*args)
    assert not stale.exists() and not (out / ".tmp123.partial").exists()
    assert len(list((out / "images").iterdir())) == 40
    assert "removed the previous simulation's outputs" in (out / "simulate.log").read_text()
    assert p.stderr.strip().splitlines()[-1].startswith("simulate: wrote 40 people")
    (out / "notes.txt").write_text("mine")
    p = gimtool(*args, check=False)
    assert p.returncode == 1 and "notes.txt" in p.stderr and "simulate does not write" in p.stderr
    assert (out / "notes.txt").read_text() == "mine" and (out / "geno.bed").exists()


# -- inputs checked before any output is written --------------------------------------------------

def test_h2_checks_sumstats_before_writing_ld_scores(chain, tmp_path):
    d, _ = chain
    ss = next(d.glob("gwas.*.sumstats.gz"))
    p = gimtool("h2", "--bfile", d / "geno", "--out", tmp_path / "h", ss, tmp_path / "missing.sumstats.gz", check=False)
    assert p.returncode == 1 and "missing.sumstats.gz" in p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["h.log"]


def test_clump_checks_compare_tables_before_writing(chain, tmp_path):
    d, _ = chain
    ss = next(d.glob("gwas.*.sumstats.gz"))
    (tmp_path / "bad.loci.tsv").write_text("not a loci table\n")
    p = gimtool("clump", "--bfile", d / "geno", "--compare", tmp_path / "bad.loci.tsv", "--out", tmp_path / "c", ss,
                check=False)
    assert p.returncode == 1 and "bad.loci.tsv" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["bad.loci.tsv", "c.log"]


# -- help -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["prep-geno", "train", "embed"])
def test_help_has_an_example(command):
    out = gimtool(command, "--help").stdout
    assert re.search(rf"Example:\s+gimtool {command} --", out), out[:1500]


@pytest.mark.parametrize("command", ["clump", "h2"])
def test_help_says_what_the_positional_files_are(command):
    out = gimtool(command, "--help").stdout
    assert re.search(r"files\s+\[FILES\]\.\.\.\s+More sumstats files", out), out[:2500]


def _prose_lines(help_text: str) -> list[list[str]]:
    """The paragraphs of the description above the option boxes (examples excluded)."""
    body = help_text.split("╭")[0].splitlines()[3:]  # past the usage line
    paras, cur = [], []
    for ln in body:
        s = ln.strip()
        if not s or ln.startswith("   "):  # blank, or an indented example
            if cur:
                paras.append(cur)
            cur = []
        else:
            cur.append(s)
    return paras + ([cur] if cur else [])


@pytest.mark.parametrize("command", ["h2", "gwas", "pcs", "clump", "simulate", "prep-mri"])
def test_help_is_not_hard_wrapped_mid_sentence(command):
    import os
    import subprocess
    import sys

    env = {**os.environ, "COLUMNS": "80"}
    text = subprocess.run([sys.executable, "-m", "gimtool", command, "--help"], capture_output=True, text=True,
                          env=env).stdout
    paras = _prose_lines(text)
    assert paras
    for para in paras:
        for a, b in zip(para, para[1:]):
            # a line broken early would have had room for the next word
            assert len(a) + 1 + len(b.split()[0]) > 78, f"{a!r} / {b!r}"


OPTION_ERRORS = {  # a bad option value, found before any input is read: one Error line, exit 2
    "simulate --h2": ["simulate", "--preset", "tiny", "--h2", "1.5", "--out", "{t}/s"],
    "simulate --split": ["simulate", "--preset", "tiny", "--split", "0.5,0.5,0", "--out", "{t}/s"],
    "prep-mri --dtype": ["prep-mri", "--dir", "{t}", "--dtype", "int4", "--out", "{t}/m"],
    "prep-mri --clip": ["prep-mri", "--dir", "{t}", "--clip", "90,10", "--out", "{t}/m"],
    "pcs --prune": ["pcs", "--bfile", "{t}/none", "--prune", "ld", "--out", "{t}/p"],
    "h2 --method": ["h2", "--method", "hsq", "--out", "{t}/h"],
    "h2 --intercept": ["h2", "--intercept", "fixed", "--out", "{t}/h"],
    "gwas --chunk": ["gwas", "--bfile", "{t}/none", "--pheno", "{t}/p.tsv", "--chunk", "5/3", "--out", "{t}/g"],
    "gwas --precision": ["gwas", "--bfile", "{t}/none", "--pheno", "{t}/p.tsv", "--precision", "half", "--out", "{t}/g"],
    "gwas --device": ["gwas", "--bfile", "{t}/none", "--pheno", "{t}/p.tsv", "--device", "tpu", "--out", "{t}/g"],
}


@pytest.mark.parametrize("case", list(OPTION_ERRORS))
def test_bad_option_values_exit_2_with_one_line(tmp_path, case):
    p = gimtool(*[str(a).format(t=tmp_path) for a in OPTION_ERRORS[case]], check=False)
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("Error:")]
    assert p.returncode == 2 and len(errors) == 1 and "Traceback" not in p.stderr, p.stderr
    assert case.split()[1] in errors[0]
