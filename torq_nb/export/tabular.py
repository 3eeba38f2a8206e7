"""Tabular exports through Polars: CSV (formula-safe), JSON, NDJSON and Parquet.

Each format has a ``*_into(fh, ...)`` that writes to an open binary file (used for ZIP members)
and a ``write_*(results, path, ...)`` that writes a file atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

import polars as pl

from torq_nb.export.atomic import atomic_path
from torq_nb.export.data import ExportInput, normalize
from torq_nb.results import ResearchResults, json_default

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


def _comment_lines(run: ResearchResults) -> str:
    """``# key: value`` lines with the run's metadata, one line each (line breaks become spaces)."""
    info = run.to_dict(rows=False)
    counts = info.pop("counts")
    info.pop("progress")
    extra = info.pop("metadata")
    lines = []
    for key, value in [*info.items(), *counts.items(), *extra.items()]:
        if value is None or value == "":
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=json_default)
        lines.append(f"# {key}: {' '.join(text.splitlines())}\n")
    return "".join(lines)


def csv_into(fh: IO[bytes], results: ExportInput, *, bom: bool = False, neutralize: bool = True,
             metadata_comments: bool = False) -> None:
    """Write the CSV document to ``fh``; see ``write_csv``."""
    run = normalize(results)
    nested = [name for name, dtype in run.df.schema.items() if dtype.is_nested() or dtype == pl.Object()]
    if nested:
        raise ValueError(f"CSV cannot store the nested column(s) {', '.join(nested)}; export JSON or Parquet, or drop them")
    if bom:
        fh.write("\ufeff".encode())
    if metadata_comments:
        fh.write(_comment_lines(run).encode("utf-8"))
    (neutralize_formulas(run.df) if neutralize else run.df).write_csv(fh)


def json_into(fh: IO[bytes], results: ExportInput) -> None:
    """Write one JSON object: the run's metadata plus ``results``, the rows (dates as ISO-8601)."""
    fh.write(normalize(results).to_json().encode("utf-8"))


def ndjson_into(fh: IO[bytes], results: ExportInput) -> None:
    """Write one JSON object per row, one per line."""
    normalize(results).df.write_ndjson(fh)


def parquet_into(fh: IO[bytes], results: ExportInput) -> None:
    """Write the rows as Parquet; the run's metadata goes in the file's key-value metadata ``torq_nb``."""
    run = normalize(results)
    run.df.write_parquet(fh, metadata={"torq_nb": json.dumps(run.to_dict(rows=False), ensure_ascii=False, default=json_default)})


def write_file(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Run ``write`` on a fresh file that replaces ``path`` only once it is complete (``atomic_path``); return
    the path written, ``~`` expanded: the one path rule of every export writer."""
    target = Path(path).expanduser()
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        write(fh)
    return target


def write_csv(results: ExportInput, path: str | os.PathLike[str], *, bom: bool = False,
              neutralize: bool = True, metadata_comments: bool = False) -> Path:
    """Write the rows as UTF-8 CSV, atomically.

    ``bom=True`` adds a byte-order mark so Excel detects UTF-8. Text cells that a spreadsheet would
    run as formulas get a leading ``'`` unless ``neutralize=False``. ``metadata_comments=True``
    writes the run's metadata first as ``# key: value`` lines (read them back with
    ``pl.read_csv(path, comment_prefix="#")``).
    """
    return write_file(path, lambda fh: csv_into(fh, results, bom=bom, neutralize=neutralize,
                                                metadata_comments=metadata_comments))


def write_json(results: ExportInput, path: str | os.PathLike[str]) -> Path:
    """Write the run's metadata and rows as one JSON object, atomically."""
    return write_file(path, lambda fh: json_into(fh, results))


def write_ndjson(results: ExportInput, path: str | os.PathLike[str]) -> Path:
    """Write the rows as newline-delimited JSON, atomically."""
    return write_file(path, lambda fh: ndjson_into(fh, results))


def write_parquet(results: ExportInput, path: str | os.PathLike[str]) -> Path:
    """Write the rows as Parquet (run metadata in the file's ``torq_nb`` key), atomically."""
    return write_file(path, lambda fh: parquet_into(fh, results))
