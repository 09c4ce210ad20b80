"""Schema under Alembic: up from empty, down to base, up again; head matches the metadata."""
import re

import duckdb
import numpy as np
import pytest

from layerdb import Store, migrate
from layerdb.errors import SchemaBehind
from layerdb.pvalues import paired_pvalue
from layerdb.schema import METHODS, TABLES, VIEWS

# DuckDB's information_schema type name for each SQLAlchemy type used in layerdb/schema.py
DUCKDB_TYPES = {
    "String": "VARCHAR", "Integer": "INTEGER", "BigInteger": "BIGINT", "Float": "DOUBLE",
    "Boolean": "BOOLEAN", "DateTime": "TIMESTAMP", "DoubleList": "DOUBLE[]",
}


def user_tables(store):
    df = store.sql("SELECT table_name FROM information_schema.tables "
                   "WHERE table_schema = 'main' AND table_name <> 'alembic_version'")
    return set(df["table_name"])


def test_upgrade_downgrade_upgrade(db_path):
    with Store.open(db_path) as store:
        assert user_tables(store) == set(TABLES) | set(VIEWS)
        store.downgrade("base")
        assert user_tables(store) == set()
        assert store.schema_revision() is None
        store.upgrade()
        assert user_tables(store) == set(TABLES) | set(VIEWS)
        assert store.schema_revision() == migrate.head_revision()


@pytest.mark.parametrize("table", sorted(TABLES))
def test_head_schema_matches_metadata(empty_store, table):
    got = empty_store.sql(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_name = :t ORDER BY ordinal_position", t=table)
    expected = [(c.name, DUCKDB_TYPES[type(c.type).__name__]) for c in TABLES[table].columns]
    assert list(zip(got["column_name"], got["data_type"])) == expected
    not_null = {c.name for c in TABLES[table].columns if not c.nullable}
    assert set(got.loc[got["is_nullable"] == "NO", "column_name"]) == not_null
    pk = empty_store.sql(
        "SELECT constraint_column_names AS cols FROM duckdb_constraints() "
        "WHERE table_name = :t AND constraint_type = 'PRIMARY KEY'", t=table)["cols"][0]
    assert list(pk) == [c.name for c in TABLES[table].primary_key.columns]


def test_store_behind_head_says_so_in_one_line(db_path):
    with Store.open(db_path) as store:
        store.downgrade("base")
    with pytest.raises(SchemaBehind) as info:
        Store.open(db_path)
    message = str(info.value)
    assert "\n" not in message and "layerdb" in message and "db upgrade" in message


def test_history_lists_migrations():
    revs = migrate.history()
    assert revs[0][0] == "0001" and revs[0][1] is None and revs[0][2]


def test_schema_is_only_created_by_migrations(db_path):
    Store.open(db_path).close()
    con = duckdb.connect(db_path, read_only=True)
    assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [(migrate.head_revision(),)]
    con.close()


def test_methods_match_the_results_check(empty_store):
    """schema.METHODS is what validation accepts; the migration's CHECK is what DuckDB accepts."""
    check = empty_store.sql(
        "SELECT expression FROM duckdb_constraints() WHERE table_name = 'results' "
        "AND constraint_type = 'CHECK' AND expression LIKE '%method%'")["expression"][0]
    assert sorted(re.findall(r"'(\w+)'", check)) == sorted(METHODS)


def test_upgrading_a_populated_0001_store_keeps_every_row_and_value(tmp_path):
    """A store as layerdb 0.1 (schema 0001) left it, upgraded by `layerdb db upgrade`."""
    from click.testing import CliRunner

    from layerdb.cli import main
    from tests.fixtures.results import small_store_rows
    from tests.fixtures.stores import store_at_revision

    path = str(tmp_path / "old.duckdb")
    rows = small_store_rows()
    for i, row in enumerate(rows["results"]):  # every column 0.1 wrote, per-sequence losses too
        row.pop("p_value", None)  # 0.1 had no p-values
        row.update(method="zero", span=1,
                   seq_losses=[row["loss"] + 0.01 * (i % 3), row["loss"] - 0.01 * (i % 3)])
    store_at_revision(path, "0001", rows)

    def contents():
        con = duckdb.connect(path, read_only=True)
        try:
            return {t: con.execute(f"SELECT {', '.join(OLD_COLUMNS[t])} FROM {t} ORDER BY ALL")
                    .fetchall() for t in OLD_COLUMNS}
        finally:
            con.close()

    before = contents()
    assert {t: len(v) for t, v in before.items()} == {t: len(rows[t]) for t in OLD_COLUMNS}
    with pytest.raises(SchemaBehind):
        Store.open(path, read_only=True)
    result = CliRunner().invoke(main, ["--db", path, "db", "upgrade"])
    assert result.exit_code == 0 and "schema upgraded 0001 -> " in result.output, result.output
    assert contents() == before  # every row, every value
    with Store.open(path, read_only=True) as store:
        assert store.schema_revision() == migrate.head_revision()
        latest = store.sql("SELECT model, min(step) AS s, max(step) AS e, count(*) AS n "
                           "FROM latest_ablations GROUP BY model ORDER BY model")
        assert latest.values.tolist() == [["acme/large", 4, 4, 17], ["acme/small", 4, 4, 12]]
        # what 0002 adds to old rows: sequences used, and the p-value of their paired t test
        added = store.sql("SELECT r.component, r.n_sequences, r.p_value, r.seq_losses AS a, "
                          "b.seq_losses AS b FROM results r JOIN results b USING "
                          "(model, revision, eval_set, method) WHERE b.component = 'none'")
        assert set(added["n_sequences"]) == {2}
        for row in added.itertuples():
            expected = (None if row.component == "none"
                        else paired_pvalue([x - y for x, y in zip(row.a, row.b)]))
            assert (row.p_value is None or np.isnan(row.p_value)) if expected is None \
                else row.p_value == pytest.approx(expected, rel=1e-12)
    with Store.open(path) as store:  # and back: 0001 holds the same rows again
        store.downgrade("0001")
    assert contents() == before


# The columns of schema 0001 (migrations/versions/0001_initial.py), frozen here on purpose.
OLD_COLUMNS = {
    "models": ["model", "family", "architecture", "n_layers", "d_model", "n_heads", "n_params",
               "parallel_residual", "vocab_size", "max_seq_len", "created_at"],
    "checkpoints": ["model", "revision", "step", "tokens_seen", "weights_fingerprint",
                    "commit_hash", "created_at"],
    "eval_sets": ["eval_set", "name", "source", "tokenizer", "n_sequences", "seq_len", "n_tokens",
                  "n_bytes", "created_at"],
    "runs": ["run_id", "model", "revision", "eval_set", "method", "components", "status",
             "started_at", "finished_at", "device", "dtype", "batch_size", "wall_seconds", "host",
             "layerdb_version", "torch_version", "transformers_version", "error"],
    "results": ["model", "revision", "step", "eval_set", "method", "component", "layer", "span",
                "loss", "n_tokens", "delta", "delta_ci_low", "delta_ci_high", "seq_losses",
                "run_id", "created_at"],
}


def test_the_t_quantile_macro_matches_students_t(empty_store):
    from collectors.stats import t_quantile

    got = empty_store.sql("SELECT df, t_quantile_975(df) AS t FROM range(1, 301) r(df)")
    for df, t in zip(got["df"], got["t"]):
        assert t == pytest.approx(t_quantile(0.975, int(df)), abs=1e-7), df
    assert empty_store.sql("SELECT t_quantile_975(0) AS t")["t"].isna().all()
