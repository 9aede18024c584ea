"""Join the parts that the tasks of a cluster job array wrote into what one run writes.

Image stores: prep-mri --shard K/N --out STORE writes STORE.shardKofN; merge --out STORE joins
the N parts into STORE (volumes and per-scan QC in list order, then the cohort QC over
everyone): byte for byte the store of one run with the same options.

Embeddings: embed --shard K/N --out EMB writes EMB.shardKofN.tsv; merge --out EMB writes EMB.tsv,
byte for byte the table of one run with the same --batch-size, --threads and --device.

GWAS: merge --out ALL --gwas C1,C2,... joins the outputs of gwas --chunk 1/N ... N/N (their --out
prefixes, in chunk order) into ALL.<PHENO>.sumstats.gz (byte for byte one run's), the plots and
ALL.summary.tsv (its LAMBDA_GC recomputed from the printed 7-digit P values).

Parts are found by name; a missing part is an error that names it. Writes OUT.log.

Example: gimtool merge --out cohort.img
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gimtool.commands import _options as options


def command(
    out: options.Out,
    gwas: Annotated[Optional[list[str]], typer.Option("--gwas", help="gwas --chunk output prefixes in chunk order (repeat or comma-separate).")] = None,
    qc_threshold: Annotated[float, typer.Option("--qc-threshold", help="Image stores: the prep-mri --qc-threshold of the parts.")] = 0.8,
    mask: Annotated[Optional[Path], typer.Option("--mask", help="Image stores: the parts' --mask, when it is no longer at the path they recorded.")] = None,
    no_plots: Annotated[bool, typer.Option("--no-plots", help="gwas: do not draw Manhattan and QQ plots.")] = False,
) -> None:
    from gimtool.pipelines import merge

    merge.run(out, options.split_list(gwas), qc_threshold, mask, plots=not no_plots)
