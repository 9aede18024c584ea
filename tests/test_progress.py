"""Progress in batch logs: without a terminal, plain progress lines on stderr (never a carriage
return), every $GIMTOOL_PROGRESS_SECONDS and 10 %; --no-progress, after any subcommand, turns
them off."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from gimtool import progress
from tests.conftest import gimtool

LINE = re.compile(r"^gwas: ([\d,]+)/54,051 SNP \((\d+)%\), \d+ s")


def _gimtool_env(*args, **env):
    return subprocess.run([sys.executable, "-m", "gimtool", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **env})


def test_gwas_progress_lines_in_a_batch_log(eur_bfile, tmp_path):
    p = _gimtool_env("gwas", "--bfile", eur_bfile, "--pheno", f"{eur_bfile}.pheno.covars", "--pheno-name", "PHENO",
                     "--no-plots", "--chunk-snps", "5000", "--out", tmp_path / "g", GIMTOOL_PROGRESS_SECONDS="0")
    assert p.returncode == 0, p.stderr
    assert "\r" not in p.stderr
    lines = [m for m in map(LINE.match, p.stderr.splitlines()) if m]
    done = [int(m.group(1).replace(",", "")) for m in lines]
    pct = [int(m.group(2)) for m in lines]
    assert len(lines) >= 5 and done == sorted(done) and done[-1] == 54_051, p.stderr
    # a line per further 10 % (steps of 5,000 SNPs, 9.25 %), and the last one at the end
    assert all(b - a >= 9 for a, b in zip(pct[:-1], pct[1:-1])) and pct[-1] == 100, pct
    assert p.stderr.strip().splitlines()[-1].startswith("gwas: wrote 1 sumstats file (PHENO)")


def test_no_progress_after_the_subcommand(eur_bfile, tmp_path):
    p = _gimtool_env("gwas", "--bfile", eur_bfile, "--pheno", f"{eur_bfile}.pheno.covars", "--pheno-name", "PHENO",
                     "--no-plots", "--chunk-snps", "5000", "--out", tmp_path / "g", "--no-progress",
                     GIMTOOL_PROGRESS_SECONDS="0")
    assert p.returncode == 0, p.stderr
    assert not any(LINE.match(ln) for ln in p.stderr.splitlines()), p.stderr
    assert p.stderr.strip().splitlines() == [p.stderr.strip().splitlines()[-1]]  # the summary line only


def test_default_interval_keeps_a_short_run_quiet(eur_bfile, tmp_path):
    p = _gimtool_env("gwas", "--bfile", eur_bfile, "--pheno", f"{eur_bfile}.pheno.covars", "--pheno-name", "PHENO",
                     "--no-plots", "--chunk-snps", "5000", "--out", tmp_path / "g", GIMTOOL_PROGRESS_SECONDS="3600")
    assert not any(LINE.match(ln) for ln in p.stderr.splitlines()), p.stderr


def test_prep_geno_writes_no_carriage_returns(eur_bfile, tmp_path):
    p = _gimtool_env("prep-geno", "--bfile", eur_bfile, "--out", tmp_path / "q", GIMTOOL_PROGRESS_SECONDS="0")
    assert p.returncode == 0, p.stderr
    assert "\r" not in p.stderr and "\x1b[" not in p.stderr
    assert re.search(r"^prep-geno writing: 1/1 chunk \(100%\)", p.stderr, re.M), p.stderr


@pytest.mark.parametrize("command", ["simulate", "prep-geno", "prep-mri", "train", "embed", "pcs", "gwas", "clump",
                                     "h2", "mi"])
def test_every_command_takes_no_progress(command):
    p = gimtool(command, "--no-progress", "--help")
    assert "--no-progress" in p.stdout  # the help says it applies after the subcommand too


def test_lines_every_interval_and_ten_percent(monkeypatch, capsys):
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: False, raising=False)
    monkeypatch.setenv(progress.INTERVAL_ENV, "30")
    bar = progress.bar(total=1000, desc="job", unit="item")
    assert isinstance(bar, progress.Lines)
    for _ in range(100):  # 100 s, 10 items a second
        clock[0] += 1.0
        bar.update(10)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    # a line at 30 s (300 items: 30 %), 60 s and 90 s, and the last at the end
    assert [ln.split(", ")[0] for ln in lines] == ["job: 300/1,000 item (30%)", "job: 600/1,000 item (60%)",
                                                  "job: 900/1,000 item (90%)", "job: 1,000/1,000 item (100%)"]
    assert lines[0].endswith("~70 s left")


def test_lines_wait_for_ten_percent_in_a_slow_job(monkeypatch, capsys):
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    bar = progress.Lines(total=1000, desc="slow", unit="item", every=30.0)
    for _ in range(40):  # one item every 30 s: lines only at each further 10 %
        clock[0] += 30.0
        bar.update(1)
    assert capsys.readouterr().err == ""
    for _ in range(100):
        clock[0] += 30.0
        bar.update(1)
    assert capsys.readouterr().err.startswith("slow: 100/1,000 item (10%)")


def test_no_progress_silences_everything(monkeypatch, capsys):
    monkeypatch.setattr(progress, "_state", {"enabled": False})
    bar = progress.bar(total=10, desc="x")
    assert isinstance(bar, progress.Silent)
    assert list(progress.track(range(3), total=3, desc="x")) == [0, 1, 2]
    assert capsys.readouterr().err == ""
