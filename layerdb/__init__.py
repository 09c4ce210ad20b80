"""layerdb: which layers of a language model matter, and since when.

The torch-free half: store, schema, queries, output, charts, reports and the CLI.
"""
from .errors import LayerdbError
from .store import Store, default_db_path

__version__ = "0.1.0"
__all__ = ["Store", "LayerdbError", "default_db_path", "__version__"]
