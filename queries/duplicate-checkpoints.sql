-- name: duplicate-checkpoints
-- description: Revisions of a model that serve the same weights as another revision, and which of them keeps the results.
-- :model text = null  only this model (default: every model)
--
-- This is layerdb's one definition of "duplicate". Revisions serve the same weights when collect
-- marked one as having another's weights (checkpoints.same_weights_as: from the hub's LFS digests
-- before any download, or from the fingerprint after loading), or, unmarked, when they share a
-- weights digest or a weight fingerprint. In each group the revision with the highest step keeps
-- the results (`keeper`); a revision without a step defers to one with a step. The others' results
-- are not evidence about training: collect does not sweep them (unless --sweep-duplicates) and the
-- charts leave out every revision marked with same_weights_as. One row per revision;
-- same_weights_as lists the other revisions of its group; swept says whether it has results.
WITH ckpt AS (
    SELECT c.*,
           COALESCE(c.same_weights_as,
                    CASE WHEN EXISTS (SELECT 1 FROM checkpoints o WHERE o.model = c.model
                                      AND o.same_weights_as = c.revision)
                         THEN c.revision END) AS marked_keeper,
           EXISTS (SELECT 1 FROM results r WHERE r.model = c.model AND r.revision = c.revision)
               AS swept
    FROM checkpoints c
    WHERE (CAST(:model AS VARCHAR) IS NULL OR c.model = :model)
),
grouped AS (
    SELECT *, COALESCE('revision ' || marked_keeper, 'digest ' || weights_digest,
                       'fingerprint ' || weights_fingerprint) AS weights_group
    FROM ckpt
),
ranked AS (
    SELECT *, COALESCE(marked_keeper, first_value(revision) OVER (
                  PARTITION BY model, weights_group
                  ORDER BY step IS NULL, step DESC, revision)) AS keeper
    FROM grouped
    WHERE weights_group IS NOT NULL
)
SELECT c.model, c.revision, c.step, c.weights_fingerprint,
       count(*) + 1 AS group_size,
       string_agg(o.revision, ', ' ORDER BY o.step NULLS LAST, o.revision) AS same_weights_as,
       c.keeper, c.swept, c.weights_digest
FROM ranked c
JOIN ranked o
  ON o.model = c.model AND o.weights_group = c.weights_group AND o.revision <> c.revision
GROUP BY c.model, c.revision, c.step, c.weights_fingerprint, c.keeper, c.swept, c.weights_digest,
         c.weights_group
ORDER BY c.model, least(c.step, min(o.step)) NULLS LAST, c.weights_group, c.step NULLS LAST,
         c.revision
