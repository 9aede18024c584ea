"""Shared helpers for the benchmarks: run a command and measure wall time and peak memory."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
RESULTS = HERE / "results"


def measure(cmd: list[str], env: dict | None = None, cwd: str | None = None) -> tuple[float, float]:
    """Run `cmd`; return (wall seconds, peak resident memory in MB of the command itself).

    Peak memory comes from GNU time (`/usr/bin/time -f %M`): the ru_maxrss that wait4 reports for a
    child forked from this Python process starts from this process's own peak, which would inflate
    small tools such as plink2.
    """
    import shutil
    import tempfile

    gnu_time = shutil.which("time", path="/usr/bin")
    if gnu_time is None:
        raise SystemExit("benchmarks need GNU time (/usr/bin/time; Debian package 'time')")
    with tempfile.NamedTemporaryFile(suffix=".rss") as rss:
        t0 = time.perf_counter()
        p = subprocess.run([gnu_time, "-f", "%M", "-o", rss.name, *map(str, cmd)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            sys.stderr.write(p.stdout.decode(errors="replace")[-3000:])
            raise SystemExit(f"benchmark command failed: {' '.join(map(str, cmd))}")
        peak_kb = int(Path(rss.name).read_text().split()[-1])
    return wall, peak_kb / 1024.0


def gimtool_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "gimtool", *map(str, args)]


def random_cohort(prefix: Path, n: int, m: int, missing: float = 0.002, seed: int = 0) -> str:
    """A fileset of independent SNPs with varied allele frequencies (for speed only: no LD)."""
    import numpy as np
    import polars as pl

    from gimtool.io.plink import MISSING_INT8, BedWriter, write_bim, write_fam

    prefix = Path(prefix)
    if Path(str(prefix) + ".bed").exists():
        return str(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.005, 0.5, size=m)
    with BedWriter(str(prefix) + ".bed", n) as w:
        for a in range(0, m, 5000):
            f = freq[a : a + 5000]
            G = rng.binomial(2, f, size=(n, len(f))).astype(np.int8)
            G[rng.random(G.shape) < missing] = MISSING_INT8
            w.write(G)
    per = m // 2
    write_bim(pl.DataFrame({
        "CHR": ["1"] * per + ["2"] * (m - per),
        "SNP": [f"rs{j}" for j in range(m)],
        "CM": np.r_[np.arange(per), np.arange(m - per)] * 0.001,
        "BP": np.r_[np.arange(per), np.arange(m - per)] * 1000 + 1000,
        "A1": ["A"] * m, "A2": ["G"] * m,
    }), str(prefix) + ".bim")
    write_fam(pl.DataFrame({"FID": [f"F{i}" for i in range(n)], "IID": [f"I{i}" for i in range(n)]}), str(prefix) + ".fam")
    return str(prefix)
