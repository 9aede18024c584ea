"""`gimtool simulate` as a function: :func:`make_config` turns the command's options into a
cohort configuration (a preset with overrides), :func:`run` simulates the cohort into a folder
(the simulator itself is :mod:`gimtool.sim`). A script calls::

    from gimtool.pipelines import simulate
    simulate.run("cohort", simulate.make_config("tiny", n=200, seed=3))
"""

from __future__ import annotations

from pathlib import Path

from gimtool.errors import InputError, OptionError

# command option -> field of the simulator's configuration
_FIELDS = {"n": "n_samples", "chromosomes": "n_chromosomes", "chrom_length_mb": "chrom_length_mb", "demes": "demes",
           "current_ne": "current_ne", "migration": "migration", "split_generations": "split_generations",
           "factors": "n_factors", "causal": "n_causal", "strong_share": "strong_share", "polygenic": "n_polygenic",
           "effect_scale": "effect_scale", "voxel": "voxel", "bfile": "bfile", "layout": "layout"}

# what simulate writes into its folder (sim.cohort); a rerun replaces exactly these
LAYOUT = ("geno.bed", "geno.bim", "geno.fam", "genetic_map.txt", "images", "images.tsv", "bids", "covariates.tsv",
          "train.ids", "val.ids", "test.ids", "truth", "simulate.log")


def clear_previous(outdir: Path) -> list[str]:
    """Remove the outputs of an earlier simulation in `outdir` (and the temporary files of an
    interrupted one), so that no stale image is left for `prep-mri --pattern` to pick up; a folder
    that also holds files simulate does not write is refused. Returns the names removed."""
    import shutil

    if not outdir.is_dir():
        return []
    entries = sorted(outdir.iterdir())
    ours = [p for p in entries if p.name in LAYOUT or p.name.startswith(".tmp")]
    foreign = [p.name for p in entries if p not in ours]
    if foreign:
        raise InputError(f"--out {outdir}: the folder holds files that simulate does not write ({', '.join(foreign[:3])}"
                         f"{', ...' if len(foreign) > 3 else ''}); give a new or empty folder")
    for p in ours:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
    return [p.name for p in ours]


def _floats(text: str, opt: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise OptionError(f"{opt} {text}: expected comma-separated numbers") from None


def make_config(preset: str = "default", seed: int = 0, snps: int | None = None, growth: str | None = None,
                h2: str | None = None, split: str | None = None, no_images: bool = False, **options):
    """The cohort configuration: `preset` with every option that is not None (names as the
    command's options: n, chromosomes, demes, factors, causal, voxel, bfile, ...)."""
    from gimtool.sim.cohort import PRESETS, preset as make_preset

    if preset not in PRESETS:
        raise OptionError(f"--preset {preset}: expected one of {', '.join(PRESETS)}")
    over: dict = {"seed": seed}
    over.update({_FIELDS[k]: v for k, v in options.items() if v is not None})
    if snps is not None:
        over["n_snps"] = snps or None
    if growth is not None:
        if growth not in ("recent", "none"):
            raise OptionError(f"--growth {growth}: expected recent or none")
        over["growth"] = growth
    if h2 is not None:
        over["h2"] = _floats(h2, "--h2")
        if any(not 0 <= x <= 1 for x in over["h2"]):
            raise OptionError(f"--h2 {h2}: each value must be between 0 and 1")
    if split is not None:
        sp = _floats(split, "--split")
        if len(sp) != 3 or any(x < 0 for x in sp) or sum(sp) <= 0 or sp[2] <= 0:
            raise OptionError(f"--split {split}: expected three non-negative shares train,val,test with test > 0")
        over["split"] = tuple(sp)
    if no_images:
        over["images"] = False
    if options.get("layout") not in (None, "flat", "bids"):
        raise OptionError(f"--layout {options['layout']}: expected flat or bids")
    cfg = make_preset(preset, **over)
    try:
        cfg.h2_per_factor()
    except ValueError as e:
        raise OptionError(f"--h2: {e}") from None
    return cfg


def run(out: str, cfg, threads: int = 1) -> Path:
    """Simulate the cohort `cfg` into the folder `out` (created), with out/simulate.log."""
    from gimtool.devices import set_threads
    from gimtool.runlog import RunLog
    from gimtool.sim.cohort import simulate_cohort

    set_threads(threads)
    outdir = Path(out)
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    from gimtool.io.atomic import make_dir

    removed = clear_previous(outdir)
    make_dir(outdir, f"--out {out}")
    with RunLog(str(outdir / "simulate"), "simulate") as log:
        if removed:
            log.info(f"removed the previous simulation's outputs in {outdir}: {', '.join(removed)}")
        if cfg.bfile:
            log.input("bfile", cfg.bfile + ".bed")
        try:
            res = simulate_cohort(outdir, cfg, threads=threads, log=log, progress=True)
        except ValueError as e:
            raise InputError(str(e)) from None
        log.output("cohort", outdir)
        log.summary(f"simulate: wrote {res['n_samples']} people, {res['n_snps']} SNPs (geno.bed/.bim/.fam)"
                    + ("" if not cfg.images else ", their images (bids/, a BIDS dataset)" if cfg.layout == "bids"
                       else ", their images (images/, images.tsv)")
                    + f", covariates, train/val/test ids and the truth to {outdir}/")
    return outdir
