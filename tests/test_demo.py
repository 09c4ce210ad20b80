"""The offline demo end to end, reduced (--quick): train, collect through the hub path, report."""
import os
import subprocess
import sys

import duckdb
import pytest


def run_demo(out):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HOME", "LAYERDB_DB")}
    return subprocess.run([sys.executable, "-m", "layerdb", "demo", "--out", str(out), "--quick"],
                          capture_output=True, text=True, env=env, timeout=600)


def losses(db):
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT model, revision, component, layer, loss FROM results "
                       "ORDER BY ALL").fetchall()
    con.close()
    return rows


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    first = run_demo(out)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return out, first


def test_demo_collects_every_checkpoint_through_the_hub_layout(demo_dir):
    out, first = demo_dir
    assert (out / "hf_home" / "hub" / "models--demo--quick-2l" / "refs" / "step24").exists()
    con = duckdb.connect(str(out / "layerdb.duckdb"), read_only=True)
    per_model = dict(con.execute(
        "SELECT model, count(*) FROM results GROUP BY model").fetchall())
    n_layers = dict(con.execute("SELECT model, n_layers FROM models").fetchall())
    revisions = con.execute("SELECT count(DISTINCT revision) FROM results").fetchall()[0][0]
    marked = con.execute("SELECT model, revision, same_weights_as FROM checkpoints "
                         "WHERE same_weights_as IS NOT NULL ORDER BY 1").fetchall()
    con.close()
    assert n_layers == {"demo/quick-2l": 2, "demo/quick-4l": 4}
    # 7 step revisions per model; per revision the baseline, 3 components per layer and the spans
    # of 2 blocks (L - 1 of them); main holds the final step's weights: marked, not swept
    assert per_model == {"demo/quick-2l": 7 * (1 + 3 * 2 + 1), "demo/quick-4l": 7 * (1 + 3 * 4 + 3)}
    assert revisions == 7
    assert marked == [("demo/quick-2l", "main", "step24"), ("demo/quick-4l", "main", "step24")]


def test_demo_prints_findings_and_writes_report(demo_dir):
    out, first = demo_dir
    for needle in ("trained", "lowers-loss", "most important layers", "duplicate checkpoints",
                   "report.html", "heatmap.png", "layerdb --db", "query lowers-loss"):
        assert needle in first.stdout, needle
    html = (out / "report.html").read_text()
    assert "<script src" not in html and "demo/quick-4l" in html
    assert (out / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_rerun_reuses_and_is_deterministic(demo_dir, tmp_path):
    out, _ = demo_dir
    before = losses(out / "layerdb.duckdb")
    again = run_demo(out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "reused" in again.stdout and "skipping" in again.stdout
    assert losses(out / "layerdb.duckdb") == before
