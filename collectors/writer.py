"""The store side of collecting, for the one process that writes.

Each function opens the store, does one thing and closes it, so the file is held only for
moments and readers (``layerdb status/query/sql``) and other collectors can use it during a sweep;
``Store.open`` waits and retries while another process holds the lock.  What "complete" and
"duplicate" mean is defined once, in SQL: the named queries ``coverage`` and
``duplicate-checkpoints``.

- ``completed(db_path, model, eval_set, method, kinds) -> set[str]``: revisions already done;
  ``completed_kinds(...)``: per revision, what is done (a revision with another's weights has
  what that one has).
- ``write_rows(db_path, rows)``: one checkpoint's SweepRows in one transaction (all or nothing).
- ``write_checkpoints(db_path, rows)``: checkpoints rows alone (revisions not swept), one transaction.
- ``stored_checkpoints(db_path, model) -> list[dict]``: the store's checkpoints rows of a model.
"""
from __future__ import annotations

from pathlib import Path

from layerdb import Store
from layerdb.named_queries import run_query
from layerdb.schema import arrow_rows

from .rows import SweepRows


def completed(db_path: str, model: str, eval_set: str, method: str,
              kinds: tuple[str, ...], duplicates_done: bool = True) -> set[str]:
    """Revisions of ``model`` whose baseline and ``kinds`` (``collectors.ablations``: block, attn,
    mlp, span2 ..., swap, metrics) are complete on ``eval_set``; no store = none."""
    return {revision for revision, done
            in completed_kinds(db_path, model, eval_set, method, duplicates_done).items()
            if set(kinds) <= done}


def completed_kinds(db_path: str, model: str, eval_set: str, method: str,
                    duplicates_done: bool = True) -> dict[str, set[str]]:
    """Per revision of ``model`` on ``eval_set`` with ``method``: its complete kinds, as the
    ``coverage`` query lists them (none without the baseline row); with ``duplicates_done``, a
    revision marked with another's weights has that one's kinds; no store = {}."""
    if not Path(db_path).exists():
        return {}
    with Store.open(db_path, read_only=True) as store:
        coverage = run_query(store, "coverage", model=model, eval_set=eval_set)
    mine = coverage[(coverage["method"] == method) & coverage["baseline"].astype(bool)]
    done = {revision: set(complete.split(",")) - {""}
            for revision, complete in zip(mine["revision"], mine["complete"])}
    if duplicates_done:
        marked = coverage[coverage["same_weights_as"].notna()]
        done.update({revision: done[kept_by] for revision, kept_by
                     in zip(marked["revision"], marked["same_weights_as"]) if kept_by in done})
    return done


def write_rows(db_path: str, rows: SweepRows) -> None:
    """Write one checkpoint's rows in one transaction; creates the store if there is none.
    A full disk (or another I/O failure) raises a one-line StoreWriteError naming the checkpoint."""
    with Store.open(db_path) as store:
        store.write_checkpoint(**rows.as_kwargs(),
                               label=f"checkpoint {rows.revision} of {rows.model}")


def write_checkpoints(db_path: str, rows: list[dict]) -> None:
    """``checkpoints`` rows alone (revisions marked with another's weights), in one transaction."""
    if rows:
        with Store.open(db_path) as store:
            store.write_tables({"checkpoints": arrow_rows("checkpoints", rows)})


def stored_checkpoints(db_path: str, model: str) -> list[dict]:
    """The store's ``checkpoints`` rows of ``model`` (none without a store)."""
    if not Path(db_path).exists():
        return []
    with Store.open(db_path, read_only=True) as store:
        return store.arrow("SELECT * FROM checkpoints WHERE model = :model ORDER BY revision",
                           model=model).to_pylist()
