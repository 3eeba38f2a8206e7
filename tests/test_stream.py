"""stream_to: rows written to a file as pages finish, read back with Polars while the run goes, after a cancel,
an error, a Ctrl-C or a SIGKILL, from the command line, and from a batch (local and on a Dask LocalCluster)."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fake_search import FIXTURE_PAGES, SearchServer, load_pages, search_environment, serve_in_thread
from web_faults import FaultServer

import torq_nb
from torq_nb.research.batch import BATCH_SCHEMA, research_many, start_research_many
from torq_nb.research.fetch import FetchPolicy
from torq_nb.research.models import Hit
from torq_nb.research.pipeline import ResearchCancelled
from torq_nb.research.results import SCHEMA
from torq_nb.research.sources import Source

ROOT = Path(__file__).resolve().parents[1]
POLICY = FetchPolicy(allow_private_networks=True, total_timeout=60, read_timeout=60)


class ListedHits(Source):
    """Hits given up front (title and snippet too): aims a run at any URLs, with any text in its cells."""

    name = "listed"

    def __init__(self, urls: list[str], title: str = "hit", snippet: str = "") -> None:
        self.urls, self.title, self.snippet = urls, title, snippet

    async def search(self, query: str, limit: int, fetcher: Any) -> list[Hit]:
        return [Hit(title=f"{self.title} {i}", url=url, snippet=self.snippet, source=self.name)
                for i, url in enumerate(self.urls[:limit])]


class FailingSynthesizer:
    """Fails after every page was read: an error late in the run."""

    async def synthesize(self, topic: str, sources: list[Any]) -> str:
        raise RuntimeError("the summary service is down")


def read(path: Path, schema: dict[str, pl.DataType] = SCHEMA) -> pl.DataFrame:
    """The stream file as a table with the export's types, whatever its format."""
    if path.suffix == ".csv":
        return pl.read_csv(path, schema=schema)
    return pl.read_ndjson(path, schema=schema) if path.stat().st_size else pl.DataFrame(schema=schema)


def read_whole_lines(path: Path, schema: dict[str, pl.DataType] = SCHEMA) -> pl.DataFrame:
    """The file's whole rows, read while another thread or process writes it: a row longer than a memory page
    reaches the file page by page, so a reader can see its start before its write returns. NDJSON: the lines
    up to the last newline; CSV (whose quoted text may hold newlines): the file once it parses."""
    while True:
        data = path.read_bytes() if path.exists() else b""
        if path.suffix != ".csv":
            return pl.read_ndjson(io.BytesIO(data[: data.rfind(b"\n") + 1]), schema=schema)
        if not data:
            return pl.DataFrame(schema=schema)
        try:
            return pl.read_csv(io.BytesIO(data), schema=schema)
        except pl.exceptions.PolarsError:  # a row is being written
            time.sleep(0.01)


def is_open(path: Path) -> bool:
    """Whether this process holds ``path`` open."""
    return any(os.path.realpath(f"/proc/self/fd/{fd}") == str(path.resolve()) for fd in os.listdir("/proc/self/fd")
               if os.path.exists(f"/proc/self/fd/{fd}"))


@pytest.fixture
def faults() -> Iterator[FaultServer]:
    with serve_in_thread(FaultServer()) as running:
        yield running


@pytest.fixture
def search() -> Iterator[SearchServer]:
    with serve_in_thread(SearchServer(load_pages(FIXTURE_PAGES))) as running:
        yield running


def slow_pages(faults: FaultServer, count: int, step_ms: int = 150) -> list[str]:
    """Pages answered one after another, ``step_ms`` apart."""
    return [faults.url(f"/page?ms={step_ms * (i + 1)}&n={i}") for i in range(count)]


# ----------------------------------------------------------------------------- one run


@pytest.mark.parametrize("suffix", [".ndjson", ".csv", ".jsonl"])
def test_the_file_holds_every_finished_row_while_the_run_goes(faults: FaultServer, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"rows{suffix}"
    seen: list[tuple[int, int]] = []  # (pages done, rows in the file), read while the run goes

    def look(status: dict[str, Any]) -> None:
        if status["stage"] == "extracting" and status["state"] == "running":
            rows = read(path)  # parses after every row: whole lines only
            assert rows.get_column("rank").is_unique().all()
            seen.append((int(status["done"]), rows.height))

    results = torq_nb.research("slow pages", source=ListedHits(slow_pages(faults, 6)), policy=POLICY, display=False,
                               stream_to=path, progress_callback=look)
    assert any(0 < done < 6 for done, _ in seen), seen  # some looks came mid-run
    assert all(rows >= done for done, rows in seen), seen  # a page counted done is in the file
    assert read(path).sort("rank").equals(results.df)  # the same values and types as the results
    assert not is_open(path)


def test_a_cancelled_run_leaves_its_partial_rows_and_closes_the_file(faults: FaultServer, tmp_path: Path) -> None:
    path = tmp_path / "rows.ndjson"
    urls = [faults.url("/ok"), *(faults.url(f"/sleep?s=30&n={i}") for i in range(4))]
    job = torq_nb.start_research("slow", source=ListedHits(urls), policy=POLICY, display=False, stream_to=path)
    deadline = time.monotonic() + 60
    while read_whole_lines(path).height < 1:  # the first page's row is there while the others are in flight
        assert time.monotonic() < deadline and not job.done()
        time.sleep(0.02)
    assert read(path).get_column("status").to_list() == ["ok"]
    assert job.cancel()
    results = job.result(timeout=30)
    assert not is_open(path)  # closed by the time the results are handed back
    rows = read(path)
    assert rows.sort("rank").equals(results.df)
    assert rows.get_column("status").to_list() == ["ok", *["cancelled"] * 4]


async def test_aresearch_cancelled_keeps_rows_and_closes(faults: FaultServer, tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    urls = [faults.url("/ok"), faults.url("/sleep?s=30")]
    task = asyncio.ensure_future(torq_nb.aresearch("slow", source=ListedHits(urls), policy=POLICY, display=False,
                                                   stream_to=path))
    while read_whole_lines(path).height < 1:  # the task opens the file once it starts
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(ResearchCancelled):
        await task
    assert read(path).get_column("status").to_list() == ["ok", "cancelled"]
    assert not is_open(path)


def test_an_error_late_in_the_run_keeps_the_rows_written(faults: FaultServer, tmp_path: Path) -> None:
    path = tmp_path / "rows.ndjson"
    with pytest.raises(RuntimeError, match="summary service"):
        torq_nb.research("x", source=ListedHits(slow_pages(faults, 3, 10)), policy=POLICY, display=False,
                         synthesizer=FailingSynthesizer(), stream_to=path)
    assert sorted(read(path).get_column("rank")) == [1, 2, 3]
    assert not is_open(path)


def test_rows_served_from_the_run_store_are_streamed_too(search: SearchServer, tmp_path: Path) -> None:
    options = {"source": "searxng", "base_url": search.searxng_url, "allow_private_networks": True, "display": False}
    first = torq_nb.research("the", **options, stream_to=tmp_path / "first.ndjson")
    again = torq_nb.research("the", **options, stream_to=tmp_path / "again.ndjson")
    rows = read(tmp_path / "again.ndjson")
    assert rows.height == first.df.height > 1 and rows.get_column("cached").all()
    assert rows.sort("rank").equals(again.df)


def test_quick_depth_snippets_are_streamed(search: SearchServer, tmp_path: Path) -> None:
    results = torq_nb.research("honeybee colony", "quick", "searxng", base_url=search.searxng_url, display=False,
                               stream_to=tmp_path / "rows.csv")
    rows = read(tmp_path / "rows.csv")
    assert rows.height == results.df.height > 0 and set(rows.get_column("status")) == {"snippet"}


def test_a_hostile_title_is_neutralised_as_in_the_csv_export(tmp_path: Path) -> None:
    hostile = ListedHits(["https://example.invalid/a", "https://example.invalid/b"], title="=cmd|' /C calc'!A0",
                         snippet="+SUM(A1:A9)")
    results = torq_nb.research("anything", "quick", hostile, display=False, store=None, stream_to=tmp_path / "rows.csv")
    streamed = pl.read_csv(tmp_path / "rows.csv")
    exported = pl.read_csv(results.export(tmp_path / "export.csv"))
    assert streamed.columns == exported.columns == list(SCHEMA)
    assert streamed.get_column("title").to_list() == ["'=cmd|' /C calc'!A0 0", "'=cmd|' /C calc'!A0 1"]
    assert streamed.get_column("snippet").to_list() == ["'+SUM(A1:A9)"] * 2
    assert streamed.equals(exported)


def test_an_existing_file_is_replaced_not_appended_to(faults: FaultServer, tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("other,header\n1,2\n", "utf-8")
    results = torq_nb.research("x", source=ListedHits([faults.url("/ok")]), policy=POLICY, display=False, stream_to=path)
    assert path.read_text("utf-8").splitlines()[0] == ",".join(SCHEMA)
    assert read(path).equals(results.df)


def test_a_missing_folder_is_made(faults: FaultServer, tmp_path: Path) -> None:
    path = tmp_path / "new" / "folder" / "rows.jsonl"
    torq_nb.research("x", source=ListedHits([faults.url("/ok")]), policy=POLICY, display=False, stream_to=path)
    assert read(path).height == 1


@pytest.mark.parametrize(("target", "message"), [
    ("rows.parquet", r"unknown suffix '\.parquet'; stream_to takes \.ndjson, \.jsonl, \.csv"),
    ("rows", r"unknown suffix '\(none\)'"),
    ("s3://bucket/rows.ndjson", "local file.*URL"),
])
def test_a_stream_that_cannot_be_is_refused_at_the_call_before_any_search(search: SearchServer, tmp_path: Path,
                                                                           target: str, message: str) -> None:
    destination = target if "://" in target else str(tmp_path / target)
    with pytest.raises(ValueError, match=message):
        torq_nb.start_research("honeybee", source="searxng", base_url=search.searxng_url, display=False,
                               stream_to=destination)
    with pytest.raises(ValueError, match=message):
        research_many(["honeybee", "marathon"], source="searxng", base_url=search.searxng_url, display=False,
                      stream_to=destination)
    with pytest.raises(TypeError, match="file path"):
        torq_nb.research("honeybee", source="searxng", base_url=search.searxng_url, display=False, stream_to=3)
    assert search.requests == []


def test_a_bad_call_leaves_an_existing_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "rows.ndjson"
    path.write_text('{"rank": 1}\n', "utf-8")
    with pytest.raises(ValueError, match="non-empty"):
        torq_nb.research("  ", source="local", path=str(tmp_path), display=False, stream_to=path)
    with pytest.raises(TypeError, match="progress_callback"):
        torq_nb.start_research("x", source="local", path=str(tmp_path), display=False, stream_to=path,
                               progress_callback="print")
    with pytest.raises(ValueError, match="depth"):
        research_many(["x"], "huge", source="local", path=str(tmp_path), display=False, stream_to=path)
    assert path.read_text("utf-8") == '{"rank": 1}\n'


_FULL_DISK = """
import resource, signal, sys, warnings, torq_nb
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    results = torq_nb.research("tidal", source="local", path=sys.argv[1], display=False, store=None,
                               stream_to=sys.argv[2])
print(results.progress.state, results.df.height, [str(w.message) for w in caught if w.category.__name__ == "StreamWarning"])
"""


def test_a_file_that_cannot_be_written_is_a_warning_and_the_run_goes_on(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for n in range(4):
        (folder / f"tidal{n}.md").write_text(f"# Tidal {n}\n\n" + "Tidal power turns the energy of tides. " * 30, "utf-8")
    path = tmp_path / "rows.ndjson"
    done = subprocess.run([sys.executable, "-B", "-c", _FULL_DISK, str(folder), str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("complete 4 ['cannot stream rows to"), done.stdout
    assert "File too large" in done.stdout and done.stdout.count("cannot stream") == 1
    assert 1 <= read(path).height < 4  # the rows before the failure, whole


# ----------------------------------------------------------------------------- processes that die, and the CLI

_SCRIPT = """
import sys, torq_nb
from torq_nb.research.pipeline import ResearchCancelled
try:
    torq_nb.research("the", source="searxng", display=False, stream_to=sys.argv[1], store=None)
except ResearchCancelled as stopped:
    print("cancelled", stopped.results.df.height, flush=True)
"""


@pytest.mark.parametrize(("suffix", "sent"), [(".ndjson", signal.SIGKILL), (".csv", signal.SIGINT)])
def test_a_process_killed_mid_run_leaves_a_file_that_parses(faults: FaultServer, tmp_path: Path, suffix: str,
                                                             sent: signal.Signals) -> None:
    with serve_in_thread(SearchServer(load_pages(FIXTURE_PAGES))) as search:
        search.delay = 0.3  # each page takes a while: the signal comes with pages in flight
        path = tmp_path / f"rows{suffix}"
        process = subprocess.Popen([sys.executable, "-c", _SCRIPT, str(path)], cwd=ROOT, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env={**os.environ, **search_environment(search)})
        try:
            deadline = time.monotonic() + 120
            while read_whole_lines(path).height < 1:
                assert process.poll() is None and time.monotonic() < deadline, process.stderr and process.stderr.read()
                time.sleep(0.02)
            process.send_signal(sent)
            out, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    rows = read(path)
    assert path.read_bytes().endswith(b"\n")  # whole lines only
    if sent == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL and rows.height >= 1
    else:  # Ctrl-C: the run was cancelled, and every hit is a row, the unread ones "cancelled"
        assert out.split() == ["cancelled", str(rows.height)], err
        assert "cancelled" in set(rows.get_column("status"))


def test_the_cli_streams_research_and_research_many(search: SearchServer, tmp_path: Path) -> None:
    env = {**os.environ, **search_environment(search)}
    cli = [sys.executable, "-m", "torq_nb.cli"]
    one = subprocess.run([*cli, "research", "honeybee colony", "--quiet", "--stream", str(tmp_path / "one.ndjson"),
                          "--export", str(tmp_path / "one.csv")], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert one.returncode == 0, one.stderr
    assert read(tmp_path / "one.ndjson").sort("rank").equals(pl.read_csv(tmp_path / "one.csv", schema=SCHEMA))

    listing = tmp_path / "topics.txt"
    listing.write_text("honeybee colony\nmarathon training\n", "utf-8")
    many = subprocess.run([*cli, "research-many", str(listing), "--quiet", "--stream", str(tmp_path / "many.csv")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert many.returncode == 0, many.stderr
    rows = read(tmp_path / "many.csv", BATCH_SCHEMA)
    assert rows.columns[0] == "topic" and set(rows.get_column("topic")) == {"honeybee colony", "marathon training"}

    refused = subprocess.run([*cli, "research", "honeybee", "--stream", str(tmp_path / "rows.xlsx")], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "stream_to takes .ndjson, .jsonl, .csv" in refused.stderr


# ----------------------------------------------------------------------------- batches


def test_a_batch_streams_every_topics_rows_with_the_topic_first(search: SearchServer, tmp_path: Path) -> None:
    path = tmp_path / "batch.csv"
    topics = ["honeybee colony", "marathon training", "sourdough starter", "grid batteries"]
    search.delay = 0.2  # each topic takes several of the tracker's publishing intervals
    seen: list[tuple[int, int]] = []  # (topics ended, rows in the file)

    def look(status: dict[str, Any]) -> None:
        seen.append((status["ended"], read_whole_lines(path, BATCH_SCHEMA).height))  # from the tracker's thread too

    results = research_many(topics, concurrency=2, source="searxng", base_url=search.searxng_url,
                            allow_private_networks=True, display=False, stream_to=path, progress_callback=look)
    rows = read(path, BATCH_SCHEMA)
    assert rows.columns == list(BATCH_SCHEMA)
    assert rows.sort("topic", "rank").equals(results.df.sort("topic", "rank"))
    assert any(0 < ended < len(topics) and height > 0 for ended, height in seen), seen  # rows while it ran
    assert not is_open(path)


def test_a_cancelled_batch_leaves_every_row_it_reached(faults: FaultServer, tmp_path: Path) -> None:
    path = tmp_path / "batch.ndjson"
    urls = [faults.url("/ok"), *(faults.url(f"/sleep?s=30&n={i}") for i in range(3))]
    job = start_research_many(["first", "second"], source=ListedHits(urls), policy=POLICY, display=False,
                              stream_to=path)
    deadline = time.monotonic() + 60
    while read_whole_lines(path, BATCH_SCHEMA).height < 2:  # each topic's fast page is in, the slow ones in flight
        assert time.monotonic() < deadline and not job.done()
        time.sleep(0.02)
    assert job.cancel()
    results = job.result(timeout=60)
    rows = read(path, BATCH_SCHEMA)
    assert rows.sort("topic", "rank").equals(results.df.sort("topic", "rank"))
    assert dict(rows.group_by("status").len().iter_rows()) == {"ok": 2, "cancelled": 6}
    assert not is_open(path)


def test_a_dask_batch_streams_its_rows_on_the_client(search: SearchServer, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = distributed.Client(cluster)
    path = tmp_path / "dask.ndjson"
    topics = ["honeybee colony", "marathon training", "sourdough starter", "grid batteries", "python notes"]
    try:
        results = research_many(topics, executor=client, source="searxng", base_url=search.searxng_url,
                                allow_private_networks=True, display=False, store=None, stream_to=path)
    finally:
        client.close()
        cluster.close()
    rows = read(path, BATCH_SCHEMA)
    assert results.df.height > 0
    assert rows.sort("topic", "rank").equals(results.df.sort("topic", "rank"))
    assert not is_open(path)
