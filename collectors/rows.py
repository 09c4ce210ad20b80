"""Rows of one checkpoint's sweep, as Arrow tables ready for ``Store.write_checkpoint``.

``SweepRows`` holds one table per store table (models, checkpoints, eval_sets, runs, results); it
pickles, so a remote executor can return it.  Per result row: ``loss`` = mean of the per-sequence
losses (equal-length sequences, so the mean over all predicted tokens), ``delta`` = loss minus the
baseline loss, and the 95% paired-t interval of the per-sequence deltas (collectors.stats).
"""
from __future__ import annotations

import datetime as dt
import platform
import uuid
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from layerdb.revisions import parse_revision

from .stats import paired_interval


@dataclass
class SweepRows:
    models: pa.Table
    checkpoints: pa.Table
    eval_sets: pa.Table
    runs: pa.Table
    results: pa.Table

    def as_kwargs(self) -> dict[str, pa.Table]:
        """Keyword arguments of ``Store.write_checkpoint``."""
        return {"model": self.models, "checkpoint": self.checkpoints, "eval_set": self.eval_sets,
                "run": self.runs, "results": self.results}

    @property
    def model(self) -> str:
        return self.runs["model"][0].as_py()

    @property
    def revision(self) -> str:
        return self.runs["revision"][0].as_py()

    @property
    def baseline_loss(self) -> float:
        r = self.results.to_pydict()
        return r["loss"][r["component"].index("none")]


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def find_non_finite(losses: dict) -> list[str]:
    """Names of the passes whose per-sequence losses hold NaN or inf ("attn L3", "baseline")."""
    bad = []
    for (component, layer), seq in losses.items():
        if not np.isfinite(seq).all():
            bad.append("baseline" if component == "none" else f"{component} L{layer}")
    return bad


def result_rows(losses: dict, *, model: str, revision: str, eval_set: str, method: str,
                n_tokens: int, run_id: str, created_at: dt.datetime) -> pa.Table:
    base = losses[("none", -1)]
    cols: dict[str, list] = {k: [] for k in ("component", "layer", "loss", "delta", "delta_ci_low",
                                             "delta_ci_high", "seq_losses")}
    for (component, layer), seq in losses.items():
        if component == "none":
            delta, low, high = 0.0, 0.0, 0.0
        else:
            delta, low, high = paired_interval(seq - base)
        for name, value in (("component", component), ("layer", layer),
                            ("loss", float(seq.mean())), ("delta", delta), ("delta_ci_low", low),
                            ("delta_ci_high", high), ("seq_losses", seq.tolist())):
            cols[name].append(value)
    n = len(cols["loss"])
    return pa.table({
        "model": pa.array([model] * n, pa.string()),
        "revision": pa.array([revision] * n, pa.string()),
        "step": pa.array([parse_revision(revision).step] * n, pa.int64()),
        "eval_set": pa.array([eval_set] * n, pa.string()),
        "method": pa.array([method] * n, pa.string()),
        "component": pa.array(cols["component"], pa.string()),
        "layer": pa.array(cols["layer"], pa.int32()),
        "span": pa.array([1] * n, pa.int32()),
        "loss": pa.array(cols["loss"], pa.float64()),
        "n_tokens": pa.array([n_tokens] * n, pa.int64()),
        "delta": pa.array(cols["delta"], pa.float64()),
        "delta_ci_low": pa.array(cols["delta_ci_low"], pa.float64()),
        "delta_ci_high": pa.array(cols["delta_ci_high"], pa.float64()),
        "seq_losses": pa.array(cols["seq_losses"], pa.list_(pa.float64())),
        "run_id": pa.array([run_id] * n, pa.string()),
        "created_at": pa.array([created_at] * n, pa.timestamp("us")),
    })


def model_row(checkpoint, n_layers: int, created_at: dt.datetime) -> pa.Table:
    config, model = checkpoint.model.config, checkpoint.model
    n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    return _table({
        "model": (checkpoint.ref.name, pa.string()), "family": (checkpoint.family.name, pa.string()),
        "architecture": ((getattr(config, "architectures", None) or [type(model).__name__])[0], pa.string()),
        "n_layers": (n_layers, pa.int32()), "d_model": (getattr(config, "hidden_size", None), pa.int32()),
        "n_heads": (getattr(config, "num_attention_heads", None), pa.int32()),
        "n_params": (n_params, pa.int64()),
        "parallel_residual": (bool(checkpoint.family.parallel_residual(config)), pa.bool_()),
        "vocab_size": (getattr(config, "vocab_size", None), pa.int32()),
        "max_seq_len": (max_context(config), pa.int32()), "created_at": (created_at, pa.timestamp("us")),
    })


def checkpoint_row(checkpoint, created_at: dt.datetime) -> pa.Table:
    parsed = parse_revision(checkpoint.revision)
    return _table({
        "model": (checkpoint.ref.name, pa.string()), "revision": (checkpoint.revision, pa.string()),
        "step": (parsed.step, pa.int64()), "tokens_seen": (parsed.tokens, pa.int64()),
        "weights_fingerprint": (checkpoint.fingerprint, pa.string()),
        "commit_hash": (checkpoint.commit_hash, pa.string()),
        "created_at": (created_at, pa.timestamp("us")),
    })


def eval_set_row(tokens, created_at: dt.datetime) -> pa.Table:
    types = {"eval_set": pa.string(), "name": pa.string(), "source": pa.string(),
             "tokenizer": pa.string(), "n_sequences": pa.int32(), "seq_len": pa.int32(),
             "n_tokens": pa.int64(), "n_bytes": pa.int64()}
    row = tokens.row()
    return _table({**{k: (row[k], t) for k, t in types.items()},
                   "created_at": (created_at, pa.timestamp("us"))})


def run_row(checkpoint, tokens, options, *, run_id: str, started_at: dt.datetime,
            finished_at: dt.datetime) -> pa.Table:
    import torch
    import transformers

    from layerdb import __version__

    return _table({
        "run_id": (run_id, pa.string()), "model": (checkpoint.ref.name, pa.string()),
        "revision": (checkpoint.revision, pa.string()), "eval_set": (tokens.eval_set, pa.string()),
        "method": (options.method, pa.string()),
        "components": (",".join(options.components), pa.string()),
        "status": ("complete", pa.string()), "started_at": (started_at, pa.timestamp("us")),
        "finished_at": (finished_at, pa.timestamp("us")), "device": (str(checkpoint.device), pa.string()),
        "dtype": (str(checkpoint.dtype).removeprefix("torch."), pa.string()),
        "batch_size": (options.batch_size, pa.int32()),
        "wall_seconds": ((finished_at - started_at).total_seconds(), pa.float64()),
        "host": (platform.node(), pa.string()), "layerdb_version": (__version__, pa.string()),
        "torch_version": (torch.__version__, pa.string()),
        "transformers_version": (transformers.__version__, pa.string()), "error": (None, pa.string()),
    })


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def max_context(config) -> int | None:
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _table(values: dict[str, tuple]) -> pa.Table:
    """One-row table with explicit column types."""
    return pa.table({k: pa.array([v], t) for k, (v, t) in values.items()})
