"""Comparisons across tokenizers: bits per byte in the ablations view, the default unit of
compare-models / the compare chart / the report, and the warning for nats across tokenizers.

Two tiny models with different tokenizers (word-level tiny-gpt-neox, character-level tiny-chars)
and one sharing the word-level tokenizer (tiny-llama) are collected by the real `layerdb collect`
on the same .txt file; bits per byte are checked against a hand computation from the text.
"""
from __future__ import annotations

import math
import re
import warnings

import pytest
from click.testing import CliRunner

from layerdb import LayerdbError, Store
from layerdb.charts import chart_spec, compare_chart
from layerdb.cli import main
from layerdb.errors import LayerdbWarning
from layerdb.named_queries import run_query
from layerdb.units import compare_unit, unit_warnings
from tests.fixtures.hub import one_torch_thread

DATA = ["--tokens", "192", "--seq-len", "32", "--batch-size", "6"]  # 6 sequences of 32 tokens
N_TOKENS = 6 * 31  # predicted tokens: positions 1..31 of each sequence
S = "acme/small"
LN2 = math.log(2)
WARNING = "nats per token compared across 2 different tokenizers"


@pytest.fixture(scope="module")
def two_tokenizers(tiny_hub, tmp_path_factory):
    """A store holding tiny-gpt-neox (words), tiny-llama (words) and tiny-chars (characters),
    each collected at main on the same text, and the models' repo ids."""
    db = str(tmp_path_factory.mktemp("units") / "units.duckdb")
    models = {name: tiny_hub.repo(name) for name in ("gpt-neox", "llama", "chars")}
    with one_torch_thread():  # the torch_one_thread fixture is per test; this fixture is per module
        for repo in models.values():
            result = CliRunner().invoke(main, ["--db", db, "collect", repo, "-r", "main",
                                               "--data", str(tiny_hub.txt), *DATA])
            assert result.exit_code == 0, result.output + result.stderr
    return db, models, tiny_hub.txt.read_text()


def hand_bytes(text: str) -> dict[str, int]:
    """UTF-8 bytes the first 192 tokens cover, by hand: the word-level tokenizer splits on
    whitespace (a token ends where its word ends), the character-level one takes a byte each."""
    words = list(re.finditer(r"\S+", text))
    return {"words": len(text[: words[191].end()].encode()), "chars": 192}


def bpb(nats: float, n_bytes: int) -> float:
    return nats * N_TOKENS / (n_bytes * LN2)


def test_the_ablations_view_converts_to_bits_per_byte(two_tokenizers):
    db, models, text = two_tokenizers
    n_bytes = hand_bytes(text)
    with Store.open(db, read_only=True) as store:
        sets = store.sql("SELECT r.model, e.n_tokens, e.n_bytes, e.tokenizer FROM eval_sets e "
                         "JOIN (SELECT DISTINCT model, eval_set FROM results) r USING (eval_set) "
                         "ORDER BY r.model")
        rows = store.sql("SELECT a.model, a.loss, a.baseline_loss, a.delta, a.delta_ci_low, "
                         "a.delta_ci_high, a.loss_bpb, a.baseline_bpb, a.delta_bpb, "
                         "a.delta_bpb_ci_low, a.delta_bpb_ci_high, b.loss AS stored_baseline "
                         "FROM ablations a JOIN results b ON b.model = a.model "
                         "AND b.eval_set = a.eval_set AND b.component = 'none'")
    assert sets[["model", "n_tokens", "n_bytes"]].values.tolist() == [
        [models["chars"], N_TOKENS, n_bytes["chars"]],
        [models["gpt-neox"], N_TOKENS, n_bytes["words"]],
        [models["llama"], N_TOKENS, n_bytes["words"]],
    ]
    tokenizers = dict(zip(sets["model"], sets["tokenizer"]))
    assert tokenizers[models["gpt-neox"]] == tokenizers[models["llama"]]
    assert tokenizers[models["chars"]] != tokenizers[models["gpt-neox"]]
    assert n_bytes["words"] > 4 * n_bytes["chars"]  # a word token covers several bytes
    assert len(rows) == 3 * 9
    for r in rows.itertuples():
        size = n_bytes["chars"] if r.model == models["chars"] else n_bytes["words"]
        assert r.baseline_loss == r.stored_baseline
        assert r.loss_bpb == pytest.approx(bpb(r.loss, size), rel=1e-12)
        assert r.baseline_bpb == pytest.approx(bpb(r.stored_baseline, size), rel=1e-12)
        assert r.delta_bpb == pytest.approx(bpb(r.loss - r.stored_baseline, size), abs=1e-12)
        assert r.delta_bpb_ci_low == pytest.approx(bpb(r.delta_ci_low, size), abs=1e-12)
        assert r.delta_bpb_ci_high == pytest.approx(bpb(r.delta_ci_high, size), abs=1e-12)


def test_the_fixture_store_converts_by_hand(results_store):
    # 512 tokens in 2048 bytes: bpb = nats * 512 / (2048 ln 2) = nats / (4 ln 2)
    row = results_store.sql("SELECT loss_bpb, baseline_bpb, delta_bpb, delta_bpb_ci_low, "
                            "delta_bpb_ci_high FROM ablations WHERE model = :m AND step = 4 "
                            "AND component = 'attn' AND layer = 1", m=S).iloc[0]
    assert row.tolist() == pytest.approx([x / (4 * LN2) for x in (2.75, 3.0, -0.25, -0.375, -0.125)],
                                         rel=1e-12)


def test_compare_models_defaults_to_bpb_across_tokenizers_and_nats_within_one(two_tokenizers):
    db, models, text = two_tokenizers
    n_bytes = hand_bytes(text)
    words, chars, llama = models["gpt-neox"], models["chars"], models["llama"]
    with Store.open(db, read_only=True) as store:
        deltas = store.sql("SELECT model, component, layer, loss - baseline_loss AS delta, "
                           "(loss - baseline_loss) / baseline_loss AS rel FROM ablations")
        across = run_query(store, "compare-models", model=f"{words}, {chars}", bins=1,
                           component="block")
        shared = run_query(store, "compare-models", model=f"{words},{llama}", bins=1,
                           component="block")
        relative = run_query(store, "compare-models", model=f"{words},{chars}", bins=1,
                             component="block", unit="relative")
    block = deltas[deltas.component == "block"].groupby("model")
    mean_nats, max_nats = block["delta"].mean(), block["delta"].max()
    assert across[["model", "unit", "tokenizers", "layers"]].values.tolist() == [
        [chars, "bpb", 2, 3], [words, "bpb", 2, 3]]
    for r in across.itertuples():
        size = n_bytes["chars"] if r.model == chars else n_bytes["words"]
        assert r.mean_delta == pytest.approx(bpb(mean_nats[r.model], size), rel=1e-9)
        assert r.max_delta == pytest.approx(bpb(max_nats[r.model], size), rel=1e-9)
    assert shared[["model", "unit", "tokenizers"]].values.tolist() == [
        [words, "nats", 1], [llama, "nats", 1]]
    assert shared["mean_delta"].tolist() == pytest.approx(
        [mean_nats[words], mean_nats[llama]], rel=1e-9)
    assert relative["unit"].tolist() == ["relative", "relative"]
    assert relative["mean_delta"].tolist() == pytest.approx(
        [block["rel"].mean()[chars], block["rel"].mean()[words]], rel=1e-9)


def test_explicit_nats_across_tokenizers_warns_once(two_tokenizers):
    db, models, _ = two_tokenizers
    pair = f"{models['gpt-neox']},{models['chars']}"
    with Store.open(db, read_only=True) as store:
        with pytest.warns(LayerdbWarning, match=WARNING) as caught:
            df = run_query(store, "compare-models", model=pair, unit="nats")
        assert len(caught) == 1 and set(df["unit"]) == {"nats"}
        with warnings.catch_warnings():
            warnings.simplefilter("error", LayerdbWarning)  # none of these warns
            run_query(store, "compare-models", model=pair)
            run_query(store, "compare-models", model=f"{models['gpt-neox']},{models['llama']}",
                      unit="nats")


def test_cli_query_prints_the_warning_on_stderr(two_tokenizers):
    db, models, _ = two_tokenizers
    pair = f"{models['gpt-neox']},{models['chars']}"
    base = ["--db", db, "query", "compare-models", "-p", f"model={pair}", "-f", "csv"]
    nats = CliRunner().invoke(main, [*base, "-p", "unit=nats"])
    assert nats.exit_code == 0, nats.output
    assert nats.stderr.count("\n") == 1 and nats.stderr.startswith(f"warning: {WARNING}")
    assert "unit" in nats.stdout.splitlines()[0] and ",nats," in nats.stdout
    default = CliRunner().invoke(main, base)
    assert default.exit_code == 0 and default.stderr == "" and ",bpb," in default.stdout
    bad = CliRunner().invoke(main, [*base, "-p", "unit=furlongs"])
    assert bad.exit_code == 1
    assert bad.stderr.strip() == ("error: query compare-models: parameter unit must be one of "
                                  "bpb, nats, relative, not 'furlongs'")


def test_compare_chart_axis_names_the_unit(two_tokenizers):
    db, models, _ = two_tokenizers
    words, chars, llama = models["gpt-neox"], models["chars"], models["llama"]
    with Store.open(db, read_only=True) as store:
        across = chart_spec(compare_chart(store, models=[words, chars]))
        shared = chart_spec(compare_chart(store, models=[words, llama]))
        with pytest.warns(LayerdbWarning, match=WARNING):
            forced = chart_spec(compare_chart(store, models=[words, chars], unit="nats"))
        choice = compare_unit(store, [words, chars])
        (values,) = across["datasets"].values()
        view = store.sql("SELECT model, component, layer, delta_bpb FROM latest_ablations "
                         "WHERE model IN (:a, :b)", a=words, b=chars)
    assert (choice.unit, choice.tokenizers) == ("bpb", 2)
    assert across["spec"]["encoding"]["y"]["title"] == "Δ loss (bits/byte), symlog"
    assert across["title"]["subtitle"][1] == "in bits per byte: the models' tokenizers differ"
    assert shared["spec"]["encoding"]["y"]["title"] == "Δ loss (nats/token), symlog"
    assert shared["title"]["subtitle"][1] == "in nats per token: the models share a tokenizer"
    assert forced["spec"]["encoding"]["y"]["title"] == "Δ loss (nats/token), symlog"
    expected = {(r.model, r.component, r.layer): r.delta_bpb for r in view.itertuples()}
    assert len(values) == len(expected) == 18
    for row in values:
        assert row["value"] == pytest.approx(expected[(row["model"], row["component"], row["layer"])],
                                             rel=1e-5)  # the chart keeps 6 significant digits


def test_cli_chart_and_report_warn_and_refuse_bad_units(two_tokenizers, tmp_path):
    db, models, _ = two_tokenizers
    pair = f"models={models['gpt-neox']},{models['chars']}"
    chart = CliRunner().invoke(main, ["--db", db, "chart", "compare", "-p", pair, "-p", "unit=nats",
                                      "-o", str(tmp_path / "c.json")])
    assert chart.exit_code == 0, chart.output
    assert chart.stderr.startswith(f"warning: {WARNING}") and "wrote compare chart" in chart.stderr
    bad = CliRunner().invoke(main, ["--db", db, "chart", "compare", "-p", "unit=BITS", "-o",
                                    str(tmp_path / "c.json")])
    assert bad.exit_code == 1
    assert "chart compare: parameter unit must be one of bpb, nats, relative, not 'BITS'" in bad.stderr
    out = tmp_path / "r.html"
    report = CliRunner().invoke(main, ["--db", db, "report", "-m", models["gpt-neox"], "-m",
                                       models["chars"], "-p", "unit=nats", "-o", str(out)])
    assert report.exit_code == 0, report.output
    assert report.stderr.count(WARNING) == 1
    assert "loss (nats/token), symlog" in out.read_text()  # the page escapes Δ
    default = CliRunner().invoke(main, ["--db", db, "report", "-m", models["gpt-neox"], "-m",
                                        models["chars"], "-o", str(out)])
    assert default.exit_code == 0 and WARNING not in default.stderr
    page = out.read_text()
    assert "loss (bits/byte), symlog" in page
    assert "in bits per byte: the models' tokenizers differ" in page
    unknown = CliRunner().invoke(main, ["--db", db, "report", "-p", "colour=red", "-o", str(out)])
    assert unknown.exit_code == 1
    assert "report: unknown parameter(s) colour (it takes: unit)" in unknown.stderr


def test_bpb_needs_bytes(db_path):
    rows = [dict(model=m, revision="local", eval_set=e, component=c, layer=layer, loss=loss)
            for m, e in (("a/x", "ex"), ("b/y", "ey"))
            for c, layer, loss in (("none", -1, 3.0), ("block", 0, 3.5), ("block", 1, 3.25))]
    with Store.open(db_path) as store:
        store.upsert("models", [dict(model="a/x", n_layers=2), dict(model="b/y", n_layers=2)])
        store.write_results(rows)  # eval sets known only by id: no tokenizer, no byte count
        with pytest.raises(LayerdbError, match=r"bits per byte need the byte count .* ex, ey: "
                                               "pass -p unit=nats or -p unit=relative"):
            compare_chart(store)
        relative = chart_spec(compare_chart(store, unit="relative"))
        df = run_query(store, "compare-models", bins=1)
    assert relative["spec"]["encoding"]["y"]["title"] == "Δ loss / baseline loss, symlog"
    # no tokenizer recorded: each eval set counts as its own, so bpb, and NULL without bytes
    assert df[["model", "unit", "tokenizers"]].values.tolist() == [["a/x", "bpb", 2],
                                                                   ["b/y", "bpb", 2]]
    assert df["mean_delta"].isna().all()


def test_unit_warnings_reads_unit_and_tokenizers_columns():
    import pandas as pd

    assert unit_warnings(pd.DataFrame({"x": [1]})) == []
    assert unit_warnings(pd.DataFrame({"unit": ["bpb"], "tokenizers": [3]})) == []
    assert unit_warnings(pd.DataFrame({"unit": ["nats"], "tokenizers": [1]})) == []
    assert unit_warnings(pd.DataFrame({"unit": ["nats", "nats"], "tokenizers": [3, 3]})) == [
        "nats per token compared across 3 different tokenizers: a token is a different amount "
        "of text for each; -p unit=bpb compares bits per byte"]
