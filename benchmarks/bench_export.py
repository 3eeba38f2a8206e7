"""Export timings for 10 to 10,000 rows, beside pandas, nbconvert's webpdf and WeasyPrint in the same run.

    python benchmarks/bench_export.py [--sizes 10 100 1000 10000] [--repeat 5]

Every timed call gets fresh rows (unique strings), so no cache inside Typst or elsewhere can reuse
an earlier run's work. Prints a Markdown table of the fastest run per cell, in milliseconds (the
machine is shared: the fastest run is the one least disturbed by other work).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import export_factory
import pandas as pd
import polars as pl

from torq_nb.export import export, to_html, to_markdown, to_notebook, to_pdf
from torq_nb.export.tabular import excel_into
from torq_nb.results import ResearchResults

SEED_CLAIMS = {"Markdown": "~50", "CSV": "~30", "PDF (Typst)": "~200"}
REPORT_COLUMNS = ["rank", "title", "domain", "status", "word_count", "published", "snippet"]


def fresh(n: int, tag: int) -> ResearchResults:
    rows = [export_factory.row(i, title=f"Result {i} of run {tag}", snippet=f"Run {tag}, excerpt {i}: text of the page.")
            for i in range(1, n + 1)]
    return export_factory.results(rows=rows, topic=f"Benchmark run {tag}")


def timed(make: Callable[[Any], object], n: int, repeat: int, prepare: Callable[[ResearchResults], Any]) -> float:
    """Fastest milliseconds of ``make`` over ``repeat`` fresh data sets of ``n`` rows (``prepare`` is not timed)."""
    times = []
    for tag in range(repeat):
        data = prepare(fresh(n, tag + 1000 * n))
        start = time.perf_counter()
        make(data)
        times.append((time.perf_counter() - start) * 1000)
    return min(times)


#: The PDF's branding case: a template of one's own (docs/templates.md) and a logo from the test fixtures.
LOGO = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "notebooks" / "images" / "relative.png"
BRAND = '#import "/torq.typ": report\n#show: report.with(font: ("DejaVu Sans",), header: [Benchmark lab])\n'


XLSX_FLOOR = "deflate of the .xlsx's XML (floor)"


def xlsx_xml(results: ResearchResults) -> bytes:
    """The uncompressed XML of our .xlsx export of ``results``: what any writer must produce and deflate."""
    buffer = io.BytesIO()
    excel_into(buffer, results)
    with zipfile.ZipFile(buffer) as zf:
        return b"".join(zf.read(name) for name in zf.namelist())


def webpdf_available() -> str | None:
    """None if nbconvert's webpdf can run here, else why not."""
    try:
        to_pdf(fresh(1, 0), engine="webpdf")
    except (RuntimeError, ImportError) as exc:
        return str(exc).split(". nbconvert said")[0]
    return None


def weasyprint_html() -> Callable[[ResearchResults], object] | str:
    """A WeasyPrint renderer of our HTML report, or why it cannot run."""
    try:
        import weasyprint  # type: ignore[import-not-found]
    except ImportError:
        return "WeasyPrint is not installed (pip install weasyprint; it needs Pango from the system)"
    return lambda r: weasyprint.HTML(string=to_html(r)).write_pdf()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 10000])
    parser.add_argument("--repeat", type=int, default=5, help="runs per cell below 10,000 rows")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="time only the rows whose name starts with one of these")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / "brand.typ").write_text(BRAND)
        cases: dict[str, Callable[[Any], object]] = {
            "Markdown": to_markdown,
            "HTML": to_html,
            "PDF (Typst)": to_pdf,
            "PDF (Typst), own template and logo": lambda r: export(r, out / "b.pdf", title="Benchmark report", author="Bench",
                                                                  logo=LOGO, template=out / "brand.typ"),
            "CSV": lambda r: export(r, out / "r.csv"),
            "JSON": lambda r: export(r, out / "r.json"),
            "NDJSON": lambda r: export(r, out / "r.ndjson"),
            "Parquet": lambda r: export(r, out / "r.parquet"),
            "Excel (.xlsx)": lambda r: export(r, out / "r.xlsx"),
            "Notebook (.ipynb)": lambda r: export(r, out / "r.ipynb"),
            "pandas to_csv (baseline)": lambda pdf: pdf.to_csv(out / "p.csv", index=False),
            "pandas to_json (baseline)": lambda pdf: pdf.to_json(out / "p.json", orient="records", date_format="iso"),
            "pandas to_json lines (baseline)": lambda pdf: pdf.to_json(out / "p.ndjson", orient="records", lines=True,
                                                                       date_format="iso"),
            "pandas to_markdown (baseline)": lambda pdf: pdf[REPORT_COLUMNS].to_markdown(index=False),
        }
        notes = []
        webpdf, weasy = "nbconvert webpdf (baseline)", "WeasyPrint (baseline)"
        if (why := webpdf_available()) is None:
            cases[webpdf] = lambda r: to_pdf(r, engine="webpdf")
        else:
            notes.append(f"nbconvert webpdf skipped: {why}")
        if isinstance(render := weasyprint_html(), str):
            notes.append(f"WeasyPrint skipped: {render}")
        else:
            cases[weasy] = render
        if importlib.util.find_spec("xlsxwriter") is None:
            notes.append("Polars write_excel skipped: pip install xlsxwriter")
        else:  # the writer torq_nb used before rustpy-xlsxwriter, with the same header, filters and freeze
            cases["Polars write_excel (baseline)"] = lambda r: r.df.with_columns(pl.col(pl.Datetime).dt.replace_time_zone(None)
                                                                          ).write_excel(out / "pl.xlsx", autofilter=True,
                                                                                        freeze_panes=(1, 0), header_format={"bold": True})
        #: No .xlsx writer can beat compressing the XML an .xlsx holds (zlib's default level, as Excel files use).
        cases[XLSX_FLOOR] = lambda xml: zlib.compress(xml, 6)
        for engine in ("openpyxl", "xlsxwriter"):  # Excel has no time zones: the baseline drops fetched_at's
            if importlib.util.find_spec(engine) is None:
                notes.append(f"pandas to_excel with {engine} skipped: pip install {engine}")
            else:
                cases[f"pandas to_excel, {engine} (baseline)"] = lambda pdf, engine=engine: pdf.assign(
                    fetched_at=pdf["fetched_at"].dt.tz_localize(None)).to_excel(out / "p.xlsx", index=False, engine=engine)
        if importlib.util.find_spec("pyarrow") is None:
            notes.append("pandas to_parquet skipped: it needs pyarrow (pip install pyarrow), which torq_nb does not use")
        else:
            cases["pandas to_parquet (baseline)"] = lambda pdf: pdf.to_parquet(out / "p.parquet", index=False)
        if args.only:
            cases = {name: make for name, make in cases.items() if name.startswith(tuple(args.only))}

        def prepare(name: str) -> Callable[[ResearchResults], Any]:
            if name == XLSX_FLOOR:
                return xlsx_xml
            return (lambda r: pd.DataFrame(r.df.to_dict(as_series=False))) if name.startswith("pandas") else (lambda r: r)

        for name, make in cases.items():  # warm-up: imports, nbconvert templates, font scan
            make(prepare(name)(fresh(10, -1)))
        to_notebook(fresh(1, -2))

        table: dict[str, list[float]] = {name: [] for name in cases}
        for n in args.sizes:
            for name, make in cases.items():
                slow = name.startswith(("PDF", "HTML", "nbconvert", "WeasyPrint", "pandas to_excel", "Polars write_excel"))
                repeat = args.repeat if n < 10_000 else (1 if slow else 3)
                table[name].append(timed(make, n, repeat, prepare(name)))
                print(f"  {name} {n} rows: {table[name][-1]:.1f} ms", file=sys.stderr)

    print("| format | " + " | ".join(f"{n:,} rows" for n in args.sizes) + " | seed's claim |")
    print("|---|" + "---:|" * len(args.sizes) + "---:|")
    for name, values in table.items():
        print(f"| {name} | " + " | ".join(f"{v:,.1f}" for v in values) + f" | {SEED_CLAIMS.get(name, '')} |")
    print(f"\nFastest of {args.repeat} runs (10,000 rows: 1 for PDF, HTML and the pure-Python Excel writers, 3 else), milliseconds per export; "
          f"{os.cpu_count()} CPUs, load average {load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end.")
    print("\nEach call is the whole export: normalising the input, building the report, rendering, writing.")
    print("pandas baselines get the same rows as a pandas DataFrame made before the clock starts; to_markdown")
    print("gets the 7 columns of the report's results table (no summary, no source list).")
    for note in notes:
        print(f"\n{note}")


if __name__ == "__main__":
    main()
