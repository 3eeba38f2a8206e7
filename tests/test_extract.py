"""Main-text extraction with real trafilatura, and the process-pool Extractor."""

from __future__ import annotations

import asyncio
import gzip
import json
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from torq_nb.research.extract import Extractor, extract, shared_extractor
from torq_nb.research.models import Page

CORPUS = Path(os.environ.get("TORQ_NB_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus"))

PARAGRAPHS = [
    "The city council approved the new tram line on Tuesday after a debate that lasted four hours.",
    "Construction will begin next spring and the first trams are expected to run in three years.",
    "Residents along the route said they welcomed the project but worried about noise during the works.",
    "The transport department estimates that the line will carry forty thousand passengers a day.",
]

ARTICLE = f"""<!DOCTYPE html>
<html lang="en"><head>
<title>Council approves tram line | Example Gazette</title>
<meta property="og:title" content="Council approves tram line">
<meta name="author" content="Jane Doe">
<meta property="article:published_time" content="2024-03-05T09:30:00Z">
<script>var tracking = "do not extract me";</script>
<style>body {{ color: red; }}</style>
</head><body>
<nav><a href="/">Home</a> <a href="/news">News</a> <a href="/sport">Sport</a></nav>
<article>
<h1>Council approves tram line</h1>
{"".join(f"<p>{p}</p>" for p in PARAGRAPHS)}
</article>
<footer>Copyright Example Gazette. All rights reserved.</footer>
</body></html>"""


def html_page(
    body: str, content_type: str | None = "text/html; charset=utf-8", url: str = "https://example.org/a"
) -> Page:
    return Page(url=url, status="ok", content_type=content_type, text=body)


def test_article_text_title_author_and_date() -> None:
    doc = extract(html_page(ARTICLE))
    assert doc is not None
    for paragraph in PARAGRAPHS:
        assert paragraph in doc.text
    assert "do not extract me" not in doc.text
    assert "color: red" not in doc.text
    assert "All rights reserved" not in doc.text
    assert doc.title == "Council approves tram line"
    assert doc.author == "Jane Doe"
    assert doc.published == date(2024, 3, 5)
    assert doc.word_count >= sum(len(p.split()) for p in PARAGRAPHS)


def test_text_decoded_from_other_charsets_stays_intact() -> None:
    german = "Die Stadtverwaltung begrüßt die Änderung der Straßenbahnlinie ausdrücklich und öffentlich. " * 3
    russian = "Городской совет одобрил новую линию трамвая во вторник после долгих обсуждений. " * 3
    japanese = "市議会は火曜日に新しい路面電車の路線を承認しました。工事は来年の春に始まります。" * 3
    body = f"<html><head><title>Grüße aus Köln</title></head><body><article><p>{german}</p><p>{russian}</p><p>{japanese}</p></article></body></html>"
    # What a fetcher hands over after decoding a windows-1252 / koi8-r / shift_jis body: a str.
    doc = extract(html_page(body, "text/html; charset=windows-1252"))
    assert doc is not None
    assert "begrüßt die Änderung der Straßenbahnlinie" in doc.text
    assert "одобрил новую линию трамвая" in doc.text
    assert "路面電車の路線を承認しました" in doc.text
    assert doc.title == "Grüße aus Köln"


def test_tiny_page_trafilatura_skips_still_gives_its_text() -> None:
    doc = extract(
        html_page(
            "<html><head><title>Hi</title><script>x()</script></head><body><nav>Menu</nav><p>Hello there.</p></body></html>"
        )
    )
    assert doc is not None
    assert "Hello there." in doc.text and "x()" not in doc.text
    assert doc.title == "Hi"


def test_fallback_keeps_blocks_apart() -> None:
    doc = extract(html_page("<div>First block</div><div>Second <b>bold</b> block</div>"))
    assert doc is not None
    assert doc.text.splitlines() == ["First block", "Second bold block"]


def test_huge_page_still_gives_all_its_text_without_navigation() -> None:
    rows = "".join(f"<tr><td>row {i}</td><td>value {i}</td></tr>" for i in range(30_000))
    doc = extract(html_page(f"<html><body><nav>Home News</nav><table>{rows}</table></body></html>"))
    assert doc is not None
    lines = doc.text.splitlines()
    assert lines[0] == "row 0 value 0" and lines[-1] == "row 29999 value 29999"
    assert "Home News" not in doc.text


@pytest.mark.parametrize(
    "body",
    [
        "",
        "   \n\t  ",
        "<html></html>",
        "<html><head><title></title></head><body></body></html>",
        "<html><body><script>alert('only code')</script><style>p{}</style></body></html>",
        "<!-- just a comment -->",
    ],
)
def test_pages_without_text_give_none(body: str) -> None:
    assert extract(html_page(body)) is None


def test_binary_body_gives_none() -> None:
    rng = random.Random(7)
    noise = bytes(rng.randrange(256) for _ in range(5000)).decode("latin-1")
    assert extract(html_page(noise)) is None
    assert extract(html_page("\x00\x01\x02\x03" * 500 + "<p>hidden</p>")) is None


@pytest.mark.parametrize(
    "body",
    [
        "<" * 20000,
        "<div>" * 20000 + "deep text",
        "<p>unclosed <b>tags <i>everywhere <table><tr><td>cell",
        "<html><body><p>nul\x00bytes\x01and\x1fcontrols in an otherwise readable sentence</p></body></html>",
        "<?xml version='1.0' encoding='utf-8'?><html><body><p>declared encoding in a str</p></body></html>",
        "<html><body>" + "<p>" + "word " * 200_000 + "</p></body></html>",
        "</body></html><html><body><p>inside out</p>",
        "<svg><script>alert(1)</script></svg><p>after svg</p>",
    ],
    ids=[
        "angle-brackets",
        "deep-nesting",
        "unclosed",
        "control-chars",
        "xml-declaration",
        "1MB-paragraph",
        "inside-out",
        "svg-script",
    ],
)
def test_malformed_or_hostile_html_never_raises(body: str) -> None:
    doc = extract(html_page(body))
    assert doc is None or (doc.text.strip() and "alert(1)" not in doc.text)


def test_control_characters_are_dropped_not_fatal() -> None:
    doc = extract(
        html_page(
            "<html><body><p>nul\x00bytes and\x1f controls in an otherwise readable sentence</p></body></html>"
        )
    )
    assert doc is not None
    assert "nulbytes and controls" in doc.text


def test_error_page_has_no_document() -> None:
    assert extract(Page(url="https://example.org/x", status="error", error="HTTP 500")) is None
    assert extract(Page(url="https://example.org/x", status="ok", text=None)) is None


def test_plain_text_passes_through_titled_by_first_line() -> None:
    doc = extract(
        html_page("Release notes\r\n\r\n\r\n\r\nVersion 2 fixes <b>the</b> parser.\n", "text/plain")
    )
    assert doc is not None
    assert doc.title == "Release notes"
    assert doc.text == "Release notes\n\nVersion 2 fixes <b>the</b> parser."


def test_markdown_title_is_its_first_heading() -> None:
    doc = extract(
        html_page("Intro line\n\n## Getting started ##\n\nInstall it.", "text/markdown; charset=utf-8")
    )
    assert doc is not None
    assert doc.title == "Getting started"
    assert "Install it." in doc.text


def test_missing_content_type_is_sniffed() -> None:
    assert extract(html_page(ARTICLE, content_type=None)).title == "Council approves tram line"  # type: ignore[union-attr]
    doc = extract(html_page("just some words", content_type=None))
    assert doc is not None and doc.text == "just some words"


# --- the corpus (real pages); skipped only where the shared corpus is not laid out -----------------


@pytest.mark.skipif(not (CORPUS / "ground-truth.json").is_file(), reason=f"no corpus at {CORPUS}")
async def test_corpus_pages_extract_their_article() -> None:
    truth = json.loads((CORPUS / "ground-truth.json").read_text(encoding="utf-8"))
    keys = sorted(truth)
    pages = [
        html_page(
            gzip.decompress((CORPUS / "html" / f"{key}.html.gz").read_bytes()).decode("utf-8"),
            url=truth[key]["url"],
        )
        for key in keys
    ]
    with Extractor(workers=2) as extractor:
        docs = await asyncio.gather(*(extractor.extract(page) for page in pages))
    recalls = []
    for key, doc in zip(keys, docs):
        assert doc is not None, f"no text from corpus page {key}"
        gold = set(re.findall(r"\w+", truth[key]["articleBody"].lower()))
        got = set(re.findall(r"\w+", doc.text.lower()))
        recalls.append(len(gold & got) / len(gold) if gold else 1.0)
    assert sum(recalls) / len(recalls) > 0.9
    assert sum(doc.title is not None for doc in docs if doc) > 0.9 * len(docs)


# --- Extractor: off the event loop, in worker processes -------------------------------------------


def new_children(before: set[int]) -> list[multiprocessing.process.BaseProcess]:
    """Worker processes started since `before` (other tests may keep a shared extractor alive)."""
    return [child for child in multiprocessing.active_children() if child.pid not in before]


def ignores_sigint(pid: int) -> bool:
    """Whether the process ignores SIGINT, from its signal mask in /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    return False


def running() -> set[int]:
    return {child.pid for child in multiprocessing.active_children() if child.pid is not None}


def article(i: int) -> Page:
    body = ARTICLE.replace("tram line", f"tram line {i}")
    return html_page(body, url=f"https://example.org/{i}")


async def test_extractor_matches_extract_for_concurrent_pages() -> None:
    pages = [article(i) for i in range(30)]
    before = running()
    with Extractor(workers=2) as extractor:
        docs = await asyncio.gather(*(extractor.extract(page) for page in pages))
        assert len(new_children(before)) == 2
    assert docs == [extract(page) for page in pages]
    assert new_children(before) == []


async def test_event_loop_keeps_running_while_pages_extract() -> None:
    big = html_page(
        "<html><body>" + "".join(f"<p>{p} {i}</p>" for i in range(400) for p in PARAGRAPHS) + "</body></html>"
    )
    ticks = 0
    done = asyncio.Event()

    async def progress() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    with Extractor(workers=2) as extractor:
        extractor.warm_up()
        ticker = asyncio.create_task(progress())
        docs = await asyncio.gather(*(extractor.extract(big) for _ in range(4)))
        done.set()
        await ticker
    assert all(doc is not None and doc.word_count > 10_000 for doc in docs)
    assert ticks > 4  # the loop ran the progress task while workers extracted


async def test_cancelling_the_awaiting_task_returns_and_leaves_no_process() -> None:
    big = html_page(
        "<html><body>" + "".join(f"<p>{p} {i}</p>" for i in range(400) for p in PARAGRAPHS) + "</body></html>"
    )
    before = running()
    extractor = Extractor(workers=2)
    run = asyncio.ensure_future(asyncio.gather(*(extractor.extract(big) for _ in range(40))))
    await asyncio.sleep(0.3)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(run, timeout=30)
    # Still usable after a cancelled run, then closed with nothing left behind.
    assert (await extractor.extract(article(1))) is not None
    extractor.close()
    assert new_children(before) == []
    with pytest.raises(RuntimeError, match="closed"):
        await extractor.extract(article(2))


async def test_a_killed_worker_does_not_lose_pages_and_processes_come_back() -> None:
    others = running()
    with Extractor(workers=2) as extractor:
        assert await extractor.extract(article(0)) is not None
        workers = new_children(others)
        for child in workers:
            child.kill()
            child.join()
        docs = await asyncio.gather(*(extractor.extract(article(i)) for i in range(5)))
        before = {child.pid for child in workers}
        after = {child.pid for child in new_children(others)}
    assert [doc.title for doc in docs if doc] == [f"Council approves tram line {i}" for i in range(5)]
    assert len(after) == 2 and not after & before  # a fresh pool, still off the event loop


async def test_kernel_interrupt_does_not_break_the_pool() -> None:
    others = running()
    with Extractor(workers=2) as extractor:
        assert await extractor.extract(article(0)) is not None
        workers = {child.pid for child in new_children(others)}
        # A worker ignores SIGINT once its initializer has run; wait for that (an interrupt during the
        # pool's start-up is the replaced-pool case above).
        deadline = time.monotonic() + 60
        while not all(ignores_sigint(pid) for pid in workers) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for pid in workers:  # what Jupyter's interrupt does to the kernel's process group
            os.kill(pid, signal.SIGINT)
        docs = await asyncio.gather(*(extractor.extract(article(i)) for i in range(5)))
        assert {child.pid for child in new_children(others)} == workers
    assert all(doc is not None for doc in docs)


def test_a_script_piped_on_stdin_extracts_without_tracebacks() -> None:
    script = (
        "import asyncio\n"
        "from torq_nb.research.extract import Extractor\n"
        "from torq_nb.research.models import Page\n"
        "async def main():\n"
        "    with Extractor(workers=2) as extractor:\n"
        "        page = Page(url='u', status='ok', content_type='text/html', text='<p>piped page</p>')\n"
        "        print((await extractor.extract(page)).text)\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-"], check=False, input=script, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "piped page"
    assert "Traceback" not in done.stderr


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Extractor(workers=0)


def test_shared_extractor_is_one_instance() -> None:
    assert shared_extractor() is shared_extractor()
