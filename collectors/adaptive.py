"""Adaptive evaluation (``collect --precision EPS``): each ablation stops once its anytime-valid
interval has decided it.

Sequences run in a seeded random order (so any prefix is a random sample of the eval set), in
batches; after each batch every still-active ablation adds its per-sequence deltas (ablated minus
baseline loss, paired on the same sequences) to an asymptotic confidence sequence
(``collectors.stats.PairedSequence``: valid at every look at once, so stopping on it is sound).
An ablation stops when its margin is below EPS, or its interval excludes 0 by more than EPS; the
baseline runs on every batch some ablation still needs.  Each row then reports the sequences it
used, its delta and confidence-sequence interval on exactly those, and the anytime-valid p-value.
"""
from __future__ import annotations

import numpy as np

from .stats import PairedSequence


def evaluation_order(n_sequences: int, seed: int | None) -> np.ndarray:
    """The order sequences are evaluated in: natural (fixed budget) or a seeded permutation."""
    if seed is None:
        return np.arange(n_sequences)
    return np.random.default_rng(seed).permutation(n_sequences)


class AdaptiveStop:
    """Which of ``n`` ablations still need sequences; the statistics of each."""

    def __init__(self, n: int, budget: int, eps: float):
        self.sequence = PairedSequence(k=n, budget=budget)
        self.active = np.arange(n)
        self.eps = eps

    def update(self, baseline: np.ndarray, ablated: np.ndarray) -> None:
        """One batch: ``baseline`` (b,) and ``ablated`` (len(active), b) per-sequence losses."""
        self.sequence.add(ablated - baseline[None, :], self.active)
        self.active = self.active[~self.sequence.decided(self.eps)[self.active]]

    def rows(self) -> list[tuple[float, float, float, float]]:
        """(delta, interval low, interval high, anytime p-value) of every ablation, in order."""
        low, high = self.sequence.interval()
        seq = self.sequence
        return [(float(seq.mean[i]), float(low[i]), float(high[i]), float(seq.min_p[i]))
                for i in range(len(seq.mean))]
