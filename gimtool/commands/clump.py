"""LD clumping (PLINK 1.9 --clump semantics) and the paper's locus count.

Clumps the SNPs of one or more sumstats files (gimtool, BOLT-LMM --statsFile or PLINK 2
.glm.linear, recognized by their header) with LD from a reference fileset, exactly as
`plink --clump` does: index SNPs in order of P (P <= --p1) absorb the SNPs not yet clumped that
lie within --kb and have r² > --r2; members with P < --p2 are listed. r² is PLINK 1.9's two-locus
haplotype (EM) r² by default, or the squared genotype correlation with --r2-method corr.

Writes <out>.clumped (tab-separated: CHR F SNP BP P TOTAL NSIG S05 S01 S001 S0001 SP2; F is the
1-based position of the sumstats file in --sumstats), <out>.clumped.members.tsv (each listed
member with its r², like --clump-verbose) and <out>.log. With --loci also <out>.loci.tsv:
SNPs with P < --loci-p and MAF >= --maf merged into loci within --loci-kb, pooled over all files;
--compare OTHER.loci.tsv ... adds a UNIQUE column marking the loci that none of the other sets
has within --loci-kb.

Sumstats files may be given as `--sumstats A --sumstats B`, `--sumstats A,B` or as trailing
arguments (so a shell glob works): gimtool clump --bfile REF --out X gwas.*.sumstats.gz
"""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from gimtool.commands import _options as options


def command(
    out: options.Out,
    bfile: options.Bfile = None,
    pfile: options.Pfile = None,
    sumstats: Annotated[Optional[List[str]], typer.Option("--sumstats", help="Sumstats file(s): repeat the option, separate with commas, or list them as trailing arguments.")] = None,
    files: Annotated[Optional[List[str]], typer.Argument(help="More sumstats files (e.g. a shell glob).", show_default=False)] = None,
    p1: Annotated[float, typer.Option("--p1", click_type=options.P_RANGE, help="Index SNPs: P <= p1.")] = 5e-8,
    p2: Annotated[float, typer.Option("--p2", click_type=options.P_RANGE, help="Members listed in SP2: P < p2 (p2 >= p1).")] = 1e-2,
    r2: Annotated[float, typer.Option("--r2", click_type=options.R2_RANGE, help="Members: r² with the index SNP > r2.")] = 0.1,
    kb: Annotated[float, typer.Option("--kb", min=0.001, help="Members: within kb of the index SNP.")] = 250.0,
    r2_method: Annotated[str, typer.Option("--r2-method", help="em: PLINK 1.9's haplotype (EM) r²; corr: squared genotype correlation.")] = "em",
    loci: Annotated[bool, typer.Option("--loci", help="Also count loci (the paper's definition) into <out>.loci.tsv.")] = False,
    loci_p: Annotated[float, typer.Option("--loci-p", click_type=options.P_RANGE, help="Loci: significance threshold (P < loci-p).")] = 5e-9,
    loci_kb: Annotated[float, typer.Option("--loci-kb", min=0.0, help="Loci: SNPs closer than this (kb) share a locus.")] = 250.0,
    maf: Annotated[float, typer.Option("--maf", min=0.0, max=0.5, help="Loci: minimum minor allele frequency.")] = 0.01,
    compare: Annotated[Optional[List[str]], typer.Option("--compare", help="Loci tables of other methods; marks this set's unique loci (implies --loci).")] = None,
    threads: Annotated[int, typer.Option("--threads", min=1, help="Accepted for PLINK-style scripts; clumping runs on one thread.")] = 1,
) -> None:
    # clumping is single-threaded numpy (bit operations, no BLAS): --threads is accepted and unused
    from gimtool.conventions import LOCI_UNIQUE_COL
    from gimtool.pipelines import clump as pipeline

    others = options.split_list(compare)
    paths = options.split_list(sumstats) + options.split_list(files)
    _, table = pipeline.run(bfile, out, paths, p1, p2, r2, kb, r2_method, loci, loci_p, loci_kb, maf, others, pfile)
    if table is not None:
        print(f"{table.height} loci" + (f", {int(table[LOCI_UNIQUE_COL].sum())} unique" if others else ""))
