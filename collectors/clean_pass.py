"""What the clean (un-ablated) pass of a batch records, through hooks on the model's own modules.

- ``inputs``: the residual h[k] entering every layer k (for prefix reuse and the metrics), and
  h[L], the last layer's output (before the final norm);
- ``LayerMetrics``: per layer k, averaged over every position of every sequence, from the same
  pass at no extra forward:
    block_influence  1 - cos(h[k], h[k+1])          (Men et al. 2024, ShortGPT)
    update_ratio     |h[k+1] - h[k]| / |h[k]|
    attn_ratio       |attention output| / |h[k]|
    mlp_ratio        |MLP output| / |h[k]|
    angular_distance arccos(cos(h[k], h[k+n])) / pi, for each span n asked (and n = 1)
                     (Gromov et al. 2024)
  Sums stay on the device in float64 until the end, so a batch costs no host sync.
- ``MeanSums``: the sums of each module's output and each block's update over every position,
  for mean ablation (``interventions.MeanVectors``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from layerdb.schema import METRICS

from .families import TUPLE, Family
from .interventions import MeanVectors, hidden_arg, module_of


class CleanPass:
    """Hooks for one clean forward; use as a context manager around it."""

    def __init__(self, family: Family, layers, *, keep_inputs: bool,
                 metrics: "LayerMetrics | None" = None, means: "MeanSums | None" = None):
        self.family, self.layers = family, layers
        self.metrics, self.means = metrics, means
        self.watch = keep_inputs or metrics is not None or means is not None
        self.inputs: list = [None] * (len(layers) + 1)  # h[0..L]; h[L] after the last layer
        self._norms: list = [None] * len(layers)  # |h[k]| per position, taken once per pass
        self._handles = []

    def __enter__(self) -> "CleanPass":
        if not self.watch:
            return self
        for k, layer in enumerate(self.layers):
            self._handles.append(layer.register_forward_pre_hook(self._saver(k), with_kwargs=True))
        self._handles.append(self.layers[-1].register_forward_hook(self._last_output))
        if self.metrics is not None or self.means is not None:
            for k, layer in enumerate(self.layers):
                for component in ("attn", "mlp"):
                    module = module_of(self.family, layer, component)
                    self._handles.append(module.register_forward_hook(self._term(component, k)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if exc[0] is None and self.watch:
            if self.metrics is not None:
                self.metrics.add_residuals(self.inputs, [self.input_norm(k) for k in
                                                         range(len(self.layers))])
            if self.means is not None:
                self.means.add_updates(self.inputs)

    @property
    def cached(self) -> list:
        """h[0..L-1]: what the stubs of an ablated pass hand on."""
        return self.inputs[:-1]

    def input_norm(self, k: int) -> torch.Tensor:
        """|h[k]| in float64, (B, T) on h[k]'s device: computed on first use, then shared by the
        attention and MLP ratios and the update ratio."""
        if self._norms[k] is None:
            self._norms[k] = self.inputs[k].double().norm(dim=-1)
        return self._norms[k]

    def _saver(self, k: int):
        def hook(module, args, kwargs):
            self.inputs[k] = hidden_arg(args, kwargs)
            self._norms[k] = None
        return hook

    def _last_output(self, module, args, output):
        self.inputs[-1] = output[0] if self.family.layer_output == TUPLE else output

    def _term(self, component: str, k: int):
        as_tuple = self.family.output_of(component) == TUPLE

        def hook(module, args, output):  # runs before the layer may add into this tensor in place
            term = output[0] if as_tuple else output
            if self.metrics is not None:
                self.metrics.add_ratio(f"{component}_ratio", k, term, self.input_norm(k))
            if self.means is not None:
                self.means.add(component, k, term)
        return hook


class LayerMetrics:
    """Running sums of the metrics above over the clean passes of a checkpoint."""

    def __init__(self, n_layers: int, spans: tuple[int, ...] = ()):
        self.n_layers = n_layers
        self.spans = tuple(sorted({1, *spans}))
        self._sums: dict[tuple[str, int, int], torch.Tensor] = {}
        self._count = 0  # positions per (metric, layer, span), the same for all

    def add_ratio(self, metric: str, k: int, term: torch.Tensor, norm_h: torch.Tensor) -> None:
        """``term`` (B, T, d) of layer ``k`` over ``norm_h`` = |h[k]| (B, T), float64."""
        ratio = term.double().norm(dim=-1) / norm_h.to(term.device).clamp_min(1e-30)
        self._add((metric, k, 1), ratio)

    def add_residuals(self, h: list, norms: list) -> None:
        """Per batch, once the pass is done: h[0..L] and |h[0..L-1]| (float64, (B, T))."""
        hs = [x.to(h[0].device, torch.float64) for x in h]  # a device map may spread them
        for k in range(self.n_layers):
            cos_next = F.cosine_similarity(hs[k], hs[k + 1], dim=-1)  # (B, T)
            self._add(("block_influence", k, 1), 1 - cos_next)
            norm_k = norms[k].to(hs[k].device).clamp_min(1e-30)
            update = (hs[k + 1] - hs[k]).norm(dim=-1) / norm_k
            self._add(("update_ratio", k, 1), update)
            for n in self.spans:
                if k + n <= self.n_layers:
                    cos = cos_next if n == 1 else F.cosine_similarity(hs[k], hs[k + n], dim=-1)
                    self._add(("angular_distance", k, n), torch.arccos(cos.clamp(-1, 1)) / math.pi)
        self._count += hs[0].shape[0] * hs[0].shape[1]

    def values(self) -> dict[tuple[str, int, int], float]:
        """(metric, layer, span) -> mean over every position of every sequence seen."""
        assert self._count, "no clean pass was recorded"
        order = {m: i for i, m in enumerate(METRICS)}
        keys = sorted(self._sums, key=lambda key: (order[key[0]], key[2], key[1]))
        first = self._sums[keys[0]].device
        totals = torch.stack([self._sums[key].to(first) for key in keys]).cpu().tolist()
        return {key: total / self._count for key, total in zip(keys, totals)}

    def _add(self, key: tuple[str, int, int], values: torch.Tensor) -> None:
        total = values.sum()
        self._sums[key] = self._sums[key] + total if key in self._sums else total


class MeanSums:
    """Sums of module outputs and block updates over the clean passes, for mean ablation."""

    def __init__(self, n_layers: int):
        self._sums: dict[tuple[str, int], torch.Tensor] = {}
        self.n_layers = n_layers
        self._count = 0

    def add(self, component: str, k: int, term: torch.Tensor) -> None:
        self._add((component, k), term)

    def add_updates(self, h: list) -> None:
        for k in range(self.n_layers):
            self._add(("block", k), h[k + 1].to(h[k].device) - h[k])
        self._count += h[0].shape[0] * h[0].shape[1]

    def vectors(self) -> MeanVectors:
        return MeanVectors(*([self._sums[(c, k)] / self._count for k in range(self.n_layers)]
                             for c in ("attn", "mlp", "block")))

    def _add(self, key: tuple[str, int], term: torch.Tensor) -> None:
        total = term.double().sum(dim=(0, 1))  # (d,)
        self._sums[key] = self._sums[key] + total if key in self._sums else total
