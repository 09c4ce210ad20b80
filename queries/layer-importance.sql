-- name: layer-importance
-- description: Per component, layers ranked by delta (most important first) at one step.
-- :model text = null      only this model (default: every model)
-- :step int = null        the training step (default: each model's latest, the view latest_ablations)
-- :component text = null  block, attn or mlp (default: all three)
-- :eval_set text = null   only this eval set (default: every eval set)
-- :fdr float = 0.05       significant = Benjamini-Hochberg q <= fdr (rows without a p-value: the interval); empty (-p fdr=): the interval excludes zero, uncorrected
WITH chosen AS (
    SELECT * FROM ablations
    WHERE CAST(:step AS BIGINT) IS NOT NULL AND step = CAST(:step AS BIGINT)
    UNION ALL BY NAME
    SELECT * FROM latest_ablations WHERE CAST(:step AS BIGINT) IS NULL
)
SELECT c.model, c.eval_set, c.revision, c.step, c.component,
       row_number() OVER (
           PARTITION BY c.model, c.eval_set, c.revision, c.component
           ORDER BY c.delta DESC NULLS LAST, c.layer
       ) AS rank,
       c.layer, c.depth, c.loss, c.delta, c.delta_ci_low, c.delta_ci_high, c.q_value,
       significant_at(c.q_value, c.significant, CAST(:fdr AS DOUBLE)) AS significant
FROM chosen c
WHERE c.span = 1 AND c.component IN ('block', 'attn', 'mlp') AND c.method = 'zero'
  AND c.same_weights_as IS NULL
  AND (CAST(:model AS VARCHAR) IS NULL OR c.model = :model)
  AND (CAST(:component AS VARCHAR) IS NULL OR c.component = :component)
  AND (CAST(:eval_set AS VARCHAR) IS NULL OR c.eval_set = :eval_set)
ORDER BY c.model, c.eval_set, c.revision, c.component, rank
