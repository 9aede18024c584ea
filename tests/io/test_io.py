"""The file layer: tables, ID lists, alignment, PLINK round trips, atomic outputs, the CLI shell."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gimtool.errors import InputError
from gimtool.io.plink import MISSING_INT8, Bfile, encode_bed_chunk, write_bfile
from gimtool.io.tables import align, read_ids, read_table, select_samples, write_table
from gimtool.runlog import RunLog
from gimtool.io.atomic import atomic_path
from tests.conftest import gimtool


def _write(path, text):
    path.write_text(text)
    return path


def test_read_table_values_and_missing(tmp_path):
    p = _write(tmp_path / "ph.tsv", "#FID\tIID\ta\tb\nf1 i1 1.5 NA\nf2\ti2\t-9\tnan\n")
    df = read_table(p)
    assert df.columns == ["FID", "IID", "a", "b"]
    assert df["a"].to_list() == [1.5, -9.0]  # -9 is a value unless missing_neg9
    assert df["b"].null_count() == 2
    assert read_table(p, missing_neg9=True)["a"].null_count() == 1
    assert read_table(p, columns=["b"]).columns == ["FID", "IID", "b"]


@pytest.mark.parametrize(
    "text, match",
    [
        ("ID x\n1 2\n", "line 1: expected a header starting with 'FID IID'"),
        ("FID IID x\na b 1\na b 2\n", "line 3: duplicate sample ID (FID a, IID b), first seen on line 2"),
        ("FID IID x\na b 1\nc d one\n", "line 3: column x: expected a number or NA, found 'one'"),
        ("FID IID x\na b 1 2\n", "line 2: expected 3 columns, found 4"),
        ("FID IID x x\na b 1 2\n", "duplicate column name(s) x"),
    ],
)
def test_read_table_errors(tmp_path, text, match):
    p = _write(tmp_path / "t.tsv", text)
    with pytest.raises(InputError, match=match.replace("(", r"\(").replace(")", r"\)")) as e:
        read_table(p)
    assert str(p) in str(e.value)


def test_read_table_missing_column_lists_found(tmp_path):
    p = _write(tmp_path / "t.tsv", "FID IID x y\na b 1 2\n")
    with pytest.raises(InputError, match="column\\(s\\) z not found; phenotype columns are: x, y"):
        read_table(p, columns=["z"])


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=8)


@settings(max_examples=40, deadline=None)
@given(
    ids=st.lists(st.tuples(names, names), min_size=1, max_size=20, unique=True),
    ncol=st.integers(1, 4),
    data=st.data(),
)
def test_table_round_trip(tmp_path_factory, ids, ncol, data):
    vals = data.draw(
        st.lists(
            st.lists(st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False, width=64)), min_size=ncol, max_size=ncol),
            min_size=len(ids), max_size=len(ids),
        )
    )
    cols = {f"c{j}": [row[j] for row in vals] for j in range(ncol)}
    df = pl.DataFrame({"FID": [i[0] for i in ids], "IID": [i[1] for i in ids], **cols},
                      schema={"FID": pl.Utf8, "IID": pl.Utf8, **{c: pl.Float64 for c in cols}})
    p = tmp_path_factory.mktemp("rt") / "t.tsv"
    write_table(df, p)
    back = read_table(p)
    assert back.equals(df)


def test_ids_alignment_and_keep_remove(tmp_path):
    samples = pl.DataFrame({"FID": ["a", "b", "c", "d"], "IID": ["1", "2", "3", "4"]})
    table = pl.DataFrame({"FID": ["d", "x", "b"], "IID": ["4", "9", "2"]})
    al = align(samples, table)
    assert al.ref_index.tolist() == [1, 3] and al.table_index.tolist() == [2, 0]
    assert "2 samples matched" in al.describe("fam", "pheno")
    keep = _write(tmp_path / "keep", "FID IID\na 1\nb 2\nc 3\n")
    remove = _write(tmp_path / "remove", "b 2\n")
    assert select_samples(samples, keep, remove).tolist() == [True, False, True, False]
    assert read_ids(keep).height == 3


def test_bed_encoding_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    for n in (1, 3, 4, 5, 13):  # every padding case of the 2-bit packing
        G = rng.choice(np.array([0, 1, 2, MISSING_INT8], dtype=np.int8), size=(n, 37))
        fam = pl.DataFrame({"FID": [f"f{i}" for i in range(n)], "IID": [f"i{i}" for i in range(n)]})
        bim = pl.DataFrame({"CHR": ["1"] * 37, "SNP": [f"s{j}" for j in range(37)], "CM": [0.0] * 37,
                            "BP": list(range(1, 38)), "A1": ["A"] * 37, "A2": ["G"] * 37})
        write_bfile(tmp_path / f"g{n}", G, fam, bim, chunk_size=10)
        np.testing.assert_array_equal(Bfile(tmp_path / f"g{n}").read(), G)
        assert len(encode_bed_chunk(G)) == 37 * ((n + 3) // 4)


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.tsv"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole"


def test_runlog_records_failure(tmp_path):
    with pytest.raises(InputError):
        with RunLog(tmp_path / "x", "test") as log:
            log.info("did a thing")
            raise InputError("bad thing")
    text = (tmp_path / "x.log").read_text()
    assert "did a thing" in text and "Error: bad thing" in text and "status: failed" in text


def test_cli_version_and_help():
    from gimtool import __version__

    assert gimtool("--version").stdout.strip() == f"gimtool {__version__}"
    out = gimtool("--help").stdout
    for name in ("prep-mri", "prep-geno", "train", "embed", "pcs", "gwas", "clump", "h2", "mi", "simulate"):
        assert name in out


def test_fam_and_bim_errors_name_the_file_line(tmp_path):
    from gimtool.io.plink import read_bim, read_fam

    fam = _write(tmp_path / "x.fam", "f1 i1 0 0 1 -9\n\nf2 i2 0 0 2 -9\nf1 i1 0 0 1 -9\n")
    with pytest.raises(InputError, match="line 4: duplicate sample ID \\(FID f1, IID i1\\), first seen on line 1"):
        read_fam(fam)
    bim = _write(tmp_path / "x.bim", "1 rs1 0 100 A G\n\n1 rs2 0 2x A G\n")
    with pytest.raises(InputError, match="x.bim: line 3: column BP must be numeric, found '2x'"):
        read_bim(bim)
    with pytest.raises(InputError, match="line 2: expected 6 columns"):
        read_bim(_write(tmp_path / "y.bim", "1\trs1\t0\t100\tA\tG\n1\trs2\t0\t100\tA\n"))


def test_cli_usage_error_and_input_error_exit_codes(tmp_path):
    p = gimtool("gwas", "--no-such-option", check=False)
    assert p.returncode == 2 and "No such option" in p.stderr and "Traceback" not in p.stderr
    p = gimtool("prep-geno", "--bfile", tmp_path / "none", "--out", tmp_path / "o", check=False)
    assert p.returncode == 1 and p.stderr.startswith("Error: ") and "Traceback" not in p.stderr


@pytest.mark.parametrize("text,neg9", [
    ("FID\tIID\ta\tb\nf1\ti1\t1.5\tNA\nf2\ti2\t-9\t3e-5\nf3\tNA\tnan\t-0\n", False),
    ("#FID IID a b\nf1 i1 1.5 NA\nf2 i2 -9 3e-5\nf3 na . 2\n", True),  # '.' is no number: slow path's error
    ("FID IID a\nf1 i1  1\n", False),  # doubled separator: the slow path reads it
    ("FID\tIID\ta\r\nf1\ti1\t1\r\n", False),
])
def test_table_fast_parse_equals_line_parse(tmp_path, monkeypatch, text, neg9):
    """The polars fast path and the line-by-line parse give the same table (or the same error)."""
    import gimtool.io.tables as tables

    p = tmp_path / "t.tsv"
    p.write_bytes(text.encode())

    def read():
        try:
            return read_table(p, missing_neg9=neg9)
        except InputError as e:
            return str(e)

    fast = read()
    monkeypatch.setattr(tables, "_parse_fast", lambda *a: None)
    slow = read()
    assert (fast == slow) if isinstance(slow, str) else fast.equals(slow)
