"""Named queries on the fixture store (tests/fixtures/results.py): exact rows."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from layerdb import LayerdbError
from layerdb.cli import main
from layerdb.named_queries import _walk, get_query, list_queries, parse_query, run_query
from tests.fdr import bh_qvalues

S, L = "acme/small", "acme/large"
QUERY_NAMES = [q.name for q in list_queries()]


def rows(df, columns=None) -> list[tuple]:
    """DataFrame -> tuples of plain Python values; floats to 12 decimals, NaN -> None."""
    df = df[columns] if columns else df
    out = []
    for record in df.itertuples(index=False):
        values = []
        for v in record:
            v = v.item() if hasattr(v, "item") else v
            if isinstance(v, float):
                v = None if math.isnan(v) else round(v, 12)
            values.append(v)
        out.append(tuple(values))
    return out


def test_the_issue_queries_exist():
    assert {"lowers-loss", "layer-importance", "emergence", "components-by-depth",
            "compare-models", "coverage", "duplicate-checkpoints"} <= set(QUERY_NAMES)


@pytest.mark.parametrize("name", QUERY_NAMES)
def test_every_query_has_a_description_and_runs(results_store, deep_store, name):
    query = get_query(name)
    assert query.description and not query.description.endswith(" ")
    assert Path(query.filename).stem == name  # one file per query, named after it
    declared = {p.name for p in query.parameters}
    assert declared == set(sa.text(query.sql)._bindparams), "header and SQL parameters differ"
    found = [run_query(store, name) for store in (results_store, deep_store)]
    assert any(len(df) > 0 for df in found)  # each fixture store holds what some queries read


def test_lowers_loss(results_store):
    cols = ["model", "revision", "step", "component", "layer", "baseline_loss", "loss", "delta",
            "delta_ci_low", "delta_ci_high", "significant"]
    assert rows(run_query(results_store, "lowers-loss"), cols) == [
        (L, "step2", 2, "mlp", 2, 5.0, 4.9375, -0.0625, -0.125, 0.0625, False),
        (S, "step4", 4, "attn", 1, 3.0, 2.75, -0.25, -0.375, -0.125, True),
    ]
    significant = run_query(results_store, "lowers-loss", significant_only="true")
    assert rows(significant, ["model", "step", "component", "layer"]) == [(S, 4, "attn", 1)]
    # q: Benjamini-Hochberg over acme/small's 48 ablations (4 steps x 3 components x 4 layers)
    p = run_query(results_store, "lowers-loss", model=S)[["p_value", "q_value", "n_tests"]].iloc[0]
    every = results_store.sql("SELECT p_value FROM results WHERE model = :m AND component <> 'none'",
                              m=S)["p_value"].to_numpy()
    ranked = {v: q for v, q in zip(every, bh_qvalues(every))}
    assert (p.n_tests, p.q_value) == (48, pytest.approx(ranked[p.p_value], rel=1e-12))
    lenient = run_query(results_store, "lowers-loss", significant_only="true", fdr="")
    assert rows(lenient, ["model", "step"]) == [(S, 4)]  # the interval, uncorrected, agrees here
    assert run_query(results_store, "lowers-loss", model=L, component="attn").empty


def test_layer_importance_ranks_layers_at_the_latest_step(results_store):
    df = run_query(results_store, "layer-importance", model=S, component="attn")
    cols = ["model", "step", "component", "rank", "layer", "delta", "significant"]
    assert rows(df, cols) == [
        (S, 4, "attn", 1, 0, 1.5, True),
        (S, 4, "attn", 2, 3, 1.5, True),
        (S, 4, "attn", 3, 2, 0.1875, True),
        (S, 4, "attn", 4, 1, -0.25, True),
    ]
    at_step = run_query(results_store, "layer-importance", model=L, step="2", component="mlp")
    assert rows(at_step, ["step", "rank", "layer", "delta"]) == [
        (2, 1, 0, 0.25), (2, 2, 5, 0.25), (2, 3, 1, 0.03125), (2, 4, 3, 0.03125),
        (2, 5, 4, 0.03125), (2, 6, 2, -0.0625),
    ]
    every_model = run_query(results_store, "layer-importance", component="block")
    assert sorted(set(rows(every_model, ["model", "step"]))) == [(L, 4), (S, 4)]


def test_emergence(results_store):
    cols = ["model", "component", "layer", "emerged_at_step", "steps_above", "latest_delta"]
    assert rows(run_query(results_store, "emergence", model=S), cols) == [
        (S, "attn", 0, 1, 3, 1.5),
        (S, "attn", 2, 2, 2, 0.1875),  # 1/16 at step 1 is below the threshold
        (S, "attn", 3, 1, 3, 1.5),     # layer 1 falls below zero at step 4: never emerged
        (S, "block", 0, 1, 3, 3.0),
        (S, "block", 1, 1, 3, 0.375),
        (S, "block", 2, 1, 3, 0.375),
        (S, "block", 3, 1, 3, 3.0),
        (S, "mlp", 0, 1, 3, 0.75),
        (S, "mlp", 3, 1, 3, 0.75),
    ]
    high = run_query(results_store, "emergence", model=L, component="attn", threshold="0.5")
    assert rows(high, cols) == [(L, "attn", 0, 4, 1, 1.0), (L, "attn", 5, 4, 1, 1.0)]
    # mlp layer 5 was not collected at step 4: its last collected step is 2
    mlp = run_query(results_store, "emergence", model=L, component="mlp")
    assert rows(mlp, cols) == [(L, "mlp", 0, 2, 2, 0.5), (L, "mlp", 5, 2, 1, 0.25)]


def test_components_by_depth(results_store):
    df = run_query(results_store, "components-by-depth", model=S, step=4)
    cols = ["model", "step", "layer", "depth", "block_delta", "attn_delta", "mlp_delta"]
    assert rows(df, cols) == [
        (S, 4, 0, 0.0, 3.0, 1.5, 0.75),
        (S, 4, 1, round(1 / 3, 12), 0.375, -0.25, 0.09375),
        (S, 4, 2, round(2 / 3, 12), 0.375, 0.1875, 0.09375),
        (S, 4, 3, 1.0, 3.0, 1.5, 0.75),
    ]
    missing_mlp = run_query(results_store, "components-by-depth", model=L, step=4)
    assert rows(missing_mlp, ["layer", "mlp_delta"])[-1] == (5, None)
    assert len(run_query(results_store, "components-by-depth")) == 4 * 4 + 3 * 6


def test_compare_models_bins_normalised_depth(results_store):
    df = run_query(results_store, "compare-models", bins=2)
    cols = ["model", "step", "component", "bin", "depth_low", "depth_high", "mean_delta",
            "max_delta", "layers"]
    third = lambda x: round(x / 3, 12)  # noqa: E731
    assert rows(df, cols) == [
        (L, 4, "attn", 0, 0.0, 0.5, third(1.25), 1.0, 3),
        (L, 4, "attn", 1, 0.5, 1.0, third(1.25), 1.0, 3),
        (L, 4, "block", 0, 0.0, 0.5, third(2.5), 2.0, 3),
        (L, 4, "block", 1, 0.5, 1.0, third(2.5), 2.0, 3),
        (L, 4, "mlp", 0, 0.0, 0.5, third(0.625), 0.5, 3),
        (L, 4, "mlp", 1, 0.5, 1.0, 0.0625, 0.0625, 2),  # layer 5 missing at step 4
        (S, 4, "attn", 0, 0.0, 0.5, 0.625, 1.5, 2),
        (S, 4, "attn", 1, 0.5, 1.0, 0.84375, 1.5, 2),
        (S, 4, "block", 0, 0.0, 0.5, 1.6875, 3.0, 2),
        (S, 4, "block", 1, 0.5, 1.0, 1.6875, 3.0, 2),
        (S, 4, "mlp", 0, 0.0, 0.5, 0.421875, 0.75, 2),
        (S, 4, "mlp", 1, 0.5, 1.0, 0.421875, 0.75, 2),
    ]
    ten = run_query(results_store, "compare-models", model=L, component="block")
    assert rows(ten, ["bin", "layers"]) == [(0, 1), (2, 1), (4, 1), (6, 1), (8, 1), (9, 1)]


def test_coverage(results_store, deep_store):
    cols = ["model", "revision", "step", "eval_set", "n_layers", "result_rows", "complete",
            "missing"]
    nm = "metrics all layers"  # the fixture holds no layer metrics
    assert rows(run_query(results_store, "coverage"), cols) == [
        (L, "step0", 0, "es-large", 6, 19, "block,attn,mlp", nm),
        (L, "step2", 2, "es-large", 6, 19, "block,attn,mlp", nm),
        (L, "step4", 4, "es-large", 6, 18, "block,attn", "mlp layers 5; " + nm),
        (L, "step8", 8, None, 6, 0, "", "everything (no results)"),
        (S, "step0", 0, "es-small", 4, 13, "block,attn,mlp", nm),
        (S, "step1", 1, "es-small", 4, 13, "block,attn,mlp", nm),
        (S, "step2", 2, "es-small", 4, 13, "block,attn,mlp", nm),
        (S, "step4", 4, "es-small", 4, 13, "block,attn,mlp", nm),
    ]
    assert len(run_query(results_store, "coverage", eval_set="es-large")) == 3
    # spans and swaps are kinds of their own; the metrics kind then needs span-2 angular distances
    deep = rows(run_query(deep_store, "coverage"), ["revision", "result_rows", "complete", "missing"])
    assert deep == [(f"step{i}", 1 + 4 + 3 + 3, "block,span2,swap",
                     "attn all layers; mlp all layers; metrics all layers") for i in (1, 2)]


def test_duplicate_checkpoints(results_store):
    cols = ["model", "revision", "step", "weights_fingerprint", "group_size", "same_weights_as"]
    assert rows(run_query(results_store, "duplicate-checkpoints"), cols) == [
        (S, "step2", 2, "fp-final", 2, "step4"),
        (S, "step4", 4, "fp-final", 2, "step2"),
    ]
    assert run_query(results_store, "duplicate-checkpoints", model=L).empty


def test_values_are_bound_not_pasted(results_store):
    assert run_query(results_store, "lowers-loss", model="x' OR 1=1 --").empty


def test_errors_name_the_query_and_parameter(results_store):
    with pytest.raises(LayerdbError, match="unknown query 'nope'; known queries: .*lowers-loss"):
        run_query(results_store, "nope")
    with pytest.raises(LayerdbError, match=r"unknown parameter\(s\) modle .*it takes: model"):
        run_query(results_store, "lowers-loss", modle=S)
    with pytest.raises(LayerdbError, match="parameter threshold must be a number, not 'high'"):
        run_query(results_store, "emergence", threshold="high")
    with pytest.raises(LayerdbError, match="significant_only must be true or false"):
        run_query(results_store, "lowers-loss", significant_only="maybe")


def test_header_syntax():
    query = parse_query(
        "-- name: demo\n-- description: A demo.\n-- free text is allowed\n"
        "-- :model text = null   only this model\n-- :bins int\n-- :cut float = 0.5\n"
        "-- :name_like text = 'a b'\nSELECT :model, :bins, :cut, :name_like\n", "demo.sql")
    assert [(p.name, p.type, p.required) for p in query.parameters] == [
        ("model", "text", False), ("bins", "int", True), ("cut", "float", False),
        ("name_like", "text", False)]
    assert query.parameters[0].help == "only this model"
    assert query.bind({"bins": "3"}) == {"model": None, "bins": 3, "cut": 0.5, "name_like": "a b"}
    assert query.bind({"bins": 3, "model": "", "cut": 1})["model"] is None
    with pytest.raises(LayerdbError, match="query demo: missing parameter bins"):
        query.bind({})
    with pytest.raises(LayerdbError, match="lacks `-- description"):
        parse_query("-- name: x\nSELECT 1", "x.sql")
    with pytest.raises(LayerdbError, match="bad parameter line"):
        parse_query("-- name: x\n-- description: d\n-- :p number = 1\nSELECT :p", "x.sql")


def test_a_text_parameter_with_choices_takes_only_those():
    query = parse_query("-- name: q\n-- description: d.\n"
                        "-- :unit text in (bpb, nats) = nats  the unit\nSELECT :unit", "q.sql")
    (unit,) = query.parameters
    assert (unit.type, unit.choices, unit.default, unit.help) == ("text", ("bpb", "nats"), "nats",
                                                                  "the unit")
    assert unit.describe() == "unit=nats (bpb|nats)"
    assert query.bind({"unit": " BPB "}) == {"unit": "bpb"}
    assert query.bind({"unit": ""}) == {"unit": None}
    with pytest.raises(LayerdbError, match=r"^query q: parameter unit must be one of bpb, nats, "
                                           r"not 'furlongs'$"):
        query.bind({"unit": "furlongs"})
    with pytest.raises(LayerdbError, match="default of unit must be one of bpb, nats, not 'c'"):
        parse_query("-- name: q\n-- description: d\n-- :unit text in (bpb, nats) = c\nSELECT 1",
                    "q.sql")
    with pytest.raises(LayerdbError, match="bad parameter line"):
        parse_query("-- name: q\n-- description: d\n-- :n int in (1, 2) = 1\nSELECT :n", "q.sql")


def test_compare_models_unit_and_model_list(results_store):
    every = run_query(results_store, "compare-models", bins=2)
    # the fixture's two models share a tokenizer: nats per token by default
    assert set(every["unit"]) == {"nats"} and set(every["tokenizers"]) == {1}
    listed = run_query(results_store, "compare-models", bins=2, model=f" {L}, {S} ")
    assert rows(listed) == rows(every)
    bpb = run_query(results_store, "compare-models", bins=2, model=S, component="block",
                    unit="bpb")
    # 512 tokens in 2048 bytes: bpb = nats / (4 ln 2)
    assert rows(bpb, ["bin", "mean_delta", "max_delta", "unit"]) == [
        (0, round(1.6875 / (4 * math.log(2)), 12), round(3 / (4 * math.log(2)), 12), "bpb"),
        (1, round(1.6875 / (4 * math.log(2)), 12), round(3 / (4 * math.log(2)), 12), "bpb")]
    relative = run_query(results_store, "compare-models", bins=1, model=S, component="attn",
                         unit="relative")
    # step 4: baseline 3; attn deltas 1.5, -0.25, 0.1875, 1.5
    assert rows(relative, ["mean_delta", "max_delta"]) == [
        (round((1.5 - 0.25 + 0.1875 + 1.5) / 4 / 3, 12), 0.5)]


def test_queries_are_found_in_subfolders(tmp_path):
    (tmp_path / "extra").mkdir()
    (tmp_path / "top.sql").write_text("-- name: top\n-- description: d\nSELECT 1")
    (tmp_path / "extra" / "deep.sql").write_text("-- name: deep\n-- description: d\nSELECT 1")
    (tmp_path / "notes.txt").write_text("not a query")
    assert [name for name, _ in _walk(tmp_path, "")] == ["extra/deep.sql", "top.sql"]


def test_cli_queries_and_query(results_db):
    runner = CliRunner()
    listing = runner.invoke(main, ["queries", "--format", "csv"])
    assert listing.exit_code == 0 and "emergence," in listing.output
    assert "significant_only=false" in listing.output
    assert "unit=null (bpb|nats|relative)" in listing.output
    result = runner.invoke(main, ["--db", results_db, "query", "lowers-loss",
                                  "-p", "significant_only=true", "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1].startswith("acme/small,step4,4,es-small,zero,attn,1,1,")
    assert len(result.output.splitlines()) == 2


@pytest.mark.parametrize("args, message", [
    (["query", "nope"], "unknown query 'nope'"),
    (["query", "emergence", "-p", "threshold=x"], "threshold must be a number"),
    (["query", "coverage", "-p", "modell=a"], "unknown parameter(s) modell"),
])
def test_cli_query_mistakes_are_one_line(results_db, args, message):
    result = CliRunner().invoke(main, ["--db", results_db, *args])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_span_interaction(deep_store):
    from collectors.stats import t_quantile
    from tests.fixtures.results import DEEP, DEEP_IMPORTANCE, DEEP_INTERACTION, INTERACTION_PATTERN

    df = run_query(deep_store, "span-interaction")
    sd = np.std(INTERACTION_PATTERN, ddof=1)
    expected = []
    for i in (1, 2):
        for k in range(3):
            inter = DEEP_INTERACTION[k] * i
            half = t_quantile(0.975, 3) * abs(inter) * sd / 2
            delta_k, delta_next = DEEP_IMPORTANCE[k] * i, DEEP_IMPORTANCE[k + 1] * i
            expected.append((DEEP, f"step{i}", i, k, k / 3, delta_k + delta_next + inter,
                             delta_k, delta_next, inter, inter - half, inter + half, 4))
    cols = ["model", "revision", "step", "layer", "depth", "span_delta", "delta_k", "delta_next",
            "interaction", "ci_low", "ci_high", "n_sequences"]
    got = rows(df, cols)
    assert [row[:9] + row[11:] for row in got] == [
        tuple(round(v, 12) if isinstance(v, float) else v for v in row[:9] + row[11:])
        for row in expected]
    # the SQL's t quantiles carry 10 significant digits (the t_quantile_975 macro)
    assert [v for row in got for v in row[9:11]] == pytest.approx(
        [float(v) for row in expected for v in row[9:11]], abs=1e-9)
    assert run_query(deep_store, "span-interaction", method="mean").empty
    assert len(run_query(deep_store, "span-interaction", step=2)) == 3


def test_metric_vs_drop(deep_store):
    from tests.fixtures.results import DEEP

    df = run_query(deep_store, "metric-vs-drop")
    assert rows(df, ["model", "revision", "step", "metric", "layers", "spearman"]) == [
        (DEEP, "step1", 1, "block_influence", 4, -1.0), (DEEP, "step2", 2, "block_influence", 4, 1.0)]
    ties = run_query(deep_store, "metric-vs-drop", metric="update_ratio")
    # metric ranks with a tie: [3, 1.5, 1.5, 4]; block-drop delta ranks: [4, 1, 2, 3]
    expected = round(float(np.corrcoef([3, 1.5, 1.5, 4], [4, 1, 2, 3])[0, 1]), 12)
    assert rows(ties, ["spearman"]) == [(expected,), (expected,)]
    with pytest.raises(LayerdbError, match="unknown metric cosine: use block_influence"):
        run_query(deep_store, "metric-vs-drop", metric="cosine")


def test_swap_sensitivity_and_the_views_q_values(deep_store):
    from tests.fixtures.results import DEEP, DEEP_SWAP, DEEP_SWAP_P

    df = run_query(deep_store, "swap-sensitivity")
    p = [DEEP_SWAP_P[i][k] for i in (1, 2) for k in range(3)]
    # the only p-values of the (acme/deep, es-deep, zero) study: BH over these six
    q = bh_qvalues(np.array(p))
    assert rows(df, ["model", "revision", "layer", "depth", "delta", "significant", "p_value",
                     "q_value"]) == [
        (DEEP, f"step{i}", k, round(k / 3, 12), DEEP_SWAP[k] * i, bool(q[3 * (i - 1) + k] <= 0.05),
         DEEP_SWAP_P[i][k], round(float(q[3 * (i - 1) + k]), 12))
        for i in (1, 2) for k in range(3)]
    assert sum(df["significant"]) == 3  # of 4 with p <= 0.05, 3 survive the correction
    uncorrected = run_query(deep_store, "swap-sensitivity", fdr="")  # the intervals
    assert uncorrected["significant"].tolist() == [d > 0.0625 for d in uncorrected["delta"]]
    assert len(run_query(deep_store, "swap-sensitivity", step=1)) == 3


def test_coverage_and_duplicates_of_revisions_marked_by_collect(marked_store):
    coverage = run_query(marked_store, "coverage", model=S)
    on_set = run_query(marked_store, "coverage", model=S, eval_set="es-small")
    dupes = run_query(marked_store, "duplicate-checkpoints", model=S)
    cols = ["revision", "eval_set", "result_rows", "complete", "missing", "same_weights_as"]
    nm = "metrics all layers"  # the fixture holds no layer metrics
    assert rows(coverage, cols) == [
        ("step0", "es-small", 13, "block,attn,mlp", nm, None),
        ("step1", "es-small", 13, "block,attn,mlp", nm, None),
        ("step2", "es-small", 13, "block,attn,mlp", nm, "step4"),
        ("step4", "es-small", 13, "block,attn,mlp", nm, None),
        ("main", None, 0, "", "duplicate of step4 (not swept)", "step4"),
    ]
    assert rows(on_set, cols) == rows(coverage, cols)  # a duplicate is done for every eval set
    cols = ["revision", "step", "group_size", "same_weights_as", "keeper", "swept",
            "weights_digest"]
    assert rows(dupes, cols) == [
        ("step2", 2, 3, "step4, main", "step4", True, "digest-fp-final"),
        ("step4", 4, 3, "step2, main", "step4", True, "digest-fp-final"),
        ("main", pd.NA, 3, "step2, step4", "step4", False, "digest-fp-final"),
    ]


def test_unmarked_duplicates_are_kept_by_the_highest_step(results_store):
    dupes = run_query(results_store, "duplicate-checkpoints", model=S)
    assert rows(dupes, ["revision", "keeper", "swept"]) == [("step2", "step4", True),
                                                           ("step4", "step4", True)]


def test_status_shows_duplicates(marked_db):
    result = CliRunner().invoke(main, ["--db", marked_db, "status", S, "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert "main,,,,4,0,False,,duplicate of step4 (not swept),step4" in result.output
