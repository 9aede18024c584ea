"""Shared helpers for the benchmarks: run a command and measure wall time and peak memory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
RESULTS = HERE / "results"


def measure(cmd: list[str], env: dict | None = None, cwd: str | None = None) -> tuple[float, float]:
    """Run `cmd`; return (wall seconds, peak resident memory in MB) of that process tree's largest
    process (ru_maxrss of the child, from wait4)."""
    t0 = time.perf_counter()
    p = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.stderr.write(out.decode(errors="replace")[-3000:])
        raise SystemExit(f"benchmark command failed: {' '.join(map(str, cmd))}")
    return wall, ru.ru_maxrss / 1024.0


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
