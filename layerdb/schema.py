"""SQLAlchemy metadata of the store: the schema the code reads and writes.

The database itself is created only by the hand-written Alembic migrations in ``migrations/``;
``tests/test_migrations.py`` checks that the head schema matches these tables column by column.
"""
from __future__ import annotations

from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.types import UserDefinedType

COMPONENTS = ("none", "block", "attn", "mlp")  # "none" = the un-ablated baseline, layer = -1
ABLATED_COMPONENTS = ("block", "attn", "mlp")
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
    sa.Column("span", sa.Integer, primary_key=True),  # contiguous layers dropped; 1 for now
    sa.Column("loss", sa.Float, nullable=False),  # mean next-token CE over all predicted tokens
    sa.Column("n_tokens", sa.BigInteger),
    sa.Column("delta", sa.Float),  # loss - baseline loss; 0 for the baseline
    sa.Column("delta_ci_low", sa.Float),  # 95% interval of the paired per-sequence delta
    sa.Column("delta_ci_high", sa.Float),
    sa.Column("seq_losses", DoubleList),  # per-sequence mean losses
    sa.Column("run_id", sa.String),
    sa.Column("created_at", sa.DateTime, nullable=False),  # newer rows replace older ones
)

RESULT_KEY = ("model", "revision", "eval_set", "method", "component", "layer", "span")
TABLES = {t.name: t for t in (models, checkpoints, eval_sets, runs, results)}
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
