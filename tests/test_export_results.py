"""One results type for both layers, one serialiser, one path rule, light tabular exports, and tables of a
wrong schema refused at the call with the column and the fix."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import export_factory as factory
import polars as pl
import pytest

import torq_nb
from torq_nb.export import ExportManager, export, to_markdown
from torq_nb.research.results import load_run
from torq_nb.results import SCHEMA, ResearchResults

ROOT = Path(__file__).resolve().parent.parent


def test_no_export_module_imports_the_research_layer_at_run_time() -> None:
    for path in sorted((ROOT / "torq_nb" / "export").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(block.test) for node in ast.walk(block)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in typing_only:
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any(n.startswith("torq_nb.research") for n in names), f"{path.name}: {ast.unparse(node)}"


def test_the_public_names_are_the_one_type() -> None:
    assert torq_nb.ResearchResults is ResearchResults and torq_nb.SCHEMA is SCHEMA
    from torq_nb.research.results import ResearchResults as research_side

    assert research_side is ResearchResults
    assert torq_nb.export.__module__ == "torq_nb.api" and torq_nb.load_run is load_run


def test_one_serialiser_round_trips_through_json_the_export_and_load_run(tmp_path: Path) -> None:
    results = factory.results(6, fail_every=3)
    again = ResearchResults.from_dict(json.loads(results.to_json()))
    assert again.df.equals(results.df) and again.df.schema == results.df.schema
    assert (again.topic, again.summary, again.depth, again.source, again.operation_id, again.metadata) == \
        (results.topic, results.summary, results.depth, results.source, results.operation_id, results.metadata)
    assert again.progress == results.progress and again.date == results.date and again.duration == 4.2
    saved = results.export(tmp_path / "run.json")
    assert saved.read_text(encoding="utf-8") == results.to_json()  # the JSON export is the serialiser
    assert load_run(saved).df.equals(results.df)
    as_dict = ResearchResults.from_dict(results.to_dict())  # Python values instead of JSON's strings
    assert as_dict.df.equals(results.df) and as_dict.to_dict() == results.to_dict()


def test_a_partial_progress_keeps_its_start_and_duration() -> None:
    rows = factory.results(2).to_dict()["results"]
    run = ResearchResults.from_dict({"results": rows, "progress": {"started_at": "2026-01-02T03:04:05", "duration": 7.5}})
    assert run.progress is None and run.date == "2026-01-02T03:04:05" and run.duration == 7.5
    assert "Duration:** 7.5 s" in to_markdown(run)


def test_every_writer_returns_the_path_it_wrote_with_home_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    results = factory.results(2)
    for suffix in (".csv", ".json", ".parquet", ".md", ".ipynb", ".zip"):
        written = export(results, f"~/out/a{suffix}")
        assert written == tmp_path / "out" / f"a{suffix}" and written.is_file()
    assert results.export("~/b.csv") == tmp_path / "b.csv"
    assert results.save_notebook("~/c.ipynb") == tmp_path / "c.ipynb"
    manager = ExportManager()
    assert manager.export_to_csv(results, "~/d.csv") == tmp_path / "d.csv"
    assert manager.export(results, "~/e.json") == tmp_path / "e.json"
    assert not list(Path.cwd().glob("~*"))


_CSV_ONLY = """
import sys
sys.path.insert(0, sys.argv[1])
import export_factory as factory
results = factory.results(3)
for path in ("r.csv", "r.json", "r.ndjson", "r.parquet", "r.xlsx", "r.html"):
    results.export(sys.argv[2] + "/" + path)
print(sorted(m for m in sys.modules if m.split(".")[0] in ("nbconvert", "typst", "nbformat", "mistune")))
"""


def test_tables_and_the_html_report_import_neither_nbconvert_nor_nbformat_nor_typst(tmp_path: Path) -> None:
    """Importing nbformat takes seconds here (jsonschema's format checkers): the first CSV, Excel or HTML export
    of a session must not pay it."""
    child = subprocess.run([sys.executable, "-c", _CSV_ONLY, str(ROOT / "tests"), str(tmp_path)], capture_output=True,
                           text=True, check=True, timeout=300)
    assert child.stdout.strip() == "[]", child.stdout
    assert pl.read_csv(tmp_path / "r.csv").height == 3


def _table(**columns: object) -> pl.DataFrame:
    return factory.results(3).df.with_columns(pl.Series(name, value) if isinstance(value, list) else pl.lit(value).alias(name)
                                              for name, value in columns.items())


BAD_TABLES = {
    "rank": (_table(rank=["1", "two", "3"]), r"column 'rank' must be integers, got String \(for example 'two'\).*cast\(pl\.Int32\)"),
    "published": (_table(published=5), r"column 'published' must be dates, got Int(32|64).*cast\(pl\.Date\)"),
    "title": (_table(title=[[1], [2], [3]]), r"column 'title' must be text, got List\(Int64\).*cast\(pl\.String\)"),
    "cached": (_table(cached="yes"), r"column 'cached' must be True/False, got String.*cast\(pl\.Boolean\)"),
    "binary": (_table(page_bytes=b"\x00\xff"), r"column 'page_bytes' holds binary data.*\.bin\.encode\('base64'\).*drop"),
    "binary title": (_table(title=b"abc"), r"column 'title' holds binary data"),
}


@pytest.mark.parametrize("case", list(BAD_TABLES))
def test_a_table_of_a_wrong_schema_is_refused_at_the_call_and_nothing_is_written(tmp_path: Path, case: str) -> None:
    df, message = BAD_TABLES[case]
    manager = ExportManager()
    calls = [lambda: export(df, tmp_path / "r.csv"), lambda: export(df, tmp_path / "r.json"),
             lambda: export(df, tmp_path / "r.ndjson"), lambda: export(df, tmp_path / "r.parquet"),
             lambda: export(df, tmp_path / "r.pdf"), lambda: export(df, tmp_path / "r.zip"),
             lambda: manager.export_to_csv(df, tmp_path / "m.csv"), lambda: manager.export_to_markdown(df),
             lambda: manager.export_to_pdf(df, tmp_path / "m.pdf"), lambda: manager.save_notebook(df, tmp_path / "m.ipynb"),
             lambda: export(df.to_dicts(), tmp_path / "rows.md")]
    for call in calls:
        with pytest.raises(ValueError, match=message):
            call()
    assert list(tmp_path.iterdir()) == []  # not a file, not a temporary one


def test_columns_that_convert_losslessly_are_converted() -> None:
    df = _table(rank=["3", "1", "2"], status=[1, 1, 1], published=["2024-01-02", None, "2024-03-04"], title=[10, 20, 30])
    text = to_markdown(df)
    assert "2024-03-04" in text and "| 20 |" not in text and "[20](" in text.replace("\\", "")
