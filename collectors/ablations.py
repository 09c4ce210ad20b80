"""What a sweep measures, as keys and kinds: torch-free, shared by the sweep, the rows, resuming
and the progress.

A key is ``(component, layer, span)``, the key of a results row (with the run's method):

- ``("none", -1, 1)``: ``BASELINE``, nothing ablated;
- ``("block", k, n)``: blocks k .. k+n-1 dropped (n = 1: one layer's block);
- ``("attn", k, 1)`` / ``("mlp", k, 1)``: layer k's attention or MLP term removed;
- ``("swap", k, 2)``: layer k+1 run on the residual entering layer k, then layer k.

A kind groups the keys a request asks for and resuming counts: ``block``, ``attn``, ``mlp``
(span 1), ``span2``, ``span3`` ... (block spans), ``swap``; and ``metrics`` (the per-layer metrics
of the clean pass, not a results row).  The named query ``coverage`` lists the complete kinds of
every checkpoint under the same names.
"""
from __future__ import annotations

from layerdb.schema import BASELINE_LAYER

Key = tuple[str, int, int]
BASELINE: Key = ("none", BASELINE_LAYER, 1)
METRICS_KIND = "metrics"


def span_kind(span: int) -> str:
    return "block" if span == 1 else f"span{span}"


def ablation_keys(n_layers: int, components: tuple[str, ...] = (), spans: tuple[int, ...] = (),
                  swaps: bool = False) -> list[Key]:
    """Every key to ablate: single-layer components, then block spans, then adjacent swaps."""
    keys = [(c, k, 1) for c in components for k in range(n_layers)]
    keys += [("block", k, n) for n in spans if n > 1 for k in range(n_layers - n + 1)]
    if swaps:
        keys += [("swap", k, 2) for k in range(n_layers - 1)]
    return keys


def kinds(components: tuple[str, ...] = (), spans: tuple[int, ...] = (), swaps: bool = False,
          metrics: bool = True) -> tuple[str, ...]:
    """The kinds a request asks for, in a fixed order."""
    out = list(components) + [span_kind(n) for n in spans if n > 1]
    if swaps:
        out.append("swap")
    if metrics:
        out.append(METRICS_KIND)
    return tuple(dict.fromkeys(out))
