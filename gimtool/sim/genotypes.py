"""Coalescent genotypes with real LD, a recombination map with hotspots, and optional structure.

msprime simulates each chromosome independently (diploid, Ne = 10,000, mutation rate 1.25e-8)
under a recombination map whose background rate varies along the chromosome and carries
narrow hotspots. The demography matters for everything downstream:

* ``growth="recent"`` (default): Ne = 10,000 until ``growth_generations`` ago, then exponential
  growth to ``current_ne`` (1,000,000 by default, ~2.3 % per generation, like the recent growth of
  European populations). The sample is then a small share of the population: little cryptic
  relatedness, short-range LD only, and LD-score regression's intercept stays near 1.
* ``growth="none"``: a constant Ne of 10,000. Thousands of people on a short genome are then a
  large share of the population: strong cryptic relatedness and long-range LD (LDSC's intercept
  absorbs signal). Useful to test robustness, not as a default.

With ``demes > 1`` the demes split from one ancestral population ``split_generations`` ago and
exchange migrants at rate ``migration`` per generation; each person's deme is recorded.

msprime is imported lazily (it is an optional dependency, extra ``sim``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from gimtool.conventions import BIM_COLS, GENMAP_COLS

NE = 10_000
MUTATION_RATE = 1.25e-8
MEAN_RATE_CM_PER_MB = 1.2  # human genome-wide average is ~1.2 cM/Mb
GROWTH_MODELS = ("recent", "none")


def _import_msprime():
    try:
        import msprime
    except ImportError as e:  # pragma: no cover - environment dependent
        from gimtool.errors import GimtoolError

        raise GimtoolError("simulating genotypes needs msprime: pip install 'gimtool[sim]'") from e
    return msprime


@dataclass
class SimulatedGenotypes:
    """Genotypes of a simulated cohort.

    G: (n_samples, n_snps) int8, count of the bim's A1 allele (the minor allele in the sample).
    bim: CHR (str) SNP CM (cM) BP A1 A2.  fam: FID IID FATHER MOTHER SEX PHENO (strings).
    genetic_map: GENMAP_COLS (chr position COMBINED_rate(cM/Mb) Genetic_Map(cM)), all chromosomes.
    population: (n_samples,) deme name of each person ("pop0", "pop1", ...).
    params: the settings used.
    """

    G: np.ndarray
    bim: pl.DataFrame
    fam: pl.DataFrame
    genetic_map: pl.DataFrame
    population: np.ndarray
    params: dict = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return self.G.shape[0]

    @property
    def n_snps(self) -> int:
        return self.G.shape[1]


def recombination_map(length_bp: int, rng: np.random.Generator, mean_cm_per_mb: float = MEAN_RATE_CM_PER_MB,
                      hotspot_spacing_bp: float = 100_000, hotspot_width_bp: int = 2_000,
                      hotspot_share: float = 0.6, segment_bp: int = 250_000) -> tuple[np.ndarray, np.ndarray]:
    """A recombination map with a varying background and hotspots.

    Returns (positions, rates): positions (k+1,) bp edges from 0 to length_bp, rates (k,) per bp per
    generation. The background rate is gamma-distributed per ``segment_bp`` segment; hotspots
    (one per ``hotspot_spacing_bp`` on average, ``hotspot_width_bp`` wide) carry ``hotspot_share``
    of all crossovers, as in human fine-scale maps (~60 % of crossovers in ~6 % of the sequence).
    The map is scaled so that its mean rate is ``mean_cm_per_mb``.
    """
    n_seg = max(1, int(round(length_bp / segment_bp)))
    seg_edges = np.linspace(0, length_bp, n_seg + 1).round().astype(np.int64)
    seg_rate = rng.gamma(shape=2.0, scale=0.5, size=n_seg)
    n_hot = rng.poisson(length_bp / hotspot_spacing_bp)
    starts = np.sort(rng.integers(0, max(1, length_bp - hotspot_width_bp), size=n_hot))
    # drop overlapping hotspots so the edges stay strictly increasing
    keep = np.ones(n_hot, dtype=bool)
    last_end = -1
    for i, s in enumerate(starts):
        if s <= last_end:
            keep[i] = False
        else:
            last_end = s + hotspot_width_bp
    starts = starts[keep]
    hot_heat = rng.gamma(shape=1.0, scale=1.0, size=starts.size)
    edges = np.unique(np.concatenate([seg_edges, starts, starts + hotspot_width_bp]))
    edges = edges[(edges >= 0) & (edges <= length_bp)]
    mids = (edges[:-1] + edges[1:]) / 2
    widths = np.diff(edges).astype(np.float64)
    bg = seg_rate[np.clip(np.searchsorted(seg_edges, mids, side="right") - 1, 0, n_seg - 1)]
    hot = np.zeros_like(mids)
    idx = np.searchsorted(starts, mids, side="right") - 1
    inside = (idx >= 0) & (mids < starts[np.clip(idx, 0, None)] + hotspot_width_bp) if starts.size else np.zeros(mids.size, bool)
    hot[inside] = hot_heat[idx[inside]]
    bg_mass = float((bg * widths).sum())
    hot_mass = float((hot * widths).sum())
    total = mean_cm_per_mb * 1e-8 * length_bp  # Morgans
    if hot_mass > 0:
        rates = bg * widths / bg_mass * total * (1 - hotspot_share) + hot * widths / hot_mass * total * hotspot_share
    else:
        rates = bg * widths / bg_mass * total
    return edges.astype(np.float64), rates / widths


def _derived_frequencies(ts) -> np.ndarray:
    """Derived-allele frequency of every site (sites with more than one mutation get -1, so that
    any MAF filter drops them)."""
    mpos = ts.sites_position[ts.mutations_site]
    nodes = ts.mutations_node
    counts = np.zeros(ts.num_mutations, dtype=np.int64)
    for tree in ts.trees():
        a, b = np.searchsorted(mpos, [tree.interval.left, tree.interval.right])
        ns = tree.num_samples
        counts[a:b] = [ns(int(u)) for u in nodes[a:b]]
    freq = np.zeros(ts.num_sites)
    np.add.at(freq, ts.mutations_site, counts / ts.num_samples)
    multi = np.bincount(ts.mutations_site, minlength=ts.num_sites) != 1
    freq[multi] = -1.0
    return freq


def _demography(msprime, demes: int, growth: str, current_ne: float, growth_generations: float,
                split_generations: float, migration: float):
    if growth not in GROWTH_MODELS:
        raise ValueError(f"growth must be one of {GROWTH_MODELS}, got {growth!r}")
    rate = np.log(current_ne / NE) / growth_generations if growth == "recent" else 0.0
    size_now = current_ne if growth == "recent" else NE
    dem = msprime.Demography()
    names = [f"pop{i}" for i in range(demes)]
    for nm in names:
        dem.add_population(name=nm, initial_size=size_now, growth_rate=rate)
    if growth == "recent":
        for nm in names:
            dem.add_population_parameters_change(time=growth_generations, initial_size=NE, growth_rate=0, population=nm)
    if demes > 1:
        dem.add_population(name="ancestral", initial_size=NE)
        dem.set_symmetric_migration_rate(names, migration)
        dem.add_population_split(time=split_generations, derived=names, ancestral="ancestral")
        dem.sort_events()
    return dem, names


def _chromosome(msprime, c: int, length_bp: int, samples: dict, dem, min_maf: float, rng: np.random.Generator):
    """One chromosome: (tree sequence of the sites with MAF >= min_maf, its bim rows, its genetic
    map rows, which sites flip so that A1 is the sample's minor allele)."""
    edges, rates = recombination_map(length_bp, rng)
    ratemap = msprime.RateMap(position=edges, rate=rates)
    anc_seed, mut_seed = (int(x) for x in rng.integers(1, 2**31 - 1, size=2))
    ts = msprime.sim_ancestry(samples=samples, demography=dem, recombination_rate=ratemap, ploidy=2,
                              random_seed=anc_seed)
    ts = msprime.sim_mutations(ts, rate=MUTATION_RATE, model=msprime.BinaryMutationModel(), random_seed=mut_seed)
    # filter on frequency before decoding genotypes: with population growth most sites are
    # rare, and a full haplotype matrix would need gigabytes
    freq = _derived_frequencies(ts)
    ok = np.minimum(freq, 1 - freq) >= min_maf
    ts = ts.delete_sites(np.flatnonzero(~ok))
    freq = freq[ok]
    pos = ts.sites_position
    bp = pos.astype(np.int64) + 1  # tskit positions are 0-based
    bases = np.array(list("ACGT"))
    pair = rng.permuted(np.tile(np.arange(4), (pos.size, 1)), axis=1)[:, :2]
    bim = pl.DataFrame({"CHR": [str(c)] * pos.size, "SNP": [f"{c}:{b}" for b in bp],
                        "CM": ratemap.get_cumulative_mass(pos) * 100.0, "BP": bp,
                        "A1": bases[pair[:, 0]], "A2": bases[pair[:, 1]]})
    left = edges[:-1]
    maps = [pl.DataFrame({
        GENMAP_COLS[0]: np.full(left.size, c, dtype=np.int64),
        GENMAP_COLS[1]: left.astype(np.int64) + 1,
        GENMAP_COLS[2]: rates * 1e8,
        GENMAP_COLS[3]: ratemap.get_cumulative_mass(left) * 100.0,
    }), pl.DataFrame({  # the map's last row gives the chromosome end, so interpolation covers every SNP
        GENMAP_COLS[0]: [c], GENMAP_COLS[1]: [int(edges[-1])],
        GENMAP_COLS[2]: [0.0], GENMAP_COLS[3]: [float(ratemap.get_cumulative_mass(edges[-1])) * 100.0],
    })]
    return ts, bim, maps, freq > 0.5  # A1 = minor allele in the sample, as PLINK 1.9 writes it


def _decode(kept_ts: list, flips: list, per_chr: np.ndarray, keep: np.ndarray, n_samples: int) -> np.ndarray:
    """(n_samples, keep.size) int8 allele counts of the kept sites, chromosome by chromosome."""
    G = np.empty((n_samples, keep.size), dtype=np.int8)
    offset = col = 0
    for ts, flip, m in zip(kept_ts, flips, per_chr):
        sel = keep[(keep >= offset) & (keep < offset + m)] - offset
        ts = ts.delete_sites(np.setdiff1d(np.arange(m), sel))
        H = ts.genotype_matrix()  # sites x haplotypes, derived allele = 1
        g = (H[:, 0::2] + H[:, 1::2]).astype(np.int8)
        del H
        f = flip[sel]
        g[f] = 2 - g[f]
        G[:, col : col + sel.size] = g.T
        col += sel.size
        offset += m
    return G


def simulate_genotypes(
    n_samples: int,
    n_chromosomes: int = 2,
    chrom_length_mb: float = 5.0,
    n_snps: int | None = None,
    demes: int = 1,
    growth: str = "recent",
    current_ne: float = 1_000_000,
    growth_generations: float = 200,
    split_generations: float = 1_500,
    migration: float = 1e-4,
    deme_shares: list[float] | None = None,
    min_maf: float = 0.01,
    seed: int = 0,
    id_prefix: str = "S",
) -> SimulatedGenotypes:
    """Simulate a diploid cohort: `n_chromosomes` chromosomes of `chrom_length_mb` Mb each.

    SNPs with MAF >= `min_maf` in the sample are kept, then thinned at random to `n_snps` (all
    kept when None). People are split over `demes` as evenly as possible (or by `deme_shares`).
    Same arguments, same output.
    """
    msprime = _import_msprime()
    if n_samples < 2:
        raise ValueError(f"n_samples must be at least 2, got {n_samples}")
    if demes < 1:
        raise ValueError(f"demes must be at least 1, got {demes}")
    if n_chromosomes < 1 or chrom_length_mb <= 0:
        raise ValueError("need at least one chromosome of positive length")
    rng = np.random.default_rng(seed)
    dem, names = _demography(msprime, demes, growth, current_ne, growth_generations, split_generations, migration)
    shares = np.full(demes, 1.0 / demes) if deme_shares is None else np.asarray(deme_shares, float) / np.sum(deme_shares)
    counts = np.floor(shares * n_samples).astype(int)
    counts[: n_samples - counts.sum()] += 1
    samples = {nm: int(c) for nm, c in zip(names, counts) if c > 0}
    length_bp = int(round(chrom_length_mb * 1e6))

    kept_ts, bims, maps, flips = [], [], [], []
    population = None
    for c in range(1, n_chromosomes + 1):
        ts, bim_c, map_c, flip = _chromosome(msprime, c, length_bp, samples, dem, min_maf, rng)
        if population is None:
            pop_ids = np.array([ts.node(ind.nodes[0]).population for ind in ts.individuals()])
            population = np.array([ts.population(p).metadata["name"] for p in pop_ids])
        kept_ts.append(ts)
        bims.append(bim_c)
        maps += map_c
        flips.append(flip)

    bim = pl.concat(bims)
    per_chr = np.array([t.num_sites for t in kept_ts])
    total = int(per_chr.sum())
    if n_snps is not None and n_snps < total:
        keep = np.sort(rng.choice(total, size=n_snps, replace=False))
    else:
        keep = np.arange(total)
    G = _decode(kept_ts, flips, per_chr, keep, n_samples)
    bim = bim[keep].select(BIM_COLS)
    width = len(str(n_samples))
    iid = [f"{id_prefix}{i + 1:0{width}d}" for i in range(n_samples)]
    fam = pl.DataFrame({"FID": iid, "IID": iid, "FATHER": ["0"] * n_samples, "MOTHER": ["0"] * n_samples,
                        "SEX": ["0"] * n_samples, "PHENO": ["-9"] * n_samples})
    params = dict(n_samples=n_samples, n_chromosomes=n_chromosomes, chrom_length_mb=chrom_length_mb,
                  n_snps=n_snps, n_snps_available=total, demes=demes, growth=growth, current_ne=current_ne,
                  growth_generations=growth_generations, split_generations=split_generations,
                  migration=migration, min_maf=min_maf, seed=seed, ne=NE, mutation_rate=MUTATION_RATE)
    return SimulatedGenotypes(G=G, bim=bim, fam=fam, genetic_map=pl.concat(maps), population=population, params=params)
