-- name: emergence
-- description: Per layer and component, the first step from which delta stays above a threshold.
-- :threshold float = 0.1  delta (nats) that counts as "matters"
-- :model text = null      only this model (default: every model)
-- :component text = null  block, attn or mlp (default: all three)
-- :eval_set text = null   only this eval set (default: every eval set)
--
-- A (layer, component) is listed only if its delta is above the threshold at every collected
-- step from emerged_at_step on (so also at the latest one). steps_above counts those steps.
WITH chosen AS (
    SELECT model, eval_set, component, layer, depth, step, delta FROM ablations
    WHERE span = 1 AND step IS NOT NULL
      AND (CAST(:model AS VARCHAR) IS NULL OR model = :model)
      AND (CAST(:component AS VARCHAR) IS NULL OR component = :component)
      AND (CAST(:eval_set AS VARCHAR) IS NULL OR eval_set = :eval_set)
),
flagged AS (
    SELECT *, bool_and(COALESCE(delta > CAST(:threshold AS DOUBLE), false)) OVER (
        PARTITION BY model, eval_set, component, layer
        ORDER BY step DESC ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    ) AS above_from_here
    FROM chosen
)
SELECT model, eval_set, component, layer, any_value(depth) AS depth,
       min(step) FILTER (WHERE above_from_here) AS emerged_at_step,
       count(*) FILTER (WHERE above_from_here) AS steps_above,
       arg_max(delta, step) AS latest_delta
FROM flagged
GROUP BY model, eval_set, component, layer
HAVING min(step) FILTER (WHERE above_from_here) IS NOT NULL
ORDER BY model, eval_set, component, layer
