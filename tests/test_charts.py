"""Every chart kind renders to every format; HTML is self-contained; full sweeps render."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from layerdb import LayerdbError, Store
from layerdb.charts import (CHARTS, SLIDER_EVENTS, chart_spec, heatmap_chart, layer_loss_chart,
                            step_cell_edges, write_chart)
from layerdb.cli import main
from tests.fixtures.browser import dump_dom, needs_chromium

PARAMS = {"layer-loss": {"model": "acme/small"}, "heatmap": {"model": "acme/small"},
          "training": {"model": "acme/large"}, "compare": {}, "span": {}, "metric-vs-drop": {}}
ON_DEEP_STORE = {"span", "metric-vs-drop"}  # the kinds that need spans or layer metrics
EXTERNAL_SCRIPT = re.compile(r"<script[^>]*\bsrc\s*=", re.IGNORECASE)


def spec_rows(spec: dict) -> int:
    return sum(len(rows) for rows in spec.get("datasets", {}).values())


def check_file(path, suffix: str) -> None:
    data = path.read_bytes()
    if suffix == ".png":
        assert data.startswith(b"\x89PNG") and len(data) > 20_000
    elif suffix == ".svg":
        assert b"<svg" in data[:500] and data.count(b"<path") > 5
    elif suffix == ".json":
        assert json.loads(data)["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
    else:
        text = data.decode()
        assert "vegaEmbed(" in text and len(text) > 500_000  # the Vega bundle is inlined
        assert not EXTERNAL_SCRIPT.search(text)


@pytest.mark.parametrize("suffix", [".html", ".png", ".svg", ".json"])
@pytest.mark.parametrize("kind", list(CHARTS))
def test_every_kind_renders_to_every_format(results_store, deep_store, tmp_path, kind, suffix):
    store = deep_store if kind in ON_DEEP_STORE else results_store
    path = write_chart(store, kind, tmp_path / f"chart{suffix}", **PARAMS[kind])
    check_file(path, suffix)


def test_span_chart_frames_and_cells(deep_store, results_store):
    from layerdb.charts import span_chart

    spec = chart_spec(span_chart(deep_store))
    (slider,) = spec["params"]  # the layer-loss chart's slider: a dot per checkpoint
    assert slider["select"]["fields"] == ["frame"] and slider["value"] == [{"frame": 1}]
    track = spec["datasets"][spec["vconcat"][0]["data"]["name"]]
    assert [row["frame_label"] for row in track] == ["step 1", "step 2"]
    cells = spec["datasets"][spec["vconcat"][1]["data"]["name"]]
    cell = next(v for v in cells if (v["step"], v["layer"], v["span"]) == (2, 1, 2))
    assert cell["delta"] == pytest.approx((0.125 + 0.25) * 2 + 0.5 * 2)  # both drops + interaction
    one = chart_spec(span_chart(deep_store, step=1, slider=False))
    (frame,) = one["datasets"].values()
    assert "params" not in one and {v["step"] for v in frame} == {1}
    with pytest.raises(LayerdbError, match="no span drops for acme/small .*--spans 2"):
        span_chart(results_store, model="acme/small")


def test_metric_vs_drop_chart_draws_each_metric(deep_store):
    from layerdb.charts import metric_vs_drop_chart

    spec = chart_spec(metric_vs_drop_chart(deep_store))
    (values,) = spec["datasets"].values()
    got = {(v["metric"], v["step"]): v["spearman"] for v in values}
    assert got[("block_influence", 1)] == -1.0 and got[("block_influence", 2)] == 1.0
    assert {m for m, _ in got} == {"block_influence", "update_ratio"}


def test_layer_loss_has_a_checkpoint_slider_in_html_and_one_frame_in_images(results_store):
    interactive = chart_spec(layer_loss_chart(results_store, model="acme/small"))
    (slider,) = interactive["params"]
    assert slider["select"] == {"type": "point", "fields": ["frame"], "nearest": True,
                                "clear": False, "on": SLIDER_EVENTS}  # click, or press and drag
    assert slider["value"] == [{"frame": 3}]  # starts at the latest checkpoint
    dots, handle, readout = interactive["vconcat"][0]["layer"]
    assert dots["encoding"]["x"]["axis"]["labelExpr"] == '["0", "1", "2", "4"][datum.value]'
    assert readout["encoding"]["text"]["field"] == "frame_label"
    assert handle["transform"] == readout["transform"] == [{"filter": {"param": "checkpoint"}}]
    track = interactive["datasets"][interactive["vconcat"][0]["data"]["name"]]
    assert [row["frame_label"] for row in track] == ["step 0", "step 1", "step 2", "step 4"]
    assert spec_rows(interactive) == 4 + 4 * 3 * 4  # the track; every step, component, layer
    frame = chart_spec(layer_loss_chart(results_store, model="acme/small", step=2, slider=False))
    assert "params" not in frame and spec_rows(frame) == 3 * 4
    (values,) = frame["datasets"].values()
    assert {row["frame_label"] for row in values} == {"step 2"}


def test_heatmap_axes(results_store):
    spec = chart_spec(heatmap_chart(results_store, model="acme/small"))
    encoding = spec["spec"]["encoding"]
    assert encoding["x"]["scale"]["type"] == "symlog"
    colour = encoding["color"]["scale"]
    assert colour["domainMid"] == 0 and colour["domain"] == [-3.0, 3.0]


def test_step_cells_tile_the_axis():
    edges = step_cell_edges([0, 1, 2, 4, 1000, 2000])
    bounds = list(edges.values())
    assert all(a[1] == pytest.approx(b[0]) for a, b in zip(bounds, bounds[1:]))
    assert all(lo < step < hi for step, (lo, hi) in edges.items())


def test_a_full_pythia_sized_sweep_renders(pythia_sized_db, tmp_path):
    with Store.open(pythia_sized_db, read_only=True) as store:
        html = write_chart(store, "layer-loss", tmp_path / "layer-loss.html")
        png = write_chart(store, "heatmap", tmp_path / "heatmap.png")
        spec = chart_spec(heatmap_chart(store))
    assert spec_rows(spec) == 154 * 32 * 3
    check_file(html, ".html")
    check_file(png, ".png")
    assert html.read_text().count('"frame_label"') >= 154 * 32 * 3  # all frames embedded


@pytest.mark.parametrize("kind, params, message", [
    ("heatmap", {}, "several models .* pass -p model=NAME"),
    ("heatmap", {"model": "nope"}, "no results for model 'nope'"),
    ("heatmap", {"model": "acme/small", "eval_set": "es-large"}, "has no results on eval set"),
    ("layer-loss", {"model": "acme/small", "step": "3"}, "no results at step 3; steps: 0, 1, 2, 4"),
    ("layer-loss", {"model": "acme/small", "step": "late"}, "step must be an integer"),
    ("compare", {"models": "acme/small,nope"}, r"no results for model\(s\) nope"),
    ("training", {"colour": "red"}, r"unknown parameter\(s\) colour"),
    ("pie", {}, "unknown chart kind 'pie'"),
])
def test_chart_mistakes_raise_one_clear_error(results_store, tmp_path, kind, params, message):
    with pytest.raises(LayerdbError, match=message):
        write_chart(results_store, kind, tmp_path / "x.svg", **params)


def test_output_path_mistakes(results_store, tmp_path):
    with pytest.raises(LayerdbError, match="cannot tell the format of .*x.gif"):
        write_chart(results_store, "compare", tmp_path / "x.gif")
    with pytest.raises(LayerdbError, match="does not exist"):
        write_chart(results_store, "compare", tmp_path / "no" / "x.svg")


def test_cli_chart(results_db, tmp_path):
    out = tmp_path / "compare.svg"
    result = CliRunner().invoke(main, ["--db", results_db, "chart", "compare", "-p",
                                       "models=acme/small,acme/large", "-o", str(out)])
    assert result.exit_code == 0, result.output
    check_file(out, ".svg")
    bad = CliRunner().invoke(main, ["--db", results_db, "chart", "heatmap", "-o", str(out)])
    assert bad.exit_code == 1 and "pass -p model=NAME" in bad.output
    assert "Traceback" not in bad.output


def test_altair_is_imported_lazily():
    code = "import sys, layerdb, layerdb.cli; print('altair' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_compare_keeps_a_model_known_only_by_a_local_revision(db_path):
    from layerdb.charts import compare_chart

    rows = [dict(model="local/tiny", revision="local", eval_set="e", component="none", layer=-1,
                 loss=3.0)]
    rows += [dict(model="local/tiny", revision="local", eval_set="e", component=c, layer=layer,
                  loss=3.5) for c in ("block", "attn", "mlp") for layer in range(2)]
    with Store.open(db_path) as store:
        store.upsert("models", [dict(model="local/tiny", n_layers=2)])
        store.write_results(rows)
        spec = chart_spec(compare_chart(store))
    (values,) = spec["datasets"].values()
    assert {row["model_label"] for row in values} == {"local/tiny (2 layers, local)"}
    assert len(values) == 6


# After the chart is drawn: read the slider, press on its first dot, drag to the second, then
# move over the last dot with no button pressed (which must not pick it).
SLIDER_SCRIPT = """
const readout = () => [...document.querySelectorAll('#vis text')].map(t => t.textContent)
    .filter(t => t.startsWith('step')).join(' | ');
const fire = (type, x, y, buttons) => document.elementFromPoint(x, y).dispatchEvent(
    new PointerEvent(type, {clientX: x, clientY: y, buttons, bubbles: true, isPrimary: true}));
vegaEmbed('#vis', SPEC, {renderer: 'svg', actions: false}).then(async result => {
  const log = [readout()];
  const dots = [...document.querySelectorAll('#vis .mark-symbol path')]
      .map(d => d.getBoundingClientRect()).filter(b => b.width > 0 && b.width < 12).slice(0, 4);
  const at = (box) => [box.left + box.width / 2, box.top + box.height / 2];
  for (const [type, box, buttons] of [['pointerdown', dots[0], 1], ['pointermove', dots[1], 1],
                                      ['pointermove', dots[3], 0]]) {
    fire(type, ...at(box), buttons);
    await result.view.runAsync();
    log.push(readout());
  }
  document.getElementById('log').textContent = log.join('\\n');
});
"""


@needs_chromium
def test_layer_loss_slider_reads_steps_and_follows_a_drag_in_chromium(results_store, tmp_path):
    from layerdb.report import _vega_bundle

    spec = chart_spec(layer_loss_chart(results_store, model="acme/small"))
    page = tmp_path / "slider.html"
    page.write_text(f"<!DOCTYPE html><meta charset=utf-8><script>{_vega_bundle()}</script>"
                    f"<div id=vis></div><pre id=log></pre><script>"
                    f"{SLIDER_SCRIPT.replace('SPEC', json.dumps(spec))}</script>")
    dom = dump_dom(page.as_uri(), tmp_path, "--window-size=1280,800")
    log = re.search(r'<pre id="log">(.*?)</pre>', dom, re.S).group(1).splitlines()
    # the slider's readout and the label above each of the three panels
    assert log == ["step 4 | step 4 | step 4 | step 4",   # starts at the latest checkpoint
                   "step 0 | step 0 | step 0 | step 0",   # pressed on the first dot
                   "step 1 | step 1 | step 1 | step 1",   # dragged to the second
                   "step 1 | step 1 | step 1 | step 1"]   # moving without a button: no change


def test_charts_leave_out_revisions_with_another_revisions_weights(marked_store):
    from layerdb.charts import training_chart

    def steps(chart) -> set:  # of the chart's rows (the layer-loss slider's track aside)
        spec = chart_spec(chart)
        track = spec["vconcat"][0]["data"]["name"] if "vconcat" in spec else None
        return {row.get("step") for name, values in spec["datasets"].items() if name != track
                for row in values}

    # acme/small step2 is marked (step4's)
    assert steps(heatmap_chart(marked_store, model="acme/small")) == {0, 1, 4}
    assert steps(layer_loss_chart(marked_store, model="acme/small")) == {0, 1, 4}
    assert steps(training_chart(marked_store, model="acme/small")) == {0, 1, 4}
