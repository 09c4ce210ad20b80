"""Altair charts of ablation results, saved as .html (self-contained), .png, .svg or .json.

One function per chart kind takes an open store and returns an Altair chart:

- ``layer_loss_chart``: loss by layer, baseline vs ablated, one panel per component; a slider
  that reads in steps (``step 1,000``) picks the checkpoint (HTML/JSON), or one step is drawn
  (PNG/SVG);
- ``heatmap_chart``: delta by layer x step (symmetric-log step axis), diverging colour at 0;
- ``training_chart``: loss over steps for the baseline and each layer's ablation;
- ``compare_chart``: several models on normalised depth, each at its latest step, in bits per
  byte, nats per token or relative (``layerdb.units``: bpb by default across tokenizers).

``CHARTS`` registers them (the CLI's list of kinds comes from it);
``write_chart(store, kind, path, **params)`` builds one and saves it by the file's extension.
Altair is imported only when a chart is built, so ``import layerdb`` stays quick.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .errors import LayerdbError, LayerdbWarning, require_folder
from .named_queries import convert_parameters, run_query
from .units import DELTA_COLUMNS, DELTA_TITLES, UNIT_TYPE, compare_unit

COMPONENT_ORDER = ["block", "attn", "mlp"]
COMPONENT_TITLES = {"block": "whole block dropped", "attn": "attention dropped",
                    "mlp": "MLP dropped"}
SAVE_FORMATS = (".html", ".png", ".svg", ".json")
BASELINE_COLOR, ABLATED_COLOR = "#4b5563", "#c2410c"
STEP_TICKS = [0, 1, 10, 100, 1_000, 10_000, 100_000, 1_000_000]
PANEL_WIDTH = 250
SLIDER_EVENTS = "pointerdown, pointermove[event.buttons > 0]"  # click, or press and drag
SLIDER_LABELS = 12  # at most about this many step labels under the slider
STEP_LABEL = ("datum.value >= 1000 ? format(datum.value / 1000, ',~r') + 'k' "
              ": format(datum.value, ',~r')")

# Revisions marked with another's weights (same_weights_as; query duplicate-checkpoints) are left
# out: their results would draw the kept revision's profile at their own step.
ABLATIONS_SQL = """
SELECT revision, step, component, layer, depth, baseline_loss, loss, delta,
       delta_ci_low, delta_ci_high, significant
FROM ablations
WHERE model = :model AND eval_set = :eval_set AND span = 1 AND method = 'zero'
  AND component IN ('block', 'attn', 'mlp') AND same_weights_as IS NULL
  AND (CAST(:component AS VARCHAR) IS NULL OR component = :component)
ORDER BY step NULLS LAST, revision, component, layer
"""
BASELINES_SQL = """
SELECT r.revision, r.step, r.loss FROM results r
LEFT JOIN checkpoints c ON c.model = r.model AND c.revision = r.revision
WHERE r.model = :model AND r.eval_set = :eval_set AND r.component = 'none'
  AND r.method = 'zero' AND c.same_weights_as IS NULL
ORDER BY r.step NULLS LAST, r.revision
"""
SPANS_SQL = """
SELECT revision, step, layer, span, delta, delta_ci_low, delta_ci_high, significant
FROM ablations
WHERE model = :model AND eval_set = :eval_set AND component = 'block' AND method = 'zero'
  AND same_weights_as IS NULL
ORDER BY step NULLS LAST, revision, span, layer
"""
LATEST_SQL = """
WITH chosen AS (
    SELECT * FROM latest_ablations WHERE span = 1
      AND (CAST(:component AS VARCHAR) IS NULL OR component = :component)
), most_collected AS (  -- one eval set per model: the one with the most results
    SELECT model, arg_max(eval_set, n) AS eval_set FROM (
        SELECT model, eval_set, count(*) AS n FROM ablations GROUP BY ALL) GROUP BY model
)
SELECT c.model, c.eval_set, c.revision, c.step, c.component, c.layer, c.depth, c.n_layers,
       c.delta, c.delta_bpb, c.rel_delta
FROM chosen c JOIN most_collected USING (model, eval_set)
ORDER BY c.model, c.component, c.layer
"""


# -- choosing what to draw -------------------------------------------------------------------
def resolve_model(store, model: str | None, eval_set: str | None) -> tuple[str, str]:
    """The model and eval set to draw: the only model unless one is named; the eval set with
    the most results of that model unless one is named."""
    known = store.sql("SELECT DISTINCT model FROM results ORDER BY model")["model"].tolist()
    if not known:
        raise LayerdbError("the store holds no results yet (collect or import some first)")
    if model is None:
        if len(known) > 1:
            raise LayerdbError(f"the store holds several models ({', '.join(known)}): "
                               "pass -p model=NAME")
        model = known[0]
    elif model not in known:
        raise LayerdbError(f"no results for model {model!r}; models: {', '.join(known)}")
    sets = store.sql("SELECT eval_set, count(*) AS n FROM results WHERE model = :model "
                     "GROUP BY eval_set ORDER BY n DESC, eval_set", model=model)["eval_set"].tolist()
    if eval_set is None:
        eval_set = sets[0]
    elif eval_set not in sets:
        raise LayerdbError(f"model {model} has no results on eval set {eval_set!r}; "
                           f"its eval sets: {', '.join(sets)}")
    return model, eval_set


def _eval_label(store, eval_set: str) -> str:
    names = store.sql("SELECT name FROM eval_sets WHERE eval_set = :e", e=eval_set)["name"]
    name = names.iloc[0] if len(names) and isinstance(names.iloc[0], str) else None
    return f"{name} ({eval_set[:10]})" if name else eval_set[:16]


def _ablations(store, model: str, eval_set: str, component: str | None = None) -> pd.DataFrame:
    df = store.sql(ABLATIONS_SQL, model=model, eval_set=eval_set, component=component)
    if df.empty:
        raise LayerdbError(f"no ablation results for {model} on eval set {eval_set}")
    return df


# -- chart kinds ------------------------------------------------------------------------------
def layer_loss_chart(store, model: str | None = None, eval_set: str | None = None,
                     step: int | None = None, slider: bool = True):
    """Loss by layer: the baseline and the ablated loss (with its 95% band), one panel per
    component. With ``slider`` every checkpoint is embedded and a slider picks the frame
    (starting at ``step``, default the latest); without it only ``step`` is drawn."""
    alt = _altair()
    model, eval_set = resolve_model(store, model, eval_set)
    df = _ablations(store, model, eval_set)
    frames, start = _frames(df, step, model)
    df = df.merge(frames, on=["step", "revision"])
    df["band_low"] = df["baseline_loss"] + df["delta_ci_low"]
    df["band_high"] = df["baseline_loss"] + df["delta_ci_high"]
    df = _compact(df[["frame", "frame_label", "step", "component", "layer", "baseline_loss",
                      "loss", "delta", "band_low", "band_high", "delta_ci_low", "delta_ci_high"]])
    df, picker = _frame_rows(alt, df, start, slider)
    base = _picked(alt.Chart(), picker)
    n_layers = int(df["layer"].max()) + 1
    x = alt.X("layer:Q", title="layer", axis=alt.Axis(tickMinStep=1, format="d"),
              scale=alt.Scale(domain=[0, max(n_layers - 1, 1)], nice=False))
    loss_axis = alt.Y("loss:Q", title="loss (nats/token)", scale=alt.Scale(zero=False))
    band = base.mark_area(opacity=0.18, color=ABLATED_COLOR).encode(
        x=x, y=alt.Y("band_low:Q", scale=alt.Scale(zero=False)), y2="band_high:Q")
    baseline = base.mark_line(color=BASELINE_COLOR, strokeDash=[6, 4]).encode(
        x=x, y=alt.Y("baseline_loss:Q", scale=alt.Scale(zero=False)))
    ablated = base.mark_line(color=ABLATED_COLOR, point=alt.OverlayMarkDef(size=28, color=ABLATED_COLOR)).encode(
        x=x, y=loss_axis,
        tooltip=["frame_label:N", "component:N", "layer:Q", alt.Tooltip("loss:Q", format=".4f"),
                 alt.Tooltip("baseline_loss:Q", format=".4f"), alt.Tooltip("delta:Q", format="+.4f"),
                 alt.Tooltip("delta_ci_low:Q", format="+.4f"),
                 alt.Tooltip("delta_ci_high:Q", format="+.4f")])
    layers = [band, baseline, ablated]
    if slider:  # the frame's step, above each panel's plot, right-aligned
        layers.append(base.mark_text(align="right", baseline="bottom", dy=-4, fontSize=12,
                                     fontWeight="bold", color=ABLATED_COLOR).encode(
            x=alt.value(PANEL_WIDTH), y=alt.value(0), text="frame_label:N",
        ).transform_aggregate(frame_label="min(frame_label)"))
    panel = alt.layer(*layers).properties(width=PANEL_WIDTH, height=200)
    chart = panel.facet(data=df, column=_component_facet(alt)).resolve_scale(y="independent")
    n_panels = df["component"].nunique()  # ~60 px between panels: spacing and a y axis
    chart, frame_note = _with_slider(alt, chart, frames, start, picker,
                                     n_panels * (PANEL_WIDTH + 60) - 60)
    subtitle = "dashed: no ablation; solid: the layer dropped; band: 95% interval" + frame_note
    return _style(chart.properties(title=alt.Title(
        f"Loss with one layer dropped: {model}", subtitle=[subtitle, _eval_label(store, eval_set)])))


def _step_slider(alt, frames: pd.DataFrame, picker, width: int):
    """The checkpoint slider: one dot per checkpoint, evenly spaced, the axis labelled by step
    and the picked one read out above its dot (``step 1,000``); click or drag to pick."""
    n = len(frames)
    every = math.ceil(n / SLIDER_LABELS)
    ticks = list(range(0, n, every))
    if n - 1 - ticks[-1] <= every / 2:  # the last checkpoint is labelled, its neighbour makes room
        ticks[-1] = n - 1
    else:
        ticks.append(n - 1)
    short = [_short_step(s, r) for s, r in zip(frames["step"], frames["revision"])]
    x = alt.X("frame:Q", title=None,
              scale=alt.Scale(domain=[-0.5, n - 0.5], nice=False, zero=False),
              axis=alt.Axis(values=ticks, labelExpr=f"{json.dumps(short)}[datum.value]",
                            grid=False, domainColor="#9ca3af"))
    track = alt.Chart(frames[["frame", "frame_label"]]).encode(x=x, y=alt.value(26))
    dots = track.mark_circle(size=36, color="#9ca3af", opacity=1, cursor="pointer")
    handle = track.mark_circle(size=170, color=ABLATED_COLOR, opacity=1)
    readout = track.mark_text(baseline="bottom", dy=-9, fontSize=13, fontWeight="bold",
                              color=ABLATED_COLOR).encode(text="frame_label:N")
    title = alt.Title("checkpoint (click or drag)", fontSize=11, fontWeight="normal",
                      color="#4b5563")
    return alt.layer(dots.add_params(picker), handle.transform_filter(picker),
                     readout.transform_filter(picker)).properties(
        width=width, height=34, view=alt.ViewBackground(stroke=None), title=title)


def heatmap_chart(store, model: str | None = None, eval_set: str | None = None):
    """Delta (ablated - baseline loss) by layer and step, one panel per component; red = the
    loss rises without the layer, blue = it falls; the step axis is symmetric-log."""
    alt = _altair()
    model, eval_set = resolve_model(store, model, eval_set)
    df = _ablations(store, model, eval_set).dropna(subset=["step"])
    if df.empty:
        raise LayerdbError(f"{model} has no results at a known training step")
    edges = step_cell_edges(sorted(df["step"].unique()))
    df["step_from"] = df["step"].map(lambda s: edges[s][0])
    df["step_to"] = df["step"].map(lambda s: edges[s][1])
    df = _compact(df[["step", "revision", "component", "layer", "step_from", "step_to", "delta",
                      "delta_ci_low", "delta_ci_high", "significant"]])
    n_layers = int(df["layer"].max()) + 1
    diverging = _diverging_scale(alt, df["delta"])
    x_scale = alt.Scale(type="symlog", domain=[min(e[0] for e in edges.values()),
                                               max(e[1] for e in edges.values())], nice=False)
    cells = alt.Chart().mark_rect(strokeWidth=0.6).encode(
        x=alt.X("step_from:Q", title="training step (symlog)", scale=x_scale,
                axis=alt.Axis(values=step_ticks(edges), labelExpr=STEP_LABEL, grid=False)),
        x2="step_to:Q",
        y=alt.Y("layer:O", title="layer", sort="descending",
                axis=alt.Axis(labelExpr=_every_nth_label(n_layers))),
        color=alt.Color("delta:Q", title="Δ loss", scale=diverging),
        stroke=alt.Stroke("delta:Q", scale=diverging, legend=None),
        tooltip=["step:Q", "revision:N", "component:N", "layer:Q",
                 alt.Tooltip("delta:Q", format="+.4f"), alt.Tooltip("delta_ci_low:Q", format="+.4f"),
                 alt.Tooltip("delta_ci_high:Q", format="+.4f"), "significant:N"],
    ).properties(width=PANEL_WIDTH, height=min(max(n_layers * 12, 120), 420))
    chart = cells.facet(data=df, column=_component_facet(alt))
    return _style(chart.properties(title=alt.Title(
        f"Loss change when a layer is dropped, over training: {model}",
        subtitle=["red: loss rises without the layer (it matters); blue: loss falls; "
                  "colour on a symmetric-log scale", _eval_label(store, eval_set)])))


def training_chart(store, model: str | None = None, eval_set: str | None = None,
                   component: str | None = None):
    """Loss over training steps (symmetric-log axis): the baseline (black) and the loss with
    each layer dropped (coloured by layer), one panel per component."""
    alt = _altair()
    model, eval_set = resolve_model(store, model, eval_set)
    df = _ablations(store, model, eval_set, component).dropna(subset=["step"])
    baselines = store.sql(BASELINES_SQL, model=model, eval_set=eval_set).dropna(subset=["step"])
    if df.empty:
        raise LayerdbError(f"{model} has no results at a known training step")
    panels = [c for c in COMPONENT_ORDER if c in set(df["component"])]
    baselines = pd.concat([baselines.assign(component=c, layer=-1) for c in panels])
    data = _compact(pd.concat([df[["step", "component", "layer", "loss"]],
                               baselines[["step", "component", "layer", "loss"]]],
                              ignore_index=True))
    x = alt.X("step:Q", title="training step (symlog)", scale=alt.Scale(type="symlog"),
              axis=alt.Axis(values=step_ticks(data["step"]), labelExpr=STEP_LABEL))
    n_layers = int(df["layer"].max()) + 1
    layers = alt.Chart().mark_line(strokeWidth=1.2, opacity=0.85).encode(
        x=x, y=alt.Y("loss:Q", title="loss (nats/token)", scale=alt.Scale(zero=False)),
        color=alt.Color("layer:Q", scale=alt.Scale(scheme="viridis", domain=[0, n_layers - 1]),
                        title="layer dropped"),
        detail="layer:N", tooltip=["component:N", "layer:Q"],
    ).transform_filter(alt.datum.layer >= 0)
    base = alt.Chart().mark_line(color="black", strokeWidth=2.5).encode(
        x=x, y="loss:Q",
        tooltip=["step:Q", alt.Tooltip("loss:Q", format=".4f", title="baseline loss")],
    ).transform_filter(alt.datum.layer < 0)
    chart = alt.layer(layers, base).properties(width=PANEL_WIDTH, height=220).facet(
        data=data, column=_component_facet(alt, panels))
    return _style(chart.properties(title=alt.Title(
        f"Loss over training with each layer dropped: {model}",
        subtitle=["black: no ablation; coloured: one layer dropped", _eval_label(store, eval_set)])))


def compare_chart(store, models: list[str] | None = None, component: str | None = None,
                  unit: str | None = None):
    """Delta by normalised depth (layer / (n_layers - 1)) for several models, each at its
    latest step (the view latest_ablations) on its most-collected eval set; one panel per
    component. ``unit`` bpb, nats or relative; by default the compare-models query's choice
    (bits per byte when the models' tokenizers differ, else nats per token); a LayerdbWarning
    when nats are compared across different tokenizers."""
    alt = _altair()
    df = store.sql(LATEST_SQL, component=component)
    if models:
        unknown = sorted(set(models) - set(df["model"]))
        if unknown:
            raise LayerdbError(f"no results for model(s) {', '.join(unknown)}; models: "
                               f"{', '.join(sorted(set(df['model']))) or 'none'}")
        df = df[df["model"].isin(models)]
    if df.empty:
        raise LayerdbError("no ablation results to compare")
    choice = compare_unit(store, models, component, unit)
    if choice.warning:
        warnings.warn(choice.warning, LayerdbWarning, stacklevel=2)
    df["value"] = df[DELTA_COLUMNS[choice.unit]]
    no_bytes = sorted(set(df.loc[df["value"].isna() & df["delta"].notna(), "eval_set"]))
    if no_bytes:
        raise LayerdbError("bits per byte need the byte count (eval_sets.n_bytes) of eval set(s) "
                           f"{', '.join(no_bytes)}: pass -p unit=nats or -p unit=relative")
    df["model_label"] = [f"{m} ({n} layers, {_frame_label(s, r)})" for m, n, s, r
                         in zip(df["model"], df["n_layers"], df["step"], df["revision"])]
    df["depth"] = df["depth"].fillna(0.0)
    panels = [c for c in COMPONENT_ORDER if c in set(df["component"])]
    limit = _symmetric_limit(df["value"])
    value_format = "+.2%" if choice.unit == "relative" else "+.4f"
    chart = alt.Chart().mark_line(point=alt.OverlayMarkDef(size=30), strokeWidth=2).encode(
        x=alt.X("depth:Q", title="normalised depth (0 = first layer, 1 = last)",
                scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("value:Q", title=f"{DELTA_TITLES[choice.unit]}, symlog",
                scale=alt.Scale(type="symlog", constant=max(limit / 100, 1e-4)),
                axis=alt.Axis(tickCount=6, format="%" if choice.unit == "relative" else "")),
        color=alt.Color("model_label:N", title="model", legend=alt.Legend(
            orient="bottom", direction="vertical", labelLimit=600)),
        tooltip=["model:N", "step:Q", "layer:Q", alt.Tooltip("depth:Q", format=".2f"),
                 alt.Tooltip("value:Q", format=value_format, title=DELTA_TITLES[choice.unit])],
    ).properties(width=PANEL_WIDTH, height=220)
    data = _compact(df[["model", "model_label", "step", "component", "layer", "depth", "value"]])
    chart = chart.facet(data=data, column=_component_facet(alt, panels))
    return _style(chart.properties(title=alt.Title(
        "Models compared on normalised depth",
        subtitle=["loss change when one layer is dropped, each model at its latest step",
                  f"in {choice.reason}"])))


def span_chart(store, model: str | None = None, eval_set: str | None = None,
               step: int | None = None, slider: bool = True):
    """Loss change when blocks k .. k+n-1 are dropped together: start layer k by span length n,
    colour = delta (span 1 = the single drop).  With ``slider`` every checkpoint is embedded and a
    slider picks the frame (starting at ``step``, default the latest)."""
    alt = _altair()
    model, eval_set = resolve_model(store, model, eval_set)
    df = store.sql(SPANS_SQL, model=model, eval_set=eval_set)
    if df.empty or df["span"].max() < 2:
        raise LayerdbError(f"no span drops for {model} on eval set {eval_set} "
                           "(collect them with --spans 2,...)")
    frames, start = _frames(df, step, model)
    df = _compact(df.merge(frames, on=["step", "revision"])[
        ["frame", "frame_label", "step", "layer", "span", "delta", "delta_ci_low",
         "delta_ci_high", "significant"]])
    df, picker = _frame_rows(alt, df, start, slider)
    base = _picked(alt.Chart(df), picker)
    cells = base.mark_rect().encode(
        x=alt.X("layer:O", title="first layer dropped (k)"),
        y=alt.Y("span:O", title="span length (n)", sort="descending"),
        color=alt.Color("delta:Q", title="Δ loss", scale=_diverging_scale(alt, df["delta"])),
        tooltip=["frame_label:N", "layer:Q", "span:Q", alt.Tooltip("delta:Q", format="+.4f"),
                 alt.Tooltip("delta_ci_low:Q", format="+.4f"),
                 alt.Tooltip("delta_ci_high:Q", format="+.4f"), "significant:N"],
    ).properties(width=max(PANEL_WIDTH, 14 * int(df["layer"].max() + 1)),
                 height=max(80, 26 * int(df["span"].nunique())))
    chart, frame_note = _with_slider(alt, cells, frames, start, picker, cells.width)
    return _style(chart.properties(title=alt.Title(
        f"Loss change when contiguous blocks are dropped together: {model}",
        subtitle=["cell (k, n): blocks k .. k+n-1 dropped; red: the loss rises",
                  _eval_label(store, eval_set) + frame_note])))


def metric_vs_drop_chart(store, model: str | None = None, eval_set: str | None = None):
    """Per metric, the Spearman correlation across layers between the clean-pass metric and the
    block-drop delta, over training: from which step does the cheap metric rank the layers as
    the expensive drop does?"""
    from .schema import METRICS

    alt = _altair()
    model, eval_set = resolve_model(store, model, eval_set)
    df = pd.concat([run_query(store, "metric-vs-drop", metric=m, model=model, eval_set=eval_set)
                    for m in METRICS], ignore_index=True).dropna(subset=["step", "spearman"])
    if df.empty:
        raise LayerdbError(f"no layer metrics with block drops for {model} on eval set "
                           f"{eval_set} at a known step")
    data = _compact(df[["step", "revision", "metric", "layers", "spearman"]])
    chart = alt.Chart(data).mark_line(point=alt.OverlayMarkDef(size=24)).encode(
        x=alt.X("step:Q", title="training step (symlog)", scale=alt.Scale(type="symlog"),
                axis=alt.Axis(values=step_ticks(data["step"]), labelExpr=STEP_LABEL)),
        y=alt.Y("spearman:Q", title="Spearman ρ (metric vs block-drop Δ)",
                scale=alt.Scale(domain=[-1, 1])),
        color=alt.Color("metric:N", title="metric", sort=list(METRICS)),
        tooltip=["metric:N", "step:Q", "revision:N", "layers:Q",
                 alt.Tooltip("spearman:Q", format="+.3f")],
    ).properties(width=2 * PANEL_WIDTH, height=220)
    return _style(chart.properties(title=alt.Title(
        f"Do the cheap metrics rank layers as the drop does? {model}",
        subtitle=["1: the metric orders the layers exactly as dropping them does",
                  _eval_label(store, eval_set)])))


@dataclass(frozen=True)
class ChartKind:
    function: Callable
    parameters: dict[str, str]  # name -> type, as named queries declare them
    summary: str  # one line for `layerdb chart --help`
    slider: bool = False  # takes ``slider``: a checkpoint slider in HTML/JSON, one frame in images


CHARTS = {
    "layer-loss": ChartKind(layer_loss_chart, {"model": "text", "eval_set": "text", "step": "int"},
                            "loss by layer, baseline vs ablated, one panel per component; a slider "
                            "labelled by step picks the checkpoint in HTML, step picks the one "
                            "drawn in PNG/SVG", slider=True),
    "heatmap": ChartKind(heatmap_chart, {"model": "text", "eval_set": "text"},
                         "loss change by layer x step (log step axis), red = the layer matters"),
    "training": ChartKind(training_chart, {"model": "text", "eval_set": "text", "component": "text"},
                          "loss over steps for the baseline and each layer's ablation"),
    "compare": ChartKind(compare_chart, {"models": "text", "component": "text", "unit": UNIT_TYPE},
                         "models side by side on normalised depth, each at its latest step; "
                         "unit bpb (the default when their tokenizers differ), nats or relative"),
    "span": ChartKind(span_chart, {"model": "text", "eval_set": "text", "step": "int"},
                      "loss change by first layer x span length of blocks dropped together; a "
                      "slider steps through the checkpoints in HTML", slider=True),
    "metric-vs-drop": ChartKind(metric_vs_drop_chart, {"model": "text", "eval_set": "text"},
                                "Spearman correlation of each layer metric with the block-drop "
                                "delta, over training steps"),
}


def make_chart(store, kind: str, *, for_format: str = ".html", **params: Any):
    """Build chart ``kind`` from parameters given as strings (CLI) or typed values (Python).
    ``models`` takes a comma list; ``for_format`` decides whether a kind with a slider gets it."""
    if kind not in CHARTS:
        raise LayerdbError(f"unknown chart kind {kind!r}; kinds: {', '.join(CHARTS)}")
    values = convert_parameters(params, CHARTS[kind].parameters, f"chart {kind}")
    if isinstance(values.get("models"), str):
        values["models"] = [m.strip() for m in values["models"].split(",") if m.strip()]
    if CHARTS[kind].slider:
        values["slider"] = for_format in (".html", ".json")
    return CHARTS[kind].function(store, **values)


def write_chart(store, kind: str, path: str | Path, **params: Any) -> Path:
    """Build chart ``kind`` and save it to ``path`` (.html, .png, .svg or .json)."""
    suffix = _check_path(path)
    save_chart(make_chart(store, kind, for_format=suffix, **params), path)
    return Path(path)


def save_chart(chart, path: str | Path) -> None:
    """Save by extension: .html with the Vega JavaScript inlined (works offline), .png (2x),
    .svg, or .json (the Vega-Lite spec, data included)."""
    suffix = _check_path(path)
    alt = _altair()
    with alt.data_transformers.disable_max_rows():  # full sweeps are ~15k rows
        if suffix == ".html":
            chart.save(str(path), format="html", inline=True)
        elif suffix == ".png":
            chart.save(str(path), format="png", scale_factor=2)
        else:
            chart.save(str(path), format=suffix[1:])


def chart_spec(chart) -> dict:
    """The Vega-Lite spec of a chart as a dict, with all its rows."""
    alt = _altair()
    with alt.data_transformers.disable_max_rows():
        return chart.to_dict()


# -- helpers ----------------------------------------------------------------------------------
def _frames(df: pd.DataFrame, step: int | None, model: str) -> tuple[pd.DataFrame, int]:
    """One frame per (step, revision) of ``df``, in order, with its label; and the frame to
    start at: ``step``'s, or the latest."""
    frames = df[["step", "revision"]].drop_duplicates().reset_index(drop=True)
    frames["frame"] = frames.index
    frames["frame_label"] = [_frame_label(s, r) for s, r in zip(frames.step, frames.revision)]
    if step is None:
        return frames, int(frames["frame"].iloc[-1])
    match = frames.index[frames["step"] == step]
    if len(match) == 0:
        raise LayerdbError(f"{model} has no results at step {step}; steps: "
                           + _list_steps(frames["step"]))
    return frames, int(match[-1])


def _frame_picker(alt, start: int):
    """The checkpoint picked on the slider (``_step_slider``): a frame, ``start`` at first."""
    return alt.selection_point(name="checkpoint", fields=["frame"], value=[{"frame": start}],
                               on=SLIDER_EVENTS, nearest=True, clear=False)


def _frame_rows(alt, df: pd.DataFrame, start: int, slider: bool):
    """The rows to draw and the checkpoint picker: with ``slider`` every frame's rows and a
    picker starting at ``start``; without it only frame ``start``'s rows, and None."""
    if not slider:
        return df[df["frame"] == start], None
    return df, _frame_picker(alt, start)


def _picked(base, picker):
    """``base`` showing only the frame picked on the slider; as it is without a picker."""
    return base if picker is None else base.transform_filter(picker)


def _with_slider(alt, chart, frames: pd.DataFrame, start: int, picker, width: int):
    """The chart under its checkpoint slider (``width`` px wide) and "" for the subtitle; without
    a picker the chart alone and "; " + the drawn frame's label (``step 1,000``)."""
    if picker is None:
        return chart, f"; {frames.frame_label[start]}"
    return alt.vconcat(_step_slider(alt, frames, picker, width), chart, spacing=14), ""


def _symmetric_limit(values) -> float:
    """The largest |value| (1 when all are 0): the bound of a scale symmetric about 0."""
    return float(np.nanmax(np.abs(values))) or 1.0


def _diverging_scale(alt, deltas):
    """Colour for a delta: red above 0, blue below, symmetric-log, centred on 0."""
    limit = _symmetric_limit(deltas)
    return alt.Scale(type="symlog", constant=max(limit / 200, 1e-4), scheme="redblue",
                     reverse=True, domain=[-limit, limit], domainMid=0)


def step_cell_edges(steps: list[int]) -> dict[int, tuple[float, float]]:
    """Each step's cell [from, to) on a symlog axis: borders half-way (in log1p space) to its
    neighbours, so cells tile the axis whatever the checkpoint schedule."""
    t = np.log1p(np.asarray(steps, dtype=float))
    if len(t) == 1:
        bounds = np.array([t[0] - 0.5, t[0] + 0.5])
    else:
        mids = (t[1:] + t[:-1]) / 2
        bounds = np.concatenate([[t[0] - (mids[0] - t[0])], mids, [t[-1] + (t[-1] - mids[-1])]])
    edges = np.expm1(bounds)
    return {int(s): (float(edges[i]), float(edges[i + 1])) for i, s in enumerate(steps)}


def step_ticks(steps) -> list[int]:
    """Powers of ten within the steps' range; the steps themselves when that gives too few."""
    steps = sorted({int(s) for s in steps})
    ticks = [t for t in STEP_TICKS if steps[0] <= t <= steps[-1]]
    return ticks if len(ticks) >= 3 else steps[:: max(1, len(steps) // 8)]


def _check_path(path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in SAVE_FORMATS:
        raise LayerdbError(f"cannot tell the format of {path}: use one of {', '.join(SAVE_FORMATS)}")
    require_folder(path)
    return suffix


def _component_facet(alt, panels: list[str] | None = None):
    return alt.Facet("component:N", title=None, sort=panels or COMPONENT_ORDER,
                     header=alt.Header(labelExpr=_component_label_expr(), labelFontSize=12,
                                       labelFontWeight="bold"))


def _component_label_expr() -> str:
    cases = " : ".join(f"datum.value == '{k}' ? '{v}'" for k, v in COMPONENT_TITLES.items())
    return f"{cases} : datum.value"


def _every_nth_label(n_layers: int) -> str:
    every = max(1, math.ceil(n_layers / 16))
    return f"datum.value % {every} == 0 ? datum.label : ''"


def _frame_label(step, revision: str) -> str:
    if step is None or pd.isna(step):
        return revision
    label = f"step {int(step):,}"
    return label if revision == f"step{int(step)}" else f"{label} ({revision})"


def _short_step(step, revision: str) -> str:
    """A slider tick label: 512, 1k, 143k; the revision when it has no step."""
    if step is None or pd.isna(step):
        return revision
    step = int(step)
    return f"{step / 1000:g}k" if step >= 1000 else str(step)


def _list_steps(steps: pd.Series) -> str:
    known = [str(int(s)) for s in steps.dropna().unique()]
    return ", ".join(known[:12]) + (" ..." if len(known) > 12 else "")


def _compact(df: pd.DataFrame) -> pd.DataFrame:
    """Round floats to 6 significant digits: the embedded data is a third of the size."""
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            out[col] = [float(f"{v:.6g}") if pd.notna(v) else None for v in out[col]]
    return out


def _style(chart):
    return chart.configure_view(stroke="#e5e7eb").configure_axis(
        labelColor="#374151", titleColor="#111827", gridColor="#f1f5f9", labelFontSize=11,
    ).configure_title(anchor="start", fontSize=15, subtitleColor="#4b5563", subtitleFontSize=12
    ).configure_legend(labelFontSize=11, titleFontSize=11)


def _altair():
    import altair as alt

    return alt
