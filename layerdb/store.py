"""The results store: one DuckDB file whose schema is owned by Alembic.

Rows go in through DuckDB's own bulk insert of a registered Arrow table (about 1M rows/s);
SQLAlchemy serves schema work (Alembic) on the same connection.  A store holds the file lock
only while it is open, so writers open it per checkpoint and readers per query.
"""
from __future__ import annotations

import contextlib
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import duckdb
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from . import migrate
from .errors import LayerdbError, ReadOnlyViolation, SchemaBehind, StoreLocked, first_line, require_folder
from .schema import RESULT_KEY, TABLES
from .validate import normalize_results, normalize_table, repeated_keys
from .write_errors import creation_failure, write_failure

DEFAULT_DB = "layerdb.duckdb"
DEFAULT_LOCK_TIMEOUT = 120.0  # seconds a process waits for another one's lock
READ_ONLY_STATEMENTS = {"SELECT", "EXPLAIN"}


def default_db_path() -> str:
    return os.environ.get("LAYERDB_DB") or DEFAULT_DB


def _lock_timeout() -> float:
    return float(os.environ.get("LAYERDB_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT))


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


def connect_with_retry(path: str, read_only: bool, timeout: float | None = None):
    """Open the DuckDB file, waiting (with backoff) while another process holds its lock."""
    timeout = _lock_timeout() if timeout is None else timeout
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        try:
            return duckdb.connect(path, read_only=read_only)
        except duckdb.IOException as exc:
            if not _is_lock_error(exc):
                raise LayerdbError(f"cannot open store {path}: {exc}") from None
            if time.monotonic() >= deadline:
                raise StoreLocked(
                    f"another process holds the store {path} (waited {timeout:.0f}s); "
                    "try again when it finishes, or raise LAYERDB_LOCK_TIMEOUT"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


class Store:
    """An open layerdb store. Use ``with Store.open(path) as store: ...``."""

    def __init__(self, path: str, con: duckdb.DuckDBPyConnection, read_only: bool):
        self.path = path
        self.con = con
        self.read_only = read_only
        wrapper = _connection_wrapper(con)
        self.engine = sa.create_engine("duckdb://", creator=lambda: wrapper, poolclass=StaticPool)

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | os.PathLike | None = None,
        *,
        read_only: bool = False,
        check_schema: bool = True,
        lock_timeout: float | None = None,
    ) -> "Store":
        """Open (and, for a new file, create and upgrade) the store at ``path``."""
        path = str(path or default_db_path())
        exists = Path(path).exists()
        if not exists:
            if read_only:
                raise LayerdbError(
                    f"no store at {path} (collect or import results first, or pass --db)"
                )
            require_folder(path, "create store")
        try:
            con = connect_with_retry(path, read_only=read_only, timeout=lock_timeout)
        except LayerdbError as exc:
            if exists or isinstance(exc, StoreLocked):
                raise
            _discard_new_store(path)  # e.g. a 0-byte file left by a full disk
            raise creation_failure(path, exc) or exc from None
        store = cls(path, con, read_only)
        try:
            if not exists:
                store.upgrade()
            elif check_schema:
                store.check_schema()
        except BaseException as exc:
            store.close()
            if exists:
                raise
            _discard_new_store(path)  # a store without its schema would fail the next run
            failure = creation_failure(path, exc)
            if failure is None:
                raise
            raise failure from None
        return store

    def close(self) -> None:
        self.engine.dispose()
        self.con.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- schema ----------------------------------------------------------------------------
    def schema_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return migrate.current_revision(conn)

    def check_schema(self) -> None:
        current, head = self.schema_revision(), migrate.head_revision()
        if current != head:
            raise SchemaBehind(
                f"store {self.path} has schema {current or 'none'}, this layerdb needs {head}: "
                f"run `layerdb --db {self.path} db upgrade`"
            )

    def upgrade(self, target: str = "head") -> None:
        if self.read_only:
            raise LayerdbError("cannot upgrade a store opened read-only")
        with self.engine.begin() as conn:
            migrate.upgrade(conn, target)

    def downgrade(self, target: str) -> None:
        with self.engine.begin() as conn:
            migrate.downgrade(conn, target)

    # -- reading -----------------------------------------------------------------------------
    def sql(self, text: str, **params: Any) -> pd.DataFrame:
        """Run SQL with ``:name`` parameters bound (never pasted in); return a DataFrame."""
        return self._execute(text, params).df()

    def arrow(self, text: str, **params: Any) -> pa.Table:
        return self._execute(text, params, relation=True).to_arrow_table()

    def read_only_sql(self, text: str, **params: Any) -> pd.DataFrame:
        """Like :meth:`sql`, but refuse anything other than one SELECT/EXPLAIN statement."""
        check_read_only(self.con, self._compile(text, params)[0])
        return self.sql(text, **params)

    def _execute(self, text: str, params: dict[str, Any], relation: bool = False):
        sql_text, args = self._compile(text, params)
        try:
            if relation:
                return self.con.sql(sql_text, params=args or None)
            return self.con.execute(sql_text, args)
        except duckdb.Error as exc:
            raise LayerdbError(f"SQL error: {first_line(exc)}") from None

    def _compile(self, text: str, params: dict[str, Any]) -> tuple[str, list[Any]]:
        """``:name`` parameters -> DuckDB positional ones, through SQLAlchemy's compiler."""
        statement = sa.text(text)
        names = set(statement._bindparams)
        unknown = sorted(set(params) - names)
        missing = sorted(names - set(params))
        if unknown:
            raise LayerdbError(f"unknown parameter(s): {', '.join(unknown)}")
        if missing:
            raise LayerdbError(f"missing parameter(s): {', '.join(':' + m for m in missing)}")
        if not names:
            sql_text, args = text, []
        else:
            compiled = statement.bindparams(**params).compile(dialect=self.engine.dialect)
            sql_text = compiled.string
            args = [params[n] for n in compiled.positiontup]
        return sql_text, args

    def table_counts(self) -> dict[str, int]:
        return {t: self.con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in TABLES}

    # -- writing -----------------------------------------------------------------------------
    @contextmanager
    def transaction(self, label: str = "the transaction") -> Iterator[None]:
        """All or nothing.  A write that fails on I/O (a full disk above all) or at COMMIT raises
        a one-line StoreWriteError naming ``label``; earlier commits stay intact
        (layerdb.write_errors says what DuckDB does)."""
        try:
            self.con.execute("BEGIN TRANSACTION")
            try:
                yield
            except BaseException:
                _rollback(self.con)
                raise
            self.con.execute("COMMIT")
        except duckdb.Error as exc:
            failure = write_failure(self.path, label, exc)
            if failure is None:
                raise
            raise failure from None

    def write_results(self, rows: pa.Table | pd.DataFrame) -> int:
        """Idempotent upsert of result rows; a row replaces an existing one of the same key
        unless the existing one is newer (``created_at``). Returns the number of rows offered."""
        table = normalize_results(rows)
        with self.transaction():
            self._upsert_results(table)
        return table.num_rows

    def upsert(self, table_name: str, rows, *, replace: bool = True) -> int:
        """Insert rows into a small table (models, checkpoints, eval_sets, runs) by name;
        rows whose key exists replace it (``replace``) or are skipped."""
        return self._insert(table_name, normalize_table(table_name, rows), replace=replace)

    def _insert(self, table_name: str, table: pa.Table, *, replace: bool) -> int:
        if table.num_rows == 0:
            return 0
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        self.con.register("_incoming", table)
        try:
            self.con.execute(f"{verb} INTO {table_name} BY NAME SELECT * FROM _incoming")
        finally:
            self.con.unregister("_incoming")
        return table.num_rows

    def write_checkpoint(self, *, model=None, checkpoint=None, eval_set=None, run=None,
                         results=None, layer_metrics=None, label: str = "the checkpoint") -> None:
        """Everything one checkpoint's sweep produced, in one transaction (all or nothing);
        ``label`` names it in errors (e.g. "checkpoint step8 of org/model")."""
        given = {"models": model, "checkpoints": checkpoint, "eval_sets": eval_set, "runs": run,
                 "results": results, "layer_metrics": layer_metrics}
        self.write_tables({name: rows for name, rows in given.items() if rows is not None},
                          label=label)

    def write_tables(self, tables: dict[str, Any], *, fill_in=None,
                     label: str = "the transaction") -> dict[str, int]:
        """Rows for several tables in one transaction (all or nothing).  ``tables`` rows replace
        existing rows of the same key (results: unless those are newer).  ``fill_in``, given the
        checked tables, returns rows written only where their key is missing (e.g. the models that
        imported results imply).  Every batch is checked before anything is written (BadRows);
        ``label`` names the write in errors.  Returns the rows offered per table."""
        unknown = sorted(set(tables) - set(TABLES))
        if unknown:
            raise LayerdbError(f"no such table(s): {', '.join(unknown)}")
        checked = {name: normalize_results(rows) if name == "results" else normalize_table(name, rows)
                   for name, rows in tables.items()}
        missing = {name: normalize_table(name, rows)
                   for name, rows in (fill_in(checked) if fill_in else {}).items()}
        with self.transaction(label):
            for name in TABLES:  # parents before results
                if name in checked and name != "results":
                    self._insert(name, checked[name], replace=True)
            if "results" in checked:
                self._upsert_results(checked["results"])
            for name, table in missing.items():
                self._insert(name, table, replace=False)
        return {name: table.num_rows for name, table in checked.items()}

    def _upsert_results(self, table: pa.Table) -> None:
        keys = " AND ".join(f"r.{k} = i.{k}" for k in RESULT_KEY)
        self.con.register("_incoming_results", table)
        try:
            self.con.execute(
                f"DELETE FROM results r USING _incoming_results i "
                f"WHERE {keys} AND i.created_at >= r.created_at"
            )
            self.con.execute(
                "INSERT INTO results BY NAME SELECT * FROM _incoming_results i "
                f"WHERE NOT EXISTS (SELECT 1 FROM results r WHERE {keys})"
            )
        except duckdb.ConstraintException as exc:  # a key twice in the batch: say which
            raise repeated_keys(table) or LayerdbError(f"rows refused: {first_line(exc)}") from None
        finally:
            with contextlib.suppress(duckdb.TransactionException):  # aborted: the next
                self.con.unregister("_incoming_results")  # registration replaces it


def check_read_only(con: duckdb.DuckDBPyConnection, text: str) -> None:
    try:
        statements = con.extract_statements(text)
    except duckdb.Error as exc:
        raise LayerdbError(f"SQL error: {first_line(exc)}") from None
    if len(statements) != 1:
        raise ReadOnlyViolation(f"give exactly one statement (got {len(statements)})")
    kind = statements[0].type.name
    if kind not in READ_ONLY_STATEMENTS:
        raise ReadOnlyViolation(
            f"refused: {kind} statements are not allowed here; `layerdb sql` is read-only "
            "(SELECT, WITH ... SELECT, EXPLAIN)"
        )


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back if DuckDB has not already (a failed COMMIT drops the transaction itself, a fatal
    error invalidates the database): the error that led here is the one to report."""
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass


def _discard_new_store(path: str) -> None:
    for leftover in (Path(path), Path(path + ".wal")):
        leftover.unlink(missing_ok=True)


def _connection_wrapper(con):
    from duckdb_engine import ConnectionWrapper

    return ConnectionWrapper(con)
