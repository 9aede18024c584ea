"""`gimtool merge` as a function: join the parts that the tasks of a cluster job array wrote into
what one run writes. :func:`run` finds them by their names (:mod:`gimtool.pipelines.shards`)::

    from gimtool.pipelines import merge
    merge.run("cohort.img")                         # cohort.img.shard1ofN/ ... (prep-mri --shard)
    merge.run("emb")                                # emb.shard1ofN.tsv ... (embed --shard)
    merge.run("gwas/all", gwas=["gwas/c1", "gwas/c2"])  # gwas --chunk 1/2, 2/2 outputs, in order

Image stores: the volumes and per-scan QC of the parts in part order, failed.tsv joined, then the
cohort QC (mean image, correlations, outliers, qc.png) over the whole cohort, as prep-mri does it.
Embeddings: the tables' lines, the header once. GWAS: each phenotype's sumstats lines, one gzip
member as gwas writes it; the summary's counts and minimum P from the chunks' summaries, its
LAMBDA_GC from the joined P values (gwas prints 7 significant digits, so it equals the one-run
value to about 1e-7), the plots redrawn.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from gimtool.errors import InputError
from gimtool.pipelines.shards import find_parts


def run(out: str, gwas=None, qc_threshold: float = 0.8, mask=None, plots: bool = True) -> str:
    """Merge the parts of `out` (or, with `gwas`, the chunk output prefixes in chunk order); returns
    one line saying what was written (also the log's summary line)."""
    from gimtool.runlog import RunLog

    with RunLog(out, "merge") as log:
        done = _merge(out, gwas, qc_threshold, mask, plots, log)
        log.summary(f"merge: {done}")
        return done


def _merge(out: str, gwas, qc_threshold: float, mask, plots: bool, log) -> str:
    if gwas:
        names = merge_gwas(out, list(gwas), plots, log)
        return f"wrote the sumstats of {len(names)} phenotypes ({', '.join(names)}) from {len(gwas)} chunks to {out}.*"
    stores, tables = find_parts(out, folders=True), find_parts(out, ".tsv")
    if stores and tables:
        raise InputError(f"{out}: both image store parts ({stores[0].name}) and table parts ({tables[0].name}) are "
                         f"present; merge one kind under one --out")
    if stores:
        n = merge_image_stores(out, stores, qc_threshold, mask, log)
        log.info(f"{len(stores)} parts, {n} volumes merged into {out}")
        return f"wrote the image store {out} ({n} volumes from {len(stores)} parts)"
    if tables:
        n = merge_tables(out, tables, log)
        log.info(f"{len(tables)} parts, {n} people merged into {out}.tsv")
        return f"wrote {out}.tsv ({n} people from {len(tables)} parts)"
    raise InputError(f"{out}: no parts found: expected {out}.shard1ofN ... (prep-mri --shard K/N --out {out}) or "
                     f"{out}.shard1ofN.tsv ... (embed --shard); gwas --chunk outputs are given with --gwas")


# -- embeddings (and any FID IID table) ------------------------------------------------------------

def merge_tables(out: str, parts: list[Path], log) -> int:
    """OUT.tsv: the header of the first part, then every part's lines in order; returns the rows."""
    from gimtool.io.atomic import atomic_path

    rows = 0
    with atomic_path(f"{out}.tsv") as tmp, open(tmp, "wb") as dst:
        header = None
        for p in parts:
            log.input("part", p)
            with open(p, "rb") as src:
                first = src.readline()
                if header is None:
                    header = first
                    dst.write(first)
                elif first != header:
                    raise InputError(f"{p}: its columns differ from those of {parts[0]}; the parts come from different runs")
                for line in src:
                    dst.write(line)
                    rows += 1
    log.output("table", f"{out}.tsv")
    return rows


# -- image stores ----------------------------------------------------------------------------------

def _mask_for_qc(meta: dict, mask, shape, affine, log):
    """The cohort-QC mask the parts were made with (meta intensity "mask"), or --mask in its place."""
    from gimtool.pipelines.prep_mri import _target_mask

    recorded = (meta.get("intensity") or {}).get("mask", "nonzero")
    if recorded == "nonzero":
        if mask is not None:
            raise InputError(f"--mask {mask}: the parts were made without --mask; leave it out")
        return None
    path = mask if mask is not None else recorded
    if not Path(path).is_file():
        raise InputError(f"the parts were made with --mask {recorded}, which is not there; give it with --mask")
    return _target_mask(path, shape, affine, log)


def _read_failed(part: Path) -> list[dict]:
    import polars as pl

    from gimtool.conventions import IMAGE_FAILED_COLS

    f = part / "failed.tsv"
    if not f.is_file():
        return []
    df = pl.read_csv(f, separator="\t", schema={c: pl.Utf8 for c in IMAGE_FAILED_COLS}, null_values=[])
    return df.to_dicts()


def _open_parts(parts: list[Path]):
    """The parts as ImageStores, checked to share the grid and encoding and no person."""
    from gimtool.io.imagestore import ImageStore, _same_geometry

    stores = [ImageStore(p) for p in parts]
    for st in stores[1:]:
        diff = _same_geometry(stores[0].meta, st.meta)
        if diff:
            raise InputError(f"{st.path}: made with a different {diff.replace('this run', stores[0].path.name)}; "
                             f"rerun that part with the options of the others")
    seen: dict[tuple[str, str], Path] = {}
    for st in stores:
        for fid, iid in st.samples.iter_rows():
            if (fid, iid) in seen:
                raise InputError(f"{st.path}: FID {fid} IID {iid} is also in {seen[fid, iid]}; the parts are of different lists")
            seen[fid, iid] = st.path
    return stores


def merge_image_stores(out: str, parts: list[Path], qc_threshold: float, mask, log) -> int:
    """The image store OUT from its parts, as one prep-mri run makes it; returns its volumes."""
    from gimtool.conventions import IMAGE_QC_COLS
    from gimtool.io.imagestore import StoreWriter
    from gimtool.pipelines.prep_mri import _finish

    stores = _open_parts(parts)
    meta = stores[0].meta
    shape, affine = tuple(meta["shape"]), np.asarray(meta["affine"], dtype=float)
    writer = StoreWriter(out, shape, affine, tuple(meta["voxel_size"]), IMAGE_QC_COLS, dtype=meta["dtype"],
                         scale=meta.get("scale"), intensity=meta.get("intensity"))
    try:
        mask_arr = _mask_for_qc(meta, mask, shape, affine, log)
        failed = []
        with log.timed("join volumes"):
            for st in stores:
                log.input("part", st.path)
                for i, row in enumerate(st.manifest.iter_rows(named=True)):
                    writer.append(np.asarray(st.volumes[i]), {c: row.get(c) for c in writer.cols})
                if (st.path / "nifti").is_dir():
                    shutil.copytree(st.path / "nifti", writer.nifti_dir, dirs_exist_ok=True)
                failed += _read_failed(st.path)
        _finish(writer, failed, meta["dtype"], mask_arr, qc_threshold, affine, log)
    finally:
        writer.close()
    log.output("image store", out)
    log.output("failed scans", f"{out}/failed.tsv ({len(failed)} rows)")
    return len(writer.rows)


# -- gwas --chunk outputs --------------------------------------------------------------------------

def _chunk_summaries(prefixes: list[str], log):
    """Each chunk's summary.tsv, checked to name the same phenotypes with the same N."""
    import polars as pl

    if len(set(prefixes)) != len(prefixes):
        raise InputError(f"--gwas: a chunk is given twice ({', '.join(sorted({p for p in prefixes if prefixes.count(p) > 1}))})")
    sums = []
    for pre in prefixes:
        f = Path(f"{pre}.summary.tsv")
        if not f.is_file():
            raise InputError(f"{f}: missing; is {pre} the --out of a finished gwas --chunk run?")
        log.input("chunk", f)
        sums.append(pl.read_csv(f, separator="\t", null_values="NA"))
    for pre, s in zip(prefixes[1:], sums[1:]):
        if s.select("PHENO", "N").to_dicts() != sums[0].select("PHENO", "N").to_dicts():
            raise InputError(f"{pre}.summary.tsv: phenotypes or N differ from {prefixes[0]}.summary.tsv; "
                             f"the chunks come from different runs")
    return sums


def _join_sumstats(prefixes: list[str], name: str, path: str) -> list[int]:
    """Write `path` from the chunks' sumstats of phenotype `name`; returns the rows of each chunk."""
    from gimtool.io.atomic import atomic_path
    from gimtool.io.sumstats import _read_bytes, gzip_bytes

    header, bodies = None, []
    for pre in prefixes:
        f = Path(f"{pre}.{name}.sumstats.gz")
        if not f.is_file():
            raise InputError(f"{f}: missing (phenotype {name} is in {pre}.summary.tsv)")
        head, _, body = _read_bytes(f).partition(b"\n")
        if header is not None and head != header:
            raise InputError(f"{f}: its columns differ from those of {prefixes[0]}.{name}.sumstats.gz")
        header = head
        bodies.append(body)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(gzip_bytes(header + b"\n" + b"".join(bodies), 1))  # as gwas writes it: one member, level 1
    return [b.count(b"\n") for b in bodies]


def _check_order(df, counts: list[int], prefixes: list[str], log) -> None:
    """Warn when a chunk starts before the previous one ends on the genome: chunks out of order."""
    ends = np.cumsum(counts)
    chrom, bp = df["CHR"].cast(str).to_list(), df["BP"].to_list()

    def at(i: int) -> tuple:  # numbered chromosomes in their order, then the named ones (X, Y, MT)
        return (0, int(chrom[i]), "", bp[i]) if chrom[i].isdigit() else (1, 0, chrom[i], bp[i])

    for k in range(len(counts) - 1):
        a, b = int(ends[k]) - 1, int(ends[k])
        if counts[k] and b < df.height and at(a) > at(b):
            log.warn(f"{prefixes[k + 1]} starts at {chrom[b]}:{bp[b]}, before the end of {prefixes[k]} ({chrom[a]}:{bp[a]}): "
                     f"give the chunks in --chunk order (1/N first)")


def merge_gwas(out: str, prefixes: list[str], plots: bool, log) -> list[str]:
    """OUT.<PHENO>.sumstats.gz (and plots) and OUT.summary.tsv from gwas --chunk outputs; returns
    the phenotypes."""
    import polars as pl

    from gimtool.conventions import GWAS_SUMMARY_COLS
    from gimtool.io import figures
    from gimtool.io.atomic import atomic_path
    from gimtool.io.sumstats import read_sumstats
    from gimtool.pipelines.gwas import GWS, summary_row

    sums = _chunk_summaries(prefixes, log)
    names = sums[0]["PHENO"].cast(str).to_list()
    rows = []
    for j, nm in enumerate(names):
        path = f"{out}.{nm}.sumstats.gz"
        counts = _join_sumstats(prefixes, nm, path)
        df = read_sumstats(path)
        _check_order(df, counts, prefixes, log)
        row = summary_row(nm, df, len(names), sums[0]["N"][j])
        mins = [s["MIN_P"][j] for s in sums if s["MIN_P"][j] is not None]
        row.update(NSNP=sum(int(s["NSNP"][j]) for s in sums), MIN_P=min(mins) if mins else None,
                   N_P5E8=sum(int(s["N_P5E8"][j]) for s in sums), N_P_BONF=sum(int(s["N_P_BONF"][j]) for s in sums))
        rows.append(row)
        log.output(f"sumstats {nm}", path)
        if plots:
            pv = df["P"].to_numpy().astype(float)
            figures.manhattan(df["CHR"].to_numpy(), df["BP"].to_numpy(), pv, f"{out}.{nm}.manhattan.png", title=nm,
                              lines=(GWS, GWS / len(names)) if len(names) > 1 else (GWS,))
            figures.qq(pv, f"{out}.{nm}.qq.png", title=nm, lambda_gc=row["LAMBDA_GC"])
    with atomic_path(f"{out}.summary.tsv") as tmp:
        pl.DataFrame(rows).select(GWAS_SUMMARY_COLS).write_csv(tmp, separator="\t", null_value="NA")
    log.output("summary", f"{out}.summary.tsv")
    return names
