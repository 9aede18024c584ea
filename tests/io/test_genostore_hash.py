"""The genotype store's SNP-table hash (checkpoints are refused on other SNPs) keeps its value:
the text of each column joined by \\x1f, columns ended by \\x1e, SHA-256."""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl

from gimtool.io.genostore import snp_table_hash


def _by_definition(snps: pl.DataFrame) -> str:
    h = hashlib.sha256()
    for c in ("CHR", "SNP", "BP", "A1", "A2"):
        h.update("\x1f".join(str(v) for v in snps[c].to_list()).encode())
        h.update(b"\x1e")
    return h.hexdigest()


def test_hash_is_the_defined_one():
    m = 5000
    df = pl.DataFrame({"CHR": np.repeat(np.arange(1, 23), 300)[:m], "SNP": [f"rs{i}" for i in range(m)], "CM": np.zeros(m),
                       "BP": np.arange(m) * 1000 + 1, "A1": ["A"] * m, "A2": ["GT"] * m})
    for sub in (df, df[:1], df[:0]):
        assert snp_table_hash(sub) == _by_definition(sub)
    other = df.with_columns(pl.Series("BP", np.arange(m) * 1000 + 2))
    assert snp_table_hash(other) != snp_table_hash(df)
