"""read_sumstats parses clean files' numbers with polars' CSV reader (the fast path); that must
give the same frame, or the same error, as the string path (typed=False) on every input."""

from __future__ import annotations

import gzip

import pytest

from gimtool.errors import InputError
from gimtool.io.sumstats import read_sumstats
from tests.io.test_gwas_sumstats import BOLT, BOLT_INF, PLINK2

GIM_HEAD = "SNP\tCHR\tBP\tGENPOS\tALLELE1\tALLELE0\tA1FREQ\tN\tBETA\tSE\tCHISQ\tP\n"
GIM_ROWS = (
    "rs1\t1\t100\t0.001\tA\tG\t0.25\t5000\t0.0123\t0.004\t9.4\t2.2e-03\n"
    "rs2\t1\t250\tNA\tC\tT\tNA\t4999\t-1.5E-02\t4.1e-3\tNA\t1e-300\n"
    "rs3\tX\t300\t\tA\tC\t0.5\t\t.5\t1.\tnan\t0.5\n"
)


def both(path):
    """(frame or error text) of the fast path and of the string path."""
    out = []
    for typed in (True, False):
        try:
            out.append(read_sumstats(path, typed=typed))
        except InputError as e:
            out.append(str(e))
    return out


def assert_same(path):
    fast, slow = both(path)
    if isinstance(slow, str):
        assert fast == slow
    else:
        assert not isinstance(fast, str), fast
        assert fast.schema == slow.schema
        # repr: NaN equals NaN, -0.0 differs from 0.0, None (null) differs from both
        rep = lambda df: {c: [repr(v) for v in df[c].to_list()] for c in df.columns}  # noqa: E731
        assert rep(fast) == rep(slow)


# values placed in one numeric column of row 2 (float column BETA, integer columns BP and N)
ODD = ["1", "-0", "+1.5", "1e5", "1E+05", "1.5e-320", "inf", "-inf", "Inf", "INF", "infinity", "nan", "NaN", "NAN",
       "NA", "", " 0.5", "0.5 ", "1_000", "0x10", "1,5", "abc", ".", "-", "1.0", "007", "9223372036854775808",
       "1e400", "-.5e-3"]


@pytest.mark.parametrize("value", ODD)
@pytest.mark.parametrize("col", ["BETA", "BP", "N", "P"])
def test_odd_values_same_both_ways(tmp_path, value, col):
    k = GIM_HEAD.strip().split("\t").index(col)
    rows = [r.split("\t") for r in GIM_ROWS.strip().split("\n")]
    rows[1][k] = value
    p = tmp_path / "odd.sumstats"
    p.write_text(GIM_HEAD + "\n".join("\t".join(r) for r in rows) + "\n")
    assert_same(p)


@pytest.mark.parametrize("text", [
    GIM_HEAD + GIM_ROWS,
    GIM_HEAD + GIM_ROWS.replace("rs2", "NA"),  # a null token in a string column: string path
    GIM_HEAD + GIM_ROWS.replace("\tX\t", "\t\t"),  # an empty string field
    GIM_HEAD + GIM_ROWS + "rs4\t1\t5\n",  # ragged
    GIM_HEAD.replace("\t", " ") + GIM_ROWS.replace("\tNA\t", "\tNA\t").replace("\t\t", "\tNA\t").replace("\t", "  "),
    BOLT, BOLT_INF, PLINK2, PLINK2.replace("0.481344", "zero"), PLINK2.replace("\t0.3\t", "\tjunk\t"),
    BOLT.replace("49663", "49663.5"),
])
def test_formats_same_both_ways(tmp_path, text):
    p = tmp_path / "f.txt"
    p.write_text(text)
    assert_same(p)
    q = tmp_path / "f.txt.gz"
    q.write_bytes(gzip.compress(text.encode()))
    assert_same(q)


def test_bgzip_members_and_bad_gzip(tmp_path):
    text = GIM_HEAD + GIM_ROWS
    lines = text.splitlines(keepends=True)
    p = tmp_path / "multi.sumstats.gz"
    p.write_bytes(gzip.compress("".join(lines[:2]).encode()) + gzip.compress("".join(lines[2:]).encode()))
    assert read_sumstats(p).height == 3
    bad = tmp_path / "trunc.sumstats.gz"
    bad.write_bytes(gzip.compress(text.encode())[:-12])
    with pytest.raises(InputError, match=f"{bad}: not a readable gzip file"):
        read_sumstats(bad)


@pytest.mark.parametrize("text", [GIM_HEAD + GIM_ROWS, BOLT, BOLT_INF, PLINK2])
def test_clean_files_take_the_fast_path(text):
    from gimtool.io.sumstats import _header, _numeric_columns, _parse_typed, sumstats_format

    header, data = _header(text.encode(), "x")
    assert _parse_typed(data, header, _numeric_columns(sumstats_format(header), header)) is not None


@pytest.mark.parametrize("gz", [False, True])
def test_clean_files_read_typed_from_disk(tmp_path, gz):
    from gimtool.io.sumstats import _read_typed

    text = (GIM_HEAD + GIM_ROWS).encode()
    p = tmp_path / ("s.sumstats.gz" if gz else "s.sumstats")
    p.write_bytes(gzip.compress(text) if gz else text)
    got = _read_typed(p)
    assert got is not None and got[1].height == 3
    # damaged: the fast path declines, the general path names the file
    if gz:
        bad = bytearray(p.read_bytes())
        bad[-6] ^= 0x55  # CRC
        p.write_bytes(bytes(bad))
        assert _read_typed(p) is None
        with pytest.raises(InputError, match="not a readable gzip file"):
            read_sumstats(p)
