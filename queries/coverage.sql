-- name: coverage
-- description: Per model, revision, eval set and method: which kinds of measurement are complete, and what is missing.
-- :model text = null     only this model (default: every model)
-- :eval_set text = null  only this eval set (default: every eval set)
--
-- This is layerdb's one definition of "complete": `layerdb status`, resuming a collect run and
-- the report all read it. Kinds (collectors/ablations.py names them the same way): block, attn
-- and mlp (single layers, every layer 0 .. n_layers-1), spanN (blocks k .. k+N-1 dropped, every
-- k 0 .. n_layers-N; listed once any span-N row exists), swap (layers 0 .. n_layers-2; listed
-- once any swap row exists) and metrics (the per-layer metrics at every layer, and the angular
-- distance for every span listed). `baseline` says whether the no-ablation row is there. A
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
sized AS (
    SELECT g.*, m.n_layers FROM groups g JOIN models m ON m.model = g.model
),
kinds AS (  -- each group's kinds: (kind, component and span of its rows, order in the listing)
    SELECT s.*, k.kind, k.component, k.span, k.position
    FROM sized s
    CROSS JOIN (VALUES ('block', 'block', 1, 1), ('attn', 'attn', 1, 2), ('mlp', 'mlp', 1, 3))
        k(kind, component, span, position)
    UNION ALL
    SELECT DISTINCT s.*, CASE WHEN r.component = 'swap' THEN 'swap' ELSE 'span' || r.span END,
           r.component, r.span, CASE WHEN r.component = 'swap' THEN 1000 ELSE 3 + r.span END
    FROM sized s
    JOIN results r ON r.model = s.model AND r.revision = s.revision AND r.eval_set = s.eval_set
                  AND r.method = s.method AND r.span > 1
),
expected_rows AS (
    SELECT *, unnest(range(n_layers - span + 1)) AS layer FROM kinds
),
row_kinds AS (
    SELECT e.model, e.revision, e.eval_set, e.method, e.kind, e.position,
           count(*) AS n_expected,
           count(*) FILTER (WHERE r.layer IS NULL) AS n_missing,
           string_agg(CAST(e.layer AS VARCHAR), ',' ORDER BY e.layer)
               FILTER (WHERE r.layer IS NULL) AS missing_layers
    FROM expected_rows e
    LEFT JOIN results r
      ON r.model = e.model AND r.revision = e.revision AND r.eval_set = e.eval_set
     AND r.method = e.method AND r.component = e.component AND r.layer = e.layer
     AND r.span = e.span
    GROUP BY ALL
),
expected_metrics AS (
    SELECT s.model, s.revision, s.eval_set, s.method, x.metric, 1 AS span,
           unnest(range(s.n_layers)) AS layer
    FROM sized s
    CROSS JOIN (VALUES ('block_influence'), ('update_ratio'), ('attn_ratio'), ('mlp_ratio'),
                       ('angular_distance')) x(metric)
    UNION ALL
    SELECT model, revision, eval_set, method, 'angular_distance', span,
           unnest(range(n_layers - span + 1))
    FROM kinds WHERE kind LIKE 'span%'
),
metric_layers AS (
    SELECT e.model, e.revision, e.eval_set, e.method, e.layer, bool_or(lm.layer IS NULL) AS missing
    FROM expected_metrics e
    LEFT JOIN layer_metrics lm
      ON lm.model = e.model AND lm.revision = e.revision AND lm.eval_set = e.eval_set
     AND lm.metric = e.metric AND lm.layer = e.layer AND lm.span = e.span
    GROUP BY ALL
),
metric_kind AS (
    SELECT model, revision, eval_set, method, 'metrics' AS kind, 2000 AS position,
           count(*) AS n_expected, count(*) FILTER (WHERE missing) AS n_missing,
           string_agg(CAST(layer AS VARCHAR), ',' ORDER BY layer) FILTER (WHERE missing)
               AS missing_layers
    FROM metric_layers
    GROUP BY ALL
),
summary AS (
    SELECT model, revision, eval_set, method,
           string_agg(kind, ',' ORDER BY position) FILTER (WHERE n_missing = 0) AS complete,
           string_agg(kind || CASE WHEN n_missing = n_expected THEN ' all layers'
                                   ELSE ' layers ' || missing_layers END,
                      '; ' ORDER BY position) FILTER (WHERE n_missing > 0) AS missing
    FROM (SELECT * FROM row_kinds UNION ALL BY NAME SELECT * FROM metric_kind)
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
