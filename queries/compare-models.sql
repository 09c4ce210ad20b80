-- name: compare-models
-- description: Mean and max delta per normalised-depth bin at each model's latest step.
-- :bins int = 10          number of equal-width depth bins over [0, 1]
-- :model text = null      only this model (default: every model)
-- :component text = null  block, attn or mlp (default: all three)
-- :eval_set text = null   only this eval set (default: every eval set)
--
-- "Latest step" is the view latest_ablations (the compare chart reads it too). A layer at
-- depth d = layer / (n_layers - 1) falls in bin floor(d * bins) (computed in integers, so no
-- layer slips below a bin edge), the last layer in the last bin, so models of different depth
-- share one axis. layers = how many layers fell in the bin.
WITH settings AS (SELECT greatest(CAST(:bins AS INTEGER), 1) AS bins),
binned AS (
    SELECT c.model, c.eval_set, c.revision, c.step, c.component, c.layer, c.delta, s.bins,
           CASE WHEN c.n_layers > 1 THEN least(c.layer * s.bins // (c.n_layers - 1), s.bins - 1)
                ELSE 0 END AS bin
    FROM latest_ablations c
    CROSS JOIN settings s
    WHERE c.span = 1 AND c.n_layers IS NOT NULL
      AND (CAST(:model AS VARCHAR) IS NULL OR c.model = :model)
      AND (CAST(:component AS VARCHAR) IS NULL OR c.component = :component)
      AND (CAST(:eval_set AS VARCHAR) IS NULL OR c.eval_set = :eval_set)
)
SELECT model, eval_set, revision, step, component, bin,
       CAST(bin AS DOUBLE) / bins AS depth_low,
       CAST(bin + 1 AS DOUBLE) / bins AS depth_high,
       avg(delta) AS mean_delta,
       max(delta) AS max_delta,
       count(DISTINCT layer) AS layers
FROM binned
GROUP BY model, eval_set, revision, step, component, bin, bins
ORDER BY model, eval_set, component, bin, revision
