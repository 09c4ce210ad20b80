"""initial schema: models, checkpoints, eval_sets, runs, results and the ablations view

Revision ID: 0001
Revises:
Create Date: 2026-11-29

Written by hand as DuckDB DDL: keys are declared inline and there are no secondary indexes
(DuckDB cannot alter a column of an indexed table, nor add keys or CHECKs by ALTER).
"""
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = [
    """
    CREATE TABLE models (
        model VARCHAR PRIMARY KEY,
        family VARCHAR,
        architecture VARCHAR,
        n_layers INTEGER NOT NULL CHECK (n_layers > 0),
        d_model INTEGER,
        n_heads INTEGER,
        n_params BIGINT,
        parallel_residual BOOLEAN,
        vocab_size INTEGER,
        max_seq_len INTEGER,
        created_at TIMESTAMP DEFAULT current_timestamp
    )
    """,
    """
    CREATE TABLE checkpoints (
        model VARCHAR NOT NULL,
        revision VARCHAR NOT NULL,
        step BIGINT,
        tokens_seen BIGINT,
        weights_fingerprint VARCHAR,
        commit_hash VARCHAR,
        created_at TIMESTAMP DEFAULT current_timestamp,
        PRIMARY KEY (model, revision)
    )
    """,
    """
    CREATE TABLE eval_sets (
        eval_set VARCHAR PRIMARY KEY,
        name VARCHAR,
        source VARCHAR,
        tokenizer VARCHAR,
        n_sequences INTEGER,
        seq_len INTEGER,
        n_tokens BIGINT,
        n_bytes BIGINT,
        created_at TIMESTAMP DEFAULT current_timestamp
    )
    """,
    """
    CREATE TABLE runs (
        run_id VARCHAR PRIMARY KEY,
        model VARCHAR NOT NULL,
        revision VARCHAR NOT NULL,
        eval_set VARCHAR,
        method VARCHAR,
        components VARCHAR,
        status VARCHAR NOT NULL,
        started_at TIMESTAMP,
        finished_at TIMESTAMP,
        device VARCHAR,
        dtype VARCHAR,
        batch_size INTEGER,
        wall_seconds DOUBLE,
        host VARCHAR,
        layerdb_version VARCHAR,
        torch_version VARCHAR,
        transformers_version VARCHAR,
        error VARCHAR
    )
    """,
    """
    CREATE TABLE results (
        model VARCHAR NOT NULL,
        revision VARCHAR NOT NULL,
        step BIGINT,
        eval_set VARCHAR NOT NULL,
        method VARCHAR NOT NULL CHECK (method IN ('zero', 'mean')),
        component VARCHAR NOT NULL CHECK (component IN ('none', 'block', 'attn', 'mlp')),
        layer INTEGER NOT NULL CHECK (layer >= -1),
        span INTEGER NOT NULL CHECK (span >= 1),
        loss DOUBLE NOT NULL CHECK (isfinite(loss)),
        n_tokens BIGINT,
        delta DOUBLE,
        delta_ci_low DOUBLE,
        delta_ci_high DOUBLE,
        seq_losses DOUBLE[],
        run_id VARCHAR,
        created_at TIMESTAMP NOT NULL,
        PRIMARY KEY (model, revision, eval_set, method, component, layer, span)
    )
    """,
]

ABLATIONS_VIEW = """
CREATE VIEW ablations AS
SELECT
    r.model, r.revision, COALESCE(r.step, c.step) AS step, r.eval_set, r.method,
    r.component, r.layer, r.span,
    b.loss AS baseline_loss,
    r.loss,
    COALESCE(r.delta, r.loss - b.loss) AS delta,
    COALESCE(r.delta, r.loss - b.loss) / NULLIF(b.loss, 0) AS rel_delta,
    r.delta_ci_low, r.delta_ci_high,
    (r.delta_ci_low > 0 OR r.delta_ci_high < 0) AS significant,
    CAST(r.layer AS DOUBLE) / NULLIF(m.n_layers - 1, 0) AS depth,
    m.n_layers,
    r.n_tokens, r.run_id
FROM results r
LEFT JOIN results b
    ON b.model = r.model AND b.revision = r.revision AND b.eval_set = r.eval_set
    AND b.method = r.method AND b.component = 'none' AND b.layer = -1 AND b.span = 1
LEFT JOIN checkpoints c ON c.model = r.model AND c.revision = r.revision
LEFT JOIN models m ON m.model = r.model
WHERE r.component <> 'none'
"""


def upgrade() -> None:
    for ddl in TABLES:
        op.execute(ddl)
    op.execute(ABLATIONS_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS ablations")
    for table in ("results", "runs", "eval_sets", "checkpoints", "models"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
