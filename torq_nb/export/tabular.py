"""Tabular exports through Polars: CSV (formula-safe), JSON, NDJSON and Parquet."""

from __future__ import annotations

import json
import os
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from torq_nb.export.atomic import atomic_path
from torq_nb.export.data import ExportInput, RunData, normalize

#: A text cell starting with one of these is a formula to Excel/LibreOffice (OWASP CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n")
_FORMULA_PATTERN = r"^[=+\-@\t\r\n]"


def neutralize_formulas(df: pl.DataFrame) -> pl.DataFrame:
    """Prefix with ``'`` every text cell a spreadsheet would run as a formula; other cells are unchanged."""
    text = [name for name, dtype in df.schema.items() if dtype == pl.String()]
    return df.with_columns(
        pl.when(pl.col(name).str.contains(_FORMULA_PATTERN)).then(pl.lit("'") + pl.col(name)).otherwise(pl.col(name)).alias(name)
        for name in text
    )


def _flat(df: pl.DataFrame, fmt: str) -> pl.DataFrame:
    """Refuse nested columns, which CSV cannot hold, with a message that says what to do."""
    nested = [name for name, dtype in df.schema.items() if dtype.is_nested() or dtype == pl.Object()]
    if nested:
        raise ValueError(f"{fmt} cannot store the nested column(s) {', '.join(nested)}; export JSON or Parquet instead, or drop them")
    return df


def _comment_lines(run: RunData) -> str:
    """``# key: value`` lines with the run's metadata, one line each (line breaks become spaces)."""
    info = run.info()
    counts = info.pop("counts")
    info.pop("progress")
    extra = info.pop("metadata")
    items: list[tuple[str, Any]] = [*info.items(), *counts.items(), *extra.items()]
    lines = []
    for key, value in items:
        if value is None or value == "":
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        lines.append(f"# {key}: {' '.join(str(text).splitlines())}\n")
    return "".join(lines)


def write_csv(results: ExportInput | RunData, path: str | os.PathLike[str], *, bom: bool = False,
              neutralize: bool = True, metadata_comments: bool = False) -> Path:
    """Write the rows as UTF-8 CSV.

    ``bom=True`` adds a byte-order mark so Excel detects UTF-8. Text cells that a spreadsheet would
    run as formulas get a leading ``'`` unless ``neutralize=False``. ``metadata_comments=True``
    writes the run's metadata first as ``# key: value`` lines (read back with
    ``pl.read_csv(path, comment_prefix="#")``).
    """
    run = normalize(results)
    df = _flat(run.df, "CSV")
    if neutralize:
        df = neutralize_formulas(df)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        if bom:
            fh.write("\ufeff".encode())
        if metadata_comments:
            fh.write(_comment_lines(run).encode("utf-8"))
        df.write_csv(fh)
    return Path(path)


def _default(value: Any) -> Any:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return str(value)


def json_text(results: ExportInput | RunData) -> str:
    """The run's metadata plus ``results``: the rows (dates as ISO-8601 strings)."""
    run = normalize(results)
    head = json.dumps(run.info(), ensure_ascii=False, default=_default)
    rows = run.df.write_json()
    return head[:-1] + ', "results": ' + rows + "}\n"


def write_json(results: ExportInput | RunData, path: str | os.PathLike[str]) -> Path:
    """Write one JSON object: the run's metadata and its rows under ``results``."""
    text = json_text(results)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_ndjson(results: ExportInput | RunData, path: str | os.PathLike[str]) -> Path:
    """Write one JSON object per row, one per line."""
    df = normalize(results).df
    with atomic_path(path) as tmp:
        df.write_ndjson(tmp)
    return Path(path)


def write_parquet(results: ExportInput | RunData, path: str | os.PathLike[str]) -> Path:
    """Write the rows as Parquet; the run's metadata goes in the file's key-value metadata (``torq_nb``)."""
    run = normalize(results)
    info = json.dumps(run.info(), ensure_ascii=False, default=_default)
    with atomic_path(path) as tmp:
        run.df.write_parquet(tmp, metadata={"torq_nb": info})
    return Path(path)
