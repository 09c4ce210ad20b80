-- name: swap-sensitivity
-- description: Swapping adjacent layers k and k+1: the loss change by depth and step.
-- :model text = null     only this model (default: every model)
-- :eval_set text = null  only this eval set (default: every eval set)
-- :step int = null       only this step (default: every step)
-- :fdr float = 0.05       significant = Benjamini-Hochberg q <= fdr (rows without a p-value: the interval); empty (-p fdr=): the interval excludes zero, uncorrected
--
-- A swap runs layer k+1 on the residual entering layer k, then layer k (Lad et al. 2024);
-- delta near zero means the two layers commute. Needs `layerdb collect --swaps`.
SELECT model, eval_set, revision, step, layer, depth, baseline_loss, loss, delta,
       delta_ci_low, delta_ci_high, p_value, q_value,
       significant_at(q_value, significant, CAST(:fdr AS DOUBLE)) AS significant
FROM ablations
WHERE component = 'swap' AND same_weights_as IS NULL
  AND (CAST(:model AS VARCHAR) IS NULL OR model = :model)
  AND (CAST(:eval_set AS VARCHAR) IS NULL OR eval_set = :eval_set)
  AND (CAST(:step AS BIGINT) IS NULL OR step = CAST(:step AS BIGINT))
ORDER BY model, eval_set, step NULLS LAST, revision, layer
