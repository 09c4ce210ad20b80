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


def export_store(store, folder: str | Path) -> dict[str, int]:
    """Write each table to ``folder/<table>.parquet``; return row counts."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise LayerdbError(f"{folder} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    for table in TABLES:
        data = store.arrow(f"SELECT * FROM {table}")
        pq.write_table(data, folder / f"{table}.parquet")
        counts[table] = data.num_rows
    return counts


def check_importable(path: str | Path) -> None:
    path = Path(path)
    if not path.exists():
        raise LayerdbError(f"no such file or folder: {path}")
    if path.is_dir():
        if not any((path / f"{t}.parquet").exists() for t in TABLES):
            raise LayerdbError(f"{path} holds none of {', '.join(t + '.parquet' for t in TABLES)}")
    elif path.suffix.lower() not in (".parquet", ".csv"):
        raise LayerdbError(f"cannot import {path}: expected a folder, a .parquet or a .csv file")


def import_path(store, path: str | Path) -> dict[str, int]:
    """Import a folder written by export, or one file of results rows; all or nothing."""
    check_importable(path)
    path = Path(path)
    if path.is_dir():
        tables = {t: _read_parquet(path / f"{t}.parquet") for t in TABLES
                  if (path / f"{t}.parquet").exists()}
    else:
        tables = {"results": _read_parquet(path) if path.suffix.lower() == ".parquet"
                  else _read_csv(path)}
    try:
        return store.write_tables(tables, fill_in=_implied, label=f"the import of {path}")
    except BadRows as exc:
        raise BadRows(f"{path}: {exc}") from None


def _implied(tables: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """Rows for models/checkpoints/eval_sets that (checked) results name but the store may lack."""
    if "results" not in tables:
        return {}
    results = tables["results"]
    models = results.group_by("model").aggregate([("layer", "max")])
    models = pa.table({"model": models["model"],
                       "n_layers": pc.add(models["layer_max"], 1).cast(pa.int32())})
    if "models" in tables:  # an export folder names its models: let those win
        known = pa.array(tables["models"]["model"].to_pylist(), pa.string())
        models = models.filter(pc.invert(pc.is_in(models["model"], known)))
    checkpoints = results.group_by(["model", "revision"]).aggregate([("step", "max")])
    eval_sets = results.group_by("eval_set").aggregate([("n_tokens", "max")])
    return {
        "models": models,
        "checkpoints": pa.table({"model": checkpoints["model"], "revision": checkpoints["revision"],
                                 "step": checkpoints["step_max"]}),
        "eval_sets": pa.table({"eval_set": eval_sets["eval_set"],
                               "n_tokens": eval_sets["n_tokens_max"]}),
    }


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


__all__ = ["export_store", "import_path", "check_importable"]
