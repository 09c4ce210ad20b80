"""A non-editable install works: migrations and named queries ship inside the wheel."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from layerdb import migrate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
                   check=True, capture_output=True)
    (path,) = out.glob("layerdb-*.whl")
    return path


def test_wheel_carries_migrations_and_queries(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "layerdb/migrations/env.py" in names
    for migration in (ROOT / "migrations" / "versions").glob("*.py"):
        assert f"layerdb/migrations/versions/{migration.name}" in names
    for query in (ROOT / "queries").rglob("*.sql"):
        assert f"layerdb/queries/{query.relative_to(ROOT / 'queries')}" in names
    assert "collectors/__init__.py" in names


def test_installed_wheel_creates_a_store(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                    str(wheel)], check=True, capture_output=True)
    env = dict(os.environ, PYTHONPATH=str(target))
    code = ("import layerdb, sys; from layerdb import Store; "
            "assert layerdb.__file__.startswith(sys.argv[1]), layerdb.__file__; "
            "s = Store.open(sys.argv[2]); print(s.schema_revision())")
    result = subprocess.run([sys.executable, "-c", code, str(target), str(tmp_path / "x.duckdb")],
                            cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == migrate.head_revision()
