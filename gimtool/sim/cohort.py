"""A whole simulated cohort on disk: genotypes, MRI volumes, covariates, splits and the truth.

>>> from gimtool.sim.cohort import simulate_cohort, preset
>>> simulate_cohort("tmp/cohort", preset("tiny"))          # ~120 people, seconds

Layout of the output folder (other commands and tests rely on these names)::

    geno.bed/.bim/.fam     genotypes (bim column 3 in cM)
    genetic_map.txt        the recombination map (chr position COMBINED_rate(cM/Mb) Genetic_Map(cM))
    images/<IID>.nii.gz    one T1-like volume per person, on the MNI grid of `voxel` mm
    images.tsv             FID IID PATH (paths relative to the folder; what prep-mri --images reads)
    bids/                  with layout "bids", instead of images/ and images.tsv: a BIDS dataset,
                           sub-<label>/anat/sub-<label>_T1w.nii.gz, dataset_description.json and
                           participants.tsv (participant_id FID IID: prep-mri --bids-ids reads it)
    covariates.tsv         FID IID age sex ancestry
    train.ids val.ids test.ids   FID IID, no header
    truth/causal.tsv       SNP CHR BP FACTOR BETA A1 A1FREQ KIND
    truth/loci.tsv         LOCUS FACTOR CHR START END SNP BP (strong causal SNPs ± 250 kb)
    truth/factors.tsv      FID IID F1..Fk (true factor values); truth/genetic.tsv (their genetic parts)
    truth/masks/<F>.nii.gz where each factor changes the image; truth/template.nii.gz
    truth/params.json      every setting, the factor effects and the realized heritabilities
    simulate.log
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from gimtool.conventions import IMAGE_LIST_COLS, SIM_CAUSAL_COLS, SIM_COVAR_COLS, SIM_LOCI_COLS
from gimtool.sim.images import FACTOR_KINDS, NuisanceParams

LOCUS_HALF_WIDTH_BP = 250_000  # the paper merges significant SNPs into loci within 250 kb
IMAGE_SCALE = 1000.0  # template intensity 0-1 -> stored int16 units


@dataclass
class CohortConfig:
    """Every setting of a simulated cohort. See `gimtool simulate --help` for the meaning of each."""

    n_samples: int = 800
    n_chromosomes: int = 3
    chrom_length_mb: float = 6.0
    n_snps: int | None = 15_000
    demes: int = 1
    growth: str = "recent"
    current_ne: float = 1_000_000
    growth_generations: float = 200
    split_generations: float = 1_500
    migration: float = 1e-4
    n_factors: int = 4
    h2: list[float] = field(default_factory=lambda: [0.6])
    n_causal: int = 3             # strong causal loci per factor
    strong_share: float = 0.8     # share of each factor's h2 carried by its strong loci
    n_polygenic: int = 200        # background causal SNPs per factor (0 = none)
    kinds: tuple[str, ...] = FACTOR_KINDS
    effect_scale: float = 1.0
    major_factors: int = 0        # the first factors are large volume effects (sim.images.MAJOR_FACTORS)
    minor_scale: float = 1.0      # strength of the other (regional) factors' effects
    voxel: float = 4.0
    split: tuple[float, float, float] = (0.5, 0.1, 0.4)  # train, val, test shares
    test_deme: int = 0            # with demes > 1, test people all come from this deme
    seed: int = 0
    bfile: str | None = None
    images: bool = True
    layout: str = "flat"          # images as images/<IID>.nii.gz + images.tsv, or "bids" (bids/)
    nuisance: NuisanceParams = field(default_factory=NuisanceParams)

    def h2_per_factor(self) -> np.ndarray:
        h = np.asarray(self.h2, dtype=float).ravel()
        if h.size == 1:
            h = np.repeat(h, self.n_factors)
        if h.size != self.n_factors:
            raise ValueError(f"h2: give one value or {self.n_factors} (one per factor), got {h.size}")
        return h

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["nuisance"] = self.nuisance.to_dict()
        return d


PRESETS = {
    # the README quick start: `gimtool simulate --out DIR`
    "default": {},
    # for tests of other commands: seconds, 8 mm volumes (23 x 28 x 23)
    "tiny": dict(n_samples=120, n_chromosomes=2, chrom_length_mb=2.0, n_snps=2_000, n_factors=2, n_causal=2,
                 n_polygenic=0, h2=[0.8], voxel=8.0),
    # for GWAS/h2 checks without images: more people, a longer genome
    "gwas": dict(n_samples=2_000, n_chromosomes=4, chrom_length_mb=10.0, n_snps=20_000, images=False),
    # two kinds of heritable factor, as in real brains (issue 14): 2 large volume effects
    # (ventricles, a frontal lobe) among the largest sources of image variance, which an
    # autoencoder captures, and 4 subtle regional effects (half the default strength), which only
    # genotype guidance finds; non-heritable deformation and nuisance as in the default. No seed of
    # its own: `simulate --seed` (default 0) always set it, so the seed=11 it carried until
    # 2026-12-02 never reached a cohort (every brainlike table is on seed 0)
    "brainlike": dict(n_samples=3_000, demes=2, split=(0.6, 0.05, 0.35), n_chromosomes=3, chrom_length_mb=6.0,
                      n_snps=1_500, n_factors=6, n_causal=3, major_factors=2, minor_scale=0.5, voxel=8.0),
}


def preset(name: str, **overrides) -> CohortConfig:
    """A named configuration ('default', 'tiny', 'gwas') with `overrides` applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets are {', '.join(PRESETS)}")
    return CohortConfig(**{**PRESETS[name], **overrides})


# ---------------------------------------------------------------------------------------------
# pieces (return arrays / frames; simulate_cohort writes them)


def _genotypes(cfg: CohortConfig, log) -> tuple[np.ndarray, pl.DataFrame, pl.DataFrame, pl.DataFrame, np.ndarray]:
    """G (n x m int8), bim (cM), fam, genetic map, deme index per person."""
    from gimtool.sim.genotypes import simulate_genotypes

    if cfg.bfile is None:
        s = simulate_genotypes(cfg.n_samples, n_chromosomes=cfg.n_chromosomes, chrom_length_mb=cfg.chrom_length_mb,
                               n_snps=cfg.n_snps, demes=cfg.demes, growth=cfg.growth, current_ne=cfg.current_ne,
                               growth_generations=cfg.growth_generations, split_generations=cfg.split_generations,
                               migration=cfg.migration, seed=cfg.seed)
        deme = np.array([int(p[3:]) for p in s.population])
        return s.G, s.bim, s.fam, s.genetic_map, deme
    from gimtool.io.plink import Bfile
    from gimtool.errors import InputError
    from gimtool.conventions import GENMAP_COLS

    bf = Bfile(cfg.bfile)
    G = bf.read(dtype="int8")
    bim = bf.bim
    cm = bim["CM"].to_numpy().astype(float)
    per_chr_max = bim.with_columns(pl.col("CM").abs()).group_by("CHR").agg(pl.col("CM").max())["CM"].to_numpy()
    if np.all(cm == 0):
        # no genetic positions: fall back on the genome-wide average rate and say so
        cm = bim["BP"].to_numpy() / 1e6 * 1.2
        log.warn(f"{bf.bim_path}: column 3 (cM) is all zero; using 1.2 cM/Mb for the genetic map")
    elif per_chr_max.max() < 5:
        cm = cm * 100.0
        log.info(f"{bf.bim_path}: column 3 looks like Morgans (max {per_chr_max.max():.3g}); converted to cM")
    bim = bim.with_columns(pl.Series("CM", cm))
    order = _chrom_sorted_index(bim)
    same_chr = bim["CHR"].to_numpy()[order][1:] == bim["CHR"].to_numpy()[order][:-1]
    if np.any(same_chr & (np.diff(cm[order]) < -1e-9)):
        raise InputError(f"{bf.bim_path}: genetic positions (column 3) decrease along a chromosome")
    gm = bim.select(pl.col("CHR").alias(GENMAP_COLS[0]), pl.col("BP").alias(GENMAP_COLS[1]),
                    pl.col("CM").alias(GENMAP_COLS[3])).unique(subset=[GENMAP_COLS[0], GENMAP_COLS[1]], keep="first", maintain_order=True)
    rate = np.zeros(gm.height)
    bp, c, ch = gm[GENMAP_COLS[1]].to_numpy(), gm[GENMAP_COLS[3]].to_numpy(), gm[GENMAP_COLS[0]].to_numpy()
    same = ch[1:] == ch[:-1]
    d = np.where(same, np.diff(bp), 1)
    rate[:-1] = np.where(same, np.diff(c) / np.maximum(d, 1) * 1e6, 0.0)
    gm = gm.with_columns(pl.Series(GENMAP_COLS[2], rate)).select(list(GENMAP_COLS))
    return G, bim, bf.fam, gm, np.zeros(bf.n_samples, dtype=int)


def _chrom_sorted_index(bim: pl.DataFrame) -> np.ndarray:
    return np.lexsort((bim["BP"].to_numpy(), bim["CHR"].to_numpy()))


def _factors(cfg: CohortConfig, G: np.ndarray, bim: pl.DataFrame, rng: np.random.Generator):
    """Latent factors: strong loci (distinct, 1 Mb apart where the genome allows, MAF >= 5 %) + a
    polygenic background."""
    from gimtool.sim.traits import pick_distinct_loci, simulate_traits

    n, m = G.shape
    h2 = cfg.h2_per_factor()
    freq = np.where(G >= 0, G, 0).sum(0) / (2 * np.maximum((G >= 0).sum(0), 1))
    maf = np.minimum(freq, 1 - freq)
    n_loci = cfg.n_factors * cfg.n_causal
    span = bim.group_by("CHR").agg((pl.col("BP").max() - pl.col("BP").min()).alias("L"))["L"].sum()
    # 1 Mb apart when the genome allows it, closer on the small genomes of test cohorts
    spacing = int(min(1_000_000, span / max(2 * n_loci, 1)))
    strong = pick_distinct_loci(bim, n_loci, rng, min_distance_bp=spacing, maf=maf, min_maf=0.05)
    strong = rng.permutation(strong).reshape(cfg.n_factors, cfg.n_causal) if cfg.n_causal else np.zeros((cfg.n_factors, 0), int)
    causal, weights, kinds = [], [], []
    for f in range(cfg.n_factors):
        s = np.sort(strong[f])
        poly = np.array([], dtype=np.int64)
        if cfg.n_polygenic:
            pool = np.setdiff1d(np.flatnonzero(maf >= 0.01), strong.ravel())
            poly = np.sort(rng.choice(pool, size=min(cfg.n_polygenic, pool.size), replace=False))
        share = cfg.strong_share if poly.size else 1.0
        w = np.concatenate([np.full(s.size, share / max(s.size, 1)), np.full(poly.size, (1 - share) / max(poly.size, 1))])
        causal.append(np.concatenate([s, poly]))
        weights.append(w)
        kinds.append(np.array(["strong"] * s.size + ["polygenic"] * poly.size))
    tr = simulate_traits(G, h2, n_traits=cfg.n_factors, seed=rng, causal=causal, effect_weights=weights)
    return tr, kinds, freq


def _split(cfg: CohortConfig, deme: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Split label per person: 0 train, 1 val, 2 test."""
    n = deme.size
    shares = np.asarray(cfg.split, float)
    if shares.size != 3 or np.any(shares < 0) or shares.sum() <= 0:
        raise ValueError(f"split must be three non-negative shares (train, val, test), got {cfg.split}")
    shares = shares / shares.sum()
    n_test = int(round(shares[2] * n))
    n_val = int(round(shares[1] * n))
    label = np.zeros(n, dtype=int)
    if cfg.demes > 1:
        pool = np.flatnonzero(deme == cfg.test_deme)
        if pool.size < n_test:
            raise ValueError(f"deme {cfg.test_deme} has {pool.size} people, fewer than the {n_test} test people asked for")
        test = rng.choice(pool, size=n_test, replace=False)
    else:
        test = rng.choice(n, size=n_test, replace=False)
    label[test] = 2
    rest = rng.permutation(np.flatnonzero(label == 0))
    label[rest[:n_val]] = 1
    return label


def _write_nifti(path: Path, vol: np.ndarray, affine: np.ndarray, dtype=np.int16) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(vol.astype(dtype), affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=4)  # 4 = MNI152
    img.set_sform(affine, code=4)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.nii.gz")
    nib.save(img, tmp)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------


def simulate_cohort(out_dir: str | os.PathLike, config: CohortConfig | None = None, threads: int = 1,
                    log=None, progress: bool = False) -> dict:
    """Simulate a cohort into `out_dir` (created; existing files of the layout are replaced).

    Returns a summary dict (sizes, realized h2, timings). `log`: a RunLog, or None to write
    `out_dir/simulate.log` here. Same config and seed, same files.
    """
    from gimtool.runlog import RunLog

    import torch

    cfg = config or CohortConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:  # the caller's thread setting comes back (test fixtures call this in-process)
        if log is None:
            with RunLog(str(out / "simulate"), "simulate") as own:
                return _simulate(out, cfg, threads, own, progress)
        return _simulate(out, cfg, threads, log, progress)
    finally:
        torch.set_num_threads(before)


def _simulate(out: Path, cfg: CohortConfig, threads: int, log, progress: bool) -> dict:
    from gimtool.io.genmap import write_genetic_map
    from gimtool.io.plink import write_bfile
    from gimtool.io.tables import write_ids, write_table
    from gimtool.io.atomic import atomic_write_text

    if cfg.n_factors < 0 or cfg.n_causal < 0 or cfg.n_polygenic < 0:
        raise ValueError("n_factors, n_causal and n_polygenic must be >= 0")
    rng = np.random.default_rng([cfg.seed, 1])
    summary: dict = {"timings": {}}
    t0 = time.perf_counter()

    with log.timed("genotypes"):
        G, bim, fam, gmap, deme = _genotypes(cfg, log)
    n, m = G.shape
    summary["timings"]["genotypes"] = time.perf_counter() - t0
    log.info(f"genotypes: {n} people x {m} SNPs on {bim['CHR'].n_unique()} chromosomes"
             + ("" if cfg.bfile else f" (demography: {cfg.growth}, {cfg.demes} deme(s))"))

    with log.timed("factors"):
        tr, kinds, freq = _factors(cfg, G, bim, rng)
    realized = [float(np.var(tr.genetic[:, f]) / np.var(tr.values[:, f])) for f in range(cfg.n_factors)]
    log.info("factor h2 requested " + " ".join(f"{h:.2f}" for h in tr.h2) + "; realized "
             + " ".join(f"{h:.2f}" for h in realized))

    age = rng.uniform(45.0, 80.0, size=n).round(1)  # the UK Biobank imaging age range
    male = rng.integers(0, 2, size=n)
    label = _split(cfg, deme, rng)
    person_seeds = rng.integers(0, 2**62, size=n)
    ids = fam.select("FID", "IID")
    fam = fam.with_columns(pl.Series("SEX", np.where(male == 1, "1", "2")))

    # -- tables ---------------------------------------------------------------------------------
    write_bfile(out / "geno", G, fam, bim)
    write_genetic_map(gmap, out / "genetic_map.txt")
    cov = ids.with_columns(pl.Series("age", age), pl.Series("sex", np.where(male == 1, 1, 2)),
                           pl.Series("ancestry", deme))
    write_table(cov.select(list(SIM_COVAR_COLS)), out / "covariates.tsv")
    for k, name in enumerate(("train", "val", "test")):
        write_ids(ids.filter(pl.Series(label == k)), out / f"{name}.ids")
    truth = out / "truth"
    (truth / "masks").mkdir(parents=True, exist_ok=True)
    fnames = [f"F{f + 1}" for f in range(cfg.n_factors)]
    write_table(ids.with_columns([pl.Series(nm, tr.values[:, f]) for f, nm in enumerate(fnames)]), truth / "factors.tsv")
    write_table(ids.with_columns([pl.Series(nm, tr.genetic[:, f]) for f, nm in enumerate(fnames)]), truth / "genetic.tsv")
    _write_causal_and_loci(truth, tr, kinds, freq, bim, fnames)
    summary["timings"]["tables"] = time.perf_counter() - t0

    # -- images ---------------------------------------------------------------------------------
    factor_specs = []
    if cfg.images:
        with log.timed("images"):
            factor_specs = _images(out, cfg, tr.values, age, male, person_seeds, ids, threads, log, progress)
    summary["timings"]["images"] = time.perf_counter() - t0

    params = {
        "config": cfg.to_dict(),
        "n_samples": n, "n_snps": m,
        "factors": [
            {**(factor_specs[f].to_dict() if factor_specs else {"name": fnames[f]}),
             "h2": float(tr.h2[f]), "h2_realized": realized[f],
             "n_strong": int((kinds[f] == "strong").sum()), "n_polygenic": int((kinds[f] == "polygenic").sum())}
            for f in range(cfg.n_factors)
        ],
        "split_sizes": {k: int((label == i).sum()) for i, k in enumerate(("train", "val", "test"))},
        "image_units": f"template intensity x {IMAGE_SCALE:g}, int16" if cfg.images else None,
    }
    atomic_write_text(truth / "params.json", json.dumps(params, indent=1, default=_json_default) + "\n")
    summary.update(n_samples=n, n_snps=m, h2_realized=realized, split_sizes=params["split_sizes"])
    log.info("split: " + ", ".join(f"{k} {v}" for k, v in params["split_sizes"].items()))
    return summary


def _write_causal_and_loci(truth: Path, tr, kinds, freq: np.ndarray, bim: pl.DataFrame, fnames: list[str]) -> None:
    """truth/causal.tsv (every causal SNP) and truth/loci.tsv (each strong one +- 250 kb, clipped
    to its chromosome)."""
    rows = []
    for f, (idx, b, kd) in enumerate(zip(tr.causal, tr.betas, kinds)):
        for i, beta, k in zip(idx, b, kd):
            rows.append((bim["SNP"][int(i)], bim["CHR"][int(i)], int(bim["BP"][int(i)]), fnames[f], float(beta),
                         bim["A1"][int(i)], float(freq[int(i)]), str(k)))
    causal_df = pl.DataFrame(rows, schema=dict(zip(SIM_CAUSAL_COLS, (pl.Utf8, pl.Utf8, pl.Int64, pl.Utf8, pl.Float64,
                                                                    pl.Utf8, pl.Float64, pl.Utf8))), orient="row")
    _write_tsv(causal_df, truth / "causal.tsv")
    chrom_end = bim.group_by("CHR").agg(pl.col("BP").max().alias("END"))
    ends = dict(zip(chrom_end["CHR"].to_list(), chrom_end["END"].to_list()))
    strong = causal_df.filter(pl.col("KIND") == "strong").sort("FACTOR", "CHR", "BP")
    loci = pl.DataFrame({
        "LOCUS": [f"L{i + 1}" for i in range(strong.height)],
        "FACTOR": strong["FACTOR"],
        "CHR": strong["CHR"],
        "START": [max(1, bp - LOCUS_HALF_WIDTH_BP) for bp in strong["BP"].to_list()],
        "END": [min(ends[c], bp + LOCUS_HALF_WIDTH_BP) for c, bp in zip(strong["CHR"].to_list(), strong["BP"].to_list())],
        "SNP": strong["SNP"],
        "BP": strong["BP"],
    }).select(list(SIM_LOCI_COLS))
    _write_tsv(loci, truth / "loci.tsv")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(type(o))


def _write_tsv(df: pl.DataFrame, path: Path) -> None:
    from gimtool.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        df.write_csv(tmp, separator="\t", null_value="NA")


def _images(out: Path, cfg: CohortConfig, z: np.ndarray, age: np.ndarray, male: np.ndarray, seeds: np.ndarray,
            ids: pl.DataFrame, threads: int, log, progress: bool):
    from gimtool import progress as progress_
    from gimtool.imaging.grids import mni_grid
    from gimtool.io.atomic import atomic_path
    from gimtool.io.bids import bids_labels, t1w_path, write_dataset_files
    from gimtool.sim.images import ImageSimulator, choose_factors
    from gimtool.sim.template import load_template

    shape, affine = mni_grid(cfg.voxel)
    rng = np.random.default_rng([cfg.seed, 2])
    specs = choose_factors(cfg.n_factors, rng, strength_scale=cfg.effect_scale, kinds=tuple(cfg.kinds),
                           n_major=cfg.major_factors, minor_scale=cfg.minor_scale)
    sim = ImageSimulator(load_template(cfg.voxel), shape, affine, specs, cfg.nuisance)
    truth = out / "truth"
    masks = sim.factor_masks()
    for f, spec in enumerate(specs):
        _write_nifti(truth / "masks" / f"{spec.name}.nii.gz", masks[f].astype(np.uint8), affine, np.uint8)
    _write_nifti(truth / "template.nii.gz", sim.template_on_grid()[0] * IMAGE_SCALE, affine)
    log.info(f"images: grid {shape[0]}x{shape[1]}x{shape[2]} at {cfg.voxel:g} mm; factors "
             + ", ".join(f"{s.name} {s.kind} {s.region}" for s in specs))

    bids = cfg.layout == "bids"
    img_dir = out / ("bids" if bids else "images")
    img_dir.mkdir(exist_ok=True)
    n = z.shape[0]
    age_z = (age - 62.5) / 10.0
    # batch size from the grid only (never from --threads), so the files do not depend on it
    batch = max(1, min(32, int(2_000_000 // int(np.prod(shape)))))
    iids = ids["IID"].to_list()
    if len(set(iids)) < len(iids):  # IIDs repeat across families: name files FID_IID
        iids = [f"{a}_{b}" for a, b in zip(ids["FID"].to_list(), iids)]
    bad = [x for x in iids if "/" in x or x in (".", "..")]
    if bad:
        raise ValueError(f"sample ID {bad[0]!r} cannot be used as a file name")
    labels = bids_labels(iids) if bids else []
    paths = [t1w_path(img_dir, lab) for lab in labels] if bids else [img_dir / f"{iid}.nii.gz" for iid in iids]
    for p in paths if bids else ():
        p.parent.mkdir(parents=True, exist_ok=True)
    pending = []
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool, \
            progress_.bar(total=n, desc="simulate images", unit="img", enabled=progress) as bar:
        for a in range(0, n, batch):
            b = min(n, a + batch)
            vols = sim.render(z[a:b], age_z[a:b], male[a:b], seeds[a:b])
            vols = np.clip(np.rint(vols * IMAGE_SCALE), -32768, 32767).astype(np.int16)
            # bounded memory: wait for the previous batch's writes before queueing this one
            for fut in pending:
                fut.result()
            pending = [pool.submit(_write_nifti, paths[a + i], vols[i], affine) for i in range(b - a)]
            bar.update(b - a)
        for fut in pending:
            fut.result()
    if bids:
        participants = pl.DataFrame({"participant_id": [f"sub-{lab}" for lab in labels]}).with_columns(ids["FID"], ids["IID"])
        write_dataset_files(img_dir, participants, "gimtool simulated cohort", "gimtool simulate")
        return specs
    lst = ids.with_columns(pl.Series("PATH", [f"images/{iid}.nii.gz" for iid in iids])).select(list(IMAGE_LIST_COLS))
    with atomic_path(out / "images.tsv") as tmp:
        lst.write_csv(tmp, separator="\t")
    return specs
