"""README.md stays true: its reference matches --help; its two commands are the ones CI runs."""
from pathlib import Path

from layerdb.cli.reference import END, START, render

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_reference_matches_help():
    block = README[README.index(START):README.index(END) + len(END)]
    assert block == render(), "README reference is stale: python -m layerdb.cli.reference --write README.md"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    command = ci.split("# --- README test command (keep in sync with README.md) ---\n")[1].splitlines()[0]
    assert command in README


def test_readme_picture_exists():
    assert "docs/heatmap.png" in README
    assert (ROOT / "docs" / "heatmap.png").read_bytes()[:4] == b"\x89PNG"
