"""The paper's evaluation (Table 1 and the Table 2 ablation) on a simulated cohort with known truth.

    python benchmarks/evaluate.py --config cpu  [--out benchmarks/out/eval] [--methods gim,autoencoder]
    python benchmarks/evaluate.py --config gpu  --device cuda

Every method is trained on the training people (mixed ancestry), its embeddings are reduced to
10 PCs fit on the training people and applied to the test people (one ancestry group), and
the PCs go through the standard evaluation on the test people only: GWAS with age, sex and 10
ancestry PCs as covariates, loci at P < 5e-9 merged within 250 kb (union over the 10 PCs),
GREML heritability and the held-out JSE mutual information. Because the truth is known, each
method is also scored on how many true causal loci it recovers and how many loci it reports
that are not true. Two reference rows frame the table: the true factors themselves (the
ceiling) and a PCA of the voxels fit on the training people (variance without genetics).

Writes benchmarks/results/table1.md (with the configuration and date) and, under --out, every
intermediate file, so each figure can be traced to the command that made it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from gimtool.evaluation import overlaps, score_loci  # noqa: E402
from gimtool.io.tables import read_ids, read_table, write_table  # noqa: E402

GROUPS = {
    "random-init": "random",
    "autoencoder": "predictive",
    "autoencoder-attention": "predictive",
    "gen-prediction": "predictive",
    "barlow-twins": "contrastive",
    "simclr": "contrastive",
    "simclr-jse": "contrastive",
    "infonce": "trans-modal",
    "decorrelated-infonce": "trans-modal",
    "gim": "trans-modal",
}

# Cohort and training settings. The cohort is chosen so that the true factors (the ceiling)
# find most true loci while a PCA of the voxels finds few: strong non-heritable individual
# deformations dominate the image variance, and the heritable effects are regional.
CONFIGS = {
    "cpu": {
        "simulate": ["--n", "1100", "--demes", "2", "--split", "0.42,0.1,0.48", "--chromosomes", "3",
                     "--chrom-length-mb", "6", "--snps", "8000", "--factors", "6", "--causal", "3",
                     "--voxel", "6", "--seed", "11"],
        "voxel": 6,
        "train": ["--epochs", "6", "--batch-size", "12"],
        "gim_epochs": "6",  # gimtool's default schedule: every module trains from the first epoch
        "paper_epochs": "3,2,1",  # the paper's three stages (ablation rows)
        # set these to train every method on the same random subset of the training people
        "train_subset": None,
        "val_subset": None,
        "model_toml": "[model]\nconv_channels = [8, 16, 32]\ngenetic_dims = [8, 16, 32]\n",
        # the critic sees the 16 SNPs most associated with each table, chosen on the estimator-train
        # people (as the training critic): over all SNPs it memorizes and every learned row read ~0
        # (mi_estimator_selection.md); 5 repeats for the SE of the comparison with random-init
        "mi": ["--epochs", "40", "--patience", "6", "--repeats", "5", "--genetic-encoder", "mlp", "--weight-decay", "0.01",
               "--select-snps", "16"],
    },
    "gpu": {
        "simulate": ["--n", "12000", "--demes", "2", "--split", "0.3,0.1,0.6", "--chromosomes", "22",
                     "--chrom-length-mb", "20", "--factors", "10", "--causal", "6", "--voxel", "2", "--seed", "11"],
        "voxel": 2,
        "train": ["--epochs", "100", "--batch-size", "12"],
        "gim_epochs": "100",
        "paper_epochs": "60,25,15",
        "model_toml": "",
        "mi": ["--epochs", "200", "--patience", "15", "--repeats", "5", "--select-snps", "16"],
        "train_subset": None,
        "val_subset": None,
    },
}

# More people and fewer SNPs than "cpu": at 462 training people even the true factors give a
# held-out JSE MI of 0.002 (0.05 at 990 people), so no critic can learn there; 8 mm images
# keep the CPU time near an hour. Everything else as "cpu".
CONFIGS["cpu-large"] = {
    **CONFIGS["cpu"],
    "simulate": ["--n", "3000", "--demes", "2", "--split", "0.6,0.05,0.35", "--chromosomes", "3",
                 "--chrom-length-mb", "6", "--snps", "1500", "--factors", "6", "--causal", "3",
                 "--voxel", "8", "--seed", "11"],
    "voxel": 8,
    # 4 epochs (not 6) for CPU time: with 2 cores shared, an epoch of 1,800 people took 2-10 min
    "train": ["--epochs", "4", "--batch-size", "12"],
    "gim_epochs": "4",
    "paper_epochs": "2,1,1",
}

# Two kinds of heritable factor, as in real brains (simulate --preset brainlike): large volume
# effects among the largest sources of image variance, and subtle regional ones. Same cohort
# size, SNPs and training as cpu-large.
CONFIGS["brainlike"] = {
    **CONFIGS["cpu-large"],
    "simulate": ["--preset", "brainlike"],
}

# brainlike with 10 epochs: gim's critic needs 3-4 epochs before its MI term shapes z
# (gim_training_brainlike.md); gim against gim's own architecture without the MI term.
CONFIGS["brainlike-10"] = {
    **CONFIGS["brainlike"],
    "train": ["--epochs", "10", "--batch-size", "12"],
    "gim_epochs": "10",
    # the methods of a run without --methods: gim, the autoencoder it has to beat (gim's own image
    # model without the MI term) and the untrained encoder; with the ablation this keeps a run
    # under 1.5 h on 2 cores (each further method adds about 10-20 min of training)
    "methods": "gim,autoencoder,random-init",
}
CONFIGS["cpu-large-10"] = {**CONFIGS["cpu-large"], "train": CONFIGS["brainlike-10"]["train"], "gim_epochs": "10",
                           "methods": CONFIGS["brainlike-10"]["methods"]}
# cpu-large-10's cohort at twice the people (3,600 training, 300 validation, 2,100 test), the largest
# whose gim and autoencoder runs fit side by side in under an hour here: does what gim gains over
# the autoencoder at 3,000 people hold at 6,000 (issue 14, "not tuned to small cohorts only")?
CONFIGS["cpu-xl-10"] = {**CONFIGS["cpu-large-10"], "simulate": ["--n", "6000", *CONFIGS["cpu-large"]["simulate"][2:]],
                        "methods": "gim,autoencoder"}
# the same for the brainlike preset (table1_brainlike-xl-10.md was run with --methods random-init,gim)
CONFIGS["brainlike-xl-10"] = {**CONFIGS["brainlike-10"], "simulate": ["--preset", "brainlike", "--n", "6000"],
                              "methods": "gim,autoencoder"}

# Table 2 of the paper: each row adds one component to the one above, on the paper's three-stage
# schedule (paper_epochs) with gimtool's critic, genetic input, reconstruction weight (lambda_recon)
# and learning-rate schedule.
PAPER_SCHEDULE = {"schedule": "paper"}
# Rows 0-4 are the paper's components only: no voxel teacher (gimtool's default since 2026-12-03,
# which the transformer rows cannot use, model.config teacher_weight). Row 5 adds the teacher to row 1
# ('+ reconstruction', the MLP genetic encoder), not to the row above it: gimtool's default on the
# paper's schedule.
ABLATION = [
    ("contrastive base (JSE, MLP genetic encoder)", {"genetic_encoder": "mlp", "lambda_recon": 0.0, "teacher_weight": 0.0}, "1,0,0"),
    ("+ reconstruction", {"genetic_encoder": "mlp", "teacher_weight": 0.0}, "1,0,0"),
    ("+ genetic transformer", {"genetic_encoder": "transformer"}, "1,0,0"),
    ("+ random cropping (genetic augmentation)", {"genetic_encoder": "transformer"}, "1,1,0"),
    ("+ co-training", {"genetic_encoder": "transformer"}, "1,1,1"),
    ("'+ reconstruction' + voxel teacher (gimtool's default)", {"genetic_encoder": "mlp", "teacher_weight": 1.0}, "1,0,0"),
]


# Other rows (--variants): name: (method, train settings, model settings, epochs; None = the method's default)
_GUIDED = {"critic_guided_dims": 10, "critic_snps": 32}
_WIDE = {"conv_channels": [32, 64, 128], "genetic_dims": [32, 64, 128]}  # the model's full width (ModelConfig)
_NOPOOL = {"flatten_grid": [6, 7, 6]}  # the last maps of the 8 mm grid as they are (no pooling before the dense layer)
_POOL4 = {"flatten_mm": 0.0, "flatten_grid": [4, 4, 4]}  # the last maps averaged to 4 x 4 x 4 (the default before 2026-12-03)
_NOTEACHER = {"teacher_weight": 0.0}  # gim without the voxel teacher (model.teacher): the default before 2026-12-03
VARIANTS = {
    "gim-paper": ("gim", {"paper": True}, {}, "paper"),  # every setting as in the paper (train --paper)
    # gim without the voxel teacher, every other default as now (the rows named `gim`, `gim-seed2` and
    # `gim-seed3` before 2026-12-03)
    "gim-noteacher": ("gim", {}, _NOTEACHER, None),
    "gim-noteacher-seed2": ("gim", {"seed": 2}, _NOTEACHER, None),
    "gim-noteacher-seed3": ("gim", {"seed": 3}, _NOTEACHER, None),
    # the teacher's term at 10 x its MSE (default 1)
    "gim-teacher10": ("gim", {}, {"teacher_weight": 10.0}, None),
    "gim-teacher10-seed2": ("gim", {"seed": 2}, {"teacher_weight": 10.0}, None),
    "gim-transformer": ("gim", {}, {"genetic_encoder": "transformer"}, None),
    # the critic sees 16 SNPs (the default before 2026-12-02) instead of 64: on brainlike 11 of the
    # 18 true loci's lead SNPs rank in the top 16 by multiple R2 on z, 17 in the top 64
    # (diag_gim_training.py LEADS_IN_TOP*)
    "gim-critic16": ("gim", {}, {"critic_snps": 16}, None),
    # the critic's image head on the 10 directions of z most associated with its 32 SNPs
    # (gim_critic_guided.md: it learns on a fixed z, not end to end)
    "gim-guided": ("gim", {}, _GUIDED, None),
    # the same, with the JSE kept out of the image encoder for the critic's first 750 steps (5 epochs here)
    "gim-guided-warmup": ("gim", {}, {**_GUIDED, "critic_warmup_steps": 750}, None),
    "gim-guided-warmup-seed2": ("gim", {"seed": 2}, {**_GUIDED, "critic_warmup_steps": 750}, None),
    # gim-guided-warmup at the model's full width (ModelConfig's default, 4x the channels of the CPU
    # configurations' model_toml)
    "gim-guided-warmup-wide": ("gim", {}, {**_WIDE, **_GUIDED, "critic_warmup_steps": 750}, None),
    "gim-guided-warmup-wide-seed2": ("gim", {"seed": 2}, {**_WIDE, **_GUIDED, "critic_warmup_steps": 750}, None),
    # whole volumes (crop_mm at least the 8 mm grid's 184-224 mm) instead of random 160 mm crops: the
    # training critic on random crops of a fixed encoder does not learn where it does on a fixed crop
    # (gim_critic_guided.md, "random crops")
    "gim-guided-warmup-whole": ("gim", {"crop_mm": 240.0}, {**_GUIDED, "critic_warmup_steps": 750}, None),
    "autoencoder-whole": ("autoencoder", {"crop_mm": 240.0}, {}, None),
    # the JSE's gradient into the encoder ramped up over 450 steps (3 epochs) after the warm-up,
    # instead of switched on at once (model.config critic_ramp_steps)
    "gim-guided-ramp": ("gim", {}, {**_GUIDED, "critic_warmup_steps": 750, "critic_ramp_steps": 450}, None),
    "gim-guided-ramp-whole": ("gim", {"crop_mm": 240.0}, {**_GUIDED, "critic_warmup_steps": 750, "critic_ramp_steps": 450}, None),
    # the same with the JSE's gradient into the encoder at a tenth of the critic's
    "gim-guided-ramp-whole-s0.1": ("gim", {"crop_mm": 240.0}, {**_GUIDED, "critic_warmup_steps": 750, "critic_ramp_steps": 450,
                                                             "jse_encoder_scale": 0.1}, None),
    # the final epoch's encoder of gim-guided-ramp-whole-s0.1 instead of its best.pt (the end of the
    # warm-up): a diagnostic, made by copying that run's model.pt, history.tsv and configs into
    # runs/gim-guided-ramp-whole-s0.1-last before evaluating (trained from scratch it would pick best.pt)
    "gim-guided-ramp-whole-s0.1-last": ("gim", {"crop_mm": 240.0}, {**_GUIDED, "critic_warmup_steps": 750, "critic_ramp_steps": 450,
                                                                  "jse_encoder_scale": 0.1}, None),
    # gim with every default on whole volumes (crop_mm = 240, at least the grid): the same runs as
    # `gim` and `gim-seed2` since crop_mm = 0 became the default on 2026-12-02 (identical validation
    # MI); kept for the rows of table1_*-10_variants.md, made while the default was 160 mm crops
    "gim-whole": ("gim", {"crop_mm": 240.0}, {}, None),
    "gim-whole-seed2": ("gim", {"crop_mm": 240.0, "seed": 2}, {}, None),
    "gim-crop160": ("gim", {"crop_mm": 160.0}, {}, None),  # the earlier default, for runs made from now on
    "gim-seed2": ("gim", {"seed": 2}, {}, None),  # gim again with another seed (default 1): how much of a row is the draw
    "gim-seed3": ("gim", {"seed": 3}, {}, None),
    "autoencoder-seed2": ("autoencoder", {"seed": 2}, {}, None),
    # cpu-large's seed 3, whose critic did not start in 10 epochs (validation MI <= 0.012; seeds 1-2
    # start at epochs 4-5): with twice the epochs, and with the learning rate held at 1e-3 instead of
    # the cosine decay (min_lr = lr): are the steps missing, or the learning rate once it starts?
    "gim-seed3-e20": ("gim", {"seed": 3}, {}, "20"),
    # (min_lr = lr: the same rates as lr_schedule = "constant", which came after these runs)
    "gim-seed3-constlr": ("gim", {"seed": 3, "min_lr": 0.001}, {}, None),
    "gim-constlr": ("gim", {"min_lr": 0.001}, {}, None),
    "gim-seed2-constlr": ("gim", {"seed": 2, "min_lr": 0.001}, {}, None),
    "autoencoder-constlr": ("autoencoder", {"lr_schedule": "constant"}, {}, None),
    "autoencoder-seed2-constlr": ("autoencoder", {"seed": 2, "lr_schedule": "constant"}, {}, None),
    # eq. 5's lambda at a tenth (lambda_recon = 0.1; the paper and the default: 1): the MI term's share of
    # the image encoder's gradient ten times larger
    "gim-recon0.1": ("gim", {}, {"lambda_recon": 0.1}, None),
    "gim-recon0.1-seed2": ("gim", {"seed": 2}, {"lambda_recon": 0.1}, None),
    "gim-recon0.1-seed3": ("gim", {"seed": 3}, {"lambda_recon": 0.1}, None),
    # and above 1: at lambda 1 gim's validation reconstruction error is twice the autoencoder's
    # (cpu-large 0.076 vs 0.035, brainlike 0.065 vs 0.039) and its z loses the factors its critic
    # does not see (cpu-large's volume factors F1 and F4: ridge R2 of their genetic values from z
    # 0.00 / 0.04 against the autoencoder's 0.07 / 0.23 and random-init's 0.07 / 0.14)
    "gim-recon3": ("gim", {}, {"lambda_recon": 3.0}, None),
    "gim-recon10": ("gim", {}, {"lambda_recon": 10.0}, None),
    "gim-recon3-seed2": ("gim", {"seed": 2}, {"lambda_recon": 3.0}, None),
    "gim-recon3-seed3": ("gim", {"seed": 3}, {"lambda_recon": 3.0}, None),
    "gim-recon10-seed2": ("gim", {"seed": 2}, {"lambda_recon": 10.0}, None),
    "gim-recon10-seed3": ("gim", {"seed": 3}, {"lambda_recon": 10.0}, None),
    # lambda 10 at a constant learning rate (gim_lambda_recon.md, "Open")
    "gim-recon10-constlr": ("gim", {"lr_schedule": "constant"}, {"lambda_recon": 10.0}, None),
    "gim-recon10-seed3-constlr": ("gim", {"seed": 3, "lr_schedule": "constant"}, {"lambda_recon": 10.0}, None),
    "gim-recon10-seed2-constlr": ("gim", {"seed": 2, "lr_schedule": "constant"}, {"lambda_recon": 10.0}, None),
    # the defaults before 2026-12-03 (lambda 1, cosine): since then, gim-recon10-constlr and
    # autoencoder-constlr are the gim and autoencoder rows (Table 1 reuses those runs)
    "gim-lambda1-cosine": ("gim", {"lr_schedule": "cosine"}, {"lambda_recon": 1.0}, None),
    "autoencoder-cosine": ("autoencoder", {"lr_schedule": "cosine"}, {}, None),
    # the critic's SNPs clumped (model.config critic_snp_clump_kb): no two within 100 kb (k = 64), or
    # within 250 kb, PLINK's --clump-kb default, with k = 32
    "gim-clump100": ("gim", {}, {"critic_snp_clump_kb": 100.0}, None),
    "gim-clump250-k32": ("gim", {}, {"critic_snp_clump_kb": 250.0, "critic_snps": 32}, None),
    # twice the epochs (20; the paper trains 350): is what gim gained at 6,000 people (cpu-xl-10) the
    # steps or the people? Each epoch is the same 1,800 training people, so 20 epochs here take as many
    # steps as 10 at 6,000 people
    "gim-e20": ("gim", {}, {}, "20"),
    "autoencoder-e20": ("autoencoder", {}, {}, "20"),
    # the same with the voxel teacher (the default since 2026-12-03): validation MI still rose at epoch 10
    # in every 10-epoch teacher run at 3,000 people; at 6,000 (as many steps as 20 epochs here) the top
    # 10 PCs found 18/18 (table1_brainlike-xl-10.md): the steps or the people?
    "gim-teacher-e20": ("gim", {}, {}, "20"),
    # no average pooling before the dense layer: at 8 mm the last maps of the 23 x 28 x 23 grid are
    # 6 x 7 x 6, read as they are instead of pooled to 4 x 4 x 4 (gim_encoder_capacity.md: supervised on
    # the truth, brainlike's F3 and F5 go from R2 0.05 / 0.07 to 0.16 / 0.26)
    # (since 2026-12-03 the default: ModelConfig.flatten_mm = 32 resolves to the same 6 x 7 x 6 here)
    "gim-nopool": ("gim", {}, _NOPOOL, None),
    "gim-nopool-seed2": ("gim", {"seed": 2}, _NOPOOL, None),
    "gim-nopool-seed3": ("gim", {"seed": 3}, _NOPOOL, None),
    "autoencoder-nopool": ("autoencoder", {}, _NOPOOL, None),
    "random-init-nopool": ("random-init", {}, _NOPOOL, None),
    # the earlier default: the last maps averaged to 4 x 4 x 4 before the dense layer (flatten_mm = 0)
    "gim-pool4": ("gim", {}, _POOL4, None),
    "autoencoder-pool4": ("autoencoder", {}, _POOL4, None),
    "random-init-pool4": ("random-init", {}, _POOL4, None),
    # the autoencoder's third seed at the defaults (constant rate): gim's seeds 1-3 against the autoencoder's
    "autoencoder-seed3": ("autoencoder", {"seed": 3}, {}, None),
    # more pairs for the critic (issue 14: "more negatives than a batch of 12"): every step it also trains
    # on the (detached z, genotype) pairs of the last 15 batches (model.critic.PairBank), 192 pairs in all;
    # tried before only on 160 mm crops, where no critic learned
    "gim-queue15": ("gim", {}, {"critic_queue": 15}, None),
    # the critic's image head reads z whitened by its running covariance (critic_whiten_ridge = 0.01):
    # on a fixed z whose genetic signal lies in low-variance directions, held-out MI 0.054 / 0.024
    # (seeds 0 / 1) against -0.013 / -0.041 unwhitened (tests/model/test_critic.py's cohort)
    "gim-whiten": ("gim", {}, {"critic_whiten_ridge": 0.01}, None),
    "gim-whiten-seed2": ("gim", {"seed": 2}, {"critic_whiten_ridge": 0.01}, None),
}
# Every gim row above except these was made before the voxel teacher became the default (2026-12-03):
# they keep its absence, so that a rerun reproduces their tables. `gim-seed2` and `gim-seed3` are the
# default again with another seed, and follow it.
_WITH_DEFAULT_TEACHER = {"gim-seed2", "gim-seed3", "gim-teacher10", "gim-teacher10-seed2", "gim-paper", "gim-teacher-e20"}
for _name, (_m, _train, _model, _ep) in list(VARIANTS.items()):
    if _m == "gim" and _name not in _WITH_DEFAULT_TEACHER and "teacher_weight" not in _model:
        VARIANTS[_name] = (_m, _train, {**_model, **_NOTEACHER}, _ep)
# model settings that change the image encoder's architecture: a row's MI is compared with the
# random-init row of the same architecture where the table has one (mi_contrast)
ARCH_KEYS = ("conv_channels", "flatten_grid", "flatten_mm", "stem_stride")

# the paper's top 10 PCs of z; the genotype-guided directions (pcs --guided-by), as they are and
# varimax-rotated (--guided-rotation varimax, since 2026-12-03)
READOUTS = ("pca", "guided", "guided-varimax")
READOUT_LABELS = {"pca": "10 PCs", "guided": "guided 10", "guided-varimax": "guided 10, varimax", "": "–"}
READOUT_ARGS = {"pca": [], "guided": ["--guided-rotation", "none"], "guided-varimax": ["--guided-rotation", "varimax"]}


def sh(*args, log=None) -> None:
    cmd = [str(a) for a in args]
    t = time.perf_counter()
    print("$", " ".join(cmd), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        print(p.stdout[-4000:])
        raise SystemExit(f"failed: {' '.join(cmd)}")
    print(f"  ({time.perf_counter() - t:.0f} s)", flush=True)


def gim(*args):
    sh(sys.executable, "-m", "gimtool", *args)


def prepare(out: Path, cfg: dict, threads: int) -> dict:
    c = out / "cohort"
    if not (c / "simulate.log").exists():
        gim("simulate", "--out", c, "--threads", threads, *cfg["simulate"])
    if not (out / "geno.geno").exists():
        gim("prep-geno", "--bfile", c / "geno", "--genetic-map", c / "genetic_map.txt", "--out", out / "geno", "--threads", threads)
    if not (out / "mri" / "meta.json").exists():
        gim("prep-mri", "--images", c / "images.tsv", "--voxel", cfg["voxel"], "--threads", threads, "--out", out / "mri",
            "--allow-failures")
    # covariates of the test people: age, sex and 10 ancestry PCs from their genotypes
    covar = out / "covar.tsv"
    if not covar.exists():
        gim("pcs", "--bfile", out / "geno", "--keep", c / "test.ids", "--n-pcs", 10, "--out", out / "ancestry", "--threads", threads)
        anc = read_table(out / "ancestry.eigenvec", what="covariate")
        cov = read_table(c / "covariates.tsv", columns=["age", "sex"], what="covariate")
        write_table(cov.join(anc, on=["FID", "IID"], how="inner"), covar)
    ids = {}
    for part, key in (("train", "train_subset"), ("val", "val_subset")):
        src = c / f"{part}.ids"
        if cfg.get(key):
            dst = out / f"{part}_subset.ids"
            if not dst.exists():
                from gimtool.io.tables import write_ids

                all_ids = read_ids(src)
                pick = np.sort(np.random.default_rng(5).choice(all_ids.height, size=min(cfg[key], all_ids.height), replace=False))
                write_ids(all_ids[pick], dst)
            src = dst
        ids[part] = src
    return {"cohort": c, "covar": covar, "train_ids": ids["train"], "val_ids": ids["val"],
            "truth_loci": pl.read_csv(c / "truth" / "loci.tsv", separator="\t")}


def evaluate_phenotypes(name: str, pcs_tsv: Path, out: Path, data: dict, cfg: dict, threads: int, device: str) -> dict:
    """GWAS, loci, h2 and MI of a table of 10 test-set phenotypes."""
    c = data["cohort"]
    d = out / "eval" / name
    d.mkdir(parents=True, exist_ok=True)
    pheno_cols = read_table(pcs_tsv).columns[2:]
    if not (d / "gwas.summary.tsv").exists():
        gim("gwas", "--bfile", out / "geno", "--pheno", pcs_tsv, "--covar", data["covar"], "--keep", c / "test.ids",
            "--out", d / "gwas", "--threads", threads, "--no-plots")
    sumstats = [str(d / f"gwas.{p}.sumstats.gz") for p in pheno_cols]
    if not (d / "clump.loci.tsv").exists():
        gim("clump", "--bfile", out / "geno", "--sumstats", *sumstats, "--loci", "--out", d / "clump", "--threads", threads)
    if not (d / "h2.h2.tsv").exists():
        grm = out / "grm_test"
        reuse = ["--grm", grm] if any(out.glob("grm_test*")) else ["--grm-out", grm]
        gim("h2", "--method", "greml", "--bfile", out / "geno", "--pheno", pcs_tsv, "--covar", data["covar"],
            "--keep", c / "test.ids", *reuse, "--out", d / "h2", "--threads", threads)
    if not (d / "mi.mi.tsv").exists():
        gim("mi", "--pheno", pcs_tsv, "--geno", out / "geno.geno", "--keep", c / "test.ids", "--out", d / "mi",
            "--threads", threads, "--device", device, *cfg["mi"])
    loci = pl.read_csv(d / "clump.loci.tsv", separator="\t")
    h2 = pl.read_csv(d / "h2.h2.tsv", separator="\t", null_values="NA")
    mi = pl.read_csv(d / "mi.mi.tsv", separator="\t", null_values="NA")

    def num(col: str) -> float:
        v = mi[col][0] if col in mi.columns else None
        return float("nan") if v is None else float(v)

    score = score_loci(loci, data["truth_loci"])
    return {
        "name": name, "loci_table": loci, **score,
        "h2_mean": float(h2["H2"].mean()), "h2_sd": float(h2["H2"].std()),
        "mi": num("MI_VAL"), "mi_se": num("MI_VAL_SE"), "mi_train": num("MI_TRAIN"),
    }


def method_pcs(method: str, out: Path, data: dict, cfg: dict, threads: int, device: str, tag: str | None = None,
               train_settings: dict | None = None, model_overrides: dict | None = None,
               epochs: str | None = None, final: bool = False) -> dict[str, Path]:
    """Train, embed (best.pt: the epoch of best validation MI, or loss; with `final`, model.pt:
    the last epoch, as the paper selects) and reduce to 10 dimensions by each readout, fit on the
    training people. Returns {readout: table}."""
    tag = tag or method
    run = out / "runs" / tag
    top = "".join(f"{k} = {json.dumps(v)}\n" for k, v in (train_settings or {}).items())
    # the configuration's [model] keys, then the run's overrides (which win: TOML allows no repeated key)
    model = {**tomllib.loads(cfg["model_toml"]).get("model", {}), **(model_overrides or {})}
    toml = top + ("[model]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in model.items()) if model else "")
    run.mkdir(parents=True, exist_ok=True)
    (run / "eval_config.toml").write_text(toml)
    if not (run / "model.pt").exists():
        ep = epochs or (cfg["gim_epochs"] if method == "gim" else None)
        train_args = list(cfg["train"])
        if ep is not None:
            i = train_args.index("--epochs")
            train_args[i + 1] = ep
        gim("train", "--images", out / "mri", "--geno", out / "geno.geno", "--keep", data["train_ids"],
            "--val-keep", data["val_ids"], "--method", method, "--config", run / "eval_config.toml", *train_args,
            "--out", run, "--threads", threads, "--device", device, "--no-progress")
    pre = "final_" if final else ""
    emb = run / f"{pre}embeddings"
    if not Path(f"{emb}.tsv").exists():
        gim("embed", "--checkpoint", run / "model.pt" if final else run, "--images", out / "mri", "--out", emb, "--device", device)
    return readout_tables(run, Path(f"{emb}.tsv"), out, data, pre)


def readout_tables(run: Path, emb: Path, out: Path, data: dict, pre: str = "") -> dict[str, Path]:
    """Every readout of the embeddings table `emb`, fit on the training people: {readout: table}."""
    tables = {}
    for readout in READOUTS:
        prefix = run / (f"{pre}emb" if readout == "pca" else f"{pre}emb_{readout}")
        if not Path(f"{prefix}.pcs.tsv").exists():
            extra = ([] if readout == "pca" else ["--guided-by", out / "geno.geno"]) + READOUT_ARGS[readout]
            gim("pcs", "--pheno", emb, "--fit-keep", data["cohort"] / "train.ids", "--n-pcs", 10, *extra, "--out", prefix)
        tables[readout] = Path(f"{prefix}.pcs.tsv")
    return tables


def reference_pcs(kind: str, out: Path, data: dict) -> Path:
    """The ceiling (true factors of the test people) and a voxel PCA fit on the training people."""
    c = data["cohort"]
    d = out / "runs" / kind
    d.mkdir(parents=True, exist_ok=True)
    target = d / "pcs.tsv"
    if target.exists():
        return target
    if kind == "true-factors":
        write_table(read_table(c / "truth" / "factors.tsv"), target)
        return target
    from gimtool.io.imagestore import ImageStore
    from gimtool.io.tables import align

    store = ImageStore(out / "mri")
    X = np.asarray(store.volumes, dtype=np.float32).reshape(store.n, -1)
    train = align(store.samples, read_ids(c / "train.ids")).ref_index
    mu = X[train].mean(axis=0)
    # top 10 right singular vectors of the centred training voxels (randomized would do; N is small)
    _, _, vt = np.linalg.svd(X[train] - mu, full_matrices=False)
    scores = (X - mu) @ vt[:10].T
    df = store.samples.with_columns([pl.Series(f"PC{k + 1}", scores[:, k].astype(np.float64)) for k in range(10)])
    write_table(df, target)
    return target


def unique_loci(results: list[dict]) -> dict[str, int]:
    """Loci of a method that no method of another group finds under the same readout (Table 1's 'Unique')."""
    out = {}
    for r in results:
        group = GROUPS.get(r["method"])
        if group is None:
            continue
        others = [o["loci_table"] for o in results if GROUPS.get(o["method"]) not in (None, group)
                  and o["readout"] == r["readout"] and o["loci_table"].height]
        if r["loci_table"].height == 0 or not others:
            out[r["name"]] = r["loci_table"].height
            continue
        hit = np.zeros(r["loci_table"].height, dtype=bool)
        for o in others:
            hit |= overlaps(r["loci_table"], o).any(axis=1)
        out[r["name"]] = int((~hit).sum())
    return out


def mi_contrast(r: dict, results: list[dict]) -> str:
    """(MI - random-init's MI under the same readout) / SE of the difference: how many standard
    errors a row's held-out MI lies above the untrained encoder's (issue 14's criterion)."""
    base = [o for o in results if o["method"] == "random-init" and o["readout"] == r.get("readout")]
    if not base or r["method"] in ("random-init", "true-factors", "voxel-pca"):
        return "–"
    same = [o for o in base if o.get("arch") == r.get("arch")]
    b = (same or [o for o in base if not o.get("arch")] or base)[0]
    se = float(np.hypot(r["mi_se"], b["mi_se"]))
    diff = r["mi"] - b["mi"]
    return f"{diff:+.3f} ({diff / se:+.1f} SE)" if np.isfinite(se) and se > 0 else f"{diff:+.3f}"


def fmt_row(name: str, r: dict, uniq, contrast: str = "–") -> str:
    mi = f"{r['mi']:.3f} ± {r['mi_se']:.3f}" if np.isfinite(r["mi_se"]) else f"{r['mi']:.3f}"
    readout = READOUT_LABELS[r.get("readout", "")]
    by_factor = " ".join(str(v) for v in r.get("by_factor", {}).values()) or "–"
    return (f"| {name} | {readout} | {r['loci']} | {uniq} | {r['recovered']}/{r['truth']} | {by_factor} | {r['false']} | {mi} | "
            f"{contrast} | {r['h2_mean']:.3f} ± {r['h2_sd']:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", choices=sorted(CONFIGS), default="cpu")
    ap.add_argument("--out", type=Path, default=HERE / "out" / "eval")
    ap.add_argument("--methods", default=None, help="comma-separated (default: the configuration's list, or every method)")
    ap.add_argument("--no-ablation", action="store_true")
    ap.add_argument("--variants", default="", help=f"extra rows, comma-separated: {', '.join(VARIANTS)}")
    ap.add_argument("--embeddings", default="", help="extra rows from embeddings made elsewhere, comma-separated NAME=TSV "
                    "(FID IID z1..; e.g. diag_encoder_capacity.py --embeddings: the encoder trained on the truth)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    cfg = CONFIGS[a.config]
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data = prepare(a.out, cfg, a.threads)
    results = []
    for ref in ("true-factors", "voxel-pca"):
        r = evaluate_phenotypes(ref, reference_pcs(ref, a.out, data), a.out, data, cfg, a.threads, a.device)
        results.append({**r, "method": ref, "readout": "", "label": ref})
    ablation: list = []
    methods = [m for m in (a.methods or cfg.get("methods") or ",".join(GROUPS)).split(",") if m]

    def add(name: str, method: str, tables: dict[str, Path], model: dict | None = None) -> list[dict]:
        arch_keys = {k: v for k, v in (model or {}).items() if k in ARCH_KEYS}
        arch = json.dumps(arch_keys, sort_keys=True) if arch_keys else ""
        rows = []
        for readout, table in tables.items():
            tag = name if readout == "pca" else f"{name}+{readout}"
            r = evaluate_phenotypes(tag, table, a.out, data, cfg, a.threads, a.device)
            rows.append({**r, "method": method, "readout": readout, "label": name, "arch": arch})
        return rows

    for m in methods:
        results += add(m, m, method_pcs(m, a.out, data, cfg, a.threads, a.device))
        write_table1(a, cfg, results, ablation, t0, pending=methods[methods.index(m) + 1 :])
    for v in [x for x in a.variants.split(",") if x]:
        method, settings, model, ep = VARIANTS[v]
        ep = cfg["paper_epochs"] if ep == "paper" else ep
        results += add(v, method, method_pcs(method, a.out, data, cfg, a.threads, a.device, tag=v, train_settings=settings,
                                             model_overrides=model, epochs=ep), model)
        write_table1(a, cfg, results, ablation, t0, pending=[])
    for item in [x for x in a.embeddings.split(",") if x]:
        name, _, path = item.partition("=")
        if not name or not Path(path).is_file():
            raise SystemExit(f"--embeddings: expected NAME=TSV with an existing file; got {item!r}")
        run = a.out / "runs" / name
        run.mkdir(parents=True, exist_ok=True)
        results += add(name, name, readout_tables(run, Path(path), a.out, data))
        write_table1(a, cfg, results, ablation, t0, pending=[])
    if not a.no_ablation:
        for k, (label, overrides, epochs) in enumerate(ABLATION):
            ep = ",".join(str(int(x) * int(s)) for x, s in zip(epochs.split(","), cfg["paper_epochs"].split(",")))
            # the last epoch (model.pt), as the paper selects: these runs are 2-4 epochs, their
            # validation MI stays within noise of 0, and best.pt of rows 2-4 was the same stage-1 epoch
            tables = method_pcs("gim", a.out, data, cfg, a.threads, a.device, tag=f"ablation{k}", train_settings=PAPER_SCHEDULE,
                                model_overrides=overrides, epochs=ep, final=True)
            ablation += [(label, r) for r in add(f"ablation{k}-final", "gim", tables)]
            write_table1(a, cfg, results, ablation, t0, pending=[])
    write_table1(a, cfg, results, ablation, t0, pending=[])


def train_hours(out: Path) -> float:
    """Training time of every run under out/runs, from the SECONDS column of their history.tsv
    (runs reused from an earlier invocation are not in this invocation's wall time)."""
    total = 0.0
    for h in (out / "runs").glob("*/history.tsv"):
        t = pl.read_csv(h, separator="\t", null_values="NA")
        total += float(t["SECONDS"].sum()) if "SECONDS" in t.columns else 0.0
    return total / 3600


def write_table1(a, cfg: dict, results: list[dict], ablation: list, t0: float, pending: list[str]) -> None:
    """Write the table with what has run so far (the run may be stopped; the file says what is missing)."""
    uniq = unique_loci(results)
    hours = (time.time() - t0) / 3600
    lines = [
        "# Table 1 on a simulated cohort (gimtool benchmarks/evaluate.py)",
        "",
        f"Run {datetime.date.today()}, configuration `{a.config}`, {hours:.2f} h for this invocation on this machine ({a.threads} threads, "
        f"{a.device}); training of all runs (their history.tsv): {train_hours(a.out):.2f} h.",
        f"Cohort: `gimtool simulate {' '.join(cfg['simulate'])}`; training `{' '.join(cfg['train'])}` (gim epochs {cfg['gim_epochs']}; "
        f"ablation rows on the paper's stages {cfg['paper_epochs']}),",
        f"model overrides: `{cfg['model_toml'].strip() or 'none'}`; embeddings from each run's best.pt (best validation MI, or loss).",
        (f"Every method trains on the same random {cfg['train_subset']} of the training people "
         f"(validation: {cfg['val_subset']}), for CPU time." if cfg.get("train_subset") else ""),
        (f"Not run (time): {', '.join(pending)}." if pending else ""),
        "Loci: P < 5e-9, MAF >= 1%, merged within 250 kb, union over the 10 PCs, on the test people only.",
        "True loci: strong causal SNPs of the simulation +- 250 kb; 'recovered' counts true loci hit, 'false' found loci that hit none;",
        "'by factor': true loci recovered of each simulated factor, F1 first (`simulate --preset brainlike`: F1 and F2 are the large",
        "volume effects, the rest subtle regional ones).",
        "",
        "Readouts (fit on the training people, applied to the test people): '10 PCs' the paper's top 10 PCs of z;",
        "'guided 10' the 10 directions of z with most association with the training people's genotypes (pcs --guided-by);",
        "'guided 10, varimax' the same span rotated so that each direction follows one group of loci (--guided-rotation varimax).",
        "",
        "MI: held-out JSE estimate on the test people (mean ± SE over repeats; `gimtool mi " + " ".join(cfg["mi"]) + "`);",
        "'vs random-init': the difference from random-init's MI under the same readout (the random-init row of the same image-encoder "
        "architecture, where the table has one), in SEs of the difference.",
        "",
        "| representation | readout | loci | unique | true loci recovered | by factor | false loci | MI (test, held-out pairs) | MI vs random-init | h2 (GREML, mean ± sd over PCs) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        label = {"true-factors": "true factors (ceiling)", "voxel-pca": "voxel PCA (no genetics)"}.get(r["label"], r["label"])
        lines.append(fmt_row(label, r, uniq.get(r["name"], "–"), mi_contrast(r, results)))
    if ablation:
        lines += ["", "## Ablation (Table 2)", "",
                  "Each row adds one component to the one above, on the paper's three-stage schedule; embeddings from the "
                  "last epoch (model.pt), as the paper selects. The last row adds gimtool's voxel teacher to "
                  "'+ reconstruction' (the transformer rows cannot use it).", "",
                  "| model | readout | loci | unique | true loci recovered | by factor | false loci | MI | MI vs random-init | h2 |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for label, r in ablation:
            lines.append(fmt_row(label, r, "–", mi_contrast(r, results)))
    text = "\n".join(lines) + "\n"
    print(text)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / ("table1.md" if a.config == "cpu" else f"table1_{a.config}.md")).write_text(text)


if __name__ == "__main__":
    main()
