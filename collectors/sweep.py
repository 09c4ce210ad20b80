"""The sweep: per-sequence losses of one checkpoint with nothing ablated and with every ablation a
request asks for (``collectors.ablations``: single-layer block/attention/MLP drops, block spans,
adjacent swaps; zero or mean method), plus the per-layer metrics of the clean pass.

``sweep_checkpoint(checkpoint, eval_tokens, options, on_pass=None) -> SweepRows`` is a pure function
of its inputs (it reads no store and writes nothing), so an executor may run it anywhere and hand the
rows to the one writer (``collectors.writer.write_rows``).  ``sweep_losses`` is the tensor core.

Per batch: one clean pass (the baseline; hooks record the residual entering every layer and the
metrics, ``collectors.clean_pass``), then one pass per ablation (``collectors.interventions``).
Two ways to run the ablated passes, tested to agree to 1e-5:
- naive (``reuse_prefix=False``): a full forward per ablation, forward hooks replacing what it
  removes;
- optimized (default): each pass starts at the first layer its ablation changes, the layers before
  it replaced by stubs handing on the cached residual: a drop or swap at layer k recomputes nothing
  before k.  About 1 + 3(L+1)/2 instead of 3L+1 layer-passes per batch for the single drops.
The mean method first runs one clean pass over every sequence to take the means.  The loss is
next-token cross-entropy in float32 over positions 1..T-1, the unembedding applied in chunks so
(B*T, vocab) logits never exist at once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from layerdb.errors import LayerdbError
from layerdb.schema import ABLATED_COMPONENTS, METHODS

from .ablations import BASELINE, Key, ablation_keys, kinds, span_kind
from .adaptive import AdaptiveStop, evaluation_order
from .clean_pass import CleanPass, LayerMetrics, MeanSums
from .families import Family
from .interventions import MeanVectors, intervened
from .placement import input_device


@dataclass(frozen=True)
class SweepOptions:
    components: tuple[str, ...] = ABLATED_COMPONENTS  # single-layer drops
    spans: tuple[int, ...] = ()  # lengths >= 2 of contiguous block spans to drop
    swaps: bool = False  # adjacent-layer swaps
    method: str = "zero"  # zero: remove the term; mean: replace it by its mean
    metrics: bool = True  # per-layer metrics of the clean pass (no extra forward)
    metric_spans: tuple[int, ...] | None = None  # angular-distance spans; None: ``spans``
    batch_size: int = 8  # sequences per forward pass
    precision: float | None = None  # adaptive: stop each ablation once decided to EPS nats
    order_seed: int = 0  # adaptive: seed of the random evaluation order
    reuse_prefix: bool = True  # False: the naive sweep, one full forward per ablation
    logits_chunk: int | None = None  # float32 logits alive at once; None: from free memory

    def __post_init__(self):
        unknown = [c for c in self.components if c not in ABLATED_COMPONENTS]
        if unknown:
            raise LayerdbError(f"unknown component(s) {', '.join(unknown)}: "
                               f"choose from {', '.join(ABLATED_COMPONENTS)}")
        if not (self.components or self.spans or self.swaps or self.metrics):
            raise LayerdbError("nothing to measure: give --components, --spans or --swaps")
        if any(n < 1 for n in self.spans):
            raise LayerdbError(f"--spans must be lengths of at least 1 (got "
                               f"{','.join(map(str, self.spans))})")
        if self.batch_size < 1:
            raise LayerdbError(f"--batch-size must be at least 1 (got {self.batch_size})")
        if self.method not in METHODS:
            raise LayerdbError(f"unknown --method {self.method!r}: use {' or '.join(METHODS)}")
        if self.precision is not None and not (self.precision > 0 and math.isfinite(self.precision)):
            raise LayerdbError(f"--precision must be a positive number of nats (got {self.precision})")
        if self.method == "mean" and self.swaps:
            raise LayerdbError("--swaps reorder layers and have no mean variant: collect them "
                               "with --method zero")

    def ablations(self, n_layers: int) -> list[Key]:
        """The ablations for a model of ``n_layers`` (span 1 in ``spans`` means a block drop)."""
        components = self.components
        if 1 in self.spans and "block" not in components:
            components = ("block", *components)
        return ablation_keys(n_layers, components, self.spans, self.swaps)

    def kinds(self) -> tuple[str, ...]:
        """What this asks for, as resuming counts it (``collectors.ablations``)."""
        return kinds(self.components, self.spans, self.swaps, self.metrics)

    def only(self, missing: set[str]) -> "SweepOptions | None":
        """These options cut down to the ``missing`` kinds (None when nothing is missing); the
        metrics are taken whenever anything runs, they cost no extra forward."""
        if not missing & set(self.kinds()):
            return None
        return replace(self, components=tuple(c for c in self.components if c in missing),
                       spans=tuple(n for n in self.spans if span_kind(n) in missing),
                       swaps=self.swaps and "swap" in missing,
                       metric_spans=self.angular_spans)

    @property
    def angular_spans(self) -> tuple[int, ...]:
        """The spans the angular distance is measured at: ``metric_spans``, else ``spans``."""
        return self.spans if self.metric_spans is None else self.metric_spans

    def check_fits(self, n_layers: int, model: str) -> None:
        """A one-line error for spans or swaps the model is too shallow for."""
        too_long = [n for n in self.spans if n > n_layers]
        if too_long:
            raise LayerdbError(f"--spans {','.join(map(str, too_long))}: longer than {model}, "
                               f"which has {n_layers} layer(s)")
        if self.swaps and n_layers < 2:
            raise LayerdbError(f"--swaps needs two layers or more; {model} has {n_layers}")


@dataclass
class SweepResult:
    losses: dict[Key, np.ndarray]  # key -> per-sequence losses in evaluation order, float64
    metrics: dict[tuple[str, int, int], float]  # (metric, layer, span) -> mean
    adaptive: dict[Key, tuple[float, float, float, float]] | None = None  # delta, low, high, p


class NonFiniteLoss(LayerdbError):
    """A pass produced NaN or infinite losses; nothing of the checkpoint is stored."""


def sweep_losses(model, family: Family, ids: torch.Tensor, options: SweepOptions,
                 on_pass: Callable[[int], None] | None = None,
                 on_batch: Callable[[int, int, int, int], None] | None = None) -> SweepResult:
    """The baseline and every ablation of ``options`` on ``ids`` (N, T).  ``on_pass(n_tokens)``
    is called after every forward pass; with ``options.precision``, ``on_batch(active, total,
    tokens_saved, passes_left)`` after every batch."""
    layers = family.layer_list(model)
    keys = [BASELINE] + options.ablations(len(layers))
    parts: dict[Key, list[torch.Tensor]] = {key: [] for key in keys}
    device = input_device(model)
    chunk = options.logits_chunk or logits_chunk(model)
    metrics = LayerMetrics(len(layers), options.angular_spans) if options.metrics else None
    adaptive = options.precision is not None
    order = evaluation_order(len(ids), options.order_seed if adaptive else None)
    stop = AdaptiveStop(len(keys) - 1, len(ids), options.precision) if adaptive else None
    saved = 0  # ablated-pass tokens an adaptive sweep did not evaluate
    with torch.inference_mode():
        means = _means(model, family, layers, ids.split(options.batch_size), device, on_pass) \
            if options.method == "mean" else None
        for start in range(0, len(ids), options.batch_size):
            active = keys[1:] if stop is None else [keys[1 + i] for i in stop.active]
            if stop is not None and not active:
                break  # every ablation is decided: the rest of the budget is saved
            batch = ids[order[start:start + options.batch_size]].to(device)  # (B, T)
            with CleanPass(family, layers, keep_inputs=options.reuse_prefix,
                           metrics=metrics) as clean:
                hidden = _final_hidden(model, batch)
            parts[BASELINE].append(sequence_losses(model, hidden, batch, chunk))
            _report(on_pass, batch)
            cached = clean.cached if options.reuse_prefix else None
            for key in active:
                with intervened(family, layers, key, means, cached):
                    hidden = _final_hidden(model, batch)
                parts[key].append(sequence_losses(model, hidden, batch, chunk))
                _report(on_pass, batch)
            if stop is not None:  # one host sync per batch: the decisions need the losses
                batch_losses = torch.stack([parts[key][-1] for key in (BASELINE, *active)])
                host = batch_losses.double().cpu().numpy()  # (1 + len(active), B)
                stop.update(host[0], host[1:])
                saved += (len(keys) - 1 - len(active)) * batch.numel()
                if on_batch is not None:
                    batches_left = -(-(len(ids) - start - len(batch)) // options.batch_size)
                    on_batch(len(stop.active), len(keys) - 1, saved,
                             batches_left * (1 + len(stop.active)) if stop.active.size else 0)
    losses = _to_host({key: torch.cat(p) for key, p in parts.items()})
    stats = dict(zip(keys[1:], stop.rows(), strict=True)) if stop is not None else None
    return SweepResult(losses, metrics.values() if metrics is not None else {}, stats)


def n_passes(n_sequences: int, n_layers: int, options: SweepOptions) -> int:
    """Forward passes ``sweep_losses`` makes (for progress bars)."""
    n_batches = -(-n_sequences // options.batch_size)
    per_batch = 1 + len(options.ablations(n_layers)) + (1 if options.method == "mean" else 0)
    return n_batches * per_batch


def sequence_losses(model, hidden: torch.Tensor, ids: torch.Tensor, chunk: int) -> torch.Tensor:
    """Mean next-token CE per sequence, float32: hidden (B, T, d), ids (B, T) -> (B,), on the
    unembedding's device; no host sync."""
    B, T, d = hidden.shape
    lm_head = model.get_output_embeddings()
    h = hidden[:, :-1].reshape(-1, d)  # (B*(T-1), d) predicts ...
    targets = ids[:, 1:].reshape(-1)  # (B*(T-1),)
    step = max(1, chunk // model.config.vocab_size)
    parts = []
    for s in range(0, targets.numel(), step):
        logits = lm_head(h[s:s + step]).float()  # (step, V), upcast before the softmax
        parts.append(F.cross_entropy(logits, targets[s:s + step].to(logits.device),
                                     reduction="none"))
    return torch.cat(parts).view(B, T - 1).mean(dim=1)


def logits_chunk(model) -> int:
    """How many float32 logits to have alive at once: on a GPU, a sixteenth of its free memory
    (the logits, their softmax and its gradient-free temporaries fit several times over); on the
    CPU, 2**22 (16 MiB), the fastest measured (2 cores, 8 x 256 tokens, vocabulary 50,304: 0.38 s
    per batch against 0.53 s at 2**20 and 0.46-0.51 s at 2**24-2**26)."""
    device = model.get_output_embeddings().weight.device
    if device.type != "cuda":
        return 2**22
    free, _ = torch.cuda.mem_get_info(device)
    return int(min(max(free // 16 // 4, 2**22), 2**30))


def _means(model, family: Family, layers, batches, device, on_pass) -> MeanVectors:
    """Mean module outputs and block updates over every position of every sequence."""
    sums = MeanSums(len(layers))
    for batch in batches:
        batch = batch.to(device)
        with CleanPass(family, layers, keep_inputs=True, means=sums):
            _final_hidden(model, batch)
        _report(on_pass, batch)
    return sums.vectors()


def _to_host(losses: dict[Key, torch.Tensor]) -> dict[Key, np.ndarray]:
    """Every key's per-sequence losses to the host at once: one copy, one sync per checkpoint."""
    sizes = [len(t) for t in losses.values()]
    flat = torch.cat([t.to(torch.float64) for t in losses.values()]).cpu().numpy()
    return dict(zip(losses, np.split(flat, np.cumsum(sizes)[:-1])))


def _report(on_pass, batch: torch.Tensor) -> None:
    if on_pass is not None:
        on_pass(batch.numel())


def _final_hidden(model, ids: torch.Tensor) -> torch.Tensor:
    """The base model's last hidden state (after its final norm): (B, T, d)."""
    return model.base_model(input_ids=ids, use_cache=False).last_hidden_state


# -- one checkpoint -> rows -------------------------------------------------------------------------
def sweep_checkpoint(checkpoint, tokens, options: SweepOptions = SweepOptions(),
                     on_pass: Callable[[int], None] | None = None,
                     on_batch: Callable[[int, int, int, int], None] | None = None):
    """Sweep a loaded ``Checkpoint`` (collectors.checkpoints) on ``EvalTokens`` that fit it
    (``prepare`` checks that with ``EvalTokens.check_fits``); return SweepRows.
    Raises NonFiniteLoss (nothing to store) when any pass gives NaN or infinite losses."""
    from .rows import (SweepRows, checkpoint_row, eval_set_row, find_non_finite, metric_rows,
                       model_row, new_run_id, now, result_rows, run_row)

    n_layers = len(checkpoint.family.layer_list(checkpoint.model))
    options.check_fits(n_layers, checkpoint.ref.name)
    started, run_id = now(), new_run_id()
    result = sweep_losses(checkpoint.model, checkpoint.family, torch.from_numpy(tokens.ids),
                          options, on_pass, on_batch)
    bad = find_non_finite(result.losses)
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise NonFiniteLoss(f"{checkpoint.ref.name}@{checkpoint.revision}: NaN or infinite loss "
                            f"({', '.join(bad[:5])}{more}); nothing stored for this checkpoint")
    finished = now()
    where = dict(model=checkpoint.ref.name, revision=checkpoint.revision,
                 eval_set=tokens.eval_set, run_id=run_id, created_at=finished)
    return SweepRows(
        models=model_row(checkpoint, n_layers, finished),
        checkpoints=checkpoint_row(checkpoint, finished),
        eval_sets=eval_set_row(tokens, finished),
        runs=run_row(checkpoint, tokens, options, result, run_id=run_id, started_at=started,
                     finished_at=finished),
        results=result_rows(result, method=options.method, seq_len=tokens.seq_len, **where),
        layer_metrics=metric_rows(result.metrics, **where),
    )
