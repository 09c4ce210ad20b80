-- name: span-interaction
-- description: Do adjacent layers matter more together than apart? delta(k..k+1) - delta(k) - delta(k+1), with a paired 95% interval.
-- :model text = null     only this model (default: every model)
-- :eval_set text = null  only this eval set (default: every eval set)
-- :method text = 'zero'  zero or mean ablation
-- :step int = null       only this step (default: every step)
--
-- Per evaluation sequence i: interaction_i = L_span(k..k+1)_i - L_k_i - L_k+1_i + L_baseline_i,
-- the span-2 drop's delta minus the two single drops' deltas, all on the same sequences; the
-- interval is the paired t interval of those. Positive: the two layers matter more together
-- than apart. Needs `layerdb collect --spans 2` (and the single block drops).
WITH span AS (
    SELECT * FROM results
    WHERE component = 'block' AND span = 2 AND method = :method
      AND (CAST(:model AS VARCHAR) IS NULL OR model = :model)
      AND (CAST(:eval_set AS VARCHAR) IS NULL OR eval_set = :eval_set)
      AND (CAST(:step AS BIGINT) IS NULL OR step = CAST(:step AS BIGINT))
),
joined AS (
    SELECT s.model, s.eval_set, s.revision, s.step, s.layer,
           s.loss - base.loss AS span_delta, a.loss - base.loss AS delta_k,
           b.loss - base.loss AS delta_next,
           least(len(s.seq_losses), len(a.seq_losses), len(b.seq_losses),
                 len(base.seq_losses)) AS n,
           s.seq_losses AS ls, a.seq_losses AS la, b.seq_losses AS lb, base.seq_losses AS l0
    FROM span s
    JOIN results a ON a.model = s.model AND a.revision = s.revision AND a.eval_set = s.eval_set
                  AND a.method = s.method AND a.component = 'block' AND a.span = 1
                  AND a.layer = s.layer
    JOIN results b ON b.model = s.model AND b.revision = s.revision AND b.eval_set = s.eval_set
                  AND b.method = s.method AND b.component = 'block' AND b.span = 1
                  AND b.layer = s.layer + 1
    JOIN results base ON base.model = s.model AND base.revision = s.revision
                     AND base.eval_set = s.eval_set AND base.method = s.method
                     AND base.component = 'none'
),
per_sequence AS (
    SELECT *, list_transform(range(1, n + 1), lambda i: ls[i] - la[i] - lb[i] + l0[i]) AS d
    FROM joined
),
stats AS (
    SELECT *, list_avg(d) AS interaction, list_stddev_samp(d) AS sd FROM per_sequence
)
SELECT st.model, st.eval_set, st.revision, COALESCE(st.step, c.step) AS step, st.layer,
       CAST(st.layer AS DOUBLE) / NULLIF(m.n_layers - 1, 0) AS depth,
       st.span_delta, st.delta_k, st.delta_next, st.interaction,
       st.interaction - t_quantile_975(st.n - 1) * st.sd / sqrt(st.n) AS ci_low,
       st.interaction + t_quantile_975(st.n - 1) * st.sd / sqrt(st.n) AS ci_high,
       st.n AS n_sequences
FROM stats st
LEFT JOIN models m ON m.model = st.model
LEFT JOIN checkpoints c ON c.model = st.model AND c.revision = st.revision
WHERE c.same_weights_as IS NULL
ORDER BY st.model, st.eval_set, step NULLS LAST, st.revision, st.layer
