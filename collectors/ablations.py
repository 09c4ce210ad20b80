"""What a sweep measures, as keys: torch-free, shared by the sweep, the rows and the progress.

A key is ``(component, layer)``; ``BASELINE`` = ``("none", -1)`` is the pass with nothing ablated.
"""
from __future__ import annotations

from layerdb.schema import BASELINE_LAYER

Key = tuple[str, int]
BASELINE: Key = ("none", BASELINE_LAYER)


def ablations(n_layers: int, components: tuple[str, ...]) -> list[Key]:
    """Every (component, layer) to ablate, component by component."""
    return [(c, k) for c in components for k in range(n_layers)]
