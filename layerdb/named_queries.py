"""Named queries: one ``.sql`` file per query in ``queries/`` (the ``layerdb.queries`` package).

Adding a query is adding a file. Its header is the leading block of ``--`` comment lines:

    -- name: lowers-loss
    -- description: One line saying what the rows are.
    -- :model text = null               only this model (default: every model)
    -- :significant_only bool = false   keep only cases whose interval excludes zero
    -- :threshold float = 0.1
    -- :bins int                        no default: the caller must give it

A parameter line is ``-- :NAME TYPE [= DEFAULT] [help text]``. TYPE is ``text``, ``int``,
``float`` or ``bool``, or ``text in (a, b, c)`` for text that takes only those values; DEFAULT
is ``null`` (SQL NULL, usually "no filter") or a literal of that type; without ``= DEFAULT`` the
parameter is required. Other comment lines in the header are free text. The SQL refers to each
parameter as ``:NAME``; values are always bound, never pasted into the SQL text.

Values from the command line are strings and are converted by the declared type: ``int`` and
``float`` as Python reads numbers, ``bool`` from true/false/yes/no/1/0, and an empty value
(``-p step=``) or ``null`` means NULL. Python callers may pass typed values directly.

A query whose rows carry ``unit`` and ``tokenizers`` columns (compare-models) is checked by
``layerdb.units.unit_warnings``: ``run_query`` issues a ``LayerdbWarning`` when it shows nats
per token across different tokenizers.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import pandas as pd

from .errors import LayerdbError, LayerdbWarning

TYPES = ("text", "int", "float", "bool")
_TRUE = {"true", "t", "yes", "y", "1", "on"}
_FALSE = {"false", "f", "no", "n", "0", "off"}
_PARAM_LINE = re.compile(
    r"^:(?P<name>[A-Za-z_]\w*)\s+(?P<type>\w+(?:\s+in\s*\([^)]*\))?)"
    r"(?:\s*=\s*(?P<default>'[^']*'|\S+))?\s*(?P<help>.*)$"
)
_CHOICES = re.compile(r"^(?P<type>\w+)(?:\s+in\s*\((?P<choices>[^)]*)\))?$")
_NO_DEFAULT = object()


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str  # one of TYPES
    default: Any  # the converted default; None = NULL; _NO_DEFAULT = required
    help: str = ""
    choices: tuple[str, ...] = ()  # for text: the only values it takes (empty: any)

    @property
    def required(self) -> bool:
        return self.default is _NO_DEFAULT

    def describe(self) -> str:
        """``name=default`` (``name (required)``) as the CLI lists it."""
        if self.required:
            return f"{self.name} (required {self.type})"
        if self.default is None:
            shown = "null"
        elif isinstance(self.default, bool):
            shown = str(self.default).lower()
        else:
            shown = str(self.default)
        return f"{self.name}={shown}" + (f" ({'|'.join(self.choices)})" if self.choices else "")


@dataclass(frozen=True)
class NamedQuery:
    name: str
    description: str
    parameters: tuple[Parameter, ...]
    sql: str
    filename: str

    def bind(self, given: dict[str, Any]) -> dict[str, Any]:
        """Every declared parameter's value: given ones converted, the rest from defaults."""
        refuse_unknown(given, [p.name for p in self.parameters], f"query {self.name}")
        values = {}
        for p in self.parameters:
            if p.name in given:
                values[p.name] = convert(given[p.name], p.type,
                                         f"query {self.name}: parameter {p.name}", p.choices)
            elif p.required:
                raise LayerdbError(f"query {self.name}: missing parameter {p.name} (-p {p.name}=...)")
            else:
                values[p.name] = p.default
        return values


def convert_parameters(given: dict[str, Any], declared: dict[str, str],
                       owner: str) -> dict[str, Any]:
    """The ``given`` parameters of ``owner`` (``chart heatmap``, ``report``), each converted by
    its type in ``declared`` (name -> type, as query headers write them); an unknown name is a
    LayerdbError that lists the declared ones. Parameters not given are left out."""
    refuse_unknown(given, list(declared), owner)
    return {name: convert(value, declared[name], f"{owner}: parameter {name}")
            for name, value in given.items()}


def refuse_unknown(given: dict[str, Any], declared: list[str], owner: str) -> None:
    """A LayerdbError naming the ``given`` parameters ``owner`` does not declare, and those it does."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise LayerdbError(f"{owner}: unknown parameter(s) {', '.join(unknown)} "
                           f"(it takes: {', '.join(declared) or 'none'})")


def convert(value: Any, type_: str, what: str, choices: tuple[str, ...] = ()) -> Any:
    """A parameter value (a CLI string, or a Python value) as the declared type; None = NULL.
    ``type_`` may carry its choices (``text in (a, b)``); text outside them is refused."""
    if not choices:
        type_, choices = split_type(type_)
    value = _convert(value, type_, what)
    if choices and value is not None:
        if value.strip().lower() not in choices:
            raise LayerdbError(f"{what} must be one of {', '.join(choices)}, not {value!r}")
        return value.strip().lower()
    return value


def _convert(value: Any, type_: str, what: str) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text == "" or text.lower() == "null":
            return None
        if type_ == "text":
            return value
        if type_ == "bool":
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise LayerdbError(f"{what} must be true or false, not {value!r}")
        try:
            return int(text) if type_ == "int" else float(text)
        except ValueError:
            raise LayerdbError(f"{what} must be {_A[type_]}, not {value!r}") from None
    if type_ == "bool" and isinstance(value, bool):
        return value
    if type_ == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if type_ == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if type_ == "text":
        return str(value)
    raise LayerdbError(f"{what} must be {_A[type_]}, not {value!r}")


_A = {"int": "an integer", "float": "a number", "bool": "true or false", "text": "text"}


def split_type(declared: str) -> tuple[str, tuple[str, ...]]:
    """``"text in (a, b)"`` -> ``("text", ("a", "b"))``; ``"int"`` -> ``("int", ())``.
    Raise ValueError on anything else (the callers name the file or chart)."""
    m = _CHOICES.match(declared.strip())
    if not m or m["type"] not in TYPES or (m["choices"] is not None and m["type"] != "text"):
        raise ValueError(declared)
    if m["choices"] is None:
        return m["type"], ()
    choices = tuple(c.strip().lower() for c in m["choices"].split(",") if c.strip())
    if not choices:
        raise ValueError(declared)
    return "text", choices


def parse_query(text: str, filename: str) -> NamedQuery:
    """Read the header of one query file; raise LayerdbError naming the file on a bad header."""
    header: dict[str, str] = {}
    parameters: list[Parameter] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("--"):
            break
        body = stripped[2:].strip()
        if body.startswith(":"):
            parameters.append(_parse_parameter(body, filename))
            continue
        key, sep, value = body.partition(":")
        if sep and key.strip() in ("name", "description"):
            header[key.strip()] = value.strip()
    for key in ("name", "description"):
        if not header.get(key):
            raise LayerdbError(f"query file {filename}: the header lacks `-- {key}: ...`")
    names = [p.name for p in parameters]
    if len(set(names)) != len(names):
        raise LayerdbError(f"query file {filename}: a parameter is declared twice")
    return NamedQuery(header["name"], header["description"], tuple(parameters), text, filename)


def _parse_parameter(body: str, filename: str) -> Parameter:
    m = _PARAM_LINE.match(body)
    try:
        type_, choices = split_type(m["type"] if m else "")
    except ValueError:
        raise LayerdbError(
            f"query file {filename}: bad parameter line {body!r} (expected `-- :NAME TYPE "
            f"[= DEFAULT] help`, TYPE one of {', '.join(TYPES)} or `text in (a, b)`)"
        ) from None
    default: Any = _NO_DEFAULT
    if m["default"] is not None:
        literal = m["default"]
        if literal.startswith("'"):
            literal = literal[1:-1]
        default = convert(literal, type_, f"query file {filename}: default of {m['name']}",
                          choices)
    return Parameter(m["name"], type_, default, m["help"].strip(), choices)


@lru_cache(maxsize=1)
def _load_all() -> dict[str, NamedQuery]:
    found: dict[str, NamedQuery] = {}
    for filename, text in _walk(resources.files("layerdb.queries"), ""):
        query = parse_query(text, filename)
        if query.name in found:
            raise LayerdbError(
                f"query {query.name} is defined twice ({found[query.name].filename}, {filename})"
            )
        found[query.name] = query
    return dict(sorted(found.items()))


def _walk(folder, prefix: str):
    """(relative name, text) of every .sql file under a package folder, sub-folders included."""
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_dir() and not entry.name.startswith(("_", ".")):
            yield from _walk(entry, f"{prefix}{entry.name}/")
        elif entry.is_file() and entry.name.endswith(".sql"):
            yield f"{prefix}{entry.name}", entry.read_text(encoding="utf-8")


def list_queries() -> list[NamedQuery]:
    """Every named query, sorted by name."""
    return list(_load_all().values())


def get_query(name: str) -> NamedQuery:
    queries = _load_all()
    if name not in queries:
        raise LayerdbError(f"unknown query {name!r}; known queries: {', '.join(queries)}")
    return queries[name]


def run_query(store, name: str, **params: Any) -> pd.DataFrame:
    """Run the named query on an open store with ``params`` (missing ones take defaults).

    Example: ``run_query(store, "lowers-loss", model="EleutherAI/pythia-160m", significant_only=True)``
    """
    from .units import unit_warnings

    query = get_query(name)
    df = store.sql(query.sql, **query.bind(params))
    for line in unit_warnings(df):
        warnings.warn(line, LayerdbWarning, stacklevel=2)
    return df


def queries_table() -> pd.DataFrame:
    """The listing ``layerdb queries`` prints: name, description, parameters with defaults."""
    return pd.DataFrame(
        [(q.name, q.description, ", ".join(p.describe() for p in q.parameters))
         for q in list_queries()],
        columns=["name", "description", "parameters"],
    )
