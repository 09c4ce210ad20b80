-- name: lowers-loss
-- description: Ablations whose loss is below the baseline, with the 95% interval, p and q values of the delta.
-- :model text = null              only this model (default: every model)
-- :component text = null          block, attn, mlp or swap (default: all)
-- :eval_set text = null           only this eval set (default: every eval set)
-- :significant_only bool = false  keep only the significant cases
-- :fdr float = 0.05               significant = Benjamini-Hochberg q <= fdr (rows without a p-value: the interval); empty (-p fdr=): the interval excludes zero, uncorrected
--
-- delta = ablated loss - baseline loss on the same sequences, so these rows have delta < 0.
-- q_value controls the false-discovery rate within each (model, eval_set, method) study:
-- n_tests says over how many ablations. `significant` is NULL where neither a p-value nor an
-- interval was recorded; significant_only keeps only rows where it is true.
SELECT * FROM (
    SELECT model, revision, step, eval_set, method, component, layer, span, depth,
           baseline_loss, loss, delta, delta_ci_low, delta_ci_high, p_value, q_value, n_tests,
           significant_at(q_value, significant, CAST(:fdr AS DOUBLE)) AS significant
    FROM ablations
    WHERE delta < 0 AND same_weights_as IS NULL
      AND (CAST(:model AS VARCHAR) IS NULL OR model = :model)
      AND (CAST(:component AS VARCHAR) IS NULL OR component = :component)
      AND (CAST(:eval_set AS VARCHAR) IS NULL OR eval_set = :eval_set)
)
WHERE NOT COALESCE(CAST(:significant_only AS BOOLEAN), false) OR significant IS TRUE
ORDER BY model, step NULLS LAST, layer, component, span, eval_set, revision, method
