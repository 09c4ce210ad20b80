"""The store side of collecting: the only code here that opens the DuckDB file.

Each function opens the store, does one thing and closes it, so the file is held only for
moments and readers (``layerdb status/query/sql``) and other collectors can use it during a sweep;
``Store.open`` waits and retries while another process holds the lock.

- ``completed(db_path, model, eval_set, method, components) -> set[str]``: revisions already done.
- ``is_complete(store, model, revision, eval_set, method, components) -> bool``.
- ``write_rows(db_path, rows)``: one checkpoint's SweepRows in one transaction (all or nothing).
- ``duplicate_revisions(db_path, model) -> list[list[str]]``: revisions sharing weights.
"""
from __future__ import annotations

from pathlib import Path

from layerdb import Store

from .rows import SweepRows

_COMPLETE_RUNS = """
SELECT revision, components FROM runs
WHERE model = :model AND eval_set = :eval_set AND method = :method AND status = 'complete'
"""


def is_complete(store: Store, model: str, revision: str, eval_set: str, method: str,
                components: tuple[str, ...]) -> bool:
    return revision in _completed(store, model, eval_set, method, components)


def completed(db_path: str, model: str, eval_set: str, method: str,
              components: tuple[str, ...]) -> set[str]:
    """Revisions of ``model`` whose sweep on ``eval_set`` covered ``components``; no store = none."""
    if not Path(db_path).exists():
        return set()
    with Store.open(db_path, read_only=True) as store:
        return _completed(store, model, eval_set, method, components)


def _completed(store: Store, model: str, eval_set: str, method: str,
               components: tuple[str, ...]) -> set[str]:
    runs = store.sql(_COMPLETE_RUNS, model=model, eval_set=eval_set, method=method)
    done: set[str] = set()
    for revision, covered in zip(runs["revision"], runs["components"]):
        if set(components) <= set((covered or "").split(",")):
            done.add(revision)
    return done


def write_rows(db_path: str, rows: SweepRows) -> None:
    """Write one checkpoint's rows in one transaction; creates the store if there is none.
    A full disk (or another I/O failure) raises a one-line StoreWriteError naming the checkpoint."""
    with Store.open(db_path) as store:
        store.write_checkpoint(**rows.as_kwargs(),
                               label=f"checkpoint {rows.revision} of {rows.model}")


def duplicate_revisions(db_path: str, model: str) -> list[list[str]]:
    """Groups of revisions of ``model`` whose weights fingerprints are equal."""
    if not Path(db_path).exists():
        return []
    with Store.open(db_path, read_only=True) as store:
        df = store.sql(
            "SELECT weights_fingerprint AS fp, list(revision ORDER BY step NULLS LAST, revision) "
            "AS revisions FROM checkpoints WHERE model = :model AND weights_fingerprint IS NOT NULL "
            "GROUP BY fp HAVING count(*) > 1 ORDER BY min(step)", model=model)
    return [list(r) for r in df["revisions"]]
