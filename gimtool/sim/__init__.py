"""The synthetic cohort simulator: ground truth for tests and benchmarks.

- :mod:`gimtool.sim.genotypes`: coalescent genotypes (msprime) with a hotspot recombination map,
  recent growth and optional demes: ``simulate_genotypes(n_samples, ...)``.
- :mod:`gimtool.sim.traits`: quantitative traits with a set heritability: ``simulate_traits(G, h2, ...)``.
- :mod:`gimtool.sim.template`, :mod:`gimtool.sim.images`: volumes on the MNI152 template whose
  regions follow latent genetic factors, with non-genetic nuisance.
- :mod:`gimtool.sim.cohort`: a whole cohort on disk: ``simulate_cohort(out_dir, preset("tiny"))``.
"""
