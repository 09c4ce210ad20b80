"""Store: open/create, idempotent upsert, newer-wins, transactions, bound parameters, locks."""
import datetime as dt
import subprocess
import sys
import textwrap

import duckdb
import pandas as pd
import pyarrow as pa
import pytest

from layerdb import LayerdbError, Store, migrate
from layerdb.errors import BadRows, ReadOnlyViolation, StoreLocked
from tests.fixtures.stores import EMPTY


def rows(loss_shift=0.0, created_at=None, n_layers=2):
    out = [dict(model="m", revision="step8", eval_set="e", component="none", layer=-1,
                loss=3.0 + loss_shift, n_tokens=100)]
    for layer in range(n_layers):
        for comp in ("block", "attn", "mlp"):
            out.append(dict(model="m", revision="step8", eval_set="e", component=comp, layer=layer,
                            loss=3.5 + layer + loss_shift, n_tokens=100, delta=0.5 + layer,
                            delta_ci_low=0.4 + layer, delta_ci_high=0.6 + layer,
                            seq_losses=[3.4, 3.6]))
    if created_at is not None:
        for r in out:
            r["created_at"] = created_at
    return out


def count(store, table="results"):
    return store.sql(f"SELECT count(*) AS n FROM {table}")["n"][0]


def test_new_file_is_created_at_head(db_path):
    with Store.open(db_path) as store:
        assert store.schema_revision() == migrate.head_revision()
        assert store.table_counts() == EMPTY


def test_read_only_open_of_missing_file_is_an_error(tmp_path):
    with pytest.raises(LayerdbError, match="no store at"):
        Store.open(tmp_path / "missing.duckdb", read_only=True)


def test_write_is_idempotent_and_fills_defaults(empty_store):
    assert empty_store.write_results(rows()) == 7
    empty_store.write_results(pd.DataFrame(rows()))
    assert count(empty_store) == 7
    got = empty_store.sql("SELECT DISTINCT method, span, step FROM results")
    assert got.to_dict("records") == [{"method": "zero", "span": 1, "step": 8}]


def test_newer_rows_replace_older_ones_but_not_the_reverse(empty_store):
    old = dt.datetime(2026, 1, 1)
    new = dt.datetime(2026, 6, 1)
    empty_store.write_results(rows(0.0, created_at=old))
    empty_store.write_results(rows(1.0, created_at=new))
    assert empty_store.sql("SELECT loss FROM results WHERE component='none'")["loss"][0] == 4.0
    empty_store.write_results(rows(2.0, created_at=old))  # an older run arriving late
    assert empty_store.sql("SELECT loss FROM results WHERE component='none'")["loss"][0] == 4.0
    assert count(empty_store) == 7


def test_write_accepts_arrow(empty_store):
    empty_store.write_results(pa.Table.from_pylist(rows()))
    assert count(empty_store) == 7


def test_write_checkpoint_is_all_or_nothing(empty_store):
    bad = rows()
    bad[-1]["loss"] = float("nan")
    with pytest.raises(BadRows, match="row 7"):
        empty_store.write_checkpoint(
            model=[dict(model="m", n_layers=2)],
            checkpoint=[dict(model="m", revision="step8", step=8)],
            results=bad,
        )
    assert empty_store.table_counts()["models"] == 0


def test_duplicate_keys_in_one_batch_are_named_and_nothing_is_written(empty_store):
    repeated = r"results rows 1, 8 repeat the key \(model='m', revision='step8', eval_set='e', " \
               r"method='zero', component='none', layer=-1, span=1\)"
    with pytest.raises(BadRows, match=repeated):
        empty_store.write_checkpoint(model=[dict(model="m", n_layers=2)], results=rows() + rows()[:1])
    assert empty_store.table_counts() == EMPTY


def test_sql_binds_parameters(empty_store):
    empty_store.write_results(rows())
    df = empty_store.sql("SELECT count(*) AS n FROM results WHERE model = :m AND layer >= :l",
                         m="m", l=1)
    assert df["n"][0] == 3
    # a value that would break pasted SQL is just a value
    df = empty_store.sql("SELECT count(*) AS n FROM results WHERE model = :m", m="m' OR '1'='1")
    assert df["n"][0] == 0


def test_sql_names_missing_and_unknown_parameters(empty_store):
    with pytest.raises(LayerdbError, match=":m"):
        empty_store.sql("SELECT * FROM results WHERE model = :m")
    with pytest.raises(LayerdbError, match="unknown parameter"):
        empty_store.sql("SELECT 1", x=1)


def test_ablations_view(empty_store):
    empty_store.upsert("models", [dict(model="m", n_layers=2)])
    empty_store.write_results(rows())
    df = empty_store.sql("SELECT * FROM ablations WHERE component = 'block' ORDER BY layer")
    assert df["baseline_loss"].tolist() == [3.0, 3.0]
    assert df["depth"].tolist() == [0.0, 1.0]
    assert df["rel_delta"].tolist() == pytest.approx([0.5 / 3.0, 1.5 / 3.0])
    assert df["significant"].tolist() == [True, True]
    assert df["n_layers"].tolist() == [2, 2]
    assert df["p_value"].isna().all() and df["q_value"].isna().all()  # no p-value, no q-value


@pytest.mark.parametrize("statement", [
    "INSERT INTO models (model, n_layers) VALUES ('x', 1)",
    "DELETE FROM results",
    "DROP TABLE results",
    "CREATE TABLE t (x INT)",
    "ATTACH '/tmp/other.duckdb' AS other",
    "COPY (SELECT 1) TO '/tmp/out.csv'",
    "UPDATE results SET loss = 0",
    "SELECT 1; DELETE FROM results",
    "SET threads = 1",
])
def test_read_only_sql_refuses_writes(empty_store, statement):
    empty_store.write_results(rows())
    with pytest.raises(ReadOnlyViolation):
        empty_store.read_only_sql(statement)
    assert count(empty_store) == 7


def test_read_only_sql_allows_selects(empty_store):
    assert empty_store.read_only_sql("WITH a AS (SELECT 1 AS x) SELECT * FROM a")["x"][0] == 1
    assert len(empty_store.read_only_sql("EXPLAIN SELECT 1")) >= 1


HOLD_STORE = textwrap.dedent("""
    import sys, time
    from layerdb import Store
    with Store.open(sys.argv[1]) as s:
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def test_lock_waits_then_reports_clearly(db_path, monkeypatch):
    Store.open(db_path).close()
    attempts = []
    connect = duckdb.connect
    monkeypatch.setattr(duckdb, "connect", lambda *a, **k: attempts.append(a) or connect(*a, **k))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_STORE, db_path, "30"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreLocked, match="another process holds the store"):
            Store.open(db_path, read_only=True, lock_timeout=0.5)
        assert len(attempts) > 1  # it retried while locked ...
        assert holder.poll() is None  # ... and gave up while the holder still held the lock
    finally:
        holder.kill()
        holder.wait()


def test_lock_is_retried_until_released(db_path):
    Store.open(db_path).close()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_STORE, db_path, "1.0"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with Store.open(db_path, read_only=True, lock_timeout=30) as store:
            assert store.schema_revision() == migrate.head_revision()
    finally:
        holder.wait()
