"""CSV, JSON, NDJSON and Parquet read back with Polars; formula neutralisation; hostile strings."""

from __future__ import annotations

import json
from pathlib import Path

import export_factory as factory
import openpyxl
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torq_nb.export import ExportManager, export, write_csv
from torq_nb.export.tabular import FORMULA_PREFIXES, write_excel, write_json, write_ndjson, write_parquet
from torq_nb.research.results import SCHEMA

HOSTILE = ["=1+2", "+SUM(A1)", "-3", "@cmd", "\tTAB", "\rCR", "\nLF", 'quote " and, comma', "multi\nline\r\nx", "", "Ünïcødé 中文 😀"]


def test_csv_neutralises_formulas_and_reads_back(tmp_path: Path) -> None:
    rows = [factory.row(i + 1, title=text, snippet=text) for i, text in enumerate(HOSTILE)]
    results = factory.results(rows=rows)
    path = ExportManager().export_to_csv(results, tmp_path / "r.csv")
    back = pl.read_csv(path, schema=SCHEMA)
    for text, got in zip(HOSTILE, back["title"].to_list(), strict=True):
        assert got == ("'" + text if text.startswith(FORMULA_PREFIXES) else text)
    assert back.drop("title", "snippet").equals(results.df.drop("title", "snippet"))  # numbers stay numbers (score, -x)


def test_categorical_text_is_neutralised_too(tmp_path: Path) -> None:
    df = pl.DataFrame({"title": pl.Series(["=1+2", "ok"], dtype=pl.Categorical),
                       "status": pl.Series(["@cmd", "ok"], dtype=pl.Enum(["@cmd", "ok"]))})
    back = pl.read_csv(write_csv(df, tmp_path / "cat.csv"))
    assert back["title"].to_list() == ["'=1+2", "ok"] and back["status"].to_list() == ["'@cmd", "ok"]
    ws = openpyxl.load_workbook(write_excel(df, tmp_path / "cat.xlsx"))["results"]
    assert [ws["A2"].value, ws["B2"].value] == ["=1+2", "@cmd"] and ws["A2"].quotePrefix and ws["B2"].quotePrefix


def test_csv_opt_out_keeps_cells_verbatim(tmp_path: Path) -> None:
    results = factory.results(rows=[factory.row(i + 1, title=text) for i, text in enumerate(HOSTILE)])
    path = write_csv(results, tmp_path / "raw.csv", neutralize=False)
    assert pl.read_csv(path, schema=SCHEMA).equals(results.df)


def test_csv_bom_and_metadata_comments(tmp_path: Path) -> None:
    results = factory.results(3, topic="Solar\nenergy")
    path = write_csv(results, tmp_path / "meta.csv", bom=True, metadata_comments=True)
    raw = path.read_bytes()
    assert raw.startswith("\ufeff# topic: Solar energy\n".encode())
    assert b"# results: 3\n" in raw and b"# depth: standard\n" in raw
    text = raw.decode("utf-8-sig")
    back = pl.read_csv(text.encode(), comment_prefix="#", schema=SCHEMA)
    assert back.equals(results.df)


def test_nested_columns_are_refused_for_csv_with_advice(tmp_path: Path) -> None:
    df = pl.DataFrame({"title": ["a"], "tags": [["x", "y"]]})
    with pytest.raises(ValueError, match=r"tags.*JSON or Parquet"):
        write_csv(df, tmp_path / "n.csv")
    assert export(df, tmp_path / "n.parquet").exists()


csv_text = st.text(st.characters(exclude_categories=("Cs",)) | st.sampled_from(list("=+-@\t\r\n\",;'")), max_size=30)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.one_of(st.none(), csv_text), min_size=1, max_size=8))
def test_csv_round_trips_any_strings(tmp_path: Path, values: list[str | None]) -> None:
    df = pl.DataFrame({"rank": list(range(1, len(values) + 1)), "title": values}, schema={"rank": pl.Int32, "title": pl.String})
    path = write_csv(df, tmp_path / "prop.csv")
    back = pl.read_csv(path, schema=df.schema)["title"].to_list()
    assert back == [v if v is None or not v.startswith(FORMULA_PREFIXES) else "'" + v for v in values]


def test_json_holds_rows_and_run_metadata(tmp_path: Path) -> None:
    results = factory.results(3, fail_every=3)
    data = json.loads(export(results, tmp_path / "r.json").read_text(encoding="utf-8"))
    assert data["topic"] == "Solar energy" and data["summary"] == results.summary
    assert data["counts"] == {"results": 3, "fetched": 2, "failed": 1}
    assert data["progress"]["state"] == "complete" and data["metadata"] == {"query": "Solar energy"}
    assert [r["url"] for r in data["results"]] == results.df["url"].to_list()
    assert data["results"][0]["published"] == "2024-01-02"


def test_ndjson_and_parquet_read_back(tmp_path: Path) -> None:
    results = factory.results(4)
    assert pl.read_ndjson(export(results, tmp_path / "r.ndjson"), schema=SCHEMA).equals(results.df)
    parquet = export(results, tmp_path / "r.parquet")
    assert pl.read_parquet(parquet).equals(results.df)
    info = json.loads(pl.read_parquet_metadata(parquet)["torq_nb"])
    assert info["topic"] == "Solar energy"


def test_empty_results_write_valid_tables(tmp_path: Path) -> None:
    results = factory.results(0)
    assert pl.read_csv(export(results, tmp_path / "e.csv")).columns == list(SCHEMA)
    assert json.loads(export(results, tmp_path / "e.json").read_text())["results"] == []
    assert pl.read_parquet(export(results, tmp_path / "e.parquet")).schema == pl.Schema(SCHEMA)


def test_every_writer_uploads_to_a_url(tmp_path: Path) -> None:
    import fsspec

    results = factory.results(2)
    memory = fsspec.filesystem("memory")
    for write, name in [(write_csv, "w.csv"), (write_json, "w.json"), (write_ndjson, "w.ndjson"),
                        (write_parquet, "w.parquet"), (write_excel, "w.xlsx")]:
        assert write(results, f"memory://tabular/{name}") == f"memory://tabular/{name}"
        assert memory.cat_file(f"/tabular/{name}")
    assert pl.read_csv(memory.cat_file("/tabular/w.csv"), schema=SCHEMA).equals(results.df)
    # The seed's ExportManager writes through the same path rule: a URL is uploaded, not a folder named "memory:".
    assert ExportManager().export_to_pdf(results, "memory://seed/r.pdf") == "memory://seed/r.pdf"
    assert memory.cat_file("/seed/r.pdf").startswith(b"%PDF-")
    assert ExportManager().save_notebook(results, "memory://seed/r.ipynb") == "memory://seed/r.ipynb"
    assert b'"cells"' in memory.cat_file("/seed/r.ipynb")
    assert not Path("memory:").exists()
