"""SQLAlchemy metadata of the store: the schema the code reads and writes.

The database itself is created only by the hand-written Alembic migrations in ``migrations/``;
``tests/test_migrations.py`` checks that the head schema matches these tables column by column.
"""
from __future__ import annotations

from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.types import UserDefinedType

COMPONENTS = ("none", "block", "attn", "mlp", "swap")  # "none" = the baseline, layer = -1
ABLATED_COMPONENTS = ("block", "attn", "mlp")  # what --components drops, one layer at a time
SPAN_COMPONENTS = ("block", "swap")  # the components whose rows may span several layers
METRICS = ("block_influence", "update_ratio", "attn_ratio", "mlp_ratio", "angular_distance")
METHODS = ("zero", "mean")  # as the results CHECK allows; tests/test_migrations.py compares them
BASELINE_LAYER = -1


class DoubleList(UserDefinedType):
    """DuckDB ``DOUBLE[]`` (per-sequence losses)."""

    cache_ok = True

    def get_col_spec(self, **kw):
        return "DOUBLE[]"


metadata = sa.MetaData()

models = sa.Table(
    "models", metadata,
    sa.Column("model", sa.String, primary_key=True),  # HF repo id or local name
    sa.Column("family", sa.String),  # adapter name: gpt_neox, falcon, llama, gpt2
    sa.Column("architecture", sa.String),  # HF class, e.g. GPTNeoXForCausalLM
    sa.Column("n_layers", sa.Integer, nullable=False),
    sa.Column("d_model", sa.Integer),
    sa.Column("n_heads", sa.Integer),
    sa.Column("n_params", sa.BigInteger),
    sa.Column("parallel_residual", sa.Boolean),
    sa.Column("vocab_size", sa.Integer),
    sa.Column("max_seq_len", sa.Integer),
    sa.Column("created_at", sa.DateTime),
)

checkpoints = sa.Table(
    "checkpoints", metadata,
    sa.Column("model", sa.String, primary_key=True),
    sa.Column("revision", sa.String, primary_key=True),  # hub branch/tag, or "local"
    sa.Column("step", sa.BigInteger),  # parsed from the revision; NULL when it names none
    sa.Column("tokens_seen", sa.BigInteger),  # parsed where the revision says so (OLMo)
    sa.Column("weights_fingerprint", sa.String),  # hash of the loaded weights
    sa.Column("commit_hash", sa.String),  # resolved hub commit, where known
    sa.Column("created_at", sa.DateTime),
    sa.Column("weights_digest", sa.String),  # from the hub's LFS sha256 of the weight files
    sa.Column("weight_files", sa.Integer),
    sa.Column("weight_bytes", sa.BigInteger),
    sa.Column("same_weights_as", sa.String),  # the revision whose results stand for this one
)

eval_sets = sa.Table(
    "eval_sets", metadata,
    sa.Column("eval_set", sa.String, primary_key=True),  # hash of token ids and seq_len
    sa.Column("name", sa.String),
    sa.Column("source", sa.String),  # path or hf:NAME[:SPLIT]
    sa.Column("tokenizer", sa.String),
    sa.Column("n_sequences", sa.Integer),
    sa.Column("seq_len", sa.Integer),
    sa.Column("n_tokens", sa.BigInteger),  # predicted tokens: n_sequences * (seq_len - 1)
    sa.Column("n_bytes", sa.BigInteger),  # UTF-8 bytes of the text the tokens cover
    sa.Column("created_at", sa.DateTime),
)

runs = sa.Table(
    "runs", metadata,
    sa.Column("run_id", sa.String, primary_key=True),
    sa.Column("model", sa.String, nullable=False),
    sa.Column("revision", sa.String, nullable=False),
    sa.Column("eval_set", sa.String),
    sa.Column("method", sa.String),
    sa.Column("components", sa.String),  # comma list, e.g. "block,attn,mlp"
    sa.Column("status", sa.String, nullable=False),  # complete | failed | imported
    sa.Column("started_at", sa.DateTime),
    sa.Column("finished_at", sa.DateTime),
    sa.Column("device", sa.String),
    sa.Column("dtype", sa.String),
    sa.Column("batch_size", sa.Integer),
    sa.Column("wall_seconds", sa.Float),
    sa.Column("host", sa.String),
    sa.Column("layerdb_version", sa.String),
    sa.Column("torch_version", sa.String),
    sa.Column("transformers_version", sa.String),
    sa.Column("error", sa.String),
    sa.Column("spans", sa.String),  # comma list of the span lengths asked for, e.g. "2,4"
    sa.Column("swaps", sa.Boolean),
    sa.Column("precision", sa.Float),  # adaptive evaluation's EPS (nats); NULL = fixed budget
    sa.Column("order_seed", sa.BigInteger),  # seed of the evaluation order; NULL = natural order
    sa.Column("ablated_sequences", sa.BigInteger),  # sequences all ablated passes used together
)

results = sa.Table(
    "results", metadata,
    sa.Column("model", sa.String, primary_key=True),
    sa.Column("revision", sa.String, primary_key=True),
    sa.Column("step", sa.BigInteger),
    sa.Column("eval_set", sa.String, primary_key=True),
    sa.Column("method", sa.String, primary_key=True),
    sa.Column("component", sa.String, primary_key=True),
    sa.Column("layer", sa.Integer, primary_key=True),  # -1 for the baseline
    sa.Column("span", sa.Integer, primary_key=True),  # layers involved: k .. k+span-1
    sa.Column("loss", sa.Float, nullable=False),  # mean next-token CE over the predicted tokens
    sa.Column("n_tokens", sa.BigInteger),  # predicted tokens the row used
    sa.Column("n_sequences", sa.Integer),  # evaluation sequences the row used (adaptive: fewer)
    sa.Column("delta", sa.Float),  # loss - baseline loss on the same sequences; 0 for the baseline
    sa.Column("delta_ci_low", sa.Float),  # 95% interval of the paired per-sequence delta
    sa.Column("delta_ci_high", sa.Float),
    sa.Column("p_value", sa.Float),  # two-sided, of delta = 0 (adaptive rows: anytime-valid)
    sa.Column("seq_losses", DoubleList),  # per-sequence mean losses, in evaluation order
    sa.Column("run_id", sa.String),
    sa.Column("created_at", sa.DateTime, nullable=False),  # newer rows replace older ones
)

layer_metrics = sa.Table(
    "layer_metrics", metadata,
    sa.Column("model", sa.String, primary_key=True),
    sa.Column("revision", sa.String, primary_key=True),
    sa.Column("eval_set", sa.String, primary_key=True),
    sa.Column("metric", sa.String, primary_key=True),  # one of METRICS
    sa.Column("layer", sa.Integer, primary_key=True),  # k: from the residual entering layer k
    sa.Column("span", sa.Integer, primary_key=True),  # n: to the residual after layer k+n-1
    sa.Column("value", sa.Float, nullable=False),  # averaged over every position of every sequence
    sa.Column("run_id", sa.String),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

RESULT_KEY = ("model", "revision", "eval_set", "method", "component", "layer", "span")
LAYER_METRIC_KEY = ("model", "revision", "eval_set", "metric", "layer", "span")
TABLES = {t.name: t for t in (models, checkpoints, eval_sets, runs, results, layer_metrics)}
VIEWS = ("ablations", "latest_ablations")  # created by the migrations; see migrations/versions

_ARROW_TYPES = {
    sa.String: pa.string(), sa.Integer: pa.int32(), sa.BigInteger: pa.int64(),
    sa.Float: pa.float64(), sa.Boolean: pa.bool_(), sa.DateTime: pa.timestamp("us"),
    DoubleList: pa.list_(pa.float64()),
}


def arrow_schema(table: str) -> pa.Schema:
    """The Arrow schema of a store table, from the columns above: the one place types live."""
    return pa.schema([(c.name, _ARROW_TYPES[type(c.type)]) for c in TABLES[table].columns])


def arrow_rows(table: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Rows (dicts; absent columns are NULL) as an Arrow table of ``table``'s schema."""
    return pa.Table.from_pylist(rows, schema=arrow_schema(table))
