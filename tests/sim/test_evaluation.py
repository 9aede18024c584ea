import polars as pl

from gimtool.evaluation import score_loci


def test_score_loci_counts_true_false_and_recovered():
    truth = pl.DataFrame({"CHR": [1, 1, 2], "START": [0, 1_000_000, 500_000], "END": [500_000, 1_500_000, 1_000_000]})
    found = pl.DataFrame({
        "CHR": [1, 1, 2, 3],
        "START": [400_000, 2_000_000, 900_000, 0],
        "END": [450_000, 2_100_000, 1_200_000, 10],
    })
    s = score_loci(found, truth)
    assert s == {"loci": 4, "true": 2, "false": 2, "recovered": 2, "truth": 3}
    assert score_loci(found.clear(), truth)["recovered"] == 0


def test_score_loci_by_factor_follows_the_truth_order():
    truth = pl.DataFrame({"FACTOR": ["F2", "F2", "F1"], "CHR": [1, 1, 2], "START": [0, 1_000_000, 500_000],
                          "END": [500_000, 1_500_000, 1_000_000]})
    found = pl.DataFrame({"CHR": [1, 3], "START": [1_200_000, 0], "END": [1_300_000, 10]})
    s = score_loci(found, truth)
    assert list(s["by_factor"].items()) == [("F2", 1), ("F1", 0)]
    assert s["recovered"] == 1 and s["false"] == 1
    assert score_loci(found.clear(), truth)["by_factor"] == {"F2": 0, "F1": 0}
    # without a FACTOR column there is no breakdown
    assert "by_factor" not in score_loci(found, truth.drop("FACTOR"))
