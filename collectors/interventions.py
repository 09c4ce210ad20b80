"""How one ablation key changes a forward pass of the model's own HF code.

Semantics (DESIGN.md), for the zero method:
- ``block`` span n at layer k: each of layers k .. k+n-1 outputs its input;
- ``attn`` / ``mlp`` at layer k: that module outputs zeros, so its term leaves the residual update
  (with a sequential residual the MLP then reads h[k]; with a parallel one it read h[k] anyway);
- ``swap`` at layer k: layer k+1 runs on the residual entering layer k, then layer k on its result.
The mean method replaces a module's output by its mean over every position of every evaluation
sequence of the clean model (``MeanVectors``), and a block's update (output - input) by its mean
update; the layer's other term stays as it is.  Swaps have no mean variant.

``intervened(family, layers, key, means=None, cached=None)`` applies one key for one forward:
- with ``cached`` (the residuals h[0..L-1] entering each layer, from the batch's clean pass), the
  layers before the first one the key changes are replaced by stubs handing on the cached residual,
  so the model's own forward recomputes nothing before it (prefix reuse);
- without, the whole model runs and forward hooks replace what the key removes (the naive pass),
  except for swaps, which no hook can express: those patch the two layers' forwards either way.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch

from .ablations import Key
from .families import TUPLE, Family


@dataclass
class MeanVectors:
    """Per layer: mean attention output, mean MLP output and mean block update, each (d,)."""
    attn: list[torch.Tensor]
    mlp: list[torch.Tensor]
    block: list[torch.Tensor]

    def of(self, component: str, layer: int) -> torch.Tensor:
        return getattr(self, component)[layer]


@contextlib.contextmanager
def intervened(family: Family, layers, key: Key, means: MeanVectors | None = None,
               cached: list | None = None) -> Iterator[None]:
    component, k, span = key
    layer_tuple = family.layer_output == TUPLE
    patches, hooks = [], []
    if component == "swap":
        patches += _swapped(layers, k)
        start, h_start = k, None if cached is None else cached[k]
    elif component == "block":
        block = range(k, k + span)
        start = k + span
        if cached is None:
            hooks += [(layers[j], _returns_input(layer_tuple, _mean(means, "block", j)))
                      for j in block]
            h_start = None
        else:  # the span's output: its input, plus the mean updates of its blocks
            h_start = cached[k]
            for j in block if means is not None else ():
                h_start = h_start + means.of("block", j).to(h_start.device, h_start.dtype)
    else:
        module = module_of(family, layers[k], component)
        as_tuple = family.output_of(component) == TUPLE
        replacement = _mean(means, component, k)
        if cached is None:
            hooks.append((module, _returns_constant(as_tuple, replacement)))
            h_start = None
        else:
            patches.append((module, _outputs_constant(as_tuple, replacement)))
            h_start = cached[k]
        start = k
    if cached is not None and start > 0:
        patches += _prefix_stubs(layers, start, h_start, layer_tuple)
    handles = [module.register_forward_hook(hook, with_kwargs=True) for module, hook in hooks]
    try:
        with _patched_forwards(patches):
            yield
    finally:
        for handle in handles:
            handle.remove()


def module_of(family: Family, layer, component: str):
    return getattr(layer, family.attn if component == "attn" else family.mlp)


def hidden_arg(args, kwargs) -> torch.Tensor:
    """The residual a decoder layer or one of its modules is called with."""
    return args[0] if args else kwargs["hidden_states"]


def _mean(means: MeanVectors | None, component: str, layer: int) -> torch.Tensor | None:
    return None if means is None else means.of(component, layer)


# -- prefix reuse: stubs over the layers before the first one that really runs ---------------------
def _prefix_stubs(layers, start: int, h_start: torch.Tensor, as_tuple: bool) -> list:
    stubs = [(layers[j], _pass_through(as_tuple)) for j in range(start - 1)]
    return stubs + [(layers[start - 1], _hand_on(h_start, as_tuple))]


def _hand_on(hidden: torch.Tensor, as_tuple: bool):
    def forward(*args, **kwargs):
        out = hidden.clone()  # fresh: later layers may add in place
        return (out, None) if as_tuple else out
    return forward


def _pass_through(as_tuple: bool):
    def forward(*args, **kwargs):
        h = hidden_arg(args, kwargs)
        return (h, None) if as_tuple else h
    return forward


def _outputs_constant(as_tuple: bool, value: torch.Tensor | None):
    """A module's forward that returns zeros (``value`` None) or ``value`` at every position,
    as a fresh tensor in its family's shape."""
    def forward(*args, **kwargs):
        out = _filled_like(hidden_arg(args, kwargs), value)
        return (out, None) if as_tuple else out
    return forward


def _swapped(layers, k: int) -> list:
    """Layer k's slot runs layer k+1, and layer k+1's slot runs layer k (their own forwards)."""
    return [(layers[k], layers[k + 1].forward), (layers[k + 1], layers[k].forward)]


@contextlib.contextmanager
def _patched_forwards(patches) -> Iterator[None]:
    saved = []
    try:
        for module, forward in patches:
            saved.append((module, module.__dict__.get("forward")))
            module.forward = forward  # an instance attribute shadows the class's forward
        yield
    finally:
        for module, previous in reversed(saved):
            del module.forward
            if previous is not None:
                module.forward = previous


# -- naive: forward hooks on a full pass ------------------------------------------------------------
def _returns_input(as_tuple: bool, mean_update: torch.Tensor | None):
    """A block's hook: its output becomes its input (plus its mean update)."""
    def hook(module, args, kwargs, output):
        h = hidden_arg(args, kwargs)
        if mean_update is not None:
            h = h + mean_update.to(h.device, h.dtype)
        return (h,) + tuple(output[1:]) if as_tuple else h
    return hook


def _returns_constant(as_tuple: bool, value: torch.Tensor | None):
    """A module's hook: its output becomes zeros (``value`` None) or ``value`` everywhere."""
    def hook(module, args, kwargs, output):
        term = output[0] if as_tuple else output
        out = _filled_like(term, value)
        return (out,) + tuple(output[1:]) if as_tuple else out
    return hook


def _filled_like(like: torch.Tensor, value: torch.Tensor | None) -> torch.Tensor:
    """A fresh (B, T, d) tensor: zeros, or ``value`` (d,) at every position; never a view."""
    if value is None:
        return torch.zeros_like(like)
    return value.to(like.device, like.dtype).expand(like.shape).clone()
