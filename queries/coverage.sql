-- name: coverage
-- description: Per model, revision, eval set and method: which components are complete, and what is missing.
-- :model text = null     only this model (default: every model)
-- :eval_set text = null  only this eval set (default: every eval set)
--
-- This is layerdb's one definition of "complete": `layerdb status`, resuming a collect run and
-- the report all read it. A component is complete when every layer 0 .. n_layers-1 has a
-- single-layer result (span 1); `baseline` says whether the no-ablation row is there. A
-- checkpoint that is known but has no results at all is listed with eval_set NULL and
-- "everything" missing. A revision serving the same weights as another (`same_weights_as`, see
-- the query duplicate-checkpoints) is done for every eval set when that one is complete: its
-- results are that revision's. Without results of its own it is listed (for any eval set) as
-- "duplicate of REVISION (not swept)".
WITH groups AS (
    SELECT model, revision, eval_set, method, max(step) AS step, count(*) AS result_rows,
           bool_or(component = 'none') AS baseline
    FROM results
    WHERE (CAST(:model AS VARCHAR) IS NULL OR model = :model)
      AND (CAST(:eval_set AS VARCHAR) IS NULL OR eval_set = :eval_set)
    GROUP BY model, revision, eval_set, method
    UNION ALL
    SELECT c.model, c.revision, NULL, NULL, c.step, 0, false FROM checkpoints c
    WHERE (CAST(:eval_set AS VARCHAR) IS NULL OR c.same_weights_as IS NOT NULL)
      AND (CAST(:model AS VARCHAR) IS NULL OR c.model = :model)
      AND NOT EXISTS (SELECT 1 FROM results r WHERE r.model = c.model AND r.revision = c.revision)
),
expected AS (
    SELECT g.model, g.revision, g.eval_set, g.method, m.n_layers, k.component, k.position,
           unnest(range(m.n_layers)) AS layer
    FROM groups g
    JOIN models m ON m.model = g.model
    CROSS JOIN (VALUES ('block', 1), ('attn', 2), ('mlp', 3)) k(component, position)
),
per_component AS (
    SELECT e.model, e.revision, e.eval_set, e.method, e.n_layers, e.component, e.position,
           count(*) FILTER (WHERE r.layer IS NULL) AS n_missing,
           string_agg(CAST(e.layer AS VARCHAR), ',' ORDER BY e.layer)
               FILTER (WHERE r.layer IS NULL) AS missing_layers
    FROM expected e
    LEFT JOIN results r
      ON r.model = e.model AND r.revision = e.revision AND r.eval_set = e.eval_set
     AND r.method = e.method AND r.component = e.component AND r.layer = e.layer AND r.span = 1
    GROUP BY e.model, e.revision, e.eval_set, e.method, e.n_layers, e.component, e.position
),
summary AS (
    SELECT model, revision, eval_set, method,
           string_agg(component, ',' ORDER BY position) FILTER (WHERE n_missing = 0) AS complete,
           string_agg(component || CASE WHEN n_missing = n_layers THEN ' all layers'
                                        ELSE ' layers ' || missing_layers END,
                      '; ' ORDER BY position) FILTER (WHERE n_missing > 0) AS missing
    FROM per_component
    GROUP BY model, revision, eval_set, method
)
SELECT g.model, g.revision, g.step, g.eval_set, g.method, m.n_layers, g.result_rows, g.baseline,
       COALESCE(s.complete, '') AS complete,
       CASE WHEN g.result_rows = 0 AND c.same_weights_as IS NOT NULL
                THEN 'duplicate of ' || c.same_weights_as || ' (not swept)'
            WHEN g.result_rows = 0 THEN 'everything (no results)'
            ELSE concat_ws('; ', CASE WHEN NOT g.baseline THEN 'baseline' END, s.missing)
       END AS missing,
       c.same_weights_as
FROM groups g
LEFT JOIN models m ON m.model = g.model
LEFT JOIN checkpoints c ON c.model = g.model AND c.revision = g.revision
LEFT JOIN summary s
  ON s.model = g.model AND s.revision = g.revision
 AND s.eval_set IS NOT DISTINCT FROM g.eval_set AND s.method IS NOT DISTINCT FROM g.method
ORDER BY g.model, g.step NULLS LAST, g.revision, g.eval_set NULLS LAST, g.method NULLS LAST
