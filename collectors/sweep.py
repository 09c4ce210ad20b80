"""The sweep: per-sequence losses of one checkpoint with nothing ablated and with each
(component, layer) ablated.

``sweep_checkpoint(checkpoint, eval_tokens, options, on_pass=None) -> SweepRows`` is a pure function
of its inputs (it reads no store and writes nothing), so an executor may run it anywhere and hand the
rows to the one writer (``collectors.writer.write_rows``).  ``sweep_losses`` is the tensor core.

Ablation semantics (DESIGN.md): ``block`` makes the layer's output its input; ``attn`` / ``mlp``
make that module output zeros, so its term leaves the residual update (with a sequential residual
the MLP then reads h[k]; with a parallel one it read h[k] anyway).

Two ways to run the ablated passes, tested to agree to 1e-5:
- naive (``reuse_prefix=False``): a full forward per ablation, with forward hooks that return the
  layer's input (block) or zeros (attn/mlp);
- optimized (default): the clean pass caches the residual entering every layer; the pass for
  layer k replaces the forwards of layers 0..k-1 (0..k for block) by stubs handing on the cached
  h[k], and the ablated module's forward by one returning zeros, so the model's own HF forward
  runs only layers k..L-1.  About 1 + 3(L+1)/2 instead of 3L+1 layer-passes per batch.
The loss is next-token cross-entropy in float32 over positions 1..T-1, the unembedding applied in
chunks so (B*T, vocab) logits never exist at once.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from layerdb.errors import LayerdbError
from layerdb.schema import ABLATED_COMPONENTS

from .ablations import BASELINE, Key, ablations
from .families import TUPLE, Family


@dataclass(frozen=True)
class SweepOptions:
    components: tuple[str, ...] = ABLATED_COMPONENTS
    batch_size: int = 8  # sequences per forward pass
    reuse_prefix: bool = True  # False: the naive sweep, one full forward per ablation
    method: str = "zero"
    logits_chunk: int | None = None  # float32 logits alive at once; None: 2**22 CPU, 2**26 GPU

    def __post_init__(self):
        unknown = [c for c in self.components if c not in ABLATED_COMPONENTS]
        if unknown or not self.components:
            raise LayerdbError(f"unknown component(s) {', '.join(unknown) or '(none given)'}: "
                               f"choose from {', '.join(ABLATED_COMPONENTS)}")
        if self.batch_size < 1:
            raise LayerdbError(f"--batch-size must be at least 1 (got {self.batch_size})")
        if self.method != "zero":
            raise LayerdbError(f"unknown method {self.method!r} (the sweep does 'zero')")


class NonFiniteLoss(LayerdbError):
    """A pass produced NaN or infinite losses; nothing of the checkpoint is stored."""


def sweep_losses(model, family: Family, ids: torch.Tensor, options: SweepOptions,
                 on_pass: Callable[[int], None] | None = None) -> dict[Key, np.ndarray]:
    """Per-sequence mean losses, float64 arrays of shape (n_sequences,), for the baseline and every
    ablation.  ``ids``: (N, T) token ids; ``on_pass(n_tokens)`` is called after every pass."""
    layers = family.layer_list(model)
    keys = [BASELINE] + ablations(len(layers), options.components)
    parts: dict[Key, list[torch.Tensor]] = {key: [] for key in keys}
    device = next(model.parameters()).device
    chunk = options.logits_chunk or (2**26 if device.type == "cuda" else 2**22)
    with torch.inference_mode():
        for batch in ids.split(options.batch_size):
            batch = batch.to(device)  # (B, T)
            hidden, cached = _clean_pass(model, layers, batch, options.reuse_prefix)  # cached: h[k]
            parts[BASELINE].append(sequence_losses(model, hidden, batch, chunk))
            _report(on_pass, batch)
            for key in keys[1:]:
                if options.reuse_prefix:
                    ctx = _stubbed(family, layers, key, cached)
                else:
                    ctx = _hooked(family, layers, key)
                with ctx:
                    hidden = _final_hidden(model, batch)
                parts[key].append(sequence_losses(model, hidden, batch, chunk))
                _report(on_pass, batch)
    return {key: torch.cat(p).double().cpu().numpy() for key, p in parts.items()}


def sequence_losses(model, hidden: torch.Tensor, ids: torch.Tensor, chunk: int) -> torch.Tensor:
    """Mean next-token CE per sequence, float32: hidden (B, T, d), ids (B, T) -> (B,)."""
    B, T, d = hidden.shape
    lm_head = model.get_output_embeddings()
    h = hidden[:, :-1].reshape(-1, d)  # (B*(T-1), d) predicts ...
    targets = ids[:, 1:].reshape(-1)  # (B*(T-1),)
    step = max(1, chunk // lm_head.weight.shape[0])
    losses = torch.empty(targets.numel(), dtype=torch.float32, device=hidden.device)
    for s in range(0, targets.numel(), step):
        logits = lm_head(h[s:s + step]).float()  # (step, V), upcast before the softmax
        losses[s:s + step] = F.cross_entropy(logits, targets[s:s + step], reduction="none")
    return losses.view(B, T - 1).mean(dim=1)


def _report(on_pass, batch: torch.Tensor) -> None:
    if on_pass is not None:
        on_pass(batch.numel())


def _final_hidden(model, ids: torch.Tensor) -> torch.Tensor:
    """The base model's last hidden state (after its final norm): (B, T, d)."""
    return model.base_model(input_ids=ids, use_cache=False).last_hidden_state


def _clean_pass(model, layers, ids, cache_inputs: bool):
    """Final hidden state, and (if asked) the residual entering each layer: [h[0], ..., h[L-1]]."""
    cached: list = [None] * len(layers)
    handles = []
    if cache_inputs:
        for k, layer in enumerate(layers):
            handles.append(layer.register_forward_pre_hook(_input_saver(cached, k), with_kwargs=True))
    try:
        return _final_hidden(model, ids), cached
    finally:
        for h in handles:
            h.remove()


def _input_saver(cached: list, k: int):
    def hook(module, args, kwargs):
        cached[k] = _hidden_arg(args, kwargs)
    return hook


def _hidden_arg(args, kwargs) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


# -- optimized: stubs over the HF modules' forwards -------------------------------------------------
@contextlib.contextmanager
def _stubbed(family: Family, layers, key: Key, cached: list) -> Iterator[None]:
    component, k = key
    start = k + 1 if component == "block" else k  # first layer that really runs
    h_start = cached[k]  # (B, T, d): the block's input is also its output
    layer_tuple = family.layer_output == TUPLE
    patches = []
    for j in range(start):
        if j == start - 1:
            patches.append((layers[j], _hand_on(h_start, layer_tuple)))
        else:
            patches.append((layers[j], _pass_through(layer_tuple)))
    if component in ("attn", "mlp"):
        patches.append((_module(family, layers[k], component),
                        _zeros_like_input(family.output_of(component) == TUPLE)))
    with _patched_forwards(patches):
        yield


def _module(family: Family, layer, component: str):
    return getattr(layer, family.attn if component == "attn" else family.mlp)


def _hand_on(hidden: torch.Tensor, as_tuple: bool):
    def forward(*args, **kwargs):
        out = hidden.clone()  # fresh: later layers may add in place
        return (out, None) if as_tuple else out
    return forward


def _pass_through(as_tuple: bool):
    def forward(*args, **kwargs):
        h = _hidden_arg(args, kwargs)
        return (h, None) if as_tuple else h
    return forward


def _zeros_like_input(as_tuple: bool):
    """A module (attention or MLP) whose residual term is zeros, returned in its family's shape."""
    def forward(*args, **kwargs):
        zeros = torch.zeros_like(_hidden_arg(args, kwargs))  # (B, T, d)
        return (zeros, None) if as_tuple else zeros
    return forward


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
@contextlib.contextmanager
def _hooked(family: Family, layers, key: Key) -> Iterator[None]:
    component, k = key
    as_tuple = family.output_of(component) == TUPLE
    if component == "block":
        handle = layers[k].register_forward_hook(_return_input(as_tuple), with_kwargs=True)
    else:
        handle = _module(family, layers[k], component).register_forward_hook(_return_zeros(as_tuple))
    try:
        yield
    finally:
        handle.remove()


def _return_input(as_tuple: bool):
    def hook(module, args, kwargs, output):
        h = _hidden_arg(args, kwargs)
        return (h,) + tuple(output[1:]) if as_tuple else h
    return hook


def _return_zeros(as_tuple: bool):
    def hook(module, args, output):  # a fresh tensor, never in place
        if as_tuple:
            return (torch.zeros_like(output[0]),) + tuple(output[1:])
        return torch.zeros_like(output)
    return hook


# -- one checkpoint -> rows -------------------------------------------------------------------------
def sweep_checkpoint(checkpoint, tokens, options: SweepOptions = SweepOptions(),
                     on_pass: Callable[[int], None] | None = None):
    """Sweep a loaded ``Checkpoint`` (collectors.checkpoints) on ``EvalTokens`` that fit it
    (``prepare`` checks that with ``EvalTokens.check_fits``); return SweepRows.
    Raises NonFiniteLoss (nothing to store) when any pass gives NaN or infinite losses."""
    from .rows import (SweepRows, checkpoint_row, eval_set_row, find_non_finite, model_row,
                       new_run_id, now, result_rows, run_row)

    started, run_id = now(), new_run_id()
    losses = sweep_losses(checkpoint.model, checkpoint.family, torch.from_numpy(tokens.ids),
                          options, on_pass)
    bad = find_non_finite(losses)
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise NonFiniteLoss(f"{checkpoint.ref.name}@{checkpoint.revision}: NaN or infinite loss "
                            f"({', '.join(bad[:5])}{more}); nothing stored for this checkpoint")
    finished = now()
    n_layers = len(checkpoint.family.layer_list(checkpoint.model))
    return SweepRows(
        models=model_row(checkpoint, n_layers, finished),
        checkpoints=checkpoint_row(checkpoint, finished),
        eval_sets=eval_set_row(tokens, finished),
        runs=run_row(checkpoint, tokens, options, run_id=run_id, started_at=started,
                     finished_at=finished),
        results=result_rows(losses, model=checkpoint.ref.name, revision=checkpoint.revision,
                            eval_set=tokens.eval_set, method=options.method,
                            n_tokens=tokens.n_tokens, run_id=run_id, created_at=finished),
    )
