"""Fixed-n p-values of paired deltas, torch- and scipy-free: the collectors (collectors.stats)
and the store's migrations use them.

``paired_pvalue(deltas)``: the two-sided p-value of the paired t test of mean(d) = 0, the test whose
95% interval the collectors store, ``2 P(T_{n-1} > |t|)`` with ``t = mean / (sd / sqrt(n))``;
``t_pvalue(t, df)``: Student's t two-sided tail, from the regularized incomplete beta function.
"""
from __future__ import annotations

import math

import numpy as np

_TINY = 1e-300


def _log_beta_half(a: np.ndarray) -> np.ndarray:
    """log B(a, 1/2) = log Γ(1/2) - (log Γ(a + 1/2) - log Γ(a)), without the cancellation of two
    huge lgamma values for large a (there: Γ(a+1/2)/Γ(a) = sqrt(a)(1 - 1/(8a) + 1/(128a²)
    + 5/(1024a³) - 21/(32768a⁴) + O(a⁻⁵)))."""
    a = np.asarray(a, np.float64)
    small = a < 1e4
    direct = np.array([math.lgamma(v + 0.5) - math.lgamma(v) for v in np.where(small, a, 1.0).flat])
    big = np.where(small, 1e4, a)
    series = 0.5 * np.log(big) + np.log1p(
        (-1 / 8 + (1 / 128 + (5 / 1024 - 21 / 32768 / big) / big) / big) / big)
    return 0.5 * math.log(math.pi) - np.where(small, direct.reshape(a.shape), series)


def _betainc_fraction(a: np.ndarray, b: np.ndarray, x: np.ndarray, log_x: np.ndarray,
                      log_1mx: np.ndarray, log_beta: np.ndarray) -> np.ndarray:
    """I_x(a, b) by its continued fraction (modified Lentz), given log x, log(1 - x) and log B(a, b)
    computed without cancellation.  Converges quickly only for x < (a + 1) / (a + b + 2); the
    caller uses I_x(a, b) = 1 - I_{1-x}(b, a) otherwise.  All arrays share one shape; x > 0."""
    qab, qap, qam = a + b, a + 1, a - 1
    c = np.ones_like(x)
    d = 1 - qab * x / qap
    d = 1 / np.where(np.abs(d) < _TINY, _TINY, d)
    h = d.copy()
    todo = np.ones(x.shape, bool)
    for m in range(1, 100_000):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1 + aa * d
            d = 1 / np.where(np.abs(d) < _TINY, _TINY, d)
            c = 1 + aa / c
            c = np.where(np.abs(c) < _TINY, _TINY, c)
            step = np.where(todo, d * c, 1.0)
            h = h * step
        todo &= np.abs(step - 1) > 1e-15
        if not todo.any():
            break
    return np.exp(a * log_x + b * log_1mx - log_beta) * h / a


def t_pvalue(t: np.ndarray | float, df: np.ndarray | float) -> np.ndarray:
    """Two-sided ``P(|T_df| >= |t|)`` for Student's t, vectorised.

    P(|T| >= |t|) = I_{df/(df+t²)}(df/2, 1/2), the regularized incomplete beta function; |error|
    below 1e-10 against 30-digit quadrature for df = 1..1e8.  Above df = 1e8 the continued
    fraction drifts, and the normal tail erfc(|t|/√2) is used instead (it is within 4e-9 there).
    t = ±inf gives 0; NaN stays NaN."""
    t, df = np.broadcast_arrays(np.asarray(t, np.float64), np.asarray(df, np.float64))
    out = np.full(t.shape, np.nan)
    out[t == 0] = 1.0
    out[np.isinf(t)] = 0.0
    huge = np.isfinite(t) & (t != 0) & (df > 1e8)
    out[huge] = [math.erfc(abs(v) / math.sqrt(2)) for v in t[huge]]
    inner = np.isfinite(t) & (t != 0) & ~huge
    r = np.where(inner, t * t / df, 1.0)[inner]                 # x = 1/(1+r), y = 1 - x = r/(1+r)
    x, y = 1 / (1 + r), r / (1 + r)
    log_x, log_y = -np.log1p(r), np.log(r) - np.log1p(r)
    a, b = df[inner] / 2, np.full(r.shape, 0.5)
    log_beta = _log_beta_half(a)                                # B(a, 1/2) = B(1/2, a)
    direct = x < (a + 1) / (a + b + 2)
    p = np.empty(r.shape)
    p[direct] = _betainc_fraction(a[direct], b[direct], x[direct], log_x[direct], log_y[direct],
                                  log_beta[direct])
    swap = ~direct
    p[swap] = 1 - _betainc_fraction(b[swap], a[swap], y[swap], log_y[swap], log_x[swap],
                                    log_beta[swap])
    out[inner] = p
    return np.clip(out, 0.0, 1.0)


def paired_pvalue(deltas: np.ndarray) -> float:
    """Two-sided p-value of the paired t test of mean(deltas) == 0 (NaN with one sequence; with
    sd = 0 it is 1 for a zero mean and 0 otherwise)."""
    deltas = np.asarray(deltas, dtype=np.float64)
    n = deltas.size
    if n < 2:
        return math.nan
    mean, sd = float(deltas.mean()), float(deltas.std(ddof=1))
    if sd == 0:
        return 1.0 if mean == 0 else 0.0
    return float(t_pvalue(mean / (sd / math.sqrt(n)), n - 1))


