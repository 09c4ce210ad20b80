"""Rows in and out: ``sql``, ``import``, ``export``, ``models``, ``status``."""
from __future__ import annotations

import click

from .. import transfer
from ..schema import TABLES, VIEWS
from ..store import Store
from ..errors import LayerdbError
from .common import console, db_path, open_store, output_options, param_option, print_rows


@click.command("sql")
@click.argument("query")
@param_option
@output_options
@click.pass_context
def sql(ctx, query: str, params: dict, fmt: str, output: str | None) -> None:
    """Run one read-only SQL statement (SELECT/WITH/EXPLAIN) against the store.

    Tables: {tables}; views: {views}. Statements that write or change the schema are refused.

    Example: layerdb sql "SELECT model, step, layer, delta FROM ablations WHERE significant AND delta < 0"
    """
    with open_store(ctx) as store:
        df = store.read_only_sql(query, **params)
    print_rows(df, fmt, output)


sql.help = sql.help.replace("{tables}", ", ".join(TABLES)).replace("{views}", ", ".join(VIEWS))


@click.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.pass_context
def import_(ctx, paths: tuple[str, ...]) -> None:
    """Import an export folder (one Parquet file per table) or Parquet/CSV files of results rows.

    Missing models/checkpoints/eval_sets rows are created from what the results imply.
    A file with a bad row is refused whole. Importing twice leaves one copy.

    Example: layerdb --db merged.duckdb import export-a/ extra-results.parquet
    """
    for path in paths:
        transfer.check_importable(path)
    with Store.open(db_path(ctx)) as store:
        for path in paths:
            counts = transfer.import_path(store, path)
            shown = ", ".join(f"{n} {t}" for t, n in counts.items() if n)
            console.print(f"imported {path}: {shown or 'nothing'}")


@click.command("export")
@click.argument("folder", type=click.Path(file_okay=False))
@click.pass_context
def export(ctx, folder: str) -> None:
    """Write every table of the store to FOLDER as one Parquet file per table.

    Example: layerdb --db runs.duckdb export runs-export/
    """
    with open_store(ctx) as store:
        counts = transfer.export_store(store, folder)
    for table, n in counts.items():
        console.print(f"{folder}/{table}.parquet: {n} rows")


@click.command("models")
@output_options
@click.pass_context
def models(ctx, fmt: str, output: str | None) -> None:
    """List the models in the store with layer counts, checkpoints and result counts.

    Example: layerdb models --format csv
    """
    with open_store(ctx) as store:
        df = store.sql(MODELS_SQL)
    print_rows(df, fmt, output, title="models")


@click.command("status")
@click.argument("model", required=False)
@output_options
@click.pass_context
def status(ctx, model: str | None, fmt: str, output: str | None) -> None:
    """Per model, revision and eval set: which components are complete and what is missing
    (the named query `coverage`, layerdb's one definition of complete, which resuming uses too).

    Example: layerdb status EleutherAI/pythia-160m
    """
    from ..named_queries import run_query

    with open_store(ctx) as store:
        if model is not None:
            known = store.sql("SELECT 1 FROM models WHERE model = :m", m=model)
            if known.empty:
                raise LayerdbError(f"unknown model {model!r} (see `layerdb models`)")
        df = run_query(store, "coverage", model=model)
    print_rows(df, fmt, output, title="status")


MODELS_SQL = """
SELECT m.model, m.family, m.n_layers, m.d_model, m.n_params,
       (SELECT count(*) FROM checkpoints c WHERE c.model = m.model) AS checkpoints,
       (SELECT count(*) FROM results r WHERE r.model = m.model) AS results,
       (SELECT max(step) FROM checkpoints c WHERE c.model = m.model) AS latest_step
FROM models m ORDER BY m.model
"""

def register(main) -> None:
    for command in (sql, import_, export, models, status):
        main.add_command(command)
