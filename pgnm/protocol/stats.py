"""Summaries of repeated trials: mean, sample standard deviation, Student-t confidence interval;
and, for initialisations fine-tuned on the same draws, the paired differences and their tests."""

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


def paired_difference(values: Sequence[float], reference: Sequence[float],
                      confidence: float = 0.95) -> dict[str, float]:
    """``values - reference`` trial by trial (the same draws on both sides): the mean
    difference and its t-interval (:func:`t_interval` of the differences), the paired t-test's
    two-sided p (``scipy.stats.ttest_rel``) and the Wilcoxon signed-rank test's
    (``scipy.stats.wilcoxon``, which assumes no normality).

    A pair with NaN on either side is left out and counted in ``n_nan``; the p values are NaN
    with fewer than two pairs or when every difference is zero (both tests are undefined).
    """
    if len(values) != len(reference):
        raise ValueError(f"paired trials: {len(values)} values against {len(reference)}")
    pairs = [(float(a), float(b)) for a, b in zip(values, reference)
             if not (math.isnan(float(a)) or math.isnan(float(b)))]
    diffs = [a - b for a, b in pairs]
    out = {**t_interval(diffs, confidence), "n_nan": len(values) - len(pairs)}
    p_t = p_wilcoxon = math.nan
    if len(pairs) >= 2 and any(d != 0 for d in diffs):
        if len(set(diffs)) > 1:  # a constant difference has no spread for the t-test
            p_t = float(stats.ttest_rel([a for a, _ in pairs], [b for _, b in pairs]).pvalue)
        p_wilcoxon = float(stats.wilcoxon(diffs).pvalue)
    return {**out, "p_ttest_rel": p_t, "p_wilcoxon": p_wilcoxon}
