"""Import and export: one Parquet file per table, or a Parquet/CSV file of results rows."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .errors import BadRows, LayerdbError
from .schema import TABLES
from .validate import normalize_results, normalize_table

TABLE_ORDER = ("models", "checkpoints", "eval_sets", "runs", "results")


def export_store(store, folder: str | Path) -> dict[str, int]:
    """Write each table to ``folder/<table>.parquet``; return row counts."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise LayerdbError(f"{folder} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    for table in TABLE_ORDER:
        data = store.arrow(f"SELECT * FROM {table}")
        pq.write_table(data, folder / f"{table}.parquet")
        counts[table] = data.num_rows
    return counts


def check_importable(path: str | Path) -> None:
    path = Path(path)
    if not path.exists():
        raise LayerdbError(f"no such file or folder: {path}")
    if path.is_dir():
        if not any((path / f"{t}.parquet").exists() for t in TABLE_ORDER):
            raise LayerdbError(f"{path} holds none of {', '.join(t + '.parquet' for t in TABLE_ORDER)}")
    elif path.suffix.lower() not in (".parquet", ".csv"):
        raise LayerdbError(f"cannot import {path}: expected a folder, a .parquet or a .csv file")


def import_path(store, path: str | Path) -> dict[str, int]:
    """Import a folder written by export, or one file of results rows; all or nothing."""
    check_importable(path)
    path = Path(path)
    if path.is_dir():
        tables = {t: _read_parquet(path / f"{t}.parquet") for t in TABLE_ORDER
                  if (path / f"{t}.parquet").exists()}
        if "results" in tables:
            tables["results"] = _checked(path / "results.parquet", normalize_results, tables["results"])
        for name in ("models", "checkpoints", "eval_sets", "runs"):
            if name in tables:
                tables[name] = _checked(path / f"{name}.parquet",
                                        lambda t, n=name: normalize_table(n, t), tables[name])
        if "results" in tables:
            _add_implied(store, tables)
        return _write(store, tables)
    raw = _read_parquet(path) if path.suffix.lower() == ".parquet" else _read_csv(path)
    results = _checked(path, normalize_results, raw)
    tables = {"results": results}
    _add_implied(store, tables)
    return _write(store, tables)


def _write(store, tables: dict[str, pa.Table]) -> dict[str, int]:
    counts = {}
    with store.transaction():
        for name in TABLE_ORDER:
            if name not in tables:
                continue
            if name == "results":
                store._upsert_results(tables[name])
            else:
                store.upsert(name, tables[name])
            counts[name] = tables[name].num_rows
        for name in ("implied_models", "implied_checkpoints", "implied_eval_sets"):
            if name in tables:
                store.upsert(name.removeprefix("implied_"), tables[name], replace=False)
    return counts


def _add_implied(store, tables: dict[str, pa.Table]) -> None:
    """Rows for models/checkpoints/eval_sets that results name but the store lacks."""
    results = tables["results"]
    con = store.con
    con.register("_implied_src", results)
    try:
        tables["implied_models"] = con.sql(
            "SELECT model, max(layer) + 1 AS n_layers FROM _implied_src "
            "WHERE model NOT IN (SELECT model FROM models) GROUP BY model"
        ).to_arrow_table()
        tables["implied_checkpoints"] = con.sql(
            "SELECT model, revision, max(step) AS step FROM _implied_src GROUP BY model, revision"
        ).to_arrow_table()
        tables["implied_eval_sets"] = con.sql(
            "SELECT eval_set, max(n_tokens) AS n_tokens FROM _implied_src GROUP BY eval_set"
        ).to_arrow_table()
    finally:
        con.unregister("_implied_src")
    if "models" in tables:  # an export folder names its models: let those win
        known = set(tables["models"]["model"].to_pylist())
        keep = pc.invert(pc.is_in(tables["implied_models"]["model"], pa.array(list(known), pa.string())))
        tables["implied_models"] = tables["implied_models"].filter(keep)


def _checked(path, normalize, table):
    try:
        return normalize(table)
    except BadRows as exc:
        raise BadRows(f"{path}: {exc}") from None


def _read_parquet(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise LayerdbError(f"cannot read {path} as Parquet: {exc}") from None


def _read_csv(path: Path) -> pa.Table:
    try:
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    except (pa.ArrowInvalid, OSError) as exc:
        raise LayerdbError(f"cannot read {path} as CSV: {exc}") from None
    if "seq_losses" in table.column_names and pa.types.is_string(table["seq_losses"].type):
        values = [json.loads(v) if v else None for v in table["seq_losses"].to_pylist()]
        idx = table.column_names.index("seq_losses")
        table = table.set_column(idx, "seq_losses", pa.array(values, pa.list_(pa.float64())))
    return table


__all__ = ["export_store", "import_path", "check_importable", "TABLES"]
