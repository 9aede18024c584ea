"""Every broken file under tests/data/bad/ gives one InputError that names the file, the place
(line or column) and what was expected; never a traceback from deeper down."""

from __future__ import annotations

from pathlib import Path

import pytest

from gimtool.errors import InputError
from gimtool.io.loci import read_loci
from gimtool.io.plink import Bfile, read_fam
from gimtool.io.sumstats import read_sumstats
from gimtool.io.tables import read_ids, read_table

BAD = Path(__file__).resolve().parents[1] / "data" / "bad"

CASES = [
    ("table_no_header.tsv", read_table, "line 1: expected a header starting with 'FID IID', found '1 1'"),
    ("table_ragged.tsv", read_table, "line 3: expected 4 columns, found 3"),
    ("table_not_a_number.tsv", read_table, "line 3: column a: expected a number or NA, found 'x'"),
    ("table_duplicate_id.tsv", read_table, "line 4: duplicate sample ID (FID 1, IID 1), first seen on line 2"),
    ("table_header_only.tsv", read_table, "phenotype file has a header and no rows"),
    ("covar_mixed_categorical.tsv", lambda p: read_table(p, what="covariate", missing_code=-9, categorical=True),
     "line 3: column SITE: mixes numbers ('7') and text ('X')"),
    ("sumstats_missing_columns.tsv", read_sumstats, "lack column(s) GENPOS, A1FREQ, N, SE, CHISQ"),
    ("loci_missing_end.tsv", read_loci, "lacks column(s) END; expected CHR START END"),
    ("ids_one_column.txt", read_ids, "line 2: expected 'FID IID', found 'A'"),
    ("fam_short.fam", read_fam, "line 1: expected 6 columns (FID IID FATHER MOTHER SEX PHENO), found 4"),
    ("bad_magic", lambda p: Bfile(p).read(), "not a SNP-major PLINK .bed (first bytes 780001, expected 6c1b01)"),
]


@pytest.mark.parametrize("name,reader,message", CASES, ids=[c[0] for c in CASES])
def test_bad_file_gives_one_clear_line(name, reader, message):
    with pytest.raises(InputError) as e:
        reader(str(BAD / name))
    text = str(e.value)
    assert "\n" not in text
    assert name.split(".")[0] in text and message in text


def test_every_bad_file_is_covered():
    used = {c[0] for c in CASES} | {"bad_magic.bed", "bad_magic.bim", "bad_magic.fam", "README.md"}
    assert {p.name for p in BAD.iterdir()} <= used
