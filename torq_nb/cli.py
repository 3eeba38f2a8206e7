"""The torq-nb command: research a topic from a terminal, or re-export a saved run.

    torq-nb research "solar storage" --depth standard --source wikipedia --export report.pdf --export results.csv
    torq-nb export run.json report.pdf

Exit status: 0 success, 1 the run failed, 2 bad arguments, 130 interrupted (partial results still exported).

The engine (Polars, aiohttp, trafilatura, nbconvert, ...) is imported only once a command runs, inside the
Ctrl-C handling: ``--help`` answers at once, and a Ctrl-C during the imports is an interruption, not a traceback.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import textwrap
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from torq_nb.api import DepthName

if TYPE_CHECKING:
    from torq_nb.research.results import ResearchResults

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: The option each built-in source takes its endpoint from, with the flag and environment variable twins.
_ENDPOINTS = {
    "wikipedia": ("endpoint", "--wikipedia-url", "TORQ_NB_WIKIPEDIA_URL"),
    "searxng": ("base_url", "--searxng-url", "TORQ_NB_SEARXNG_URL"),
    "duckduckgo": ("endpoint", "--duckduckgo-url", "TORQ_NB_DUCKDUCKGO_URL"),
    "local": ("path", "--local-path", "TORQ_NB_LOCAL_PATH"),
}


class _UsageError(Exception):
    """Bad arguments found after parsing (an unknown export suffix, a missing file)."""


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _source_names() -> list[str]:
    """The sources installed under the ``torq_nb.sources`` entry points (the built-in ones among them),
    for the help text; choosing one by name still goes through resolve_source."""
    return sorted({point.name for point in entry_points(group="torq_nb.sources")})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torq-nb",
        description="Research a topic (search, fetch, extract, cited summary) or re-export a saved run.",
        epilog="Every option with [env: NAME] can also be set through that environment variable.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "research", help="research a topic, show its progress, print the summary and export the results",
        description="Research TOPIC: search, fetch and extract the pages, write a summary citing them, "
                    "and export the results. Exits 0 on success, 1 if the run failed, 2 for bad arguments "
                    "and 130 on Ctrl-C (partial results are still exported).",
    )
    run.add_argument("topic", help="what to research, in quotes")
    run.add_argument("--depth", choices=list(get_args(DepthName)), default=os.environ.get("TORQ_NB_DEPTH", "standard"),
                     help="quick: top 5 snippets, no fetching; standard: top 10 pages read; deep: three query "
                          "variants, up to 50 pages read (default: standard) [env: TORQ_NB_DEPTH]")
    run.add_argument("--source", default=os.environ.get("TORQ_NB_SOURCE") or "wikipedia",
                     help=f"where to search: {', '.join(_source_names())} (default: wikipedia) [env: TORQ_NB_SOURCE]")
    for option, flag, variable in _ENDPOINTS.values():
        run.add_argument(flag, dest=flag[2:].replace("-", "_"), default=None, metavar="URL" if option != "path" else "DIR",
                         help=f"the {flag[2:].split('-')[0]} source's {'folder' if option == 'path' else 'endpoint'} [env: {variable}]")
    run.add_argument("--allow-private-networks", action="store_true", default=_env_flag("TORQ_NB_ALLOW_PRIVATE_NETWORKS"),
                     help="also fetch pages on loopback and private addresses (refused by default) "
                          "[env: TORQ_NB_ALLOW_PRIVATE_NETWORKS=1]")
    run.add_argument("--export", action="append", default=[], metavar="PATH",
                     help="write the results to PATH; the suffix picks the format (.md .html .pdf .csv .json "
                          ".ndjson .parquet .ipynb .zip); repeat for several files")
    run.add_argument("--quiet", action="store_true", help="no progress line; only the summary")

    again = commands.add_parser("export", help="re-export a saved run (its JSON export) to any format",
                                description="Read RUN (a run saved with --export run.json) and write OUTPUT, "
                                            "whose suffix picks the format.")
    again.add_argument("run", type=Path, help="a run saved as JSON by torq-nb or results.export('run.json')")
    again.add_argument("output", type=Path, help="the file to write (.md .html .pdf .csv .json .ndjson .parquet .ipynb .zip)")
    again.add_argument("--format", default=None, help="the format, when OUTPUT's suffix does not say it")

    many = commands.add_parser(
        "research-many", help="research every topic of a file at once, with one progress view, and export them",
        description="Research every topic of TOPICS (one per line) concurrently over one fetch budget, print each "
                    "topic's outcome and export the batch: one report with a section per topic (.md .html .pdf), "
                    "one table of every row (.csv .json .ndjson .parquet). Exits 0 if any topic completed, 1 if none "
                    "did, 2 for bad arguments and 130 on Ctrl-C (partial results are still exported).",
    )
    many.add_argument("topics", help="a text file with one topic per line ('-' reads standard input); blank lines "
                                     "and lines starting with # are skipped, repeated topics researched once")
    many.add_argument("--query", default=None, metavar="TEMPLATE",
                      help="what each topic searches, e.g. '{topic} annual revenue' (default: the topic)")
    many.add_argument("--concurrency", type=int, default=None, metavar="N", help="topics researched at once (default: 8)")
    for action in run._actions:  # the research command's options, shared as they are
        if action.dest not in ("help", "topic"):
            many._add_action(action)
    return parser


def _write_exports(results: ResearchResults, paths: Sequence[str]) -> None:
    from torq_nb.export import export

    for path in paths:
        written = export(results, path)
        print(f"wrote {written}", file=sys.stderr)


def _wrapped(text: str) -> str:
    """``text`` wrapped to the terminal's width when standard output is one (long URLs stay whole)."""
    if not sys.stdout.isatty():
        return text
    width = shutil.get_terminal_size().columns
    return "\n".join(
        textwrap.fill(line, width, break_long_words=False, break_on_hyphens=False) if line.strip() else line
        for line in text.splitlines()
    )


def _research(args: argparse.Namespace) -> int:
    if args.export:  # the export machinery (nbformat, nbconvert: seconds to import) only when asked for
        from torq_nb.export import resolve_format

        for path in args.export:
            try:
                resolve_format(path)
            except ValueError as error:
                raise _UsageError(str(error)) from None
    from torq_nb import research
    from torq_nb.progress.terminal import TerminalProgress
    from torq_nb.research.pipeline import ResearchCancelled

    options = {}
    if args.source in _ENDPOINTS:
        option, flag, _ = _ENDPOINTS[args.source]
        value = getattr(args, flag[2:].replace("-", "_"))
        if value:
            options[option] = value
    callback = None if args.quiet else TerminalProgress(sys.stderr)
    try:
        results = research(args.topic, args.depth, args.source, display=False, progress_callback=callback,
                           allow_private_networks=args.allow_private_networks or None, **options)
    except ResearchCancelled as cancelled:
        print("interrupted" + (": exporting the partial results" if args.export else ""), file=sys.stderr)
        _write_exports(cancelled.results, args.export)
        return EXIT_INTERRUPTED
    except (ValueError, TypeError) as error:
        raise _UsageError(str(error)) from None
    except Exception as error:  # noqa: BLE001 - the run failed; say why, exit 1
        print(f"torq-nb: research failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(_wrapped(results.summary))
    counts = results.metadata.get("pages", {})
    print(f"\n{results.df.height} hits: {counts.get('ok', 0)} read, {counts.get('error', 0)} failed "
          f"({results.progress.duration if results.progress else 0:.1f} s)", file=sys.stderr)
    _write_exports(results, args.export)
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from torq_nb.export import export, load_run, resolve_format

    try:
        resolve_format(args.output, args.format)
        run = load_run(args.run)
    except (ValueError, OSError) as error:
        raise _UsageError(str(error)) from None
    written = export(run, args.output, args.format)
    print(f"wrote {written}", file=sys.stderr)
    return EXIT_OK


def _research_many(args: argparse.Namespace) -> int:
    """research-many: the topics of a file, one terminal view, each topic's outcome on standard output."""
    try:
        text = sys.stdin.read() if args.topics == "-" else Path(args.topics).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise _UsageError(f"cannot read the topics file {args.topics}: {error}") from None
    topics = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not topics:
        raise _UsageError(f"{args.topics} holds no topics (write one per line; # starts a comment)")
    if args.export:
        from torq_nb.export import resolve_format

        for path in args.export:
            try:
                resolve_format(path)
            except ValueError as error:
                raise _UsageError(str(error)) from None
    from torq_nb.progress.batch_terminal import BatchTerminalProgress
    from torq_nb.research.batch import BatchCancelled, BatchResults, research_many

    options = {}
    if args.source in _ENDPOINTS:
        option, flag, _ = _ENDPOINTS[args.source]
        if value := getattr(args, flag[2:].replace("-", "_")):
            options[option] = value

    def write(results: BatchResults) -> None:
        for path in args.export:
            print(f"wrote {results.export(path)}", file=sys.stderr)

    try:
        results = research_many(topics, args.depth, args.source, query=args.query, concurrency=args.concurrency,
                                display=False, progress_callback=None if args.quiet else BatchTerminalProgress(sys.stderr),
                                allow_private_networks=args.allow_private_networks or None, **options)
    except BatchCancelled as cancelled:
        print("interrupted" + (": exporting the partial results" if args.export else ""), file=sys.stderr)
        write(cancelled.results)
        return EXIT_INTERRUPTED
    except (ValueError, TypeError) as error:
        raise _UsageError(str(error)) from None
    except Exception as error:  # the batch itself failed; say why, exit 1
        print(f"torq-nb: research-many failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    for row in results.summaries.iter_rows(named=True):
        reason = f"  ({row['reason']})" if row["reason"] else ""
        print(f"{row['status']:<9} {row['pages_read']:>4} read {row['pages_failed']:>3} failed  {row['topic']}{reason}")
    write(results)
    return EXIT_OK if (results.summaries.get_column("status") == "complete").any() else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    try:
        parser = _parser()
        args = parser.parse_args(argv)
        try:
            return {"research": _research, "research-many": _research_many, "export": _export}[args.command](args)
        except _UsageError as error:
            parser.error(str(error))  # exits 2
    except KeyboardInterrupt:  # before the run started (while importing), or while exporting
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
