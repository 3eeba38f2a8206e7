"""Cited synthesis: the extractive default, and a chat-completions synthesizer against a loopback server."""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import AsyncIterator, Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from fake_search import (
    CORPUS,
    FIXTURE_PAGES,
    FakePage,
    SearchServer,
    corpus_available,
    default_folder,
    load_pages,
)

from torq_nb.research.extract import extract
from torq_nb.research.models import Page
from torq_nb.research.synthesize import (
    NO_SOURCES,
    ExtractiveSynthesizer,
    OpenAICompatibleSynthesizer,
    SourceText,
    SynthesisError,
    cite,
    not_covered,
    split_sentences,
    standalone_problem,
    validate_citations,
)

TOPIC = "tram line council"

SOURCES = [
    SourceText(
        rank=1,
        title="Council approves tram line",
        url="https://example.org/1",
        text=(
            "The city council approved the new tram line on Tuesday after a four hour debate.\n\n"
            "Construction of the tram line will begin next spring, the council said. "
            "The mayor also opened a bakery festival in the old town square last weekend. "
            "Officials expect the first trams on the line to run within three years."
        ),
    ),
    SourceText(
        rank=2,
        title="Tram line: what residents say",
        url="https://example.org/2",
        text=(
            "The city council approved the new tram line on Tuesday after a four-hour debate! "
            "Residents along the tram line welcomed the council's decision but fear noise during the works. "
            "Shops near the route hope the tram line brings more customers to the high street."
        ),
    ),
    SourceText(
        rank=4,
        title="Weather",
        url="https://example.org/4",
        text="Rain is expected across the region on Thursday with strong winds along the coast in the evening.",
    ),
]

CITED_SENTENCE = re.compile(r"^.+ ((?:\[\d+\])+)[.!?…。！？]$")


def sentences_of(summary: str) -> list[str]:
    """The summary's sentences: each ends with its citations and closing punctuation."""
    return [s for s in re.split(r"(?<=\][.!?…。！？])\s+", summary.strip()) if s]


def citations(sentence: str) -> set[int]:
    match = CITED_SENTENCE.match(sentence)
    assert match, f"sentence does not end with its citation: {sentence!r}"
    return {int(n) for n in re.findall(r"\d+", match.group(1))}


async def test_every_sentence_cites_a_given_source() -> None:
    summary = await ExtractiveSynthesizer().synthesize(TOPIC, SOURCES)
    given = {s.rank for s in SOURCES}
    found = sentences_of(summary)
    assert found
    for sentence in found:
        assert citations(sentence) <= given


async def test_relevant_sentences_are_chosen_and_grouped_by_source_in_page_order() -> None:
    summary = await ExtractiveSynthesizer(max_sentences=4).synthesize(TOPIC, SOURCES)
    found = sentences_of(summary)
    assert len(found) == 4
    assert "bakery festival" not in summary and "Rain is expected" not in summary
    for paragraph in summary.split("\n\n"):  # one paragraph per cited source
        assert len({min(citations(s)) for s in sentences_of(paragraph)}) == 1
    ranks = [min(citations(s)) for s in found]
    assert summary.count("\n\n") == len(set(ranks)) - 1
    assert summary.index("approved the new tram line") < summary.index("Construction of the tram line")


async def test_the_page_most_about_the_topic_speaks_first() -> None:
    passing_mention = SourceText(
        1,
        "Around town",
        "https://example.org/town",
        "The mayor opened a bakery festival in the old town square last weekend. "
        "Visitors sampled bread from forty bakeries and a brass band played until midnight. "
        "Some visitors asked when the council will finally decide on the tram line.",
    )
    about = SourceText(2, SOURCES[0].title, SOURCES[0].url, SOURCES[0].text)
    summary = await ExtractiveSynthesizer().synthesize(TOPIC, [passing_mention, about])
    assert summary.startswith("The city council approved the new tram line on Tuesday")
    assert citations(sentences_of(summary)[0]) == {2}


async def test_a_sentence_repeated_inside_a_longer_one_appears_once() -> None:
    short = "The city council approved the new tram line on Tuesday evening."
    longer = (
        "The city council approved the new tram line on Tuesday evening, after residents along the "
        "route had protested against the noise for months."
    )
    summary = await ExtractiveSynthesizer().synthesize(
        TOPIC, [SourceText(1, "a", "https://a.example/", short), SourceText(2, "b", "https://b.example/", longer)]
    )
    assert len(sentences_of(summary)) == 1


async def test_near_duplicate_sentences_appear_once() -> None:
    summary = await ExtractiveSynthesizer().synthesize(TOPIC, SOURCES)
    assert summary.count("approved the new tram line on Tuesday") == 1
    words = [frozenset(re.findall(r"\w+", s.lower())) for s in sentences_of(summary)]
    assert len(words) == len(set(words))


async def test_one_source_can_fill_the_summary_when_alone() -> None:
    only = [SOURCES[0]]
    summary = await ExtractiveSynthesizer(max_sentences=8, max_per_source=1).synthesize(TOPIC, only)
    assert {n for s in sentences_of(summary) for n in citations(s)} == {1}
    assert len(sentences_of(summary)) == 3  # the three sentences that mention the topic


async def test_no_sources_says_so_without_citations() -> None:
    for sources in ([], [SourceText(1, "empty", "https://example.org/e", "  \n ")]):
        summary = await ExtractiveSynthesizer().synthesize(TOPIC, sources)
        assert summary == NO_SOURCES
        assert not re.search(r"\[\d+\]", summary)


async def test_a_topic_the_pages_do_not_cover_is_said_so_without_citations() -> None:
    summary = await ExtractiveSynthesizer(max_sentences=3).synthesize("zebra migration", SOURCES)
    assert summary == not_covered("zebra migration", 3)
    assert "zebra migration" in summary and not re.search(r"\[\d+\]", summary)
    assert await ExtractiveSynthesizer().synthesize("?!", SOURCES) == not_covered("?!", 3)  # no word at all


HOSTILE = (
    "Attackers wrote <script>alert('x')</script> into the tram line council page for everyone.\n"
    "# Tram line council heading injected at the start of a line here.\n"
    "Click [the tram line council](javascript:alert(1)) to learn far more about it. "
    "- tram line council bullet | col | col | that pretends to be a table row. "
    "1. Tram line council ordered list item trying to become a list. "
    "A tram line council image ![x](https://evil.example/p.png) and &lt;b&gt; entity and $x^2$ math."
)


async def test_hostile_page_text_stays_one_plain_line_per_sentence() -> None:
    summary = await ExtractiveSynthesizer(max_sentences=10, max_per_source=10).synthesize(
        TOPIC, [SourceText(3, "hostile", "https://evil.example/", HOSTILE)]
    )
    assert "\n" not in summary  # one source, one paragraph: the page's line breaks are gone
    assert "\\" not in summary  # plain text: nothing is escaped here, the exports escape where they write
    assert "<script>alert('x')</script>" in summary
    assert re.findall(r"\[\d+\]", summary) == ["[3]"] * len(sentences_of(summary))
    for sentence in sentences_of(summary):
        assert citations(sentence) == {3}


async def test_markup_characters_come_through_verbatim() -> None:
    sentence = (
        r"Solar power costs $0.06/kWh in *sunny* regions_of_the_south, #1 in the table <b> | col | "
        r"and C:\path\to\file \$ stays as \* written"
    )
    summary = await ExtractiveSynthesizer().synthesize(
        "solar power costs", [SourceText(1, "t", "https://example.org/s", sentence + ".")]
    )
    assert summary == sentence + " [1]."
    chat = validate_citations(sentence + " [1].", {1})
    assert chat == sentence + " [1]."


def test_a_citation_goes_after_a_closing_quote_and_before_the_full_stop() -> None:
    assert cite("HP is called “feather duvet lung.”", [3]) == "HP is called “feather duvet lung” [3]."
    assert cite("The council approved the tram line.", [1, 2]) == "The council approved the tram line [1][2]."
    assert cite("New trams for the city", [1]) == "New trams for the city [1]."


async def test_page_reference_marks_do_not_pose_as_citations() -> None:
    text = (
        "The tram line was approved by the city council in March.[12] The council vote was close.[citation needed] "
        "The tram line council met again in April [3-5] and in May [1, 2]."
    )
    summary = await ExtractiveSynthesizer().synthesize(
        TOPIC, [SourceText(2, "wiki", "https://w.example/", text)]
    )
    assert "[12]" not in summary and "citation needed" not in summary and "[3-5]" not in summary
    assert "[1, 2]" not in summary and "May [2]." in summary
    assert {n for s in sentences_of(summary) for n in citations(s)} == {2}


async def test_multilingual_sentences_are_split_and_cited() -> None:
    text = (
        "Der Stadtrat hat die neue Straßenbahnlinie am Dienstag genehmigt, z. B. für den Süden. "
        "Городской совет одобрил новую линию трамвая во вторник вечером. "
        "市議会は火曜日に新しい路面電車の路線を承認しました。工事は来年の春に始まる予定です。"
    )
    synth = ExtractiveSynthesizer(max_sentences=5)
    summary = await synth.synthesize("Straßenbahnlinie", [SourceText(1, "de", "u", text)])
    assert (
        summary
        == "Der Stadtrat hat die neue Straßenbahnlinie am Dienstag genehmigt, z. B. für den Süden [1]."
    )
    russian = await synth.synthesize("линию трамвая", [SourceText(1, "ru", "u", text)])
    assert russian == "Городской совет одобрил новую линию трамвая во вторник вечером [1]."
    japanese = await synth.synthesize("路面電車", [SourceText(1, "ja", "u", text)])  # no spaces: character pairs
    assert japanese == "市議会は火曜日に新しい路面電車の路線を承認しました [1]。"
    assert await synth.synthesize("unrelated", [SourceText(1, "de", "u", text)]) == not_covered("unrelated", 1)


def test_headings_stay_apart_and_hard_wrapped_prose_is_joined() -> None:
    extracted = (
        "New trams for the city\n"
        "The council approved the new tram line on Tuesday after a long debate in the town hall.\n"
        "COSTS\n"
        "The line will cost 400 million euros."
    )
    assert split_sentences(extracted) == [
        "New trams for the city",
        "The council approved the new tram line on Tuesday after a long debate in the town hall.",
        "COSTS",
        "The line will cost 400 million euros.",
    ]
    wrapped = (
        "The council approved the new tram line on Tuesday after a\n"
        "long debate. The line will cost 400 million\n"
        "euros.\n\nSecond paragraph here."
    )
    assert split_sentences(wrapped) == [
        "The council approved the new tram line on Tuesday after a long debate.",
        "The line will cost 400 million euros.",
        "Second paragraph here.",
    ]


async def test_headlines_are_never_summary_sentences() -> None:
    sentence = "The city council approved the new tram line today, after a debate that lasted four hours"
    text = f"New tram line approved by the city council today\n{sentence}."
    summary = await ExtractiveSynthesizer().synthesize(TOPIC, [SourceText(1, "t", "u", text)])
    assert summary == f"{sentence} [1]."
    headlines_only = (
        "New tram line approved by the city council today\n\nCouncil tram line vote draws a crowd"
    )
    summary = await ExtractiveSynthesizer().synthesize(TOPIC, [SourceText(1, "t", "u", headlines_only)])
    assert summary == not_covered(TOPIC, 1)  # headlines are never summary sentences


# --- standalone sentences, on real pages -----------------------------------------------------------------
# The corpus (../shared/corpus) when it is there, else the committed fixture pages; either way the pages'
# text as torq_nb extracts it, which is what the synthesizer is given.


@cache
def pages_of(folder: Path) -> list[FakePage]:
    return load_pages(folder)


@cache
def extracted(folder: Path, page_id: str) -> str:
    page = next(p for p in pages_of(folder) if p.id.startswith(page_id))
    doc = extract(Page(url=f"https://example.org/{page.id}", status="ok", content_type="text/html", text=page.html))
    assert doc is not None and doc.text
    return doc.text


def real_sentence(folder: Path, page_id: str, start: str) -> tuple[str, list[str]]:
    """The page's sentence that starts with ``start``, and the two sentences before it."""
    sentences = split_sentences(extracted(folder, page_id))
    i = next(i for i, s in enumerate(sentences) if s.startswith(start))
    return sentences[i], sentences[max(0, i - 2) : i]


FIXTURE_SENTENCES = [
    ("sourdough-starter", "It is far tougher than its reputation", "points back"),
    ("sourdough-starter", "Rehydrated with flour and water, it will", "points back"),
    ("python-asyncio-event-loop", "Such work belongs in a thread", "points back"),
    ("marathon-training", "It reverses within a few months", "points back"),
    ("sourdough-starter", "A sourdough starter is a culture", None),
    ("python-asyncio-event-loop", "asyncio.gather runs several coroutines", None),
    ("deep-sea-mining", "Until rules are adopted", None),
    ("marathon-training", "Months of marathon training remodel", None),
]
# The sentences issue 12 saw in summaries, and their neighbours.
CORPUS_SENTENCES = [
    ("7a664e40", "He denied that he, U.S. Ambassador", "points back"),
    ("b0cf2bbf", "The initiative is part of the Fourth Energy", "points back"),
    ("dc7ccccc", "However, Swedish prosecutors decided", "points back"),
    ("fde930b0", "- Ousted WeWork CEO Adam Neumann", "list fragment"),
    ("c7e39ac4", "What was the Swedish investigation about", "question"),
    ("b0cf2bbf", "South Korea’s Ministry of Trade, Industry and Energy", None),
    ("7a664e40", "Volker said he had no knowledge of any efforts", None),
    ("7a664e40", "Here are some of the highlights", "list fragment"),
    ("7a664e40", "Key moments from Kurt Volker", "heading"),
]


@pytest.mark.parametrize(("page_id", "start", "problem"), FIXTURE_SENTENCES)
def test_standalone_rules_on_fixture_pages(page_id: str, start: str, problem: str | None) -> None:
    sentence, before = real_sentence(FIXTURE_PAGES, page_id, start)
    assert standalone_problem(sentence, before) == problem, sentence


@pytest.mark.skipif(not corpus_available(), reason=f"no corpus at {CORPUS}")
@pytest.mark.parametrize(("page_id", "start", "problem"), CORPUS_SENTENCES)
def test_standalone_rules_on_corpus_pages(page_id: str, start: str, problem: str | None) -> None:
    sentence, before = real_sentence(CORPUS, page_id, start)
    assert standalone_problem(sentence, before) == problem, sentence


@pytest.mark.parametrize(
    ("sentence", "problem"),
    [
        ("Photo: Getty Images A solar farm in the desert outside the city at dusk.", "caption"),
        ("By Jane Doe, Climate Correspondent, Tuesday 19 November 2019.", "byline"),
        ("We use cookies to improve your experience on our website and for advertising.", "boilerplate"),
        ("Subscribe to our newsletter for the latest renewable energy news every week.", "boilerplate"),
        ("Sign up for a Hulu ad-free account for $11.99 a month.", "boilerplate"),
        ("How much does a home solar system cost in 2019?", "question"),
        ("1. Install the panels on a south-facing roof if you can.", "list fragment"),
        ("Key facts about the new solar farm:", "list fragment"),
        ("SOLAR FARMS ARE TAKING OVER THE DESERT", "heading"),
        ("“Not everyone will succeed.”", "unattributed quote"),
        ("I don’t see the downside of solar power for homeowners.", "first person"),
        ("Because space travel and sustaining life off Earth are anything but easy.", "fragment"),
        ("In a statement, he said the solar farm would open next year.", "points back"),
        ("The company said the solar farm would open next year.", "points back"),
        ("“We are thrilled with the solar farm,” said Maria Lopez, the utility’s chief executive.", None),
        ("By most accounts, Punjab’s groundwater law worked and the water table stopped falling.", None),
        ("By most accounts, the law worked and the water table stopped falling.", "points back"),
    ],
)
def test_standalone_rules_by_kind(sentence: str, problem: str | None) -> None:
    assert standalone_problem(sentence) == problem


def words(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def fixture_or_corpus_topics() -> list[str]:
    if corpus_available():
        return ["wework investigation", "renewable energy", "electric vehicles", "hibernating astronauts"]
    return ["sourdough starter", "marathon training heart", "asyncio event loop", "grid batteries solar"]


@pytest.mark.parametrize("topic", fixture_or_corpus_topics())
def test_summaries_of_real_pages_hold_the_standalone_rules(topic: str) -> None:
    """Every summary sentence stands alone, or follows the page sentence it points back to."""
    folder = default_folder()
    server = SearchServer(pages_of(folder))  # never started: only its ranking of the pages is used
    sources = [
        SourceText(rank, page.title, f"https://example.org/{page.id}", extracted(folder, page.id))
        for rank, page in enumerate(server.ranked(topic)[:25], start=1)
    ]
    summary = ExtractiveSynthesizer().summarize(topic, sources)
    found = sentences_of(summary)
    assert found, summary
    page_sentences = {s.rank: split_sentences(s.text) for s in sources}
    previous: tuple[int, int] | None = None
    for sentence in found:
        (rank,) = citations(sentence)
        body = words(re.sub(r"\s*\[\d+\][.!?…。！？]$", "", sentence))
        lines = page_sentences[rank]
        i = next(i for i, line in enumerate(lines) if words(line).endswith(body))  # a dateline may be dropped
        problem = standalone_problem(lines[i], lines[max(0, i - 2) : i])
        assert problem in (None, "points back"), (problem, sentence)
        if problem == "points back":
            assert previous == (rank, i - 1), f"{sentence!r} does not follow the sentence it points back to"
        previous = (rank, i)
    shingles = [frozenset(zip(w, w[1:], w[2:], strict=False)) for w in (re.findall(r"\w+", s.lower()) for s in found)]
    for a, b in itertools.combinations(shingles, 2):
        assert len(a & b) <= 0.5 * min(len(a), len(b))


@pytest.mark.skipif(not corpus_available(), reason=f"no corpus at {CORPUS}")
@pytest.mark.parametrize(
    ("topic", "unwanted"),
    [
        ("renewable energy", ["Sondland", "Europa", "galaxies"]),
        ("electric vehicles", ["Falcon Heavy", "Delhi"]),
        ("wework investigation", ["Assange", "Swedish", "- Ousted"]),
    ],
)
def test_the_off_topic_sentences_issue_12_saw_are_gone(topic: str, unwanted: list[str]) -> None:
    server = SearchServer(pages_of(CORPUS))
    sources = [
        SourceText(rank, page.title, f"https://example.org/{page.id}", extracted(CORPUS, page.id))
        for rank, page in enumerate(server.ranked(topic)[:25], start=1)
    ]
    summary = ExtractiveSynthesizer().summarize(topic, sources)
    assert sentences_of(summary)
    for text in unwanted:
        assert text not in summary


@pytest.mark.parametrize(
    ("topic", "page_id"),
    [("marathon training heart", "marathon-training"), ("asyncio event loop", "python-asyncio-event-loop")],
)
def test_the_summary_opens_with_the_lead_of_the_page_most_about_the_topic(topic: str, page_id: str) -> None:
    others = ["grid-batteries-solar", "sourdough-starter", "roman-aqueducts"]
    sources = [
        SourceText(rank, key, f"https://example.org/{key}", extracted(FIXTURE_PAGES, key))
        for rank, key in enumerate([*others, page_id], start=1)
    ]
    summary = ExtractiveSynthesizer().summarize(topic, sources)
    lead = next(s for s in split_sentences(extracted(FIXTURE_PAGES, page_id)) if standalone_problem(s) is None)
    assert summary.startswith(lead.rstrip(".") + " [4].")


def test_a_page_barely_about_the_topic_contributes_nothing() -> None:
    """The deep-sea mining page mentions batteries once; the grid page is about them."""
    sources = [
        SourceText(rank, key, f"https://example.org/{key}", extracted(FIXTURE_PAGES, key))
        for rank, key in enumerate(["deep-sea-mining", "grid-batteries-solar"], start=1)
    ]
    summary = ExtractiveSynthesizer().summarize("batteries for the grid", sources)
    assert sentences_of(summary)
    assert all(citations(s) == {2} for s in sentences_of(summary))


def test_chat_answer_lines_are_sentences_of_their_own() -> None:
    assert validate_citations("- Trams run [1]\n- Buses too [2]\n- Boats [3]", {1, 2}) == (
        "Trams run [1]. Buses too [2]."
    )


def test_chat_citations_in_other_formats_count_and_unread_rows_are_never_shown() -> None:
    answer = (
        "**Solar** is cheap [1-2]. Wind grows too [1–3]. Coal 【2†source】 is dying. Hydro [^1] is steady. "
        "Tides rise [source 2]. Geothermal is niche [4]. Biomass [1] is cited as [7 above] too [1]."
    )
    kept = validate_citations(answer, {1, 2})
    assert kept == (
        "Solar is cheap [1][2]. Coal is dying [2]. Hydro is steady [1]. Tides rise [2]."
    )
    assert set(re.findall(r"\d+", kept)) <= {"1", "2"}


# --- OpenAI-compatible chat completions, against a loopback server --------------------------------

Handler = Callable[[dict[str, Any]], web.Response]


@pytest.fixture
async def chat_server() -> AsyncIterator[tuple[str, list[dict[str, Any]], list[Handler]]]:
    """A /v1/chat/completions endpoint on 127.0.0.1; tests push a handler, requests are recorded."""
    seen: list[dict[str, Any]] = []
    handlers: list[Handler] = []

    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append({"body": body, "auth": request.headers.get("Authorization")})
        return handlers[0](body)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v1", seen, handlers
    finally:
        await runner.cleanup()


def answer(content: Any) -> Handler:
    def handler(body: dict[str, Any]) -> web.Response:
        return web.json_response(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
            }
        )

    return handler


async def test_chat_synthesizer_sends_numbered_sources_and_keeps_valid_citations(
    chat_server: tuple[str, list[dict[str, Any]], list[Handler]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen, handlers = chat_server
    monkeypatch.setenv("TORQ_TEST_KEY", "sk-test")
    handlers.append(
        answer(
            "The council approved the tram line [1]. Residents fear noise [2]. "
            "Trams will fly to the moon [9]. Nobody knows why. "
            "Shops hope for customers. [2] <img src=x onerror=alert(1)> is here [1, 2]."
        )
    )
    synth = OpenAICompatibleSynthesizer(url, "test-model", api_key_env="TORQ_TEST_KEY")
    summary = await synth.synthesize(TOPIC, SOURCES)

    request = seen[0]
    assert request["auth"] == "Bearer sk-test"
    assert request["body"]["model"] == "test-model"
    prompt = request["body"]["messages"][-1]["content"]
    assert "[1] Council approves tram line <https://example.org/1>" in prompt and "[4] Weather" in prompt
    found = sentences_of(summary)
    assert [citations(s) for s in found] == [{1}, {2}, {2}, {1, 2}]
    assert "moon" not in summary and "Nobody knows" not in summary
    assert "[2] <img src=x onerror=alert(1)> is here [1][2]." not in summary  # a citation mid-sentence is moved
    assert "<img src=x onerror=alert(1)> is here [1][2]." in summary  # plain text: the exports escape it


@pytest.mark.parametrize(
    "handler",
    [
        lambda body: web.Response(status=500, text="model overloaded"),
        answer("Nothing here cites anything."),
        answer(None),
        lambda body: web.json_response({"error": {"message": "bad"}}),
        lambda body: web.Response(text="not json at all"),
    ],
)
async def test_chat_failures_fall_back_to_extractive_or_raise_when_strict(
    chat_server: tuple[str, list[dict[str, Any]], list[Handler]],
    handler: Handler,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, _, handlers = chat_server
    handlers.append(handler)
    with caplog.at_level(logging.WARNING):
        summary = await OpenAICompatibleSynthesizer(url, "m").synthesize(TOPIC, SOURCES)
    assert summary == await ExtractiveSynthesizer().synthesize(TOPIC, SOURCES)
    assert "extractive summary instead" in caplog.text and url in caplog.text
    with pytest.raises(SynthesisError, match=re.escape(url)):
        await OpenAICompatibleSynthesizer(url, "m", strict=True).synthesize(TOPIC, SOURCES)


async def test_chat_endpoint_not_listening_is_a_clear_error() -> None:
    with pytest.raises(
        SynthesisError, match=re.escape("could not get a summary from http://127.0.0.1:9/chat/completions")
    ):
        await OpenAICompatibleSynthesizer("http://127.0.0.1:9", "m", strict=True).synthesize(TOPIC, SOURCES)


async def test_chat_synthesizer_with_no_sources_does_not_call_the_endpoint(
    chat_server: tuple[str, list[dict[str, Any]], list[Handler]],
) -> None:
    url, seen, _ = chat_server
    assert await OpenAICompatibleSynthesizer(url, "m").synthesize(TOPIC, []) == NO_SOURCES
    assert seen == []
