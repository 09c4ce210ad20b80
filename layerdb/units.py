"""The unit of a loss change compared across models: bits per byte, nats per token, or relative.

A loss in nats per token measures a different amount of text for each tokenizer, so deltas of
models whose tokenizers differ compare only in bits per byte, bpb = nats x n_tokens / (n_bytes x
ln 2) with the row's eval set (the ablations view's ``delta_bpb``), or relative to the baseline
(``rel_delta`` = delta / baseline loss, the same number in either unit).

The default unit is decided once, by the ``compare-models`` query (queries/compare-models.sql):
``bpb`` when the compared models' tokenizers differ (their eval sets record different tokenizer
fingerprints), else ``nats``. ``compare_unit`` asks that query for the compare chart and the
report; ``unit_warnings`` is the one-line caution for nats across different tokenizers.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

UNITS = ("bpb", "nats", "relative")
UNIT_TYPE = f"text in ({', '.join(UNITS)})"  # as a query header or a chart declares it
DELTA_COLUMNS = {"bpb": "delta_bpb", "nats": "delta", "relative": "rel_delta"}  # ablations view
DELTA_TITLES = {"bpb": "Δ loss (bits/byte)", "nats": "Δ loss (nats/token)",
                "relative": "Δ loss / baseline loss"}


@dataclass(frozen=True)
class UnitChoice:
    unit: str  # one of UNITS
    tokenizers: int  # distinct tokenizers among the compared rows

    @property
    def reason(self) -> str:
        """Why this unit, in a few words (chart subtitles, the report)."""
        if self.unit == "bpb":
            return ("bits per byte: the models' tokenizers differ" if self.tokenizers > 1
                    else "bits per byte")
        if self.unit == "relative":
            return "relative: Δ loss / baseline loss"
        return ("nats per token, across different tokenizers (compare -p unit=bpb)"
                if self.tokenizers > 1 else "nats per token: the models share a tokenizer")

    @property
    def warning(self) -> str | None:
        return nats_warning(self.unit, self.tokenizers)


def compare_unit(store, models: list[str] | None = None, component: str | None = None,
                 unit: str | None = None) -> UnitChoice:
    """The unit for comparing ``models`` (default: all), as the compare-models query decides it
    over their latest rows; ``unit`` given wins (checked against UNITS)."""
    from .named_queries import get_query

    query = get_query("compare-models")
    params = query.bind({"model": ",".join(models) if models else None, "component": component,
                         "unit": unit})
    df = store.sql(query.sql, **params)
    if df.empty:
        return UnitChoice(params["unit"] or "nats", 0)
    return UnitChoice(str(df["unit"].iloc[0]), int(df["tokenizers"].iloc[0]))


def unit_warnings(df: pd.DataFrame) -> list[str]:
    """One line per caution about rows that carry ``unit`` and ``tokenizers`` columns: nats per
    token compared across different tokenizers."""
    if not {"unit", "tokenizers"} <= set(df.columns) or df.empty:
        return []
    mixed = df[(df["unit"] == "nats") & (df["tokenizers"] > 1)]
    return [] if mixed.empty else [nats_warning("nats", int(mixed["tokenizers"].max()))]


def nats_warning(unit: str, tokenizers: int) -> str | None:
    """The caution for nats per token across different tokenizers; None when there is none."""
    if unit != "nats" or tokenizers <= 1:
        return None
    return (f"nats per token compared across {tokenizers} different tokenizers: a token is a "
            "different amount of text for each; -p unit=bpb compares bits per byte")
