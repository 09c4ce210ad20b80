"""``layerdb db upgrade | current | history``: the store's schema, through Alembic."""
from __future__ import annotations

import click

from .. import migrate
from ..store import Store
from .common import console, db_path


@click.group("db")
def db_group() -> None:
    """The store's schema (Alembic migrations).

    Example: layerdb --db runs.duckdb db upgrade
    """


@db_group.command("upgrade")
@click.argument("target", default="head")
@click.pass_context
def db_upgrade(ctx, target: str) -> None:
    """Upgrade the store's schema to TARGET (default: head); creates the file if needed.

    Example: layerdb --db runs.duckdb db upgrade
    """
    path = db_path(ctx)
    from pathlib import Path

    if not Path(path).exists():
        with Store.open(path) as store:
            console.print(f"{path}: created at schema {store.schema_revision()}")
        return
    with Store.open(path, check_schema=False) as store:
        before = store.schema_revision()
        store.upgrade(target)
        after = store.schema_revision()
    if before == after:
        console.print(f"{path}: schema already at {after}")
    else:
        console.print(f"{path}: schema upgraded {before or 'none'} -> {after}")


@db_group.command("current")
@click.pass_context
def db_current(ctx) -> None:
    """Print the store's schema revision and whether it is the head.

    Example: layerdb --db runs.duckdb db current
    """
    with Store.open(db_path(ctx), read_only=True, check_schema=False) as store:
        current = store.schema_revision()
    head = migrate.head_revision()
    state = "(head)" if current == head else f"(behind head {head}: run `layerdb db upgrade`)"
    console.print(f"{current or 'none'} {state}")


@db_group.command("history")
def db_history() -> None:
    """List the schema migrations, oldest first.

    Example: layerdb db history
    """
    for rev, down, message in migrate.history():
        console.print(f"{down or '<base>'} -> {rev}: {message}")


def register(main) -> None:
    main.add_command(db_group)
