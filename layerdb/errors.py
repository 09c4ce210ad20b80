"""One exception family: the CLI turns any of these into one clear line and a non-zero exit;
one warning class, which the CLI prints as one line on stderr.

Also the two helpers every module uses to say what went wrong in one line.
"""
from __future__ import annotations

import os
from pathlib import Path


class LayerdbError(Exception):
    """A user-facing error: bad input, a missing file, a store in the wrong state."""


class StoreLocked(LayerdbError):
    """Another process holds the DuckDB file for longer than we were willing to wait."""


class SchemaBehind(LayerdbError):
    """The store's schema is older than this version of layerdb expects."""


class ReadOnlyViolation(LayerdbError):
    """A statement given to the read-only SQL path would write or change the store."""


class BadRows(LayerdbError):
    """Rows offered for import or ingest fail validation; nothing was written."""


class StoreWriteError(LayerdbError):
    """Writing to the store failed (a full disk above all); the message says what was kept."""


class LayerdbWarning(UserWarning):
    """A one-line caution about a result (e.g. nats compared across tokenizers); the CLI prints
    it on stderr, Python callers see it through the ``warnings`` module."""


def first_line(exc: BaseException) -> str:
    """An exception as one line: its message's first line, or its type when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def require_folder(path: str | os.PathLike, action: str = "write") -> Path:
    """Raise a one-line LayerdbError unless the folder that will hold ``path`` exists."""
    parent = Path(path).parent
    if not parent.is_dir():
        raise LayerdbError(f"cannot {action} {path}: folder {parent} does not exist")
    return Path(path)
