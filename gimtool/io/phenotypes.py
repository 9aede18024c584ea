"""The one phenotype and covariate loader, shared by gwas, h2, pcs and mi.

``--pheno FILE --pheno-name A,B --covar F1 --covar F2 --covar-name X --keep K --remove R``
behave the same in every command: tables are ``FID IID name...`` (see :func:`read_table`),
names may be repeated or comma-separated, several covariate files are joined by FID IID, and
--keep/--remove select the samples.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import polars as pl

from gimtool.conventions import ID_COLS
from gimtool.errors import InputError
from gimtool.io.tables import align, read_table, select_samples


@dataclass
class PhenoCovar:
    """Phenotypes and covariates in the order of a reference sample list (NaN = missing, not in
    the file, or dropped by --keep/--remove)."""

    samples: pl.DataFrame  # FID IID of the reference (e.g. the .fam)
    y: np.ndarray  # (n, p)
    c: np.ndarray | None  # (n, q); None without --covar
    pheno_names: list[str]
    covar_names: list[str]
    mask: np.ndarray  # (n,) bool: samples left by --keep/--remove


def split_names(names: Sequence[str] | None) -> list[str] | None:
    """`--pheno-name A --pheno-name B` and `--pheno-name A,B` both give [A, B]; None for none."""
    if not names:
        return None
    out = [x for n in names for x in str(n).replace(",", " ").split()]
    return out or None


def as_files(paths) -> list:
    """One path or several (a repeated option) as a list."""
    if paths is None:
        return []
    return [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)


MISSING_CODE = -9  # PLINK 2's default --input-missing-phenotype (BOLT-LMM's too)


def read_named_table(path, names: Sequence[str] | None, what: str, missing_code: float | None = MISSING_CODE,
                     log=None) -> pl.DataFrame:
    """A `FID IID name...` table with the named columns (all when None); an error when it has none.

    In phenotype and covariate files `missing_code` (-9, PLINK 2's --input-missing-phenotype) is
    missing too, and the log counts it; covariate columns of text are kept as text (categorical)."""
    counts: dict[str, int] = {}
    pheno_like = what in ("phenotype", "covariate")
    tab = read_table(path, names, what=what, missing_code=missing_code if pheno_like else None,
                     categorical=what == "covariate", counts=counts)
    if not tab.columns[2:]:
        raise InputError(f"{path}: no {what} columns after {' '.join(ID_COLS)}")
    if counts and log:
        each = ", ".join(f"{c} {n}" for c, n in counts.items())
        log.info(f"{path}: {sum(counts.values())} {what} values equal to {missing_code:g} read as missing "
                 f"(--input-missing-phenotype): {each}")
    return tab


def aligned_columns(samples: pl.DataFrame, path, names, what: str, log=None, kept: np.ndarray | None = None,
                    ref_name: str = ".fam", missing_code: float | None = MISSING_CODE) -> tuple[np.ndarray, list[str]]:
    """Columns of a table in the order of `samples` (NaN where absent). `kept`: the samples
    --keep/--remove leave, against which 'few in common' is judged. A categorical covariate
    (a column of text) becomes its indicator columns (see :func:`indicators`)."""
    tab = read_named_table(path, names, what, missing_code, log)
    cols = tab.columns[2:]
    al = align(samples, tab)
    if al.n_matched == 0:
        raise InputError(
            f"{path}: no sample IDs in common with the {ref_name} (first {what} ID: "
            f"{tab['FID'][0]} {tab['IID'][0]}; first {ref_name} ID: {samples['FID'][0]} {samples['IID'][0]})"
        )
    msg = al.describe(ref_name, f"{what} file")
    if log:
        log.info(msg)
    n_kept = al.n_ref if kept is None else int(kept.sum())
    n_matched_kept = al.n_matched if kept is None else int(kept[al.ref_index].sum())
    if (n_matched_kept < 0.5 * n_kept or al.n_matched < 0.5 * al.n_table) and log:
        log.warn(f"{path}: few samples in common: {msg}" + ("" if kept is None else f" ({n_matched_kept} of the {n_kept} kept samples)"))
    arrays, out_names = [], []
    for c in cols:
        if tab[c].dtype == pl.Utf8:
            values = np.full(samples.height, None, dtype=object)
            values[al.ref_index] = tab[c].to_numpy()[al.table_index]
            a, n = indicators(c, values, kept, log)
        else:
            a = np.full((samples.height, 1), np.nan)
            a[al.ref_index, 0] = tab[c].to_numpy().astype(np.float64)[al.table_index]
            n = [c]
        arrays.append(a)
        out_names += n
    return np.concatenate(arrays, axis=1), out_names


def indicators(name: str, values: np.ndarray, kept: np.ndarray | None = None, log=None) -> tuple[np.ndarray, list[str]]:
    """A categorical covariate (text values, None missing) as n-1 indicator columns named
    ``NAME=LEVEL``, as plink2 --glm splits it: the most frequent level among the `kept` samples
    is the reference (no column); missing stays NaN in every column."""
    present = np.array([v is not None for v in values])
    use = present if kept is None else present & kept
    levels, n = np.unique(values[use].astype(str), return_counts=True)
    if len(levels) == 0:
        levels, n = np.unique(values[present].astype(str), return_counts=True)
    ref = levels[int(np.argmax(n))] if len(levels) else None
    others = [lv for lv in levels if lv != ref]
    a = np.full((len(values), len(others)), np.nan)
    for j, lv in enumerate(others):
        a[present, j] = (values[present].astype(str) == lv).astype(np.float64)
    names = [f"{name}={lv}" for lv in others]
    if log:
        counts = ", ".join(f"{lv} {k}" for lv, k in zip(levels, n))
        log.info(f"covariate {name}: categorical, {len(levels)} levels ({counts}); "
                 + (f"{len(others)} indicator column(s) {', '.join(names)}, reference {ref}" if others
                    else "one level only: no indicator column"))
    return a, names


def _header_names(path) -> list[str]:
    with open(path) as fh:
        return fh.readline().split()[2:]


def load_covariates(samples: pl.DataFrame, covar, covar_names: list[str] | None, log=None, kept=None,
                    ref_name: str = ".fam", missing_code: float | None = MISSING_CODE) -> tuple[np.ndarray | None, list[str]]:
    """Covariates of one or several files joined by FID IID, in the order of `samples`;
    (None, []) without files. `covar_names` picks (and orders) columns across the files; a
    categorical covariate stands for its indicator columns (``NAME=LEVEL``)."""
    files = as_files(covar)
    if not files:
        return None, []
    parts = []
    for path in files:
        names = [n for n in covar_names if n in _header_names(path)] if covar_names else None
        if covar_names and not names:
            continue  # none of the asked-for covariates is in this file
        parts.append(aligned_columns(samples, path, names, "covariate", log, kept, ref_name, missing_code))
    where = ", ".join(map(str, files))
    if not parts:
        raise InputError(f"{where}: none of the covariates {', '.join(covar_names)} found")
    c = np.concatenate([a for a, _ in parts], axis=1)
    cnames = [n for _, names in parts for n in names]
    origin = [n.split("=", 1)[0] if n not in header_names(files) else n for n in cnames]
    dup = sorted({n for n in cnames if cnames.count(n) > 1})
    if dup:
        raise InputError(f"{where}: covariate name(s) {', '.join(dup)} appear in more than one --covar file")
    if covar_names:
        missing = [n for n in covar_names if n not in origin]
        if missing:
            raise InputError(f"{where}: covariate(s) {', '.join(missing)} not found; covariate columns are: {', '.join(cnames)}")
        idx = [i for n in covar_names for i, o in enumerate(origin) if o == n]
        c, cnames = c[:, idx], [cnames[i] for i in idx]
    return c, cnames


def header_names(files) -> set[str]:
    """The column names after FID IID in the header lines of `files`."""
    return {n for path in files for n in _header_names(path)}


def load_pheno_covar(samples: pl.DataFrame, pheno, pheno_names=None, covar=None, covar_names=None, keep=None,
                     remove=None, log=None, ref_name: str = ".fam", missing_code: float | None = MISSING_CODE) -> PhenoCovar:
    """Read phenotypes (and covariates) and put them in the order of `samples` (FID IID);
    samples dropped by --keep/--remove get NaN phenotypes. `missing_code` (default -9, PLINK 2's
    --input-missing-phenotype) is missing in both files."""
    samples = samples.select(*ID_COLS)
    mask = select_samples(samples, keep, remove, log)
    y, pnames = aligned_columns(samples, pheno, split_names(pheno_names), "phenotype", log, mask, ref_name, missing_code)
    c, cnames = load_covariates(samples, covar, split_names(covar_names), log, mask, ref_name, missing_code)
    y[~mask] = np.nan
    return PhenoCovar(samples, y, c, pnames, cnames, mask)
