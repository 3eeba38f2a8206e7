"""export(): formats by suffix, every input kind, atomic writes, clear errors, threads, large runs."""

from __future__ import annotations

import json
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import export_factory as factory
import nbformat
import polars as pl
import pytest

from torq_nb.export import ExportManager, export, to_markdown
from torq_nb.export.atomic import atomic_path
from torq_nb.research.results import SCHEMA

SUFFIXES = [".md", ".html", ".pdf", ".csv", ".json", ".ndjson", ".parquet", ".xlsx", ".ipynb", ".zip"]


def looks_like(path: Path) -> None:
    """Each format's own signature, checked on the file as written."""
    data = path.read_bytes()
    checks = {
        ".md": lambda: data.startswith(b"# Research: "),
        ".html": lambda: data.lstrip().lower().startswith(b"<!doctype html>"),
        ".pdf": lambda: data.startswith(b"%PDF-") and b"%%EOF" in data[-64:],
        ".csv": lambda: data.startswith(b"rank,title,url"),
        ".json": lambda: isinstance(json.loads(data), dict),
        ".ndjson": lambda: all(json.loads(line) for line in data.splitlines()),
        ".parquet": lambda: data[:4] == b"PAR1",
        ".xlsx": lambda: "xl/workbook.xml" in zipfile.ZipFile(path).namelist(),
        ".ipynb": lambda: nbformat.reads(data.decode(), as_version=4).cells[0].cell_type == "markdown",
        ".zip": lambda: zipfile.is_zipfile(path),
    }
    assert checks[path.suffix](), path


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_results_export_picks_the_format_from_the_suffix(tmp_path: Path, suffix: str) -> None:
    path = factory.results(3).export(tmp_path / f"report{suffix}")
    looks_like(path)
    assert [p.name for p in tmp_path.iterdir()] == [f"report{suffix}"]  # no temporary file left


def test_zip_bundles_every_format(tmp_path: Path) -> None:
    path = export(factory.results(3), tmp_path / "bundle.zip")
    with zipfile.ZipFile(path) as zf:
        names = sorted(zf.namelist())
        zf.extractall(tmp_path / "out")
    assert names == sorted(f"bundle{s}" for s in SUFFIXES if s != ".zip")
    for name in names:
        looks_like(tmp_path / "out" / name)


def test_format_argument_overrides_the_suffix(tmp_path: Path) -> None:
    path = export(factory.results(2), tmp_path / "data.txt", format="csv")
    assert pl.read_csv(path).height == 2


def test_unknown_format_lists_the_supported_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.docx.*markdown \(\.md.*parquet \(\.parquet\).*zip \(\.zip\)"):
        export(factory.results(2), tmp_path / "r.docx")
    assert not (tmp_path / "r.docx").exists()


def test_every_input_kind_gives_the_same_table(tmp_path: Path) -> None:
    results = factory.results(3, fail_every=2)
    inputs = [results, results.df, results.df.to_dicts(), results.to_dict(),
              json.loads(json.dumps(results.to_dict(), default=str))]
    csvs = [export(item, tmp_path / f"{i}.csv").read_text(encoding="utf-8") for i, item in enumerate(inputs)]
    assert all(text == csvs[0] for text in csvs)
    mds = [to_markdown(item) for item in (results, results.to_dict())]
    assert mds[0] == mds[1] and "Solar energy" in mds[0]


def test_bad_inputs_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="ResearchResults, a Polars DataFrame"):
        export("not results", tmp_path / "x.csv")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'results' key"):
        export({"topic": "t"}, tmp_path / "x.csv")
    with pytest.raises(TypeError, match="some rows are not dicts"):
        export([{"rank": 1}, "row two"], tmp_path / "x.csv")  # type: ignore[list-item]
    with pytest.raises(ValueError, match="could not be made into a table"):
        export([{"rank": 1}, {"rank": [1, 2]}], tmp_path / "x.csv")


def test_save_notebook_and_to_notebook(tmp_path: Path) -> None:
    results = factory.results(2)
    nb = results.to_notebook()
    assert nb.metadata["title"] == "Research: Solar energy"
    saved = nbformat.read(results.save_notebook(tmp_path / "sub" / "report.ipynb"), as_version=4)
    nbformat.validate(saved)
    assert [c.source for c in saved.cells] == [c.source for c in nb.cells]


class Exploding:
    """A metadata value whose text cannot be made: the CSV writer fails after writing some lines."""

    def __str__(self) -> str:
        raise RuntimeError("cannot render this value")


def test_a_failed_write_leaves_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "r.csv"
    ExportManager().export_to_csv(factory.results(2), target)
    before = target.read_bytes()
    broken = factory.results(3)
    broken.metadata["bad"] = Exploding()
    with pytest.raises(RuntimeError, match="cannot render"):
        ExportManager().export_to_csv(broken, target, metadata_comments=True)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]


def test_a_failure_mid_write_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "new.bin"
    with pytest.raises(OSError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half of it")
        raise OSError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_missing_folders_are_created(tmp_path: Path) -> None:
    path = export(factory.results(1), tmp_path / "a" / "b" / "r.json")
    assert json.loads(path.read_text())["counts"]["results"] == 1


def test_unwritable_places_get_an_error_naming_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match=str(blocker)):
        export(factory.results(1), blocker / "r.csv")
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(PermissionError, match=str(locked)):
            export(factory.results(1), locked / "r.csv")


def test_exports_from_several_threads_do_not_interfere(tmp_path: Path) -> None:
    jobs = [(factory.results(5 + i, topic=f"Topic {i}"), tmp_path / f"r{i}{suffix}")
            for i in range(4) for suffix in (".pdf", ".md", ".csv", ".html")]
    with ThreadPoolExecutor(8) as pool:
        paths = list(pool.map(lambda job: export(*job), jobs))
    for (results, _), path in zip(jobs, paths, strict=True):
        looks_like(path)
        if path.suffix == ".csv":
            assert pl.read_csv(path).height == results.df.height
        if path.suffix == ".md":
            assert path.read_text().startswith(f"# Research: {results.topic}\n")


def test_ten_thousand_rows(tmp_path: Path) -> None:
    results = factory.results(10_000, fail_every=7)
    assert pl.read_parquet(export(results, tmp_path / "big.parquet")).height == 10_000
    assert pl.read_csv(export(results, tmp_path / "big.csv"), schema=SCHEMA).height == 10_000
    md = export(results, tmp_path / "big.md").read_text()
    assert md.count("\n| ") >= 10_000
    pdf = export(results, tmp_path / "big.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page\n") + pdf.count(b"/Type/Page/") > 100
