"""<out>.log grows as the command runs and says when it started; -v works after the subcommand."""

from __future__ import annotations

import datetime as dt
import time

from gimtool.runlog import RunLog
from tests.conftest import gimtool


def test_log_is_written_as_it_goes_with_the_real_start_time(tmp_path):
    before = dt.datetime.now().astimezone().replace(microsecond=0)
    with RunLog(tmp_path / "x", "test") as log:
        head = (tmp_path / "x.log").read_text()
        assert head.startswith("gimtool v") and "started:" in head  # there from the start
        log.info("step one")
        assert (tmp_path / "x.log").read_text().endswith("step one\n")
        time.sleep(1.2)
        log.warn("careful")
    text = (tmp_path / "x.log").read_text()
    started = dt.datetime.fromisoformat(text.split("started: ")[1].split()[0])
    assert before <= started <= before + dt.timedelta(seconds=1)
    assert text.index("step one") < text.index("Warning: careful") < text.index("total time:")
    assert text.endswith("warnings: 1\nstatus: ok\n")


def test_verbose_after_the_subcommand(tmp_path):
    p = gimtool("gwas", "--bfile", tmp_path / "none", "--pheno", tmp_path / "p.tsv", "--out", tmp_path / "g", "-v",
                check=False)
    assert p.returncode == 1 and "No such option" not in p.stderr
    assert "Traceback" in p.stderr and p.stderr.strip().splitlines()[-1].startswith("Error: ")  # -v: the traceback too
