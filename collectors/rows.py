"""Rows of one checkpoint's sweep, as Arrow tables ready for ``Store.write_checkpoint``.

``SweepRows`` holds one table per store table (models, checkpoints, eval_sets, runs, results,
layer_metrics); it pickles, so a remote executor can return it.  Per result row: ``loss`` = mean
of the per-sequence losses (equal-length sequences, so the mean over all predicted tokens),
``delta`` = loss minus the baseline loss on the same sequences, the 95% paired-t interval of the
per-sequence deltas and its two-sided p-value (collectors.stats).
"""
from __future__ import annotations

import datetime as dt
import math
import platform
import uuid
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from layerdb.revisions import parse_revision
from layerdb.schema import arrow_rows

from .ablations import BASELINE
from .eval_tokens import max_context
from .stats import paired_interval, paired_pvalue


@dataclass
class SweepRows:
    models: pa.Table
    checkpoints: pa.Table
    eval_sets: pa.Table
    runs: pa.Table
    results: pa.Table
    layer_metrics: pa.Table

    def as_kwargs(self) -> dict[str, pa.Table]:
        """Keyword arguments of ``Store.write_checkpoint``."""
        return {"model": self.models, "checkpoint": self.checkpoints, "eval_set": self.eval_sets,
                "run": self.runs, "results": self.results, "layer_metrics": self.layer_metrics}

    @property
    def model(self) -> str:
        return self.runs["model"][0].as_py()

    @property
    def revision(self) -> str:
        return self.runs["revision"][0].as_py()

    @property
    def baseline_loss(self) -> float:
        r = self.results.to_pydict()
        return r["loss"][r["component"].index(BASELINE[0])]


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def find_non_finite(losses: dict) -> list[str]:
    """Names of the passes whose per-sequence losses hold NaN or inf ("attn L3", "baseline")."""
    return [describe(key) for key, seq in losses.items() if not np.isfinite(seq).all()]


def describe(key) -> str:
    """A key as a reader says it: "baseline", "attn L3", "block L2-4", "swap L5-6"."""
    component, layer, span = key
    if component == "none":
        return "baseline"
    return f"{component} L{layer}" + (f"-{layer + span - 1}" if span > 1 else "")


def result_rows(result, *, model: str, revision: str, eval_set: str, method: str,
                seq_len: int, run_id: str, created_at: dt.datetime) -> pa.Table:
    """A row per key of a SweepResult: fixed budget, the paired t interval and p-value; adaptive,
    the confidence sequence's interval and anytime p-value on the sequences the row used."""
    base = result.losses[BASELINE]
    step = parse_revision(revision).step
    rows = []
    for key, seq in result.losses.items():
        component, layer, span = key
        if component == "none":
            delta, low, high, p = 0.0, 0.0, 0.0, None
        elif result.adaptive is not None:
            delta, low, high, p = (_finite(v) for v in result.adaptive[key])
        else:
            delta, low, high = paired_interval(seq - base)
            p = _finite(paired_pvalue(seq - base))
        rows.append(dict(model=model, revision=revision, step=step, eval_set=eval_set,
                         method=method, component=component, layer=layer, span=span,
                         loss=float(seq.mean()), n_tokens=len(seq) * (seq_len - 1),
                         n_sequences=len(seq), delta=delta, delta_ci_low=low, delta_ci_high=high,
                         p_value=p, seq_losses=seq.tolist(), run_id=run_id,
                         created_at=created_at))
    return arrow_rows("results", rows)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def metric_rows(metrics: dict, *, model: str, revision: str, eval_set: str, run_id: str,
                created_at: dt.datetime) -> pa.Table:
    return arrow_rows("layer_metrics", [
        dict(model=model, revision=revision, eval_set=eval_set, metric=metric, layer=layer,
             span=span, value=value, run_id=run_id, created_at=created_at)
        for (metric, layer, span), value in metrics.items()])


def model_row(checkpoint, n_layers: int, created_at: dt.datetime) -> pa.Table:
    config, model = checkpoint.model.config, checkpoint.model
    n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    return arrow_rows("models", [dict(
        model=checkpoint.ref.name, family=checkpoint.family.name,
        architecture=(getattr(config, "architectures", None) or [type(model).__name__])[0],
        n_layers=n_layers, d_model=getattr(config, "hidden_size", None),
        n_heads=getattr(config, "num_attention_heads", None), n_params=n_params,
        parallel_residual=bool(checkpoint.family.parallel_residual(config)),
        vocab_size=getattr(config, "vocab_size", None), max_seq_len=max_context(config),
        created_at=created_at)])


def checkpoint_row(checkpoint, created_at: dt.datetime) -> pa.Table:
    parsed = parse_revision(checkpoint.revision)
    return arrow_rows("checkpoints", [dict(
        model=checkpoint.ref.name, revision=checkpoint.revision, step=parsed.step,
        tokens_seen=parsed.tokens, weights_fingerprint=checkpoint.fingerprint,
        commit_hash=checkpoint.commit_hash, created_at=created_at)])


def eval_set_row(tokens, created_at: dt.datetime) -> pa.Table:
    return arrow_rows("eval_sets", [dict(tokens.row(), created_at=created_at)])


def run_row(checkpoint, tokens, options, result, *, run_id: str, started_at: dt.datetime,
            finished_at: dt.datetime) -> pa.Table:
    import torch
    import transformers

    from layerdb import __version__

    return arrow_rows("runs", [dict(
        run_id=run_id, model=checkpoint.ref.name, revision=checkpoint.revision,
        eval_set=tokens.eval_set, method=options.method, components=",".join(options.components),
        spans=",".join(map(str, options.spans)) or None, swaps=options.swaps,
        precision=options.precision,
        order_seed=options.order_seed if options.precision is not None else None,
        ablated_sequences=sum(len(seq) for key, seq in result.losses.items() if key != BASELINE),
        status="complete", started_at=started_at, finished_at=finished_at,
        device=str(checkpoint.device), dtype=str(checkpoint.dtype).removeprefix("torch."),
        batch_size=options.batch_size, wall_seconds=(finished_at - started_at).total_seconds(),
        host=platform.node(), layerdb_version=__version__, torch_version=torch.__version__,
        transformers_version=transformers.__version__)])


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]
