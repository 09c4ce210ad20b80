-- name: metric-vs-drop
-- description: Per checkpoint, the Spearman correlation across layers between a cheap clean-pass metric and the block-drop delta.
-- :metric text = 'block_influence'  block_influence, update_ratio, attn_ratio, mlp_ratio or angular_distance (span 1)
-- :model text = null                only this model (default: every model)
-- :eval_set text = null             only this eval set (default: every eval set)
--
-- Over training this answers: from which step does the metric (free: it comes from the clean
-- pass) rank the layers as the expensive drop does? Spearman = Pearson correlation of the
-- ranks (ties get their mean rank), over the layers of one checkpoint; NULL with fewer than
-- three layers or no variation.
WITH checked AS (
    SELECT CASE WHEN :metric IN ('block_influence', 'update_ratio', 'attn_ratio', 'mlp_ratio',
                                 'angular_distance') THEN :metric
                ELSE error('unknown metric ' || :metric || ': use block_influence, '
                           || 'update_ratio, attn_ratio, mlp_ratio or angular_distance') END AS metric
),
pairs AS (
    SELECT a.model, a.eval_set, a.revision, a.step, a.layer, a.delta, lm.value, k.metric
    FROM ablations a
    CROSS JOIN checked k
    JOIN layer_metrics lm ON lm.model = a.model AND lm.revision = a.revision
                         AND lm.eval_set = a.eval_set AND lm.layer = a.layer
                         AND lm.metric = k.metric AND lm.span = 1
    WHERE a.component = 'block' AND a.span = 1 AND a.method = 'zero'
      AND a.same_weights_as IS NULL
      AND (CAST(:model AS VARCHAR) IS NULL OR a.model = :model)
      AND (CAST(:eval_set AS VARCHAR) IS NULL OR a.eval_set = :eval_set)
),
ranked AS (
    SELECT *,
           rank() OVER (PARTITION BY model, eval_set, revision ORDER BY value)
             + (count(*) OVER (PARTITION BY model, eval_set, revision, value) - 1) / 2.0
             AS value_rank,
           rank() OVER (PARTITION BY model, eval_set, revision ORDER BY delta)
             + (count(*) OVER (PARTITION BY model, eval_set, revision, delta) - 1) / 2.0
             AS delta_rank
    FROM pairs
)
SELECT model, eval_set, revision, step, any_value(metric) AS metric, count(*) AS layers,
       CASE WHEN count(*) >= 3 THEN corr(value_rank, delta_rank) END AS spearman
FROM ranked
GROUP BY model, eval_set, revision, step
ORDER BY model, eval_set, step NULLS LAST, revision
