"""Options and helpers shared by the commands."""
from __future__ import annotations

import contextlib
import functools
import warnings

import click
from rich.console import Console
from rich.markup import escape

from ..errors import LayerdbError, LayerdbWarning
from ..output import FORMATS, emit

console = Console(soft_wrap=True)
console_err = Console(stderr=True, soft_wrap=True)


def db_path(ctx: click.Context) -> str:
    return ctx.find_root().obj["db"]


def open_store(ctx: click.Context, read_only: bool = True):
    """Open the store named by --db (readers never create one)."""
    from ..store import Store

    return Store.open(db_path(ctx), read_only=read_only)


def output_options(func):
    """--format and -o/--output, for every command that prints rows."""

    @click.option("--format", "-f", "fmt", type=click.Choice(FORMATS), default="table",
                  show_default=True, help="How to print the rows.")
    @click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
                  help="Write to this file instead of the terminal (needed for parquet).")
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


def param_option(func):
    """-p KEY=VALUE, repeatable."""
    return click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE",
                        callback=_parse_params, help="A query parameter; repeat for more.")(func)


def _parse_params(ctx, param, values) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", ctx=ctx, param=param)
        params[key.strip()] = value
    return params


@contextlib.contextmanager
def shown_warnings():
    """Print each LayerdbWarning the library issues inside the block as one line on stderr;
    other warnings go on as usual."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LayerdbWarning)
        try:
            yield
        finally:
            for w in caught:
                if issubclass(w.category, LayerdbWarning):
                    console_err.print(f"[bold yellow]warning:[/] {escape(str(w.message))}",
                                      highlight=False)
                else:
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def print_rows(df, fmt: str, output: str | None, title: str | None = None) -> None:
    emit(df, fmt, output, title=title, console=console)
    if output:
        console_err.print(f"wrote {len(df)} rows to {output}")


__all__ = ["console", "console_err", "db_path", "open_store", "output_options", "param_option",
           "print_rows", "shown_warnings", "LayerdbError"]
