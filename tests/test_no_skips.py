"""LAYERDB_NO_SKIPS=1 (set by .ci/run) turns every kind of skip into a failure naming test and reason."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SKIPPING = textwrap.dedent("""
    import pytest

    @pytest.fixture
    def needs_missing():
        pytest.importorskip("no_such_module_for_layerdb")

    def test_passes():
        assert True

    @pytest.mark.skipif(True, reason="chromium is absent")
    def test_marked():
        pass

    def test_in_body():
        pytest.skip("ray is absent")

    def test_in_fixture(needs_missing):
        pass

    @pytest.mark.xfail(reason="known", strict=True)
    def test_expected_failure():
        assert False
""")
SKIPPED_MODULE = 'import pytest\npytest.importorskip("no_such_module_for_layerdb")\n\ndef test_x():\n    pass\n'


def run_pytest(folder, no_skips):
    env = {k: v for k, v in os.environ.items() if k != "LAYERDB_NO_SKIPS"}
    if no_skips:
        env["LAYERDB_NO_SKIPS"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
                           "-p", "tests.fixtures.no_skips", "--rootdir", str(folder), str(folder)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_skips_pass_without_the_variable(tmp_path):
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    (tmp_path / "test_skipped_module.py").write_text(SKIPPED_MODULE)
    done = run_pytest(tmp_path, no_skips=False)
    assert done.returncode == 0, done.stdout
    assert "1 passed, 4 skipped, 1 xfailed" in done.stdout


def test_every_skip_fails_with_the_variable(tmp_path):
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    done = run_pytest(tmp_path, no_skips=True)
    assert done.returncode == 1, done.stdout
    assert "1 failed, 1 passed, 1 xfailed, 2 errors" in done.stdout  # skipped in setup: errors
    for test, reason in [("test_marked", "chromium is absent"), ("test_in_body", "ray is absent"),
                         ("test_in_fixture", "could not import 'no_such_module_for_layerdb'")]:
        assert f"test_skipping.py::{test} was skipped ({reason}" in done.stdout, done.stdout


def test_a_module_skipped_at_collection_fails_with_the_variable(tmp_path):
    (tmp_path / "test_skipped_module.py").write_text(SKIPPED_MODULE)
    done = run_pytest(tmp_path, no_skips=True)
    assert done.returncode == 2, done.stdout  # pytest: interrupted by a collection error
    assert "test_skipped_module.py was skipped (could not import 'no_such_module_for_layerdb'" \
        in done.stdout


def test_ci_sets_the_variable_before_the_test_command_which_ends_the_script():
    ci = (ROOT / ".ci" / "run").read_text()
    before, command = ci.split("# --- README test command (keep in sync with README.md) ---\n")
    assert "\nexport LAYERDB_NO_SKIPS=1\n" in before
    assert command.strip().endswith("python -m pytest -q") and "\n" not in command.strip()
    assert ci.startswith("#!/usr/bin/env bash\n") and "\nset -euo pipefail\n" in ci
