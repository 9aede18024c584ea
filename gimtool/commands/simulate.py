"""Simulate a cohort with known genetic truth: genotypes with real LD, and brain MRIs on the MNI152 template.

With no option but --out, makes the small built-in example of the README quick start (800 people,
3 chromosomes, 15,000 SNPs, 4 mm volumes, 4 factors). Writes DIR/geno.{bed,bim,fam} (cM in the
bim), DIR/genetic_map.txt, DIR/images/<IID>.nii.gz and DIR/images.tsv, DIR/covariates.tsv,
DIR/{train,val,test}.ids and DIR/truth/ (causal SNPs, loci, true factor values, region masks,
params.json), and DIR/simulate.log. Into a folder that holds an earlier simulation, those
outputs are replaced (no stale image stays behind); a folder with other files is refused.

Demography: --growth recent (default; the sample is a small share of a grown population, as in
biobanks: little cryptic relatedness, LD-score regression behaves) or --growth none (constant
Ne 10,000: strong cryptic relatedness and long-range LD).

Example: gimtool simulate --out cohort --n 2000 --demes 2 --voxel 2 --threads 2
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from gimtool.commands import _options as options

Preset = Annotated[str, typer.Option("--preset", help="Starting configuration: default (README example), tiny (tests, seconds), gwas (2,000 people, no images), brainlike (3,000 people; 2 large heritable volume effects and 4 subtle regional ones).")]


def command(
    out: Annotated[str, typer.Option("--out", help="Output folder (created).")],
    preset: Preset = "default",
    n: Annotated[Optional[int], typer.Option("--n", min=10, help="Number of people.")] = None,
    chromosomes: Annotated[Optional[int], typer.Option("--chromosomes", min=1, help="Number of chromosomes.")] = None,
    chrom_length_mb: Annotated[Optional[float], typer.Option("--chrom-length-mb", min=0.1, help="Length of each chromosome (Mb).")] = None,
    snps: Annotated[Optional[int], typer.Option("--snps", min=0, help="Thin to this many SNPs (MAF >= 1%); 0 keeps all.")] = None,
    demes: Annotated[Optional[int], typer.Option("--demes", min=1, help="Number of demes (ancestry groups); > 1 gives a mixed-ancestry train set and a one-group test set.")] = None,
    growth: Annotated[Optional[str], typer.Option("--growth", help="Demography: recent (growth to --current-ne over the last 200 generations) or none (constant Ne 10,000).")] = None,
    current_ne: Annotated[Optional[float], typer.Option("--current-ne", min=10_000, help="Present population size with --growth recent.")] = None,
    migration: Annotated[Optional[float], typer.Option("--migration", min=0.0, help="Migration rate between demes per generation.")] = None,
    split_generations: Annotated[Optional[float], typer.Option("--split-generations", min=1.0, help="Generations since the demes split.")] = None,
    factors: Annotated[Optional[int], typer.Option("--factors", min=0, help="Number of latent genetic factors (image effects).")] = None,
    h2: Annotated[Optional[str], typer.Option("--h2", help="Heritability of the factors: one value or comma-separated, one per factor.")] = None,
    causal: Annotated[Optional[int], typer.Option("--causal", min=0, help="Strong causal loci per factor.")] = None,
    strong_share: Annotated[Optional[float], typer.Option("--strong-share", min=0.0, max=1.0, help="Share of h2 carried by the strong loci (the rest is polygenic).")] = None,
    polygenic: Annotated[Optional[int], typer.Option("--polygenic", min=0, help="Polygenic background causal SNPs per factor.")] = None,
    effect_scale: Annotated[Optional[float], typer.Option("--effect-scale", min=0.0, help="Multiply the image effect of every factor.")] = None,
    voxel: Annotated[Optional[float], typer.Option("--voxel", min=0.5, help="Voxel size (mm) of the MNI grid: 1 (182x218x182), 2 (91x109x91), 4, ...")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="Train,val,test shares, e.g. 0.5,0.1,0.4.")] = None,
    no_images: Annotated[bool, typer.Option("--no-images", help="Genotypes, factors and tables only.")] = False,
    layout: Annotated[str, typer.Option("--layout", help="Images as flat (DIR/images/<IID>.nii.gz and DIR/images.tsv) or bids (a BIDS dataset DIR/bids/ with participants.tsv: prep-mri --bids DIR/bids --bids-ids DIR/bids/participants.tsv).")] = "flat",
    bfile: Annotated[Optional[str], typer.Option("--bfile", help="Use these real genotypes (PLINK prefix) instead of simulating them.")] = None,
    seed: options.Seed = 0,
    threads: options.Threads = 1,
) -> None:
    from gimtool.pipelines import simulate

    cfg = simulate.make_config(preset, seed, snps, growth, h2, split, no_images, n=n, chromosomes=chromosomes,
                               chrom_length_mb=chrom_length_mb, demes=demes, current_ne=current_ne, migration=migration,
                               split_generations=split_generations, factors=factors, causal=causal,
                               strong_share=strong_share, polygenic=polygenic, effect_scale=effect_scale, voxel=voxel,
                               bfile=bfile, layout=layout)
    simulate.run(out, cfg, threads)
