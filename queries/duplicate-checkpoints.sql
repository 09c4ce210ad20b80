-- name: duplicate-checkpoints
-- description: Revisions of a model whose weight fingerprints equal another revision's.
-- :model text = null  only this model (default: every model)
--
-- Such revisions serve the same weights (e.g. hub step branches that hold the final model), so
-- their results are not evidence about training. One row per revision; same_weights_as lists
-- the other revisions of its group.
SELECT c.model, c.revision, c.step, c.weights_fingerprint,
       count(*) + 1 AS group_size,
       string_agg(o.revision, ', ' ORDER BY o.step NULLS LAST, o.revision) AS same_weights_as
FROM checkpoints c
JOIN checkpoints o
  ON o.model = c.model AND o.weights_fingerprint = c.weights_fingerprint
 AND o.revision <> c.revision
WHERE c.weights_fingerprint IS NOT NULL
  AND (CAST(:model AS VARCHAR) IS NULL OR c.model = :model)
GROUP BY c.model, c.revision, c.step, c.weights_fingerprint
ORDER BY c.model, least(c.step, min(o.step)) NULLS LAST, c.weights_fingerprint,
         c.step NULLS LAST, c.revision
