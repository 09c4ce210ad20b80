-- name: lowers-loss
-- description: Ablations whose loss is below the baseline, with the 95% interval of the delta.
-- :model text = null              only this model (default: every model)
-- :component text = null          block, attn or mlp (default: all three)
-- :eval_set text = null           only this eval set (default: every eval set)
-- :significant_only bool = false  keep only cases whose interval excludes zero
--
-- delta = ablated loss - baseline loss, so these rows have delta < 0. `significant` is NULL
-- where no interval was recorded; significant_only keeps only rows where it is true.
SELECT model, revision, step, eval_set, component, layer, depth,
       baseline_loss, loss, delta, delta_ci_low, delta_ci_high, significant
FROM ablations
WHERE delta < 0
  AND (CAST(:model AS VARCHAR) IS NULL OR model = :model)
  AND (CAST(:component AS VARCHAR) IS NULL OR component = :component)
  AND (CAST(:eval_set AS VARCHAR) IS NULL OR eval_set = :eval_set)
  AND (NOT COALESCE(CAST(:significant_only AS BOOLEAN), false) OR significant IS TRUE)
ORDER BY model, step NULLS LAST, layer, component, eval_set, revision
