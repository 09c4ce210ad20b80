-- name: layer-importance
-- description: Per component, layers ranked by delta (most important first) at one step.
-- :model text = null      only this model (default: every model)
-- :step int = null        the training step (default: each model's latest)
-- :component text = null  block, attn or mlp (default: all three)
-- :eval_set text = null   only this eval set (default: every eval set)
WITH chosen AS (
    SELECT * FROM ablations
    WHERE span = 1
      AND (CAST(:model AS VARCHAR) IS NULL OR model = :model)
      AND (CAST(:component AS VARCHAR) IS NULL OR component = :component)
      AND (CAST(:eval_set AS VARCHAR) IS NULL OR eval_set = :eval_set)
),
latest AS (
    SELECT model, eval_set, max(step) AS latest_step FROM chosen GROUP BY model, eval_set
)
SELECT c.model, c.eval_set, c.revision, c.step, c.component,
       row_number() OVER (
           PARTITION BY c.model, c.eval_set, c.revision, c.component
           ORDER BY c.delta DESC NULLS LAST, c.layer
       ) AS rank,
       c.layer, c.depth, c.loss, c.delta, c.delta_ci_low, c.delta_ci_high, c.significant
FROM chosen c JOIN latest l ON l.model = c.model AND l.eval_set = c.eval_set
WHERE c.step = COALESCE(CAST(:step AS BIGINT), l.latest_step)
ORDER BY c.model, c.eval_set, c.revision, c.component, rank
