"""Fixtures live in tests/fixtures/*: one module per kind, loaded as pytest plugins.  no_skips turns
every skip into a failure when LAYERDB_NO_SKIPS=1 (CI)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

pytest_plugins = [
    "tests.fixtures.stores",
    "tests.fixtures.hub",
    "tests.fixtures.hub_server",
    "tests.fixtures.results",
    "tests.fixtures.disk",
    "tests.fixtures.browser",
    "tests.fixtures.collect",
    "tests.fixtures.no_skips",
]
