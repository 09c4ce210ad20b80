"""One exception family: the CLI turns any of these into one clear line and a non-zero exit."""


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
