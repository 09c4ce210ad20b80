"""Asking and showing: ``queries``, ``query``, ``chart``, ``report``."""
from __future__ import annotations

import textwrap

import click

from ..charts import CHARTS
from ..errors import LayerdbError
from .common import (console_err, open_store, output_options, param_option, print_rows,
                     shown_warnings)


@click.command("queries")
@output_options
def queries(fmt: str, output: str | None) -> None:
    """List the named queries with their descriptions and parameters (with defaults).

    Parameters without a default are required. Pass them to `layerdb query` as -p KEY=VALUE.

    Example: layerdb queries --format markdown
    """
    from ..named_queries import queries_table

    print_rows(queries_table(), fmt, output, title="named queries")


@click.command("query")
@click.argument("name")
@param_option
@output_options
@click.pass_context
def query(ctx, name: str, params: dict, fmt: str, output: str | None) -> None:
    """Run the named query NAME (see `layerdb queries`) and print its rows.

    Values are converted to the parameter's declared type (int, float, bool: true/false,
    text); an empty value (-p step=) means NULL, which for the filters means "all".

    compare-models gives deltas in one unit across models (-p unit=bpb|nats|relative): bits
    per byte by default when the models' tokenizers differ, else nats per token; nats across
    different tokenizers print a warning.

    Example: layerdb query lowers-loss -p model=EleutherAI/pythia-2.8b -p significant_only=true
    """
    from ..named_queries import get_query, run_query

    named = get_query(name)  # an unknown name fails before the store is opened
    named.bind(params)
    with open_store(ctx) as store, shown_warnings():
        df = run_query(store, name, **params)
    print_rows(df, fmt, output, title=name)


@click.command("chart")
@click.argument("kind", type=click.Choice(list(CHARTS)))
@param_option
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="The file to write: .html (self-contained), .png, .svg or .json (Vega-Lite).")
@click.pass_context
def chart(ctx, kind: str, params: dict, output: str) -> None:
    """Draw a chart of KIND and write it to a file; the format follows the extension.

    {kinds}

    model and eval_set are needed when the store holds several models; models (compare) is a
    comma list. compare's unit defaults to bits per byte when the models' tokenizers differ
    (the compare-models query decides), else nats per token.

    Example: layerdb chart heatmap -p model=EleutherAI/pythia-2.8b -o heatmap.html
    """
    from ..charts import write_chart

    with open_store(ctx) as store, shown_warnings():
        path = write_chart(store, kind, output, **params)
    console_err.print(f"wrote {kind} chart to {path}")


def _chart_kinds() -> str:
    """The kinds, their summaries and parameters, as `chart --help` lists them."""
    width = max(len(kind) for kind in CHARTS) + 2
    lines = ["\b"]
    for kind, chart_kind in CHARTS.items():
        names = [_shown(name, declared) for name, declared in chart_kind.parameters.items()]
        text = f"{chart_kind.summary} (-p {', '.join(names)})"
        wrapped = textwrap.wrap(text, 88 - width)
        lines.append(f"{kind:<{width}}{wrapped[0]}")
        lines += [" " * width + line for line in wrapped[1:]]
    return "\n    ".join(lines)


def _shown(name: str, declared: str) -> str:
    """``unit=bpb|nats|relative`` for a parameter with choices, else its name."""
    from ..named_queries import split_type

    choices = split_type(declared)[1]
    return f"{name}={'|'.join(choices)}" if choices else name


chart.help = chart.help.replace("{kinds}", _chart_kinds())


@click.command("report")
@click.option("--model", "-m", "models", multiple=True, metavar="MODEL",
              help="A model to include; repeat for more (default: every model with results).")
@param_option
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="The HTML file to write.")
@click.pass_context
def report(ctx, models: tuple[str, ...], params: dict, output: str) -> None:
    """Write one self-contained HTML report (opens offline) comparing the models.

    Per model: summary (layers, checkpoints, eval set, provenance), duplicate-checkpoint and
    coverage warnings, the heatmap, the layer-loss chart, the most important layers and the
    strongest significant lowers-loss cases; across models the compare chart, whose unit is
    -p unit=bpb|nats|relative (default: bpb when the models' tokenizers differ, else nats).

    Example: layerdb report --model EleutherAI/pythia-160m --model EleutherAI/pythia-410m -o report.html
    """
    from ..report import write_report

    if not output.lower().endswith((".html", ".htm")):
        raise LayerdbError(f"a report is an HTML file: give -o a path ending in .html, not {output}")
    with open_store(ctx) as store, shown_warnings():
        path = write_report(store, output, list(models) or None, **params)
    console_err.print(f"wrote report to {path}")


def register(main) -> None:
    for command in (queries, query, chart, report):
        main.add_command(command)
