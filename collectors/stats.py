"""Paired intervals and p-values for per-sequence loss deltas: fixed-n and anytime-valid.

Fixed n.  For per-sequence deltas d_1..d_n (ablated minus clean loss of the same sequence) we use
the paired t interval ``mean(d) ± t_{0.975, n-1} · sd(d) / sqrt(n)``.  It needs no random numbers
(so results are reproducible bit for bit) and is the textbook choice for a mean of paired
differences; with the tens to hundreds of sequences a sweep uses it agrees closely with a bootstrap.
With one sequence there is no interval (NULL).  Its two-sided p-value is ``2 P(T_{n-1} > |t|)``,
``t = mean / (sd / sqrt(n))`` (layerdb.pvalues: the regularized incomplete beta function, no scipy).

Adaptive (sequences in a seeded random order, looked at after every batch, each ablation stopped
when decided).  A fixed-n interval looked at after every batch is not valid: it misses the true mean
at some look far more often than alpha (tests/test_stats.py: 0.32-0.34 over the 61-64 looks of a
512-sequence budget in batches of 8, 0.14-0.17 over 5-8 looks of 64).  We use the two-sided
asymptotic confidence sequence (CS) of Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas,
"Time-uniform central limit theory and asymptotic confidence sequences", Ann. Statist. 2024
(Gaussian-mixture boundary with the variance estimated):

    margin_t = s_t · sqrt( 2 (t ρ² + 1) / (t² ρ²) · log( sqrt(t ρ² + 1) / alpha ) )

with t the number of sequences seen and s_t the sample sd (ddof=1) of their deltas.  It is
*asymptotic*: it is exact for Gaussian deltas of known sd, and for other distributions, with s_t
estimated, P(the mean leaves the CS at some t >= m) tends to <= alpha as m grows.  Small t is
where it can fail: skewed deltas (a few sequences that an ablation hurts far more than the rest)
make s_t small exactly when the mean is off.  Simulated, monitoring after every batch of 8: with
symmetric heavy tails (t, 5 df) it misses 1.6-2% from t = 8 on; with exponential deltas (skewness
2) it misses 9% (budget 64) from t = 8 on but 2-4% from t = 32 on.  Resampling the 648 ablations of
the demo (64 sequences each; |skewness| median 0.33, 99th percentile 2.2) it misses 3.6% from
t = 8 but 11% for the 7% of ablations with |skewness| > 1; from t = 32 on, 1.4% and 3.9%.  So
PairedSequence neither stops an ablation nor lowers its p-value before ``min_count`` = 32
sequences (or the budget, if smaller): the looks start there.  Skewness beyond ~2.5 can still
push the miss rate over alpha.

Small p-values.  BH compares the k-th smallest of m p-values with q·k/m, so the far tail matters.
With skewness 2 and <= 64 sequences, small p-values come out too small for any t-type statistic:
under the null P(p <= 0.01) is 0.02 for the anytime p-value and for the fixed-n t test alike (6-7x
too large at 0.001).  Resampling the demo's deltas, the anytime p-value stays valid down to 0.001
(1.1x, within noise), while the fixed-n t test at n = 64 is 1.7-2.2x too small at 0.001.

With t < 2 there is no sd: margin = +inf (no interval, p = 1, never decided).  With s_t = 0 (all
deltas so far equal, e.g. an ablation that is exactly a no-op) the formula gives margin = 0: the
interval is the point ``mean``, and p = 1 if mean == 0 else 0.

Choice of ρ².  The boundary is tightest at one t; we tune it for t* = budget (the full number of
sequences): the ablations that never decide early are the ones whose final interval matters, and
a boundary that is loose at small t is also the safe side for an asymptotic CS.  The boundary is
flat near its optimum: at budget/8 it is 1.20x the best width possible there, at budget/16 1.43x
(tuning for budget/4 instead would make it 15% narrower at budget/8 and 3% wider at the budget).
With x = t* ρ² and L = -2 log(alpha), t*·margin²/s² = (1 + 1/x)(log(1 + x) + L); its derivative
vanishes where

    x - log(1 + x) = L           (the paper's approximation x ≈ L + log(1 + L) is one step of
                                  the fixed-point iteration x <- L + log(1 + x) used here)

and there the margin is s·sqrt((x + 1)/t*).  For alpha = 0.05, x = 8.2120 (the approximation,
7.936, gives a margin 0.003% wider), so the CS at t* is sqrt(9.2120) = 3.035 sd/sqrt(t*) wide
on each side, against t_{0.975, t*-1} = 1.998 (t* = 64) or 1.965 (t* = 512) for the fixed-n
interval: 1.52x or 1.54x wider -- the price of looking after every batch.

Anytime p-value.  The CS at time t excludes 0 iff |mean| > margin_t(alpha).  Solving for alpha
(x = t ρ², z² = t mean² / s²):

    p_t = min(1, sqrt(1 + x) · exp( - z² x / (2 (1 + x)) ))

which is 1/M_t for the Gaussian-mixture martingale M_t; the log term stays positive for any
alpha < sqrt(1 + x), which holds for every alpha <= 1.  The margin grows as alpha shrinks, so the CS
at level alpha excludes 0 iff alpha > p_t (at alpha = p_t it touches 0).  The running minimum over
the looks, p*_t = min_{u <= t} p_u, is anytime-valid: p*_t <= alpha at some t iff the level-alpha CS
excluded (or touched) 0 at some look, which under mean 0 has probability <= alpha, as the CS
covers the mean at all t at once.  So p* at any stopping time (data-dependent, like ours) is a
valid p-value; like the CS it starts at the first look, t = min_count.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from layerdb.pvalues import paired_pvalue, t_pvalue  # noqa: F401  (the fixed-n p-values live there)

CONFIDENCE = 0.95
ALPHA = 0.05                   # 1 - CONFIDENCE
MIN_COUNT = 32                 # no look before this many sequences (the CS is asymptotic)


def _t_pdf(x: np.ndarray, df: int) -> np.ndarray:
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return np.exp(log_norm - (df + 1) / 2 * np.log1p(x * x / df))


def _t_mass_0_to(x: float, df: int, n: int = 4000) -> float:
    """P(0 < T < x) by Simpson's rule (the density is smooth; error far below 1e-9)."""
    grid = np.linspace(0.0, x, n + 1)
    w = np.ones(n + 1)
    w[1:-1:2], w[2:-1:2] = 4, 2
    return float((w * _t_pdf(grid, df)).sum() * (x / n) / 3)


@lru_cache(maxsize=None)
def t_quantile(p: float, df: int) -> float:
    """The p-quantile (p > 0.5) of Student's t with ``df`` degrees of freedom, by bisection."""
    assert 0.5 < p < 1 and df >= 1
    lo, hi = 0.0, 1.0
    while _t_mass_0_to(hi, df) < p - 0.5:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_mass_0_to(mid, df) < p - 0.5 else (lo, mid)
    return (lo + hi) / 2


def paired_interval(deltas: np.ndarray) -> tuple[float, float | None, float | None]:
    """(mean, low, high) of the 95% paired-t interval of per-sequence deltas."""
    deltas = np.asarray(deltas, dtype=np.float64)
    n = deltas.size
    mean = float(deltas.mean())
    if n < 2:
        return mean, None, None
    half = t_quantile(0.5 + CONFIDENCE / 2, n - 1) * float(deltas.std(ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half


# --- anytime-valid: asymptotic confidence sequence (see the module docstring) -----------------

def rho2_for(budget: int, alpha: float = ALPHA) -> float:
    """ρ² making the CS narrowest at t = budget: x = budget·ρ² solves x - log(1+x) = -2 log α."""
    assert budget >= 1 and 0 < alpha < 1
    big_l = -2 * math.log(alpha)
    x = big_l
    for _ in range(200):          # contraction with factor 1/(1+x) < 1/(1+L): converges in < 40
        x_next = big_l + math.log1p(x)
        if x_next == x:
            break
        x = x_next
    return x / budget


def cs_margin(sd: np.ndarray, count: np.ndarray, rho2: float, alpha: float = ALPHA) -> np.ndarray:
    """Half-width of the two-sided asymptotic CS after ``count`` sequences (+inf when count < 2)."""
    sd, count = np.broadcast_arrays(np.asarray(sd, np.float64), np.asarray(count, np.float64))
    ok = count >= 2
    t = np.where(ok, count, 2.0)
    x = t * rho2
    width2 = (1 + x) * (np.log1p(x) - 2 * math.log(alpha)) / (t * x)   # margin² / s²
    return np.where(ok, sd * np.sqrt(width2), np.inf)


def cs_pvalue(mean: np.ndarray, sd: np.ndarray, count: np.ndarray, rho2: float) -> np.ndarray:
    """The smallest alpha at which the CS after ``count`` sequences excludes 0 (1 when count < 2).

    Not yet minimised over time: take the running minimum over the looks (PairedSequence does)."""
    mean, sd, count = np.broadcast_arrays(np.asarray(mean, np.float64), np.asarray(sd, np.float64),
                                          np.asarray(count, np.float64))
    ok = count >= 2
    t = np.where(ok, count, 2.0)
    x = t * rho2
    with np.errstate(divide="ignore", invalid="ignore"):
        z2 = np.where(sd > 0, t * mean**2 / np.where(sd > 0, sd, 1.0) ** 2,
                      np.where(mean == 0, 0.0, np.inf))
    log_p = 0.5 * np.log1p(x) - z2 * x / (2 * (1 + x))
    return np.where(ok, np.minimum(1.0, np.exp(np.minimum(log_p, 0.0))), 1.0)


class PairedSequence:
    """Running mean, sd, CS and anytime p-value of the per-sequence deltas of K ablations.

    Feed it the deltas of every batch of sequences, for the ablations still running; each add()
    that brings an ablation to >= min_count sequences is a look (the CS is valid at every look at
    once, so stopping on it is fine).

        seq = PairedSequence(k=len(ablations), budget=n_sequences)
        active = np.arange(k)
        for batch in batches:                             # sequences in a seeded random order
            seq.add(deltas[active][:, batch], active)     # (len(active), b)
            active = active[~seq.decided(EPS)[active]]
        per row: seq.count, seq.mean, seq.interval(), seq.min_p (the anytime p-value)
    """

    def __init__(self, k: int, budget: int, alpha: float = ALPHA, min_count: int = MIN_COUNT):
        self.alpha = alpha
        self.rho2 = rho2_for(budget, alpha)       # tuned so the CS is narrowest at t = budget
        self.min_count = max(2, min(min_count, budget))   # the first look
        self.count = np.zeros(k, np.int64)
        self.mean = np.zeros(k)
        self.m2 = np.zeros(k)                     # sum of squared deviations from the mean
        self.min_p = np.ones(k)                   # running minimum of cs_pvalue over the looks
                                                  # (1 before the first look)

    def add(self, deltas: np.ndarray, which: np.ndarray | None = None) -> None:
        """One batch: ``deltas`` (len(which), b) for the ablations ``which`` (indices or a bool
        mask; all K when None).  Chan et al.'s parallel update of (count, mean, M2), in float64."""
        k = self.count.size
        idx = np.arange(k) if which is None else np.asarray(which)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        deltas = np.asarray(deltas, np.float64)
        assert deltas.ndim == 2 and deltas.shape[0] == idx.size, (deltas.shape, idx.size)
        assert np.unique(idx).size == idx.size and np.isfinite(deltas).all()
        b = deltas.shape[1]
        if b == 0 or idx.size == 0:
            return
        n_a = self.count[idx]
        n = n_a + b
        batch_mean = deltas.mean(axis=1)
        batch_m2 = ((deltas - batch_mean[:, None]) ** 2).sum(axis=1)
        step = batch_mean - self.mean[idx]
        self.mean[idx] += step * (b / n)
        self.m2[idx] += batch_m2 + step**2 * (n_a * b / n)
        self.count[idx] = n
        p = cs_pvalue(self.mean[idx], self.sd[idx], n, self.rho2)
        self.min_p[idx] = np.where(n >= self.min_count, np.minimum(self.min_p[idx], p),
                                   self.min_p[idx])

    @property
    def sd(self) -> np.ndarray:
        """Sample sd (ddof=1); NaN below two sequences."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.count >= 2, np.sqrt(self.m2 / (self.count - 1)), np.nan)

    def margin(self, alpha: float | None = None) -> np.ndarray:
        """CS half-width (+inf below two sequences); ρ² stays tuned for the constructor's alpha."""
        return cs_margin(self.sd, self.count, self.rho2, self.alpha if alpha is None else alpha)

    def interval(self, alpha: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        half = self.margin(alpha)
        return self.mean - half, self.mean + half

    def pvalue(self) -> np.ndarray:
        """p_t at the current count (not minimised over time; ``min_p`` is the anytime p-value)."""
        return cs_pvalue(self.mean, self.sd, self.count, self.rho2)

    def decided(self, eps: float) -> np.ndarray:
        """Stop, from the first look on: the CS is narrower than eps (margin < eps), or it excludes
        0 by more than eps (low > eps or high < -eps, i.e. |mean| - margin > eps)."""
        half = self.margin()
        looked = self.count >= self.min_count
        return looked & ((half < eps) | (np.abs(self.mean) - half > eps))
