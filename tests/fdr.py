"""Benjamini-Hochberg q-values in Python: the tests' reference for the q-values the `ablations` view
computes in SQL ("significant" that survives testing hundreds of ablations).

A study tests every ablation of a checkpoint at once.  Calling each one significant when its own
p <= 0.05 lets about 5% of the true nulls through, which among hundreds of ablations is many false
discoveries.  The BH q-value of test i is the smallest false-discovery rate at which BH (1995)
rejects it; rejecting every test with q <= 0.05 keeps the expected share of false discoveries among
the rejected <= 0.05 · m0 / m for independent (or positively dependent, PRDS) p-values:

    q_(i) = min_{j >= i} min(1, m · p_(j) / j)      p_(1) <= ... <= p_(m) sorted, m = non-NaN count

Tied p-values get the same q.  NaN p-values (rows without a test) are left out of m and stay NaN.
"""
from __future__ import annotations

import numpy as np


def bh_qvalues(pvalues) -> np.ndarray:
    """BH adjusted p-values (q-values), in the input order; NaN in, NaN out."""
    p = np.asarray(pvalues, dtype=np.float64)
    assert p.ndim == 1, p.shape
    q = np.full(p.shape, np.nan)
    present = np.flatnonzero(~np.isnan(p))
    m = present.size
    if m == 0:
        return q
    order = present[np.argsort(p[present], kind="stable")]
    scaled = p[order] * m / np.arange(1, m + 1)
    q[order] = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    return q


def bh_qvalues_by(pvalues, groups) -> np.ndarray:
    """q-values computed separately within each group (one group per study)."""
    p = np.asarray(pvalues, dtype=np.float64)
    keys = np.asarray(groups)
    assert keys.shape == p.shape, (keys.shape, p.shape)
    q = np.full(p.shape, np.nan)
    for key in np.unique(keys):
        rows = np.flatnonzero(keys == key)
        q[rows] = bh_qvalues(p[rows])
    return q
