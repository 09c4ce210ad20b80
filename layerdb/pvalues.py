"""p-values of paired deltas, torch- and scipy-free: the store's migrations and the collectors use
them.

``paired_t_pvalue(deltas)``: the two-sided p-value of the paired t test of mean(d) = 0, the test
whose 95% interval the collectors store (``collectors.stats.paired_interval``).  Student's t
distribution is evaluated through the regularized incomplete beta function,
P(|T| > t) = I_{df / (df + t^2)}(df / 2, 1 / 2), with its continued fraction (modified Lentz),
accurate to ~1e-14.
"""
from __future__ import annotations

import math
from typing import Sequence

_TINY = 1e-300


def paired_t_pvalue(deltas: Sequence[float]) -> float | None:
    """Two-sided p of the paired t test; None with fewer than two deltas."""
    n = len(deltas)
    if n < 2:
        return None
    mean = math.fsum(deltas) / n
    var = math.fsum((d - mean) ** 2 for d in deltas) / (n - 1)
    if var == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    return t_two_sided(mean / math.sqrt(var / n), n - 1)


def t_two_sided(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if not math.isfinite(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):  # the continued fraction converges fast here
        return math.exp(log_front) * _continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _continued_fraction(b, a, 1.0 - x) / b


def _continued_fraction(a: float, b: float, x: float, max_terms: int = 500) -> float:
    """The continued fraction of I_x(a, b), evaluated by the modified Lentz method."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    result = d
    for m in range(1, max_terms + 1):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            result *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return result
