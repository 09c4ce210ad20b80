"""Alembic environment for the layerdb store (DuckDB through duckdb_engine).

Migrations are written by hand: duckdb_engine's reflection cannot drive autogenerate.
Run them through ``layerdb db upgrade`` (or ``layerdb.migrate``), which hands us a connection.
"""
from alembic import context
from sqlalchemy import create_engine, pool

import layerdb.migrate  # noqa: F401  registers the Alembic impl for the duckdb dialect


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.config.get_main_option("sqlalchemy.url")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    context.configure(url=context.config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
