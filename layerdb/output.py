"""Printing rows: a rich table, CSV, JSON, Markdown or Parquet; to the terminal or a file."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from .errors import LayerdbError, require_folder

FORMATS = ("table", "csv", "json", "markdown", "parquet")


def emit(df: pd.DataFrame, fmt: str = "table", output: str | None = None, title: str | None = None,
         console=None) -> None:
    """Write ``df`` in ``fmt`` to ``output`` (a path) or to standard output."""
    if fmt not in FORMATS:
        raise LayerdbError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    if output:
        require_folder(output)
    if fmt == "parquet":
        if not output:
            raise LayerdbError("--format parquet needs -o FILE")
        df.to_parquet(output, index=False)
        return
    if fmt == "table":
        _print_table(df, output, title, console)
        return
    text = {"csv": to_csv, "json": to_json, "markdown": to_markdown}[fmt](df)
    if output:
        Path(output).write_text(text)
    else:
        import click

        click.echo(text, nl=not text.endswith("\n"))


def to_csv(df: pd.DataFrame) -> str:
    return df.to_csv(index=False)


def to_json(df: pd.DataFrame) -> str:
    """One JSON array of row objects (NULL/NaN -> null, timestamps in ISO 8601)."""
    return json.dumps([{k: _jsonable(v) for k, v in row.items()} for row in df.to_dict("records")],
                      indent=1) + "\n"


def to_markdown(df: pd.DataFrame) -> str:
    header = "| " + " | ".join(str(c) for c in df.columns) + " |"
    rule = "| " + " | ".join("---" for _ in df.columns) + " |"
    body = ["| " + " | ".join(_cell(v).replace("|", "\\|") for v in row) + " |"
            for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def _print_table(df, output, title, console) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False, header_style="bold")
    for col in df.columns:
        numeric = pd.api.types.is_numeric_dtype(df[col]) and not pd.api.types.is_bool_dtype(df[col])
        table.add_column(str(col), justify="right" if numeric else "left")
    for row in df.itertuples(index=False):
        table.add_row(*(_cell(v) for v in row))
    console = console or Console()
    if output:
        with open(output, "w") as fh:
            Console(file=fh, width=_natural_width(console, table)).print(table)
    elif not console.is_terminal:  # piped: do not squeeze the table into 80 columns
        Console(file=console.file, width=_natural_width(console, table)).print(table)
    else:
        console.print(table)
    if df.empty and not output:
        (console or Console()).print("[dim](no rows)[/dim]")


def _natural_width(console, table) -> int:
    from rich.console import Console

    wide = Console(width=10_000)
    return max(80, min(wide.measure(table).maximum, 10_000))


def _cell(value) -> str:
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.6g}"
    if hasattr(value, "__len__") and not isinstance(value, str):
        return f"[{len(value)} values]"
    return str(value)


def _jsonable(value):
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return value
