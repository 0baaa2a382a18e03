import math

import numpy as np
import pytest
from scipy import stats

from pgnm.protocol.stats import t_interval


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
