"""Every chart kind renders to every format; HTML is self-contained; full sweeps render."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from layerdb import LayerdbError, Store
from layerdb.charts import CHARTS, chart_spec, heatmap_chart, layer_loss_chart, step_cell_edges, write_chart
from layerdb.cli import main

PARAMS = {"layer-loss": {"model": "acme/small"}, "heatmap": {"model": "acme/small"},
          "training": {"model": "acme/large"}, "compare": {}}
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
def test_every_kind_renders_to_every_format(results_store, tmp_path, kind, suffix):
    path = write_chart(results_store, kind, tmp_path / f"chart{suffix}", **PARAMS[kind])
    check_file(path, suffix)


def test_layer_loss_has_a_checkpoint_slider_in_html_and_one_frame_in_images(results_store):
    interactive = chart_spec(layer_loss_chart(results_store, model="acme/small"))
    (slider,) = interactive["params"]
    assert slider["bind"]["input"] == "range" and slider["bind"]["max"] == 3
    assert slider["value"] == 3  # starts at the latest checkpoint
    assert spec_rows(interactive) == 4 * 3 * 4  # every step, component, layer
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


def test_charts_leave_out_revisions_with_another_revisions_weights(marked_db):
    from layerdb.charts import training_chart

    def steps(chart) -> set:
        (values,) = chart_spec(chart)["datasets"].values()
        return {row.get("step") for row in values}

    with Store.open(marked_db, read_only=True) as store:  # acme/small step2 is marked (step4's)
        assert steps(heatmap_chart(store, model="acme/small")) == {0, 1, 4}
        assert steps(layer_loss_chart(store, model="acme/small")) == {0, 1, 4}
        assert steps(training_chart(store, model="acme/small")) == {0, 1, 4}
