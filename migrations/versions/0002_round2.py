"""spans, swaps, mean ablation, layer metrics, adaptive rows, p/q values, bits per byte, hub digests

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

- results: component 'swap' (layer k+1 run before layer k, span 2) and multi-layer block spans;
  n_sequences (how many evaluation sequences the row used: adaptive rows stop early) and p_value.
  DuckDB cannot alter a CHECK, so the table is rebuilt (create, copy, drop, rename); every row
  keeps every value, and rows written before get n_sequences from their per-sequence losses and a
  p-value from the same paired t test that gave their interval.
- layer_metrics: per-layer metrics of the clean pass (block influence, norm ratios, angular
  distance), keyed like results.
- runs: what a run asked for (spans, swaps, precision) and did (order_seed, ablated_sequences).
- checkpoints: the hub's digest of the weight files (from their LFS sha256, known before any
  download), their count and bytes, and same_weights_as: the revision whose results stand for a
  revision with identical weights.
- the macro t_quantile_975(df), for paired 95% intervals in the named queries;
- the macro significant_at(q_value, significant, fdr), the queries' one rule for `-p fdr`;
- views: ablations (delta against the baseline on the same sequences, p and Benjamini-Hochberg q
  values per (model, eval_set, method) study, bits per byte, the duplicate mark) and
  latest_ablations, the one definition of "latest step": per model and eval set, the largest step
  among its non-duplicate rows (a model whose rows carry no step keeps those step-less rows).
"""
import math

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

RESULTS = """
CREATE TABLE results_0002 (
    model VARCHAR NOT NULL,
    revision VARCHAR NOT NULL,
    step BIGINT,
    eval_set VARCHAR NOT NULL,
    method VARCHAR NOT NULL CHECK (method IN ('zero', 'mean')),
    component VARCHAR NOT NULL CHECK (component IN ('none', 'block', 'attn', 'mlp', 'swap')),
    layer INTEGER NOT NULL CHECK (layer >= -1),
    span INTEGER NOT NULL CHECK (span >= 1),
    loss DOUBLE NOT NULL CHECK (isfinite(loss)),
    n_tokens BIGINT,
    n_sequences INTEGER,
    delta DOUBLE,
    delta_ci_low DOUBLE,
    delta_ci_high DOUBLE,
    p_value DOUBLE CHECK (p_value >= 0 AND p_value <= 1),
    seq_losses DOUBLE[],
    run_id VARCHAR,
    created_at TIMESTAMP NOT NULL,
    CHECK (span = 1 OR component IN ('block', 'swap')),
    CHECK (component <> 'swap' OR span = 2),
    PRIMARY KEY (model, revision, eval_set, method, component, layer, span)
)
"""

LAYER_METRICS = """
CREATE TABLE layer_metrics (
    model VARCHAR NOT NULL,
    revision VARCHAR NOT NULL,
    eval_set VARCHAR NOT NULL,
    metric VARCHAR NOT NULL CHECK (metric IN ('block_influence', 'update_ratio', 'attn_ratio',
                                              'mlp_ratio', 'angular_distance')),
    layer INTEGER NOT NULL CHECK (layer >= 0),
    span INTEGER NOT NULL CHECK (span >= 1),
    value DOUBLE NOT NULL CHECK (isfinite(value)),
    run_id VARCHAR,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (model, revision, eval_set, metric, layer, span)
)
"""

NEW_COLUMNS = {
    "runs": [("spans", "VARCHAR"), ("swaps", "BOOLEAN"), ("precision", "DOUBLE"),
             ("order_seed", "BIGINT"), ("ablated_sequences", "BIGINT")],
    "checkpoints": [("weights_digest", "VARCHAR"), ("weight_files", "INTEGER"),
                    ("weight_bytes", "BIGINT"), ("same_weights_as", "VARCHAR")],
}

ABLATIONS_VIEW = """
CREATE VIEW ablations AS
WITH joined AS (
    SELECT r.model, r.revision, COALESCE(r.step, c.step) AS step, r.eval_set, r.method,
           r.component, r.layer, r.span, r.loss, r.delta AS stored_delta,
           r.delta_ci_low, r.delta_ci_high, r.p_value, r.n_tokens, r.n_sequences, r.run_id,
           -- the baseline on the same sequences: an adaptive row used the first n of them
           CASE WHEN len(r.seq_losses) < len(b.seq_losses)
                THEN list_avg(list_slice(b.seq_losses, 1, len(r.seq_losses)))
                ELSE b.loss END AS baseline_loss,
           m.n_layers,
           e.n_tokens / (e.n_bytes * ln(2)) AS bpb_per_nat,
           c.same_weights_as
    FROM results r
    LEFT JOIN results b
        ON b.model = r.model AND b.revision = r.revision AND b.eval_set = r.eval_set
        AND b.method = r.method AND b.component = 'none' AND b.layer = -1 AND b.span = 1
    LEFT JOIN checkpoints c ON c.model = r.model AND c.revision = r.revision
    LEFT JOIN models m ON m.model = r.model
    LEFT JOIN eval_sets e ON e.eval_set = r.eval_set
    WHERE r.component <> 'none'
),
ranked AS (
    SELECT *, COALESCE(stored_delta, loss - baseline_loss) AS delta,
           row_number() OVER (PARTITION BY model, eval_set, method
                              ORDER BY p_value NULLS LAST, revision, component, layer, span) AS p_rank,
           count(p_value) OVER (PARTITION BY model, eval_set, method) AS n_tests
    FROM joined
)
SELECT
    model, revision, step, eval_set, method, component, layer, span,
    baseline_loss, loss, delta,
    delta / NULLIF(baseline_loss, 0) AS rel_delta,
    delta_ci_low, delta_ci_high,
    (delta_ci_low > 0 OR delta_ci_high < 0) AS significant,
    CAST(layer AS DOUBLE) / NULLIF(n_layers - 1, 0) AS depth,
    n_layers, n_tokens, run_id,
    n_sequences, p_value,
    -- Benjamini-Hochberg: q_(i) = min over j >= i of n_tests * p_(j) / j, within the study
    CASE WHEN p_value IS NOT NULL THEN least(1.0, min(p_value * n_tests / p_rank) OVER (
        PARTITION BY model, eval_set, method ORDER BY p_rank DESC
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) END AS q_value,
    n_tests,
    loss * bpb_per_nat AS loss_bpb,
    baseline_loss * bpb_per_nat AS baseline_bpb,
    delta * bpb_per_nat AS delta_bpb,
    delta_ci_low * bpb_per_nat AS delta_bpb_ci_low,
    delta_ci_high * bpb_per_nat AS delta_bpb_ci_high,
    same_weights_as
FROM ranked
"""

LATEST_ABLATIONS_VIEW = """
CREATE VIEW latest_ablations AS
WITH kept AS (SELECT * FROM ablations WHERE same_weights_as IS NULL),
latest AS (SELECT model, eval_set, max(step) AS step FROM kept GROUP BY model, eval_set)
SELECT k.* FROM kept k
JOIN latest l ON l.model = k.model AND l.eval_set = k.eval_set
             AND k.step IS NOT DISTINCT FROM l.step
"""


# t_{0.975, df}, the two-sided 95% quantile of Student's t, for the queries' paired intervals:
# exact values for df 1..30, the Cornish-Fisher expansion beyond (error below 3e-8).
T_QUANTILE_MACRO = """
CREATE MACRO t_quantile_975(df) AS CASE
    WHEN df IS NULL OR df < 1 THEN NULL
    WHEN df <= 30 THEN [12.70620474, 4.30265273, 3.182446305, 2.776445105, 2.570581836,
                        2.446911851, 2.364624252, 2.306004135, 2.262157163, 2.228138852,
                        2.20098516, 2.17881283, 2.160368656, 2.144786688, 2.131449546,
                        2.119905299, 2.109815578, 2.10092204, 2.093024054, 2.085963447,
                        2.079613845, 2.073873068, 2.06865761, 2.063898562, 2.059538553,
                        2.055529439, 2.051830516, 2.048407142, 2.045229642, 2.042272456][df]
    ELSE 1.959963984540054
         + 2.372271230298562 / df
         + 2.8224986157396112 / (df * df)
         + 2.555849679507722 / (df * df * df)
         + 1.5895340533938225 / (df * df * df * df)
END
"""


# Significant at false-discovery rate ``fdr``: the Benjamini-Hochberg q-value decides where there is
# one, the 95% interval (the view's ``significant``) where not; a NULL rate: the interval, uncorrected.
SIGNIFICANT_AT_MACRO = """
CREATE MACRO significant_at(q_value, significant, fdr) AS
    CASE WHEN fdr IS NULL THEN significant ELSE COALESCE(q_value <= fdr, significant) END
"""


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS ablations")
    op.execute(RESULTS)
    op.execute("""
        INSERT INTO results_0002 BY NAME
        SELECT *, CAST(len(seq_losses) AS INTEGER) AS n_sequences FROM results
    """)
    op.execute("DROP TABLE results")
    op.execute("ALTER TABLE results_0002 RENAME TO results")
    _backfill_p_values()
    op.execute(LAYER_METRICS)
    for table, columns in NEW_COLUMNS.items():
        for name, kind in columns:
            op.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
    op.execute(ABLATIONS_VIEW)
    op.execute(LATEST_ABLATIONS_VIEW)
    op.execute(T_QUANTILE_MACRO)
    op.execute(SIGNIFICANT_AT_MACRO)


def downgrade() -> None:
    op.execute("DROP MACRO IF EXISTS significant_at")
    op.execute("DROP MACRO IF EXISTS t_quantile_975")
    op.execute("DROP VIEW IF EXISTS latest_ablations")
    op.execute("DROP VIEW IF EXISTS ablations")
    op.execute("DROP TABLE IF EXISTS layer_metrics")
    for table, columns in NEW_COLUMNS.items():
        for name, _ in columns:
            op.execute(f"ALTER TABLE {table} DROP COLUMN {name}")
    op.execute(RESULTS_0001.replace("CREATE TABLE results", "CREATE TABLE results_0001"))
    op.execute(f"""
        INSERT INTO results_0001 BY NAME
        SELECT {', '.join(COLUMNS_0001)} FROM results
        WHERE component IN ('none', 'block', 'attn', 'mlp') AND span = 1
    """)
    op.execute("DROP TABLE results")
    op.execute("ALTER TABLE results_0001 RENAME TO results")
    op.execute(ABLATIONS_VIEW_0001)


def _backfill_p_values() -> None:
    """Rows written before 0002 carry per-sequence losses: their two-sided paired-t p-value, the
    test whose 95% interval they already store."""
    from layerdb.pvalues import paired_pvalue

    rows = op.get_bind().exec_driver_sql("""
        SELECT r.model, r.revision, r.eval_set, r.method, r.component, r.layer, r.span,
               r.seq_losses, b.seq_losses
        FROM results r JOIN results b
          ON b.model = r.model AND b.revision = r.revision AND b.eval_set = r.eval_set
         AND b.method = r.method AND b.component = 'none' AND b.span = 1
        WHERE r.component <> 'none' AND r.p_value IS NULL
          AND len(r.seq_losses) >= 2 AND len(r.seq_losses) = len(b.seq_losses)
    """).fetchall()
    updates = []
    for *key, ablated, base in rows:
        p = paired_pvalue([a - b for a, b in zip(ablated, base)])
        if p is not None and math.isfinite(p):
            updates.append((p, *key))
    if updates:
        op.get_bind().exec_driver_sql(
            "UPDATE results SET p_value = ? WHERE model = ? AND revision = ? AND eval_set = ? "
            "AND method = ? AND component = ? AND layer = ? AND span = ?", updates)


# -- schema 0001, for the downgrade ---------------------------------------------------------------
COLUMNS_0001 = ("model", "revision", "step", "eval_set", "method", "component", "layer", "span",
                "loss", "n_tokens", "delta", "delta_ci_low", "delta_ci_high", "seq_losses",
                "run_id", "created_at")

RESULTS_0001 = """
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
"""

ABLATIONS_VIEW_0001 = """
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
