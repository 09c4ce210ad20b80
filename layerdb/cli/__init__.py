"""The ``layerdb`` command: a thin spelling of the Python API.

One module per group of commands; each registers its commands on ``main`` below.
Library errors (LayerdbError) become one red line on stderr and exit status 1.
"""
from __future__ import annotations

import sys

import click
from rich.markup import escape

from ..errors import LayerdbError
from ..store import DEFAULT_DB
from .common import console_err


class LayerdbGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LayerdbError as exc:
            console_err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            sys.exit(1)
        except KeyboardInterrupt:
            console_err.print("[yellow]interrupted[/]")
            sys.exit(130)


@click.group(cls=LayerdbGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "db", envvar="LAYERDB_DB", default=DEFAULT_DB, show_default=True,
              show_envvar=True, metavar="PATH", help="The DuckDB store to use.")
@click.version_option(package_name="layerdb")
@click.pass_context
def main(ctx: click.Context, db: str) -> None:
    """layerdb: which layers of a language model matter, and since when.

    Collect layer-ablation losses over training checkpoints into a DuckDB store,
    then query, chart and report them.

    Example: layerdb --db runs.duckdb query lowers-loss -p significant_only=true
    """
    ctx.obj = {"db": db}


def _register() -> None:
    from . import analysis, audit, collect, data, db, demo

    for module in (db, data, audit, collect, analysis, demo):
        module.register(main)


_register()
