-- name: components-by-depth
-- description: Block vs attention vs MLP delta side by side, by normalised depth, per model and step.
-- :model text = null     only this model (default: every model)
-- :step int = null       only this step (default: every step)
-- :eval_set text = null  only this eval set (default: every eval set)
--
-- depth = layer / (n_layers - 1): 0 is the first layer, 1 the last.
SELECT model, eval_set, revision, step, layer, depth,
       max(delta) FILTER (WHERE component = 'block') AS block_delta,
       max(delta) FILTER (WHERE component = 'attn') AS attn_delta,
       max(delta) FILTER (WHERE component = 'mlp') AS mlp_delta
FROM ablations
WHERE span = 1
  AND (CAST(:model AS VARCHAR) IS NULL OR model = :model)
  AND (CAST(:step AS BIGINT) IS NULL OR step = :step)
  AND (CAST(:eval_set AS VARCHAR) IS NULL OR eval_set = :eval_set)
GROUP BY model, eval_set, revision, step, layer, depth
ORDER BY model, eval_set, step NULLS LAST, revision, layer
