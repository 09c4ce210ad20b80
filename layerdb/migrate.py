"""Alembic plumbing: the store's schema is created and upgraded only through ``migrations/``."""
from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.ddl.impl import DefaultImpl
from alembic.script import ScriptDirectory


class DuckDBImpl(DefaultImpl):
    """Without an impl registered for the ``duckdb`` dialect Alembic fails with KeyError: 'duckdb'."""

    __dialect__ = "duckdb"
    transactional_ddl = True


def migrations_dir() -> str:
    return str(resources.files("layerdb.migrations"))


def alembic_config(connection=None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", migrations_dir())
    cfg.set_main_option("sqlalchemy.url", "duckdb://")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection, target: str = "head") -> None:
    command.upgrade(alembic_config(connection), target)


def downgrade(connection, target: str) -> None:
    command.downgrade(alembic_config(connection), target)


def history() -> list[tuple[str, str | None, str]]:
    """(revision, down_revision, one-line message), oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    revs = list(script.walk_revisions())
    return [(r.revision, r.down_revision, (r.doc or "").splitlines()[0]) for r in reversed(revs)]
