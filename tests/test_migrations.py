"""Schema under Alembic: up from empty, down to base, up again; head matches the metadata."""
import duckdb
import pytest

from layerdb import Store, migrate
from layerdb.errors import SchemaBehind
from layerdb.schema import TABLES

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
        assert user_tables(store) == set(TABLES) | {"ablations"}
        store.downgrade("base")
        assert user_tables(store) == set()
        assert store.schema_revision() is None
        store.upgrade()
        assert user_tables(store) == set(TABLES) | {"ablations"}
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
    assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]
    con.close()
