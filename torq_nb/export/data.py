"""One normalising step for every exporter: whatever the caller holds becomes ``ResearchResults``, the one
results type (``torq_nb.results``), and its table is checked before anything is written."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import polars as pl

from torq_nb.results import SCHEMA, ResearchResults

#: What every export function accepts: a run, a table of the documented schema (or some of its
#: columns), a list of row dicts, or the seed's results dict (``ResearchResults.to_dict()``).
ExportInput: TypeAlias = ResearchResults | pl.DataFrame | Sequence[Mapping[str, Any]] | Mapping[str, Any]
#: The type exporters take, by the name they had when it was a type of its own.
RunData = ResearchResults


def normalize(results: ExportInput) -> ResearchResults:
    """Turn any accepted input into ``ResearchResults`` whose table every exporter can write (``checked``);
    a clear TypeError/ValueError for anything else."""
    if isinstance(results, ResearchResults):
        run = results
    elif isinstance(results, pl.DataFrame):
        run = ResearchResults(topic="", df=results, summary="", depth="")
    elif isinstance(results, Mapping):
        run = ResearchResults.from_dict(results)
    elif isinstance(results, Sequence) and not isinstance(results, (str, bytes)):
        run = ResearchResults.from_dict({"results": results, "depth": ""})
    else:
        raise TypeError("export needs ResearchResults, a Polars DataFrame, a list of row dicts or a results dict; "
                        f"got {type(results).__name__}")
    df = checked(run.df)
    return run if df is run.df else dataclasses.replace(run, df=df)


#: What each kind of documented column is called in an error, and the Polars type to cast it to.
_KINDS = {"integer": ("integers", "Int32"), "number": ("numbers", "Float64"), "text": ("text", "String"),
          "date": ("dates", "Date"), "datetime": ("date-times", 'Datetime("us", "UTC")'), "bool": ("True/False", "Boolean")}


def _kind(dtype: pl.DataType) -> str:
    if dtype.is_integer():
        return "integer"
    if dtype.is_float():
        return "number"
    if isinstance(dtype, pl.Datetime):
        return "datetime"
    return {pl.Date(): "date", pl.Boolean(): "bool"}.get(dtype, "text")


def _fits(wanted: str, have: pl.DataType) -> bool:
    """Whether a column of type ``have`` can stand as it is where ``wanted`` is documented."""
    if have == pl.Null():
        return True
    if wanted in ("integer", "number"):
        return have.is_numeric()
    if wanted in ("date", "datetime"):
        return have in (pl.Date(), pl.Datetime()) or isinstance(have, pl.Datetime)
    if wanted == "bool":
        return have == pl.Boolean()
    return have in (pl.String(), pl.Categorical()) or isinstance(have, (pl.Categorical, pl.Enum))


def _converted(df: pl.DataFrame, name: str, wanted: str) -> pl.Series | None:
    """The column converted losslessly to its documented kind (text from numbers, numbers and dates from
    text), or None where it cannot be."""
    column: pl.Series = df.get_column(name)
    have = df.schema[name]
    result: pl.Series | None = None
    try:
        if wanted == "text" and (have.is_numeric() or have in (pl.Boolean(), pl.Date()) or isinstance(have, pl.Datetime)):
            result = column.cast(pl.String)
        elif have == pl.String() and wanted in ("integer", "number"):
            result = column.str.strip_chars().cast(pl.Int64 if wanted == "integer" else pl.Float64, strict=True)
        elif have == pl.String() and wanted in ("date", "datetime"):
            result = column.str.to_date() if wanted == "date" else column.str.to_datetime(time_unit="us", time_zone="UTC")
    except (pl.exceptions.PolarsError, ValueError):
        return None
    return result


def _example(column: pl.Series, wanted: str) -> str:
    """A value of ``column`` that is not of the ``wanted`` kind, for the error message."""
    if column.dtype == pl.String() and wanted in ("integer", "number", "date", "datetime"):
        lenient = {"integer": column.str.strip_chars().cast(pl.Int64, strict=False),
                   "number": column.str.strip_chars().cast(pl.Float64, strict=False),
                   "date": column.str.to_date(strict=False),
                   "datetime": column.str.to_datetime(time_unit="us", time_zone="UTC", strict=False)}[wanted]
        column = column.filter(lenient.is_null())
    value = column.drop_nulls().head(1).to_list()
    return f" (for example {str(value[0])[:40]!r})" if value else ""


def checked(df: pl.DataFrame) -> pl.DataFrame:
    """The table, its documented columns (``SCHEMA``) of a type every exporter can write: each either is of
    its kind or is converted losslessly; a ValueError naming the column and the fix for anything else, and
    for binary columns, which no export writes. Called before anything is written."""
    binary = [name for name, dtype in df.schema.items() if dtype == pl.Binary()]
    if binary:
        name = binary[0]
        raise ValueError(f"column {name!r} holds binary data, which the exports do not write (CSV and JSON cannot "
                         "hold it and a report shows text): decode it first, e.g. "
                         f"df.with_columns(pl.col({name!r}).cast(pl.String)) for UTF-8 text or "
                         f"pl.col({name!r}).bin.encode('base64'), or drop it with df.drop({name!r})")
    for name, dtype in SCHEMA.items():
        if name not in df.columns or _fits(wanted := _kind(dtype), have := df.schema[name]):
            continue
        column = _converted(df, name, wanted)
        if column is None:
            kind, cast = _KINDS[wanted]
            raise ValueError(f"column {name!r} must be {kind}, got {have}{_example(df.get_column(name), wanted)}; convert it "
                             f"(df.with_columns(pl.col({name!r}).cast(pl.{cast}))), rename it or drop it "
                             "(the documented columns are torq_nb.SCHEMA)")
        df = df.with_columns(column.alias(name))
    return df
