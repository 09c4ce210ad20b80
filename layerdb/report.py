"""One self-contained HTML report comparing the models in a store (works offline).

Per model: a summary (layers, checkpoints, eval set, provenance from runs), warnings
(duplicate checkpoints, incomplete coverage), the heatmap and the layer-loss chart (latest
step, with a slider), the most important layers and the strongest significant lowers-loss
cases. Across models: the compare chart, in bits per byte when the models' tokenizers differ
(``-p unit=`` as for the chart). The Vega JavaScript is inlined once; every chart is a
Vega-Lite spec with its rows, drawn by vega-embed when the page opens.
"""
from __future__ import annotations

import datetime as dt
import html
import json
import numbers
from pathlib import Path

import pandas as pd

from . import charts
from .errors import LayerdbError, require_folder
from .named_queries import convert_parameters, get_query, run_query
from .units import UNIT_TYPE

MAX_TABLE_ROWS = 50  # longer tables show the first rows and say how many more
LOWERS_SHOWN = 10  # the lowers-loss table: the strongest cases; the query lists them all
TOP_SHOWN = 8  # the span-interaction and swap tables, at the latest step: the strongest rows
PARAMETERS = {"unit": UNIT_TYPE}  # -p KEY=VALUE: the compare chart's unit

MODEL_SQL = "SELECT * FROM models WHERE model = :model"
CHECKPOINTS_SQL = """
SELECT count(DISTINCT revision) AS collected, min(step) AS first_step, max(step) AS last_step,
       (SELECT count(*) FROM checkpoints c WHERE c.model = :model) AS known,
       (SELECT count(*) FROM checkpoints c WHERE c.model = :model
          AND c.same_weights_as IS NOT NULL) AS same_weights
FROM results WHERE model = :model
"""
MARKED_SQL = """
SELECT revision FROM checkpoints WHERE model = :model AND same_weights_as IS NOT NULL
"""
EVAL_SETS_SQL = """
SELECT r.eval_set, e.name, e.source, e.tokenizer, e.n_sequences, e.seq_len, e.n_tokens,
       e.n_bytes, count(*) AS result_rows
FROM results r LEFT JOIN eval_sets e USING (eval_set)
WHERE r.model = :model
GROUP BY ALL ORDER BY result_rows DESC, r.eval_set
"""
RUNS_SQL = """
SELECT count(*) AS runs,
       string_agg(DISTINCT status, ', ') AS statuses,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       string_agg(DISTINCT device, ', ') AS devices,
       string_agg(DISTINCT dtype, ', ') AS dtypes,
       string_agg(DISTINCT host, ', ') AS hosts,
       string_agg(DISTINCT 'layerdb ' || layerdb_version || ', torch ' || torch_version
                  || ', transformers ' || transformers_version, '; ') AS versions,
       min(started_at) AS first_started, max(finished_at) AS last_finished,
       sum(wall_seconds) AS wall_seconds
FROM runs WHERE model = :model
"""


def build_report(store, models: list[str] | None = None, **params) -> str:
    """The report's HTML text for ``models`` (default: every model with results). ``params``:
    ``unit`` of the compare chart, bpb, nats or relative (default: bpb when the models'
    tokenizers differ, else nats)."""
    unit = convert_parameters(params, PARAMETERS, "report").get("unit")
    known = store.sql("SELECT DISTINCT model FROM results ORDER BY model")["model"].tolist()
    if not known:
        raise LayerdbError("the store holds no results yet (collect or import some first)")
    models = list(dict.fromkeys(models)) if models else known
    unknown = [m for m in models if m not in known]
    if unknown:
        raise LayerdbError(f"no results for model(s) {', '.join(unknown)}; "
                           f"models: {', '.join(known)}")
    specs: list[dict] = []
    sections = [_model_section(store, model, specs) for model in models]
    overview = _overview(store, models)
    if len(models) > 1:
        overview += "<h2>Models compared</h2>" + _chart(
            lambda: charts.compare_chart(store, models=models, unit=unit), specs)
    nav = "".join(f'<a href="#{_anchor(m)}">{_e(m)}</a>' for m in models)
    generated = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return PAGE.format(
        title=_e("layerdb report: " + ", ".join(models)), css=CSS,
        header=f"<h1>Layer ablation report</h1><p>{len(models)} model(s) from "
               f"<code>{_e(Path(store.path).name)}</code> · generated {generated}</p>",
        nav=nav, body=overview + "".join(sections),
        script=_vega_bundle(), specs=_script_json(specs),
    )


def write_report(store, path: str | Path, models: list[str] | None = None, **params) -> Path:
    """Write the report to ``path`` (an .html file); ``params`` as for ``build_report``."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise LayerdbError(f"a report is an HTML file: give a path ending in .html, not {path}")
    require_folder(path)
    path.write_text(build_report(store, models, **params), encoding="utf-8")
    return path


# -- sections ---------------------------------------------------------------------------------
def _overview(store, models: list[str]) -> str:
    rows = []
    for model in models:
        info = store.sql(MODEL_SQL, model=model)
        ckpt = store.sql(CHECKPOINTS_SQL, model=model).iloc[0]
        lowers = run_query(store, "lowers-loss", model=model, significant_only=True)
        dupes = run_query(store, "duplicate-checkpoints", model=model)
        rows.append({
            "model": f'<a href="#{_anchor(model)}">{_e(model)}</a>',
            "layers": _e(_value(info["n_layers"].iloc[0]) if len(info) else "?"),
            "checkpoints": _e(_value(ckpt["collected"])),
            "steps": _e(_step_range(ckpt)),
            "significant lowers-loss": _e(len(lowers)),
            "duplicate checkpoints": _badge(len(dupes), "warn") if len(dupes) else "0",
        })
    return "<h2>Overview</h2>" + _html_table(pd.DataFrame(rows), escape=False)


def _model_section(store, model: str, specs: list[dict]) -> str:
    parts = [f'<section id="{_anchor(model)}"><h2>{_e(model)}</h2>',
             _summary_cards(store, model), _warnings(store, model),
             "<h3>Loss change over training</h3>",
             _chart(lambda: charts.heatmap_chart(store, model=model), specs),
             "<h3>Loss by layer</h3>"
             "<p class='hint'>Starts at the latest checkpoint; click or drag along the "
             "checkpoint slider to step through training.</p>",
             _chart(lambda: charts.layer_loss_chart(store, model=model), specs),
             "<h3>Most important layers at the latest step</h3>", _top_layers(store, model),
             "<h3>Ablations that lower the loss significantly</h3>", _fdr_note(store, model),
             _lowers(store, model),
             _beyond_single_drops(store, model, specs),
             "</section>"]
    return "".join(parts)


BEYOND_SQL = """
SELECT count(*) FILTER (WHERE component = 'block' AND span > 1) AS spans,
       count(*) FILTER (WHERE component = 'swap') AS swaps,
       (SELECT count(*) FROM layer_metrics WHERE model = :model) AS metrics
FROM results WHERE model = :model
"""


def _beyond_single_drops(store, model: str, specs: list[dict]) -> str:
    """Sections for what the store holds beyond single-layer drops: spans, swaps, metrics."""
    held = store.sql(BEYOND_SQL, model=model).iloc[0]
    parts = []
    if held["spans"]:
        parts += ["<h3>Contiguous blocks dropped together</h3>",
                  _chart(lambda: charts.span_chart(store, model=model), specs),
                  "<h4>Adjacent layers: together vs apart, at the latest step</h4>",
                  _interactions(store, model)]
    if held["swaps"]:
        parts += ["<h3>Adjacent layers swapped, at the latest step</h3>", _swaps(store, model)]
    if held["metrics"]:
        parts += ["<h3>Do the cheap layer metrics predict the drop?</h3>",
                  "<p class='hint'>Per checkpoint, the Spearman correlation across layers "
                  "between each clean-pass metric and the loss change when the block is "
                  "dropped.</p>",
                  _chart(lambda: charts.metric_vs_drop_chart(store, model=model), specs)]
    return "".join(parts)


def _interactions(store, model: str) -> str:
    df = _latest_step(run_query(store, "span-interaction", model=model))
    if df.empty:
        return "<p class='hint'>Needs span-2 and single block drops at the same checkpoint.</p>"
    ranked = df.reindex(df["interaction"].abs().sort_values(ascending=False).index)
    cols = ["step", "layer", "span_delta", "delta_k", "delta_next", "interaction", "ci_low",
            "ci_high"]
    return _top_table(ranked, cols, "span-interaction", model,
                      "interaction = delta(k..k+1) − delta(k) − delta(k+1); positive: the pair "
                      "matters more together than apart. Strongest")


def _swaps(store, model: str) -> str:
    df = _latest_step(run_query(store, "swap-sensitivity", model=model))
    ranked = df.sort_values("delta", ascending=False)
    cols = ["step", "layer", "delta", "delta_ci_low", "delta_ci_high", "q_value"]
    return _top_table(ranked, cols, "swap-sensitivity", model,
                      "Layer k+1 run before layer k; largest")


def _latest_step(df: pd.DataFrame) -> pd.DataFrame:
    """The rows at the latest step; all of them when no step is known."""
    return df[df["step"] == df["step"].max()] if df["step"].notna().any() else df


def _top_table(ranked: pd.DataFrame, cols: list[str], query: str, model: str, note: str) -> str:
    """The first TOP_SHOWN rows of ``ranked`` as a table, then a hint: ``note``, how many of
    how many are shown, and the query that lists them all."""
    top = ranked.head(TOP_SHOWN)
    return (_html_table(top[cols]) + f"<p class='hint'>{note} {len(top)} of {len(ranked)}; all "
            f"of them: <code>layerdb query {query} -p model={_e(model)}</code></p>")


def _summary_cards(store, model: str) -> str:
    info = store.sql(MODEL_SQL, model=model)
    ckpt = store.sql(CHECKPOINTS_SQL, model=model).iloc[0]
    sets = store.sql(EVAL_SETS_SQL, model=model)
    runs = store.sql(RUNS_SQL, model=model).iloc[0]
    m = info.iloc[0] if len(info) else pd.Series(dtype=object)
    architecture = {
        "layers": m.get("n_layers"), "d_model": m.get("d_model"), "heads": m.get("n_heads"),
        "parameters": _params(m.get("n_params")), "family": m.get("family"),
        "class": m.get("architecture"),
        "residual": None if pd.isna(m.get("parallel_residual", None)) else
        ("parallel" if m.get("parallel_residual") else "sequential"),
    }
    checkpoints = {"collected": ckpt["collected"], "known": ckpt["known"],
                   "another's weights": ckpt["same_weights"] or None, "steps": _step_range(ckpt)}
    cards = [_card("Architecture", architecture), _card("Checkpoints", checkpoints)]
    for _, s in sets.iterrows():
        cards.append(_card(f"Eval set {s['name'] if isinstance(s['name'], str) else ''}", {
            "id": s["eval_set"], "source": s["source"], "tokenizer": s["tokenizer"],
            "sequences": _shape(s["n_sequences"], s["seq_len"]), "tokens": s["n_tokens"],
            "bytes": s["n_bytes"], "result rows": s["result_rows"]}))
    wall = runs["wall_seconds"]
    cards.append(_card("Provenance", {
        "runs": runs["runs"], "status": runs["statuses"], "failed": runs["failed"] or None,
        "device": runs["devices"], "dtype": runs["dtypes"], "host": runs["hosts"],
        "software": runs["versions"], "first started": runs["first_started"],
        "last finished": runs["last_finished"],
        "compute": None if pd.isna(wall) else f"{wall / 3600:.2f} h"}))
    return f'<div class="cards">{"".join(cards)}</div>'


def _warnings(store, model: str) -> str:
    notes = []
    dupes = run_query(store, "duplicate-checkpoints", model=model)
    marked = set(store.sql(MARKED_SQL, model=model)["revision"])
    for keeper, group in dupes.groupby("keeper", sort=False):
        notes.append(_same_weights_note(keeper, group, marked))
    coverage = run_query(store, "coverage", model=model)
    coverage = coverage[coverage["same_weights_as"].isna()]  # duplicates: noted above
    gaps, no_metrics = [], 0  # (revision, what it lacks besides metrics); revisions lacking metrics
    for revision, missing in zip(coverage["revision"], coverage["missing"].fillna("")):
        parts = [part for part in missing.split("; ") if part]
        lacking = [part for part in parts if not part.startswith("metrics")]
        if lacking:
            gaps.append((revision, lacking))
        no_metrics += any(part.startswith("metrics") for part in parts)
    for revision, mine in gaps[:MAX_TABLE_ROWS]:
        notes.append(f"<b>Incomplete:</b> {_e(revision)} lacks {_e('; '.join(mine))}.")
    if len(gaps) > MAX_TABLE_ROWS:
        notes.append(f"… and {len(gaps) - MAX_TABLE_ROWS} more incomplete revisions "
                     "(see <code>layerdb query coverage</code>).")
    if no_metrics:
        notes.append(f"<b>Layer metrics missing</b> at {no_metrics} revision(s) (collected before "
                     "layerdb stored them?): re-run the same collect to add them; only the clean "
                     "pass runs.")
    if not notes:
        return '<p class="ok">No duplicate checkpoints; every collected revision is complete.</p>'
    return '<div class="warnings">' + "".join(f"<p>{n}</p>" for n in notes) + "</div>"


TESTS_SQL = """
SELECT eval_set, method, max(n_tests) AS n_tests FROM ablations
WHERE model = :model GROUP BY ALL ORDER BY eval_set, method
"""


def _fdr_note(store, model: str) -> str:
    """How significance is decided, and over how many tests the correction runs."""
    studies = store.sql(TESTS_SQL, model=model)
    counts = "; ".join(f"{int(n):,} ablations with p-values on eval set {_e(e[:10])} ({_e(m)})"
                       for e, m, n in studies.itertuples(index=False) if n)
    if not counts:
        return ("<p class='hint'>No p-values stored (results from before layerdb 0.2 without "
                "per-sequence losses): significance falls back to the per-ablation 95% "
                "interval, uncorrected.</p>")
    fdr = _fdr()
    return (f"<p class='hint'>Significant: Benjamini-Hochberg q ≤ {fdr} (false-discovery rate "
            f"{fdr:.0%}), corrected for every test of the study: {counts}.</p>")


def _fdr() -> float:
    """The false-discovery rate the report calls significant at: lowers-loss's default ``fdr``."""
    return next(p.default for p in get_query("lowers-loss").parameters if p.name == "fdr")


def _same_weights_note(keeper: str, group: pd.DataFrame, marked: set[str]) -> str:
    others = group[group["revision"] != keeper]
    if not marked & set(group["revision"]):  # found in the store, not marked by collect
        weights = group["weights_digest"].dropna().tolist() or group["weights_fingerprint"].tolist()
        return (f"<b>Same weights:</b> {_e(', '.join(group['revision']))} share the weights "
                f"<code>{_e(str(weights[0])[:16])}</code>; their results are not independent "
                "evidence about training.")
    not_swept = others.loc[~others["swept"].astype(bool), "revision"].tolist()
    swept = others.loc[others["swept"].astype(bool), "revision"].tolist()
    verb = "serves" if len(others) == 1 else "serve"
    note = (f"<b>Same weights:</b> {_e(', '.join(others['revision']))} {verb} the weights of "
            f"{_e(keeper)}, which keeps the results")
    if not_swept:
        note += f"; not swept: {_e(', '.join(not_swept))}"
    if swept:
        note += f"; swept anyway, left out of the charts: {_e(', '.join(swept))}"
    return note + "."


def _top_layers(store, model: str) -> str:
    ranked = run_query(store, "layer-importance", model=model)
    top = ranked[ranked["rank"] <= 3]
    if top.empty:
        return "<p class='hint'>No ablation results at a known step.</p>"
    cols = ["component", "rank", "layer", "depth", "delta", "delta_ci_low", "delta_ci_high", "step"]
    return _html_table(top[cols])


def _lowers(store, model: str) -> str:
    """The strongest significant cases (most negative delta first), how many there are in all,
    and the query that lists every one."""
    df = run_query(store, "lowers-loss", model=model, significant_only=True)
    if df.empty:
        return "<p class='ok'>None: no ablation lowers the loss with its interval below zero.</p>"
    cols = ["revision", "step", "component", "layer", "baseline_loss", "loss", "delta",
            "delta_ci_low", "delta_ci_high"]
    strongest = df.sort_values(["delta", "step", "layer", "component"], kind="stable",
                               na_position="last").head(LOWERS_SHOWN)
    if len(df) > LOWERS_SHOWN:
        shown = f"The {len(strongest)} strongest of {len(df)} significant cases"
    else:
        shown = f"{len(df)} significant case{'s' if len(df) > 1 else ''}"
    note = (f"<p class='hint'>{shown}, most negative delta (nats per token) first. All of them: "
            f"<code>layerdb query lowers-loss -p model={_e(model)} -p significant_only=true"
            "</code></p>")
    return note + _html_table(strongest[cols])


def _chart(build, specs: list[dict]) -> str:
    """A placeholder the page script fills with the chart; a note if the chart cannot be made."""
    try:
        spec = charts.chart_spec(build())
    except LayerdbError as exc:
        return f"<p class='hint'>No chart: {_e(exc)}</p>"
    specs.append(spec)
    return f'<div class="chart" id="chart-{len(specs) - 1}"></div>'


# -- small HTML helpers ------------------------------------------------------------------------
def _card(title: str, fields: dict) -> str:
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(_value(v))}</dd>" for k, v in fields.items()
                   if _value(v) != "")
    return f'<div class="card"><h4>{_e(title)}</h4><dl>{rows}</dl></div>'


def _html_table(df: pd.DataFrame, escape: bool = True) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for value in row:
            numeric = isinstance(value, numbers.Number) and not isinstance(value, bool)
            text = _value(value) if escape else str(value)
            cells.append(f'<td class="{"num" if numeric else ""}">'
                         f'{_e(text) if escape else text}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _value(v) -> str:
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    if isinstance(v, numbers.Integral) and not isinstance(v, bool) and abs(v) >= 10_000:
        return f"{v:,}"
    if isinstance(v, pd.Timestamp):
        return v.strftime("%Y-%m-%d %H:%M")
    return str(v)


def _step_range(ckpt) -> str:
    first, last = ckpt["first_step"], ckpt["last_step"]
    if pd.isna(first):
        return "unknown"
    return f"{int(first):,}" if first == last else f"{int(first):,} – {int(last):,}"


def _params(n) -> str | None:
    if n is None or pd.isna(n):
        return None
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(int(n))


def _shape(n_sequences, seq_len) -> str | None:
    if pd.isna(n_sequences) or pd.isna(seq_len):
        return None
    return f"{int(n_sequences):,} × {int(seq_len):,} tokens"


def _badge(text, kind: str) -> str:
    return f'<span class="badge {kind}">{_e(text)}</span>'


def _anchor(model: str) -> str:
    return "model-" + "".join(c if c.isalnum() else "-" for c in model)


def _e(text) -> str:
    return html.escape(str(text))


def _script_json(value) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e")


def _vega_bundle() -> str:
    import vl_convert
    from altair.utils._importers import vl_version_for_vl_convert

    return vl_convert.javascript_bundle(vl_version=vl_version_for_vl_convert())


CSS = """
:root { --ink:#111827; --muted:#4b5563; --line:#e5e7eb; --bg:#f8fafc; --accent:#c2410c; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
       color:var(--ink); background:var(--bg); }
header { background:#1f2937; color:#f9fafb; padding:28px 40px 18px; }
header h1 { margin:0 0 4px; font-size:26px; font-weight:650; }
header p { margin:0; color:#d1d5db; }
header code { color:#fde68a; }
nav { display:flex; flex-wrap:wrap; gap:6px; margin-top:14px; }
nav a { color:#f9fafb; background:#374151; padding:3px 10px; border-radius:999px;
        text-decoration:none; font-size:13px; }
main { max-width:1240px; margin:0 auto; padding:8px 40px 60px; }
h2 { margin:36px 0 12px; font-size:21px; border-bottom:2px solid var(--line); padding-bottom:6px; }
section h2 { color:var(--accent); }
h3 { margin:26px 0 8px; font-size:16px; }
.cards { display:grid; grid-template-columns:repeat(auto-fill,minmax(260px,1fr)); gap:12px; }
.card { background:#fff; border:1px solid var(--line); border-radius:8px; padding:12px 14px; }
.card h4 { margin:0 0 8px; font-size:13px; text-transform:uppercase; letter-spacing:.04em;
           color:var(--muted); }
.card dl { display:grid; grid-template-columns:max-content 1fr; gap:2px 12px; margin:0;
           font-size:13px; }
.card dt { color:var(--muted); } .card dd { margin:0; overflow-wrap:anywhere; }
.chart { background:#fff; border:1px solid var(--line); border-radius:8px; padding:12px;
         overflow-x:auto; }
table { border-collapse:collapse; background:#fff; font-size:13px; border:1px solid var(--line); }
th, td { padding:5px 10px; border-bottom:1px solid var(--line); text-align:left; }
th { background:#f3f4f6; font-weight:600; }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
tbody tr:nth-child(even) { background:#fafafa; }
.warnings { background:#fffbeb; border:1px solid #fcd34d; border-radius:8px; padding:4px 14px;
            margin-top:12px; }
.warnings p { margin:8px 0; }
.ok { color:#166534; } .hint { color:var(--muted); font-size:13px; }
.hint code { white-space:nowrap; }
.badge { display:inline-block; padding:0 8px; border-radius:999px; font-weight:600; }
.badge.warn { background:#fef3c7; color:#92400e; }
.vega-embed .vega-bindings { margin-top:6px; font-size:13px; }
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
<script>{script}</script>
</head>
<body>
<header>{header}<nav>{nav}</nav></header>
<main>{body}</main>
<script>
const specs = {specs};
const options = {{renderer: "svg", actions: {{export: true, source: false, compiled: false, editor: false}}}};
specs.forEach((spec, i) => vegaEmbed("#chart-" + i, spec, options).catch(console.error));
</script>
</body>
</html>
"""
