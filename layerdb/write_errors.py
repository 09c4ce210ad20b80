"""One-line errors for a write to the store that fails on I/O, a full disk above all.

What DuckDB 2.0.1 does when the disk fills (measured on small tmpfs disks):

- COMMIT writes the transaction to the log, ``STORE.wal``.  If that write fails, COMMIT raises
  TransactionException 'Failed to commit: Could not write file "STORE.wal": No space left on
  device'; DuckDB cuts the log back and drops the transaction.  The connection stays usable and
  every earlier commit is intact.
- An INSERT big enough to write row groups straight into the file raises IOException 'Could not
  write file "STORE": No space left on device' before COMMIT; the transaction is then rolled back.
- A COMMIT that takes the log past ``wal_autocheckpoint`` (16 MiB) merges the log into the file at
  once (DuckDB's "checkpoint").  If the merge fails, FatalException, and the database object is
  invalidated (every later statement fails; close still works): "Transaction COMMIT succeeded and
  is durable, but the autocheckpoint failed" when the transaction was logged first (the next open
  replays it), or "Failed to create checkpoint because of error: ..." when a big transaction
  (estimated above ``auto_checkpoint_skip_wal_threshold``) skipped the log and was only in that
  merge (stored only if the merge got as far as rewriting the header; measured: not stored).
- Closing merges the log too; a failure there is swallowed: the log stays, and the next open
  replays it, read-only or not, even on a full disk.  A failed merge never harms the file: DuckDB
  switches to new blocks by rewriting one of two headers.
- Creating a store on a full disk can leave a 0-byte or 4 KiB file ("not a valid DuckDB database
  file" ever after) or a file without the schema; ``Store.open`` removes what it created.
"""
from __future__ import annotations

import errno
import os

import duckdb

from .errors import StoreWriteError, first_line

# How DuckDB words ENOSPC and EDQUOT: the C library's strerror text inside its message.
DISK_FULL_TEXTS = (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))
DURABLE_COMMIT_TEXT = "COMMIT succeeded and is durable"


def is_disk_full(exc: BaseException) -> bool:
    return any(text in str(exc) for text in DISK_FULL_TEXTS)


def write_failure(path: str, label: str, exc: BaseException) -> StoreWriteError | None:
    """The one-line error for ``exc`` raised while writing ``label`` (e.g. "checkpoint step8 of
    org/model") to the store at ``path``, or None when ``exc`` is not a failed write."""
    exc = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps DuckDB's errors
    detail = first_line(exc)
    if isinstance(exc, duckdb.FatalException):
        if DURABLE_COMMIT_TEXT in detail:
            outcome = (f"{label} was written, but DuckDB could not merge its log "
                       f"({path}.wal) into the store; the next open replays it")
        else:
            outcome = f"{label} may not have been written"
    elif isinstance(exc, duckdb.IOException) or (
            isinstance(exc, duckdb.TransactionException) and "Failed to commit" in detail):
        outcome = f"{label} was not written; everything stored before it is intact"
    else:
        return None
    if is_disk_full(exc):
        return StoreWriteError(f"the disk holding {path} is full: {outcome}; "
                               "free space and re-run to resume")
    return StoreWriteError(f"writing to {path} failed ({detail}): {outcome}; "
                           "re-run to resume once that is fixed")


def creation_failure(path: str, exc: BaseException) -> StoreWriteError | None:
    """The one-line error for ``exc`` raised while creating a new store, or None when it is not
    an I/O failure."""
    exc = getattr(exc, "orig", None) or exc
    if is_disk_full(exc):
        return StoreWriteError(f"the disk holding {path} is full: the store could not be created; "
                               "free space and re-run")
    if isinstance(exc, (duckdb.IOException, duckdb.FatalException, duckdb.TransactionException)):
        return StoreWriteError(f"cannot create store {path}: {first_line(exc)}")
    return None
