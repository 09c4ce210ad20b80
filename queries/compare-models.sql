-- name: compare-models
-- description: Mean and max delta per normalised-depth bin at each model's latest step, in bits per byte across tokenizers.
-- :bins int = 10          number of equal-width depth bins over [0, 1]
-- :model text = null      only these models, a comma list (default: every model)
-- :component text = null  block, attn or mlp (default: all three)
-- :eval_set text = null   only this eval set (default: every eval set)
-- :unit text in (bpb, nats, relative) = null  unit of the deltas (default: bpb if the tokenizers differ, else nats)
--
-- "Latest step" is the view latest_ablations (the compare chart reads it too). A layer at
-- depth d = layer / (n_layers - 1) falls in bin floor(d * bins) (computed in integers, so no
-- layer slips below a bin edge), the last layer in the last bin, so models of different depth
-- share one axis. layers = how many layers fell in the bin.
--
-- Units: nats = nats per token (delta); bpb = bits per byte, delta * n_tokens / (n_bytes * ln 2)
-- of the row's eval set (the view's delta_bpb; NULL where the eval set has no byte count);
-- relative = delta / baseline loss. A nat per token is a different amount of text for each
-- tokenizer, so across tokenizers only bpb and relative compare. The compared rows' tokenizers
-- differ when their eval sets record different tokenizers (eval_sets.tokenizer, a fingerprint of
-- what maps text to ids; an eval set without one counts as its own tokenizer). tokenizers = how
-- many among all the compared rows. This is layerdb's one definition of the default unit: the
-- compare chart and the report ask this query for it.
WITH settings AS (SELECT greatest(CAST(:bins AS INTEGER), 1) AS bins),
compared AS (
    SELECT c.*, COALESCE(e.tokenizer, 'eval set ' || c.eval_set) AS tokenizer
    FROM latest_ablations c
    LEFT JOIN eval_sets e ON e.eval_set = c.eval_set
    WHERE c.span = 1 AND c.n_layers IS NOT NULL
      AND (CAST(:model AS VARCHAR) IS NULL
           OR c.model IN (SELECT trim(unnest(string_split(CAST(:model AS VARCHAR), ',')))))
      AND (CAST(:component AS VARCHAR) IS NULL OR c.component = :component)
      AND (CAST(:eval_set AS VARCHAR) IS NULL OR c.eval_set = :eval_set)
),
chosen AS (
    SELECT count(DISTINCT tokenizer) AS tokenizers,
           COALESCE(CAST(:unit AS VARCHAR),
                    CASE WHEN count(DISTINCT tokenizer) > 1 THEN 'bpb' ELSE 'nats' END) AS unit
    FROM compared
),
binned AS (
    SELECT c.model, c.eval_set, c.revision, c.step, c.component, c.layer, s.bins, u.unit,
           u.tokenizers,
           CASE u.unit WHEN 'bpb' THEN c.delta_bpb WHEN 'relative' THEN c.rel_delta
                       ELSE c.delta END AS value,
           CASE WHEN c.n_layers > 1 THEN least(c.layer * s.bins // (c.n_layers - 1), s.bins - 1)
                ELSE 0 END AS bin
    FROM compared c
    CROSS JOIN settings s
    CROSS JOIN chosen u
)
SELECT model, eval_set, revision, step, component, bin,
       CAST(bin AS DOUBLE) / bins AS depth_low,
       CAST(bin + 1 AS DOUBLE) / bins AS depth_high,
       avg(value) AS mean_delta,
       max(value) AS max_delta,
       unit,
       count(DISTINCT layer) AS layers,
       tokenizers
FROM binned
GROUP BY model, eval_set, revision, step, component, bin, bins, unit, tokenizers
ORDER BY model, eval_set, component, bin, revision
