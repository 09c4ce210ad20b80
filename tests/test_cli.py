"""The CLI: help everywhere, formats, read-only SQL, import/export, one-line errors."""
import io
import json
import subprocess
import sys

import click
import pandas as pd
import pytest
from click.testing import CliRunner

from layerdb.cli import main
from tests.test_store import rows
from tests.test_transfer import populated


def run(*args, env=None):
    result = CliRunner().invoke(main, list(args), env=env)
    return result


def all_commands(group=main, prefix=()):
    for name, command in group.commands.items():
        yield prefix + (name,)
        if isinstance(command, click.Group):
            yield from all_commands(command, prefix + (name,))


@pytest.mark.parametrize("path", list(all_commands()), ids=" ".join)
def test_every_command_has_help_with_an_example(path):
    result = run(*path, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, f"`layerdb {' '.join(path)} --help` lacks an example"


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "s.duckdb")
    populated(path).close()
    return path


def test_sql_formats(db, tmp_path):
    q = "SELECT component, layer, loss FROM results ORDER BY layer, component LIMIT 3"
    table = run("--db", db, "sql", q)
    assert table.exit_code == 0 and "component" in table.output and "none" in table.output
    csv = run("--db", db, "sql", q, "--format", "csv")
    assert csv.output.splitlines()[0] == "component,layer,loss"
    assert csv.output.splitlines()[1] == "none,-1,3.0"
    js = json.loads(run("--db", db, "sql", q, "-f", "json").output)
    assert js[0] == {"component": "none", "layer": -1, "loss": 3.0} and len(js) == 3
    md = run("--db", db, "sql", q, "-f", "markdown").output.splitlines()
    assert md[0] == "| component | layer | loss |" and md[1].startswith("| ---")
    bad = run("--db", db, "sql", q, "-f", "parquet")
    assert bad.exit_code == 1 and "needs -o" in bad.output
    out = tmp_path / "o.parquet"
    assert run("--db", db, "sql", q, "-f", "parquet", "-o", str(out)).exit_code == 0
    assert len(pd.read_parquet(out)) == 3


def test_sql_parameters_are_bound(db):
    result = run("--db", db, "sql", "SELECT count(*) AS n FROM results WHERE layer = :l",
                 "-p", "l=1", "-f", "csv")
    assert result.output.splitlines()[1] == "3"


@pytest.mark.parametrize("statement", ["DELETE FROM results", "DROP VIEW ablations",
                                       "INSERT INTO models (model, n_layers) VALUES ('x', 1)",
                                       "ATTACH 'x.duckdb' AS x", "COPY results TO 'x.csv'"])
def test_sql_refuses_writes_and_leaves_store_unchanged(db, statement):
    result = run("--db", db, "sql", statement)
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "read-only" in result.output
    after = run("--db", db, "sql", "SELECT count(*) AS n FROM results", "-f", "csv")
    assert after.output.splitlines()[1] == "7"


def test_db_from_environment(db):
    result = run("sql", "SELECT count(*) AS n FROM models", "-f", "csv", env={"LAYERDB_DB": db})
    assert result.output.splitlines()[1] == "1"


def test_models_and_status(db):
    models = run("--db", db, "models", "-f", "csv").output.splitlines()
    assert models[0].startswith("model,family,n_layers")
    assert models[1].split(",")[:3] == ["m", "gpt_neox", "4"]
    status = pd.read_json(io.StringIO(run("--db", db, "status", "m", "-f", "json").output))
    assert status[["revision", "baseline", "complete", "missing"]].values.tolist() == [
        ["step8", True, "", "block layers 2,3; attn layers 2,3; mlp layers 2,3; metrics all layers"]]  # 2 of 4 layers
    unknown = run("--db", db, "status", "nope")
    assert unknown.exit_code == 1 and "unknown model 'nope'" in unknown.output


def test_export_import_cli(db, tmp_path):
    out = tmp_path / "export"
    assert run("--db", db, "export", str(out)).exit_code == 0
    target = str(tmp_path / "t.duckdb")
    first = run("--db", target, "import", str(out))
    assert first.exit_code == 0, first.output
    run("--db", target, "import", str(out))
    n = run("--db", target, "sql", "SELECT count(*) FROM results", "-f", "csv").output.splitlines()
    assert n[1] == "7"


def test_import_bad_file_names_the_row(tmp_path):
    df = pd.DataFrame(rows())
    df.loc[3, "component"] = "ffn"
    df.to_csv(tmp_path / "bad.csv", index=False)
    target = str(tmp_path / "t.duckdb")
    result = run("--db", target, "import", str(tmp_path / "bad.csv"))
    assert result.exit_code == 1 and "row 4" in result.output and "unknown component" in result.output


def test_import_with_a_repeated_key_names_it_and_leaves_the_store_unchanged(db, tmp_path):
    df = pd.DataFrame(rows())
    pd.concat([df, df.iloc[[2]]]).to_csv(tmp_path / "twice.csv", index=False)
    before = run("--db", db, "sql", "SELECT * FROM results ORDER BY ALL", "-f", "csv").output
    result = run("--db", db, "import", str(tmp_path / "twice.csv"))
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "rows 3, 8 repeat the key" in result.output and "component='attn', layer=0" in result.output
    assert "Traceback" not in result.output and "transaction" not in result.output.lower()
    assert run("--db", db, "sql", "SELECT * FROM results ORDER BY ALL", "-f", "csv").output == before


@pytest.mark.parametrize("args, message", [
    (["--db", "/nonexistent/dir/x.duckdb", "db", "upgrade"], "does not exist"),
    (["--db", "missing.duckdb", "sql", "SELECT 1"], "no store at"),
    (["import", "no-such-file.parquet"], "no such file"),
    (["sql", "SELECT 1", "--format", "xml"], "Invalid value"),
    (["sql", "SELECT 1", "-p", "novalue"], "KEY=VALUE"),
])
def test_user_mistakes_are_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = subprocess.run([sys.executable, "-m", "layerdb", *args], capture_output=True, text=True)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_db_commands(tmp_path):
    db = str(tmp_path / "new.duckdb")
    assert "created at schema 0002" in run("--db", db, "db", "upgrade").output
    assert "already at 0002" in run("--db", db, "db", "upgrade").output
    assert run("--db", db, "db", "current").output.strip() == "0002 (head)"
    assert "0001 -> 0002" in run("db", "history").output


def test_import_does_not_pull_in_torch():
    code = ("import sys, layerdb, layerdb.cli; "
            "bad = [m for m in ('torch', 'transformers', 'ray') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
