"""The HTML report: its content, self-containment, and that it really draws in a browser."""
from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from layerdb import LayerdbError
from layerdb.cli import main
from layerdb.report import build_report, write_report
from tests.fixtures.browser import dump_dom, needs_chromium


@pytest.fixture(scope="module")
def report_html(results_db, tmp_path_factory):
    from layerdb import Store

    path = tmp_path_factory.mktemp("report") / "report.html"
    with Store.open(results_db, read_only=True) as store:
        write_report(store, path)
    return path


def test_report_content(report_html):
    text = report_html.read_text()
    page = text.split("</script>", 1)[1]  # after the inlined Vega bundle
    for expected in ("acme/small", "acme/large", "Models compared", "GPTNeoXForCausalLM",
                     "stdlib-small", "layerdb 0.1.0, torch 2.13.0, transformers 5.0.0",
                     "<b>Same weights:</b> step2, step4",
                     "<b>Incomplete:</b> step4 lacks mlp layers 5.",
                     "<b>Incomplete:</b> step8 lacks everything (no results).",
                     "Benjamini-Hochberg q ≤ 0.05 (false-discovery rate 5%), corrected for every "
                     "test of the study: 48 ablations with p-values on eval set es-small (zero)"):
        assert expected in page, expected
    # acme/small's significant lowers-loss case is listed, acme/large's insignificant one is not
    assert re.search(r"<td[^>]*>step4</td><td[^>]*>4</td><td[^>]*>attn</td><td[^>]*>1</td>", page)
    assert "None: no ablation lowers the loss" in page
    assert page.count('class="chart"') == 5  # compare + (heatmap, layer-loss) per model


def test_report_is_self_contained(report_html):
    text = report_html.read_text()
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, re.IGNORECASE)
    assert not re.search(r"<link[^>]*\bhref\s*=", text, re.IGNORECASE)
    assert "vegaEmbed" in text


def test_report_model_choice_and_mistakes(results_store, tmp_path):
    one = build_report(results_store, ["acme/large"])
    assert "acme/small" not in one.split("</script>", 1)[1] and "Models compared" not in one
    with pytest.raises(LayerdbError, match=r"no results for model\(s\) nope"):
        build_report(results_store, ["nope"])
    with pytest.raises(LayerdbError, match="ending in .html"):
        write_report(results_store, tmp_path / "report.pdf")


def test_cli_report(results_db, tmp_path):
    out = tmp_path / "r.html"
    result = CliRunner().invoke(main, ["--db", results_db, "report", "-m", "acme/small",
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "acme/small" in out.read_text()
    bad = CliRunner().invoke(main, ["--db", results_db, "report", "-m", "x", "-o", str(out)])
    assert bad.exit_code == 1 and "no results for model(s) x" in bad.output


@needs_chromium
def test_report_renders_in_headless_chromium(report_html, tmp_path):
    dom = dump_dom(report_html.as_uri(), tmp_path)
    charts = len(re.findall(r'class="chart vega-embed', dom))
    drawn = len(re.findall(r'<svg[^>]*class="marks"', dom))
    assert charts == 5 and drawn == 5, f"{drawn} of {charts} charts drawn"
    fills = set(re.findall(r'fill="([^"]+)"', dom))
    assert len(fills) >= 20, f"only {len(fills)} distinct fill colours: a blank page?"


def test_report_sections_for_spans_swaps_and_metrics(deep_store, results_store):
    page = build_report(deep_store).split("</script>", 1)[1]
    for heading in ("Contiguous blocks dropped together", "Adjacent layers: together vs apart",
                    "Adjacent layers swapped, at the latest step",
                    "Do the cheap layer metrics predict the drop?"):
        assert heading in page, heading
    assert "layerdb query span-interaction -p model=acme/deep" in page
    assert "Strongest 3 of 3" in page and "largest 3 of 3" in page
    assert page.count('class="chart"') == 2 + 2  # heatmap, layer-loss, span, metric-vs-drop
    plain = build_report(results_store, ["acme/small"]).split("</script>", 1)[1]
    assert "Contiguous blocks" not in plain and "cheap layer metrics" not in plain


def test_lowers_loss_table_shows_the_strongest_cases_and_how_many(db_path):
    from layerdb import Store

    # 14 steps; at step k dropping attn layer 1 lowers the loss by (k + 1)/64, interval +-1/128
    rows = []
    for k in range(14):
        common = dict(model="t/m", revision=f"step{k}", step=k, eval_set="e")
        rows.append(dict(common, component="none", layer=-1, loss=5.0))
        for component in ("block", "attn", "mlp"):
            for layer in range(4):
                delta = -(k + 1) / 64 if (component, layer) == ("attn", 1) else 0.25
                rows.append(dict(common, component=component, layer=layer, loss=5.0 + delta,
                                 delta=delta, delta_ci_low=delta - 1 / 128,
                                 delta_ci_high=delta + 1 / 128))
    with Store.open(db_path) as store:
        store.upsert("models", [dict(model="t/m", n_layers=4)])
        store.write_results(rows)
        page = build_report(store).split("</script>", 1)[1]
    section = page.split("Ablations that lower the loss significantly</h3>")[1]
    assert section.startswith("<p class='hint'>No p-values stored")  # no per-sequence losses here
    section = section.split("</p>", 1)[1]
    assert section.startswith(
        "<p class='hint'>The 10 strongest of 14 significant cases, most negative delta (nats per "
        "token) first. All of them: <code>layerdb query lowers-loss -p model=t/m "
        "-p significant_only=true</code></p><table>")
    table = section.split("</table>")[0]
    steps = re.findall(r"<tr><td[^>]*>step\d+</td><td[^>]*>(\d+)</td>", table)
    assert steps == [str(k) for k in range(13, 3, -1)]  # delta -14/64 first, then -13/64 ...


def test_report_says_how_many_lowers_loss_cases_when_all_fit(report_html):
    page = report_html.read_text().split("</script>", 1)[1]
    assert ("<p class='hint'>1 significant case, most negative delta (nats per token) first. "
            "All of them: <code>layerdb query lowers-loss -p model=acme/small "
            "-p significant_only=true</code></p>") in page


def test_report_names_revisions_with_another_revisions_weights(marked_store):
    page = build_report(marked_store, ["acme/small"]).split("</script>", 1)[1]
    assert ("<b>Same weights:</b> step2, main serve the weights of step4, which keeps the "
            "results; not swept: main; swept anyway, left out of the charts: step2.") in page
    assert "<dt>another&#x27;s weights</dt><dd>2</dd>" in page
    assert "Incomplete" not in page
