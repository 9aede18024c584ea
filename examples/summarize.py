"""Print the quick start's summary: loci found (and how many are true), h2, MI."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

from gimtool.evaluation import score_loci


def main(d: Path) -> None:
    truth = pl.read_csv(d / "cohort" / "truth" / "loci.tsv", separator="\t")
    print(f"\ngimtool quick start: results in {d}/")
    for name, label in (("gim", "GIM, top 10 PCs"), ("guided", "GIM, guided 10 dimensions"),
                        ("truth", "true factors (ceiling)")):
        s = score_loci(pl.read_csv(d / "clump" / f"{name}.loci.tsv", separator="\t"), truth)
        print(f"  {label:30s} loci {s['loci']:3d}  true {s['true']:3d}  not true {s['false']:3d}  "
              f"true loci recovered {s['recovered']}/{s['truth']}")
    h2 = pl.read_csv(d / "h2" / "gim.h2.tsv", separator="\t")
    print(f"  GREML h2 of the 10 PCs: mean {h2['H2'].mean():.3f} (sd {h2['H2'].std():.3f})")
    mi = pl.read_csv(d / "mi" / "gim.mi.tsv", separator="\t")
    for row in mi.iter_rows(named=True):
        print(f"  held-out MI, {row['NAME']}: {row['MI_VAL']:.3f} (training pairs {row['MI_TRAIN']:.3f})")
    print("  (3 epochs of a small model on 400 people: it shows the pipeline; "
          "benchmarks/results/table1_brainlike-10.md compares the methods)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "quickstart"))
