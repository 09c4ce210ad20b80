"""Checking rows before they reach the store: a batch with one bad row is refused whole,
and the message names that row. Checks run in Arrow compute so 1M rows cost milliseconds."""
from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .errors import BadRows
from .revisions import parse_revision
from .schema import (BASELINE_LAYER, COMPONENTS, METHODS, METRICS, RESULT_KEY, SPAN_COMPONENTS,
                     TABLES, arrow_schema)

REQUIRED_RESULT_COLUMNS = ("model", "revision", "eval_set", "component", "layer", "loss")
_KEY_COLUMNS = {name: tuple(c.name for c in table.primary_key.columns)
                for name, table in TABLES.items()}


def to_arrow(rows: Any) -> pa.Table:
    if isinstance(rows, pa.Table):
        return rows
    if isinstance(rows, pa.RecordBatch):
        return pa.Table.from_batches([rows])
    if isinstance(rows, pd.DataFrame):
        return pa.Table.from_pandas(rows, preserve_index=False)
    if isinstance(rows, dict):
        rows = [rows]
    if isinstance(rows, list):  # union of keys: from_pylist would keep only the first row's
        keys = list(dict.fromkeys(k for row in rows for k in row))
        return pa.table({k: [row.get(k) for row in rows] for k in keys})
    raise TypeError(f"expected an Arrow table, a DataFrame or a list of dicts, got {type(rows)}")


def normalize_results(rows: Any) -> pa.Table:
    """Check result rows and fill defaults (method, span, step, created_at); raise BadRows."""
    table = to_arrow(rows)
    missing = [c for c in REQUIRED_RESULT_COLUMNS if c not in table.column_names]
    if missing:
        raise BadRows(f"results rows lack the key column(s): {', '.join(missing)}")
    n = table.num_rows
    if "method" not in table.column_names:
        table = table.append_column("method", pa.array(["zero"] * n, pa.string()))
    if "span" not in table.column_names:
        table = table.append_column("span", pa.array([1] * n, pa.int32()))
    if "created_at" not in table.column_names:
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        table = table.append_column("created_at", pa.array([now] * n, pa.timestamp("us")))
    table = _drop_all_null(table, "step")
    if "step" not in table.column_names:
        table = table.append_column("step", _steps_from_revisions(table["revision"]))
    types = {f.name: f.type for f in arrow_schema("results")}
    unknown = [c for c in table.column_names if c not in types]
    if unknown:
        raise BadRows(f"results rows have unknown column(s): {', '.join(unknown)}")
    table = pa.table({c: _cast(table, c, t) for c, t in types.items() if c in table.column_names})
    for col in RESULT_KEY:
        _fail_where(table, pc.is_null(table[col]), f"missing {col}")
    _fail_where(table, pc.is_null(table["loss"]), "loss is missing (NULL or NaN)")
    _fail_where(table, pc.invert(pc.is_in(table["component"], pa.array(COMPONENTS))),
                "unknown component (expected one of: " + ", ".join(COMPONENTS) + ")")
    _fail_where(table, pc.invert(pc.is_in(table["method"], pa.array(METHODS))),
                "unknown method (expected one of: " + ", ".join(METHODS) + ")")
    _fail_where(table, pc.invert(pc.is_finite(table["loss"])), "loss is NaN or infinite")
    is_base = pc.equal(table["component"], "none")
    _fail_where(table, pc.and_(is_base, pc.not_equal(table["layer"], BASELINE_LAYER)),
                "the baseline (component none) must have layer -1")
    _fail_where(table, pc.and_(pc.invert(is_base), pc.less(table["layer"], 0)),
                "an ablated component needs a layer >= 0")
    _fail_where(table, pc.less(table["span"], 1), "span must be >= 1")
    _fail_where(table, pc.and_(pc.greater(table["span"], 1),
                               pc.invert(pc.is_in(table["component"], pa.array(SPAN_COMPONENTS)))),
                f"only {' and '.join(SPAN_COMPONENTS)} rows may span several layers")
    _fail_where(table, pc.and_(pc.equal(table["component"], "swap"), pc.not_equal(table["span"], 2)),
                "a swap row has span 2")
    return table


def repeated_keys(table: pa.Table) -> BadRows | None:
    """The error for a batch that holds a result key more than once (which row would win is not
    defined), naming the first such key and its rows; None when every key is once.  The store
    asks only when DuckDB refuses the batch, so a good batch pays nothing for it."""
    keyed = table.select(list(RESULT_KEY)).append_column("_row", pa.array(range(table.num_rows)))
    groups = keyed.group_by(list(RESULT_KEY), use_threads=False).aggregate([("_row", "list")])
    repeated = groups.filter(pc.greater(pc.list_value_length(groups["_row_list"]), 1))
    if repeated.num_rows == 0:
        return None
    first = min(repeated.to_pylist(), key=lambda g: min(g["_row_list"]))
    rows = ", ".join(str(i + 1) for i in sorted(first["_row_list"]))
    key = ", ".join(f"{k}={_short(first[k])}" for k in RESULT_KEY)
    more = f" ({repeated.num_rows} repeated keys in all)" if repeated.num_rows > 1 else ""
    return BadRows(f"results rows {rows} repeat the key ({key}){more}; keep one row per key; "
                   "nothing was written")


def normalize_table(name: str, rows: Any) -> pa.Table:
    """Check rows of a small table (models, checkpoints, eval_sets, runs) against its schema."""
    table = to_arrow(rows)
    columns = {c.name for c in TABLES[name].columns}
    unknown = [c for c in table.column_names if c not in columns]
    if unknown:
        raise BadRows(f"{name} rows have unknown column(s): {', '.join(unknown)}")
    for col in _KEY_COLUMNS[name]:
        if col not in table.column_names:
            raise BadRows(f"{name} rows lack the key column {col}")
        _fail_where(table, pc.is_null(table[col]), f"missing {col}", what=name)
    if name == "layer_metrics":
        _fail_where(table, pc.invert(pc.is_in(table["metric"], pa.array(METRICS))),
                    "unknown metric (expected one of: " + ", ".join(METRICS) + ")", what=name)
        _fail_where(table, pc.invert(pc.is_finite(table["value"])), "value is NaN or infinite",
                    what=name)
    return table


def _drop_all_null(table: pa.Table, column: str) -> pa.Table:
    if column in table.column_names and table[column].null_count == table.num_rows:
        return table.drop_columns([column])
    return table


def _steps_from_revisions(revisions: pa.ChunkedArray) -> pa.Array:
    unique = pc.unique(revisions).to_pylist()
    steps = [parse_revision(r).step if r is not None else None for r in unique]
    index = pc.index_in(revisions, value_set=pa.array(unique, pa.string()))
    return pc.take(pa.array(steps, pa.int64()), index)


def _cast(table: pa.Table, column: str, type_: pa.DataType) -> pa.ChunkedArray:
    values = table[column]
    if values.type == type_:
        return values
    try:
        if pa.types.is_integer(type_) and pa.types.is_floating(values.type):
            frac = pc.not_equal(values, pc.floor(values))
            _fail_where(table, pc.fill_null(frac, False), f"{column} is not a whole number")
        return pc.cast(values, type_)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    # Slow path, only on failure: find the first value that does not convert.
    for i, value in enumerate(values.to_pylist()):
        try:
            pc.cast(pa.array([value]), type_)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            raise BadRows(f"{_describe(table, i)}: {column} {value!r} is not a valid {type_}")
    raise BadRows(f"results column {column} cannot be read as {type_}")


def _fail_where(table: pa.Table, mask, reason: str, what: str = "results") -> None:
    mask = pc.fill_null(mask, True)
    if not pc.any(mask).as_py():
        return
    i = pc.index(mask, True).as_py()
    raise BadRows(f"{_describe(table, i, what)}: {reason}; nothing was written")


def _describe(table: pa.Table, i: int, what: str = "results") -> str:
    row = table.slice(i, 1).to_pylist()[0]
    keys = [k for k in ("model", "revision", "component", "layer", "loss") if k in row]
    shown = ", ".join(f"{k}={_short(row[k])}" for k in keys)
    return f"bad {what} row {i + 1} ({shown})"


def _short(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
