"""Cited synthesis: the extractive default, and a chat-completions synthesizer against a loopback server."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from torq_nb.research.synthesize import (
    NO_SOURCES,
    ExtractiveSynthesizer,
    OpenAICompatibleSynthesizer,
    SourceText,
    SynthesisError,
    not_covered,
    split_sentences,
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
    return [s for paragraph in summary.split("\n\n") for s in split_sentences(paragraph)]


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


async def test_relevant_sentences_are_chosen_and_ordered_by_source_then_position() -> None:
    summary = await ExtractiveSynthesizer(max_sentences=4).synthesize(TOPIC, SOURCES)
    found = sentences_of(summary)
    assert len(found) == 4
    assert "bakery festival" not in summary and "Rain is expected" not in summary
    ranks = [min(citations(s)) for s in found]
    assert ranks == sorted(ranks)
    assert summary.index("approved the new tram line") < summary.index("Construction of the tram line")
    assert summary.count("\n\n") == len(set(ranks)) - 1  # one paragraph per cited source


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


async def test_page_reference_marks_do_not_pose_as_citations() -> None:
    text = "The tram line was approved by the city council in March.[12] The council vote was close.[citation needed]"
    summary = await ExtractiveSynthesizer().synthesize(
        TOPIC, [SourceText(2, "wiki", "https://w.example/", text)]
    )
    assert "[12]" not in summary and "citation needed" not in summary
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


def test_chat_answer_lines_are_sentences_of_their_own() -> None:
    assert validate_citations("- Trams run [1]\n- Buses too [2]\n- Boats [3]", {1, 2}) == (
        "Trams run [1]. Buses too [2]."
    )


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
