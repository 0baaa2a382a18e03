import math

import numpy as np
import pytest
from scipy import stats

from pgnm.protocol.report import paired
from pgnm.protocol.stats import paired_difference, t_interval


@pytest.mark.parametrize("n", [2, 3, 10])
def test_t_interval_matches_scipy(n):
    values = np.random.default_rng(n).normal(0.6, 0.1, n)
    got = t_interval(values)
    low, high = stats.t.interval(0.95, n - 1, loc=values.mean(), scale=stats.sem(values))
    assert got["n"] == n and got["mean"] == pytest.approx(values.mean())
    assert got["sd"] == pytest.approx(values.std(ddof=1))
    assert (got["ci_low"], got["ci_high"]) == (pytest.approx(low), pytest.approx(high))


def test_one_value_has_no_interval_and_nans_are_counted():
    one = t_interval([0.5])
    assert one["mean"] == 0.5 and math.isnan(one["sd"]) and math.isnan(one["ci_low"])
    mixed = t_interval([0.4, float("nan"), 0.6])
    assert (mixed["n"], mixed["n_nan"]) == (2, 1) and mixed["mean"] == pytest.approx(0.5)
    assert math.isnan(t_interval([])["mean"])


def test_identical_values_give_a_zero_width_interval():
    got = t_interval([0.3, 0.3, 0.3])
    assert got["ci_low"] == pytest.approx(0.3) and got["ci_high"] == pytest.approx(0.3)


def test_paired_difference_matches_scipys_paired_tests():
    rng = np.random.default_rng(3)
    baseline = rng.normal(0.5, 0.1, 10)
    heated = baseline + rng.normal(0.03, 0.02, 10)  # the same draws: shared noise cancels
    got = paired_difference(heated, baseline)
    diffs = heated - baseline
    low, high = stats.t.interval(0.95, 9, loc=diffs.mean(), scale=stats.sem(diffs))
    assert got["mean"] == pytest.approx(diffs.mean())
    assert (got["ci_low"], got["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert got["p_ttest_rel"] == pytest.approx(stats.ttest_rel(heated, baseline).pvalue)
    assert got["p_wilcoxon"] == pytest.approx(stats.wilcoxon(diffs).pvalue)
    # the pairing matters: independent intervals of these two overlap, the paired one is > 0
    alone = t_interval(heated), t_interval(baseline)
    assert alone[0]["ci_low"] < alone[1]["ci_high"] and got["ci_low"] > 0


def test_paired_difference_leaves_out_nan_pairs_and_undefined_tests():
    got = paired_difference([0.5, float("nan"), 0.7], [0.4, 0.5, 0.6])
    assert (got["n"], got["n_nan"]) == (2, 1) and got["mean"] == pytest.approx(0.1)
    assert math.isnan(got["p_ttest_rel"])  # a constant difference: no spread to test
    assert not math.isnan(got["p_wilcoxon"])
    same = paired_difference([0.5, 0.6], [0.5, 0.6])
    assert same["mean"] == 0.0 and math.isnan(same["p_wilcoxon"])
    with pytest.raises(ValueError, match="3 values against 2"):
        paired_difference([1, 2, 3], [1, 2])


def test_report_pairs_trials_by_draw_and_skips_the_baseline():
    def trial(init, k, number, f1):
        return {"dataset": "set", "init": init, "k": k, "trial": number,
                "metrics": {"f1_macro": f1, "balanced_accuracy": f1, "auroc_macro_ovr": f1}}

    trials = [trial("baseline", 8, 0, 0.5), trial("baseline", 8, 1, 0.2),
              trial("heated", 8, 1, 0.3), trial("heated", 8, 0, 0.6),
              trial("heated", 8, 2, 0.9)]  # draw 2 has no baseline: left out
    got = paired(trials, "baseline")
    assert list(got["set"]) == ["heated"]
    cell = got["set"]["heated"]["8"]["f1_macro"]
    assert cell["n"] == 2 and cell["mean"] == pytest.approx(0.1)
