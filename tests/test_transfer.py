"""Import/export: round trip, idempotence, implied rows, bad files refused whole."""
import pandas as pd
import pytest

from layerdb import Store
from layerdb.errors import BadRows, LayerdbError
from layerdb.transfer import export_store, import_path
from tests.fixtures.stores import EMPTY
from tests.test_store import rows


def populated(path):
    store = Store.open(path)
    store.write_checkpoint(
        model=[dict(model="m", family="gpt_neox", n_layers=4, d_model=64)],
        checkpoint=[dict(model="m", revision="step8", step=8, weights_fingerprint="abc")],
        eval_set=[dict(eval_set="e", name="demo", seq_len=16, n_sequences=2, n_tokens=30)],
        run=[dict(run_id="r1", model="m", revision="step8", eval_set="e", status="complete")],
        results=rows(),
    )
    return store


def snapshot(store):
    return {t: store.sql(f"SELECT * EXCLUDE (created_at) FROM {t} ORDER BY ALL").to_dict("records")
            if t != "runs" else store.sql("SELECT * FROM runs ORDER BY ALL").to_dict("records")
            for t in ("models", "checkpoints", "eval_sets", "runs", "results")}


def test_export_import_round_trip(tmp_path):
    with populated(tmp_path / "a.duckdb") as a:
        counts = export_store(a, tmp_path / "out")
        before = snapshot(a)
    assert counts == dict(models=1, checkpoints=1, eval_sets=1, runs=1, results=7, layer_metrics=0)
    with Store.open(tmp_path / "b.duckdb") as b:
        import_path(b, tmp_path / "out")
        import_path(b, tmp_path / "out")  # idempotent
        after = snapshot(b)
    assert str(after) == str(before)


def test_single_results_file_implies_models_checkpoints_eval_sets(tmp_path):
    pd.DataFrame(rows(n_layers=3)).to_parquet(tmp_path / "r.parquet")
    with Store.open(tmp_path / "s.duckdb") as store:
        counts = import_path(store, tmp_path / "r.parquet")
        import_path(store, tmp_path / "r.parquet")
        assert counts["results"] == 10
        assert store.sql("SELECT model, n_layers FROM models").to_dict("records") == [
            dict(model="m", n_layers=3)]
        assert store.sql("SELECT model, revision, step FROM checkpoints").to_dict("records") == [
            dict(model="m", revision="step8", step=8)]
        assert store.sql("SELECT eval_set, n_tokens FROM eval_sets").to_dict("records") == [
            dict(eval_set="e", n_tokens=100)]
        assert store.sql("SELECT count(*) AS n FROM results")["n"][0] == 10


def test_known_models_keep_their_layer_count(tmp_path):
    pd.DataFrame(rows(n_layers=2)).to_csv(tmp_path / "r.csv", index=False)
    with Store.open(tmp_path / "s.duckdb") as store:
        store.upsert("models", [dict(model="m", n_layers=12, family="gpt_neox")])
        import_path(store, tmp_path / "r.csv")
        assert store.sql("SELECT n_layers, family FROM models").to_dict("records") == [
            dict(n_layers=12, family="gpt_neox")]
        seq = store.sql("SELECT seq_losses FROM results WHERE component = 'mlp' LIMIT 1")
        assert list(seq["seq_losses"][0]) == [3.4, 3.6]


def bad_file(tmp_path, mutate, suffix=".csv"):
    df = pd.DataFrame(rows())
    df = mutate(df)
    path = tmp_path / f"bad{suffix}"
    df.to_csv(path, index=False) if suffix == ".csv" else df.to_parquet(path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.assign(component=d.component.replace({"mlp": "ffn"})), r"row 4 .*unknown component"),
    (lambda d: d.drop(columns=["layer"]), r"lack the key column.*layer"),
    (lambda d: d.assign(loss=d.loss.astype(str).where(d.index != 2, "abc")), r"row 3.*loss 'abc'"),
    (lambda d: d.assign(loss=d.loss.astype(str).where(d.index != 5, "nan")), r"row 6 .*NaN"),
    (lambda d: d.assign(loss=d.loss.astype(str).where(d.index != 1, "inf")), r"row 2 .*infinite"),
    (lambda d: d.assign(loss=d.loss.where(d.index != 5, float("nan"))), r"row 6 .*loss is missing"),
])
def test_bad_rows_reject_the_whole_file(tmp_path, mutate, message, suffix):
    path = bad_file(tmp_path, mutate, suffix)
    with Store.open(tmp_path / "s.duckdb") as store:
        with pytest.raises(BadRows, match=message):
            import_path(store, path)
        assert store.table_counts() == EMPTY


def test_unimportable_paths(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "x.txt").write_text("hi")
    with Store.open(tmp_path / "s.duckdb") as store:
        for path, message in [(tmp_path / "nope.parquet", "no such file"),
                              (tmp_path / "empty", "holds none of"),
                              (tmp_path / "x.txt", "expected a folder")]:
            with pytest.raises(LayerdbError, match=message):
                import_path(store, path)
