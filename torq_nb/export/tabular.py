"""Tabular exports through Polars: CSV and Excel (formula-safe), JSON, NDJSON and Parquet.

Each format has a ``*_into(fh, ...)`` that writes to an open binary file (used for ZIP members)
and a ``write_*(results, path, ...)`` that writes a local file atomically or uploads to an fsspec URL
(``write_file``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

import polars as pl

from torq_nb.export.atomic import write_file
from torq_nb.export.data import ExportInput, _kind, normalize
from torq_nb.results import ResearchResults, json_default

#: A text cell starting with one of these is a formula to Excel/LibreOffice (OWASP CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n")
_FORMULA_PATTERN = r"^[=+\-@\t\r\n]"


def neutralize_formulas(df: pl.DataFrame) -> pl.DataFrame:
    """Prefix with ``'`` every text cell a spreadsheet would run as a formula; other cells are unchanged.
    Categorical and Enum columns are text to a spreadsheet too: they come back as String columns."""
    text = [name for name, dtype in df.schema.items() if dtype == pl.String() or isinstance(dtype, (pl.Categorical, pl.Enum))]
    return df.with_columns(_safe_text(name) for name in text)


def _safe_text(name: str) -> pl.Expr:
    cell = pl.col(name).cast(pl.String)
    return pl.when(cell.str.contains(_FORMULA_PATTERN)).then(pl.lit("'") + cell).otherwise(cell).alias(name)


def _metadata_items(run: ResearchResults) -> list[tuple[str, str]]:
    """The run's metadata as (key, text) pairs, empty values left out: the CSV's comments, the Excel's "run" sheet."""
    info = run.to_dict(rows=False)
    counts = info.pop("counts")
    progress = info.pop("progress") or {}
    extra = info.pop("metadata")
    fields = {**info, "state": progress.get("state"), **counts}
    shown = list(fields.values())
    fields.update((key, value) for key, value in extra.items() if key not in fields and value not in shown)  # each once

    def text(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3f}".rstrip("0").rstrip(".")  # 7.978, not 7.978382982000767
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=json_default)

    return [(key, text(value)) for key, value in fields.items() if value is not None and value != ""]


def _comment_lines(run: ResearchResults) -> str:
    """``# key: value`` lines with the run's metadata, one line each (line breaks become spaces)."""
    return "".join(f"# {key}: {' '.join(text.splitlines())}\n" for key, text in _metadata_items(run))


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


#: Excel's limits: characters in a cell, hyperlinks in a sheet, rows under the header.
EXCEL_CELL_CHARS = 32_767
EXCEL_LINKS = 65_530
EXCEL_ROWS = 1_048_575
#: Widest a column opens, in characters: snippets and page text are paragraphs, not column headings.
_MAX_WIDTH = 60
_WIDTHS = {"date": 11, "datetime": 19, "integer": 9, "number": 9, "bool": 7}
_LINK = r"(?i)^https?://"
_ASTRAL = r"[\x{10000}-\x{10FFFF}]"


def _split_long(df: pl.DataFrame) -> pl.DataFrame:
    """Each text column with a cell over Excel's 32,767 characters continues in columns ``NAME (2)``,
    ``NAME (3)``, ... right after it, so that joining them gives the whole text. Excel counts UTF-16 units, two
    for a character beyond U+FFFF such as an emoji: a column holding any of those is cut into pieces of half the
    length, which always fit."""
    text = [name for name, dtype in df.schema.items() if dtype == pl.String()]
    wide = {name: pl.col(name).str.count_matches(_ASTRAL) for name in text}
    stats = df.select(
        *((pl.col(name).str.len_chars() + wide[name]).max().fill_null(0).alias(f"units {name}") for name in text),
        *(pl.col(name).str.len_chars().max().fill_null(0).alias(f"chars {name}") for name in text),
        *((wide[name].sum() > 0).alias(f"wide {name}") for name in text),
    ).row(0, named=True) if text else {}
    columns: list[pl.Expr] = []
    for name in df.columns:
        piece = EXCEL_CELL_CHARS // 2 if stats.get(f"wide {name}") else EXCEL_CELL_CHARS
        parts = -(-int(stats.get(f"chars {name}", 0)) // piece) if stats.get(f"units {name}", 0) > EXCEL_CELL_CHARS else 1
        columns.append(pl.col(name).str.slice(0, piece) if parts > 1 else pl.col(name))
        columns += [pl.col(name).str.slice(part * piece, piece).replace("", None).alias(f"{name} ({part + 1})")
                    for part in range(1, parts)]
    return df.select(columns)


def _cells(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with only the cell types a workbook holds, so that no value is dropped on the way: nested values
    as their JSON text, categories as text, times with a zone as UTC; text split at Excel's cell limit. Object
    columns are refused: a spreadsheet has no cell for them."""
    objects = [name for name, dtype in df.schema.items() if dtype == pl.Object()]
    if objects:
        raise ValueError(f"Excel cannot store the object column(s) {', '.join(objects)}; convert them to text or drop them")
    columns: list[pl.Series | pl.Expr] = []
    for name, dtype in df.schema.items():
        if dtype.is_nested():
            columns.append(pl.Series(name, [None if value is None else json.dumps(value, ensure_ascii=False, default=json_default)
                                            for value in df.get_column(name).to_list()], dtype=pl.String))
        elif isinstance(dtype, (pl.Categorical, pl.Enum)):
            columns.append(pl.col(name).cast(pl.String))
        elif isinstance(dtype, pl.Datetime) and dtype.time_zone:
            columns.append(pl.col(name).dt.convert_time_zone("UTC").dt.replace_time_zone(None))
    df = df.with_columns(columns) if columns else df
    return _split_long(df)


def _widths(df: pl.DataFrame) -> dict[str, float]:
    """Column widths in characters: a text column as wide as its longest cell up to 60 (never narrower than its
    heading), other columns by kind. Polars measures the cells."""
    text = [name for name, dtype in df.schema.items() if dtype == pl.String()]
    longest = df.select(pl.col(text).str.len_chars().max().fill_null(0)).row(0, named=True) if text else {}
    return {name: float(min(max(longest[name] if name in longest else _WIDTHS.get(_kind(dtype), 12), len(name) + 3), _MAX_WIDTH))
            for name, dtype in df.schema.items()}


def _linked(df: pl.DataFrame) -> bool:
    """Whether the ``url`` column's cells are links: only when every URL in it is http(s) and the sheet stays
    within Excel's 65,530 links, so that no ``file:`` or ``javascript:`` address is ever a link."""
    if df.schema.get("url") != pl.String():
        return False
    urls = df.get_column("url").drop_nulls()
    return 0 < urls.len() <= EXCEL_LINKS and bool(urls.str.contains(_LINK).all())


def _styles(df: pl.DataFrame, *, quote: bool, wrap: str = "", links: bool = False) -> dict[str, Any]:
    """The column formats of a sheet: dates as dates; every text cell with Excel's quote prefix when ``quote``
    (shown as it is, and kept text when someone edits it: a cell starting with ``=`` never becomes a
    formula), except the links; the ``wrap`` column's text on several lines."""
    import rustpy_xlsxwriter as xlsx

    styles: dict[str, Any] = {}
    for name, dtype in df.schema.items():
        if dtype == pl.Date():
            styles[name] = xlsx.Format().set_num_format("yyyy-mm-dd")
        elif dtype == pl.String():
            quoted = quote and not (links and name == "url")
            style = xlsx.Format().set_quote_prefix() if quoted else xlsx.Format()
            if name == wrap:
                style = style.set_text_wrap().set_align("top")
            if quoted or name == wrap:
                styles[name] = style
    return styles


def excel_into(fh: IO[bytes], results: ExportInput, *, neutralize: bool = True) -> None:
    """Write the Excel workbook (.xlsx, through rustpy-xlsxwriter, a compiled writer) to ``fh``.

    Sheet "results": the rows, the header bold, frozen and with filters, columns sized to their text up to 60
    characters, dates and times (UTC) as Excel dates. No text cell is ever a formula: every cell is written as
    text, with Excel's quote prefix unless ``neutralize=False``, so that it shows its text as it is and stays
    text when someone edits it (``=``, ``+``, ``-``, ``@``, ...). The ``url`` column is links when all its URLs
    are http(s) (a research run's always are) and there are at most 65,530 of them (Excel's limit per sheet);
    otherwise it is plain text, every value kept. Nested values are their JSON text; NaN is an empty cell and
    infinities read ``INF``/``-INF``. A cell longer than Excel's 32,767 characters continues in the next
    columns (``content (2)``, ...). Sheet "run": the run's metadata (topic, summary, depth, counts, ...) as
    field/value rows.
    """
    import rustpy_xlsxwriter as xlsx

    run = normalize(results)
    if run.df.height > EXCEL_ROWS:
        raise ValueError(f"Excel holds at most {EXCEL_ROWS:,} rows under its header and this table has {run.df.height:,}; "
                         "export CSV or Parquet, or export it in parts (df.slice)")
    df = _cells(run.df)
    meta = _cells(pl.DataFrame(_metadata_items(run), schema={"field": pl.String, "value": pl.String}, orient="row"))
    links = _linked(df)
    xlsx.write_worksheets(
        [("results", df), ("run", meta)], cast(BinaryIO, fh), bold_headers=True, freeze_panes={"general": {"row": 1, "col": 0}},
        autofilter={"results": True, "run": True}, column_widths={"results": _widths(df), "run": _widths(meta)},
        column_formats={"results": _styles(df, quote=neutralize, links=links), "run": _styles(meta, quote=neutralize, wrap="value")},
        datetime_format="yyyy-mm-dd hh:mm:ss", inf_value="INF", url_columns={"results": ["url"]} if links else None)


def write_csv(results: ExportInput, path: str | os.PathLike[str], *, bom: bool = False, neutralize: bool = True,
              metadata_comments: bool = False, storage_options: Mapping[str, Any] | None = None) -> Path | str:
    """Write the rows as UTF-8 CSV, atomically (to a path or an fsspec URL, see ``write_file``).

    ``bom=True`` adds a byte-order mark so Excel detects UTF-8. Text cells that a spreadsheet would
    run as formulas get a leading ``'`` unless ``neutralize=False``. ``metadata_comments=True``
    writes the run's metadata first as ``# key: value`` lines (read them back with
    ``pl.read_csv(path, comment_prefix="#")``).
    """
    return write_file(path, lambda fh: csv_into(fh, results, bom=bom, neutralize=neutralize,
                                                metadata_comments=metadata_comments), storage_options)


def write_excel(results: ExportInput, path: str | os.PathLike[str], *, neutralize: bool = True,
                storage_options: Mapping[str, Any] | None = None) -> Path | str:
    """Write the rows as an Excel workbook (.xlsx), atomically; see ``excel_into`` for what it holds."""
    return write_file(path, lambda fh: excel_into(fh, results, neutralize=neutralize), storage_options)


def write_json(results: ExportInput, path: str | os.PathLike[str], *,
               storage_options: Mapping[str, Any] | None = None) -> Path | str:
    """Write the run's metadata and rows as one JSON object, atomically."""
    return write_file(path, lambda fh: json_into(fh, results), storage_options)


def write_ndjson(results: ExportInput, path: str | os.PathLike[str], *,
                 storage_options: Mapping[str, Any] | None = None) -> Path | str:
    """Write the rows as newline-delimited JSON, atomically."""
    return write_file(path, lambda fh: ndjson_into(fh, results), storage_options)


def write_parquet(results: ExportInput, path: str | os.PathLike[str], *,
                  storage_options: Mapping[str, Any] | None = None) -> Path | str:
    """Write the rows as Parquet (run metadata in the file's ``torq_nb`` key), atomically."""
    return write_file(path, lambda fh: parquet_into(fh, results), storage_options)
