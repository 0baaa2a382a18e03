"""Summaries of repeated trials: mean, sample standard deviation, Student-t confidence interval."""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats


def t_interval(values: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean, sd (ddof 1), n and the two-sided t-interval of the mean.

    With one value (or none) the spread is unknown: sd and the interval are NaN, not zero.
    NaN trials (a metric undefined for that trial) are left out and counted in ``n_nan``.
    """
    finite = [float(v) for v in values if not math.isnan(float(v))]
    n = len(finite)
    out = {"n": n, "n_nan": len(values) - n, "confidence": confidence}
    if n == 0:
        return {**out, "mean": math.nan, "sd": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                "half_width": math.nan}
    mean = sum(finite) / n
    if n < 2:
        return {**out, "mean": mean, "sd": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                "half_width": math.nan}
    sd = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * sd / math.sqrt(n)
    return {**out, "mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half,
            "half_width": half}
