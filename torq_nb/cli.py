"""The torq-nb command: research a topic from a terminal, or re-export a saved run.

    torq-nb research "solar storage" --depth standard --source wikipedia --export report.pdf --export results.csv
    torq-nb export run.json report.pdf results.xlsx

Exit status: 0 success, 1 the run failed, 2 bad arguments, 130 interrupted (partial results still exported).

The engine (Polars, aiohttp, trafilatura, nbconvert, ...) is imported only once a command runs, inside the
Ctrl-C handling: ``--help`` answers at once, and a Ctrl-C during the imports is an interruption, not a traceback.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import os
import shutil
import sys
import textwrap
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from torq_nb.api import DepthName

if TYPE_CHECKING:
    from torq_nb.research.batch import BatchResults
    from torq_nb.research.results import ResearchResults
    from torq_nb.research.sources import Source

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: The export formats and their suffixes, as ``torq_nb.export.FORMATS`` has them (tested: --help imports no
#: export module).
_FORMATS = ("Markdown (.md .markdown), HTML (.html .htm), PDF (.pdf), CSV (.csv), JSON (.json), "
            "NDJSON (.ndjson .jsonl), Parquet (.parquet), Excel (.xlsx), the report notebook (.ipynb) and a ZIP of "
            "them all (.zip)")

#: The commands that search a source, and so take ``--source NAME`` and that source's own flags.
_SEARCHING = ("research", "research-many")
#: Where the parsed arguments keep the chosen source's options (their flags' values), by option name.
_OPTION = "source option "


class _UsageError(Exception):
    """Bad arguments found after parsing (an unknown export suffix, a missing file)."""


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _chosen_source(argv: Sequence[str] | None) -> tuple[type[Source] | None, str | None]:
    """The class of the source the command line chooses (``--source``, else $TORQ_NB_SOURCE, else wikipedia),
    read before the full parse so that its own flags can be added; or None and why it cannot be had."""
    from torq_nb.research.sources import DEFAULT_SOURCE, source_class

    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--source", default=os.environ.get("TORQ_NB_SOURCE") or DEFAULT_SOURCE)
    name = early.parse_known_args(argv)[0].source
    try:
        return source_class(name), None
    except (ValueError, TypeError) as error:
        return None, str(error)
    except Exception as error:  # a plug-in that does not import
        return None, f"the source {name!r} cannot be loaded: {type(error).__name__}: {error}"


def _sources_help() -> str:
    """The --source help: every installed source, and the variables that say where each searches (a plug-in
    that does not load is still named)."""
    from torq_nb.research.sources import available_sources, source_class

    names, variables = available_sources(), []
    for name in names:
        try:
            where = source_class(name).location
        except Exception:  # a plug-in that does not import: its name alone
            where = None
        if where is not None:
            variables.append(where.env)
    default = os.environ.get("TORQ_NB_SOURCE") or "wikipedia"
    return (f"where to search: {', '.join(names)} (default: {default}) [env: TORQ_NB_SOURCE]. Each source has flags "
            f"of its own, listed by --source NAME --help; where it searches can also be set by {', '.join(variables)}")


def _flag_type(hint: object, default: object) -> Any:
    """What a source option's flag text becomes: str, Path, bool, float or int, by its annotation, else its
    default (an option that also takes text gets the text)."""
    kinds = {hint, *typing.get_args(hint)}
    for kind in (str, Path, bool, float, int):
        if kind in kinds:
            return kind
    return type(default) if isinstance(default, (bool, int, float)) else str


def _add_source_flags(command: argparse.ArgumentParser, source: type[Source]) -> list[str]:
    """The chosen source's options as ``command``'s flags, one per constructor parameter: ``--max-wait`` for
    ``max_wait``, the location also as its variable's twin (TORQ_NB_SEARXNG_URL: ``--searxng-url``); an option
    named as one of the command's own flags is ``--SOURCE-OPTION``. Returns the flags."""
    group = command.add_argument_group(
        f"options of the {source.name} source (--source NAME --help shows another source's)",
        " ".join((inspect.getdoc(source) or "").split()),
    )
    try:
        hints = typing.get_type_hints(source.__init__)
    except Exception:  # an annotation that does not evaluate: the flag takes text
        hints = {}
    where, flags = source.location, list[str]()
    for name, parameter in source.options().items():
        default = None if parameter.default is inspect.Parameter.empty else parameter.default
        kind = _flag_type(hints.get(name), default)
        spelt = [f"--{name.replace('_', '-')}"]
        if where is not None and name == where.option:
            if where.env.startswith("TORQ_NB_"):
                spelt.append("--" + where.env.removeprefix("TORQ_NB_").lower().replace("_", "-"))
            help_text, metavar = f"{where.help} [env: {where.env}]", where.metavar
        else:
            shown = f", default {default!r}" if default is not None else ""
            help_text, metavar = f"{source.__name__}({name}=...){shown}", name.upper()
        settings: dict[str, Any] = {"dest": _OPTION + name, "default": argparse.SUPPRESS, "help": help_text}
        if kind is bool:
            settings["action"] = argparse.BooleanOptionalAction
        else:
            settings.update(type=kind, metavar=metavar)
        try:
            action = group.add_argument(*spelt, **settings)
        except argparse.ArgumentError:  # one of the command's own flags (--depth, --export, ...)
            action = group.add_argument(f"--{source.name}-{name.replace('_', '-')}", **settings)
        flags.extend(action.option_strings)
    return flags


def _source_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options given to the chosen source on the command line (the others keep its defaults)."""
    return {key[len(_OPTION):]: value for key, value in vars(args).items() if key.startswith(_OPTION)}


def _parser(source: type[Source] | None = None) -> argparse.ArgumentParser:
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
    run.add_argument("--source", default=os.environ.get("TORQ_NB_SOURCE") or "wikipedia", metavar="NAME",
                     help=_sources_help())
    run.add_argument("--allow-private-networks", action="store_true", default=_env_flag("TORQ_NB_ALLOW_PRIVATE_NETWORKS"),
                     help="also fetch pages on loopback and private addresses (refused by default) "
                          "[env: TORQ_NB_ALLOW_PRIVATE_NETWORKS=1]")
    run.add_argument("--export", action="append", default=[], metavar="PATH",
                     help="write the results to PATH; the suffix picks the format (.md .html .pdf .csv .xlsx .json "
                          ".ndjson .parquet .ipynb .zip); repeat for several files")
    run.add_argument("--stream", default=None, metavar="PATH",
                     help="write each result row to PATH (.ndjson .jsonl .csv) as soon as its page is finished, "
                          "to watch the run (tail -f) and keep its rows if it dies; the file is started afresh")
    run.add_argument("--quiet", action="store_true", help="no progress line; only the summary")

    again = commands.add_parser(
        "export", help="re-export a saved run (its JSON export) to any format, locally or to cloud storage",
        description="Read RUN (a run saved with --export run.json, or a stored run's id) and write each OUTPUT, whose "
                    f"suffix picks the format: {_FORMATS}. An OUTPUT is a path or an fsspec URL (s3://bucket/report.pdf, gcs://..., "
                    "memory://...), uploaded once complete; S3 reads its endpoint and credentials from the usual "
                    "AWS_* variables and files (AWS_ENDPOINT_URL for a local server).")
    again.add_argument("run", type=Path, help="a run saved as JSON by torq-nb or results.export('run.json'), or the "
                                              "id of a run in the run store, or its first characters (at least 4, "
                                              "as git takes a commit's; torq_nb.runs() lists them)")
    again.add_argument("outputs", nargs="+", metavar="OUTPUT",
                       help="a file or URL to write; its suffix picks the format (see above); give several to write several")
    again.add_argument("--format", default=None, help="the format, when an OUTPUT's suffix does not say it")

    many = commands.add_parser(
        "research-many", help="research every topic of a file at once, with one progress view, and export them",
        description="Research every topic of TOPICS (one per line) concurrently over one fetch budget, print each "
                    "topic's outcome and export the batch: one report with a section per topic (.md .html .pdf), "
                    "one table of every row (.csv .xlsx .json .ndjson .parquet). Exits 0 if any topic completed, 1 if none "
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
    if source is not None:  # after each command's own flags, which a source's option never shadows
        for command in (run, many):
            _add_source_flags(command, source)
    for command in (run, again, many):  # a usage error names the command's own usage, not the top level's
        command.set_defaults(usage=command)
    return parser


def _write_exports(results: ResearchResults | BatchResults, paths: Sequence[str]) -> None:
    """Write each export of a run or a batch, saying where; a Ctrl-C meanwhile stops before the next."""
    from torq_nb.research.interrupts import raise_if_interrupted

    for path in paths:
        raise_if_interrupted()  # a Ctrl-C while the last one was written
        print(f"wrote {results.export(path)}", file=sys.stderr)


def _wrapped(text: str) -> str:
    """``text`` wrapped to the terminal's width when standard output is one (long URLs stay whole)."""
    if not sys.stdout.isatty():
        return text
    width = shutil.get_terminal_size().columns
    return "\n".join(
        textwrap.fill(line, width, break_long_words=False, break_on_hyphens=False) if line.strip() else line
        for line in text.splitlines()
    )


def _check_exports(paths: list[str]) -> None:
    """Refuse an --export path whose format is unknown before the run starts (a usage error)."""
    if not paths:  # the export machinery (nbformat, nbconvert: seconds to import) only when asked for
        return
    from torq_nb.export import resolve_format

    for path in paths:
        try:
            resolve_format(path)
        except ValueError as error:
            raise _UsageError(str(error)) from None


def _research(args: argparse.Namespace) -> int:
    _check_exports(args.export)
    from torq_nb import research
    from torq_nb.progress.terminal import TerminalProgress
    from torq_nb.research.pipeline import ResearchCancelled

    options = _source_options(args)
    callback = None if args.quiet else TerminalProgress(sys.stderr)
    try:
        results = research(args.topic, args.depth, args.source, display=False, progress_callback=callback,
                           allow_private_networks=args.allow_private_networks or None, stream_to=args.stream,
                           **options)
    except ResearchCancelled as cancelled:
        print("interrupted" + (": exporting the partial results" if args.export else ""), file=sys.stderr)
        _write_exports(cancelled.results, args.export)
        return EXIT_INTERRUPTED
    except (ValueError, TypeError) as error:
        raise _UsageError(str(error)) from None
    except Exception as error:  # noqa: BLE001 - the run failed; say why, exit 1
        print(f"torq-nb: research failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    from torq_nb.results import counted

    print(_wrapped(results.summary))
    counts = results.metadata.get("pages", {})
    print(f"\n{counted(results.df.height, 'hit')}: {counts.get('ok', 0)} read, {counts.get('error', 0)} failed "
          f"({results.progress.duration if results.progress else 0:.1f} s)", file=sys.stderr)
    _write_exports(results, args.export)
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from torq_nb.export import export, resolve_format
    from torq_nb.research.results import load_run

    try:
        for output in args.outputs:
            resolve_format(output, args.format)
        run = load_run(args.run)
    except (ValueError, OSError) as error:
        raise _UsageError(str(error)) from None
    for output in args.outputs:
        try:
            written = export(run, output, args.format)
        except (ImportError, ValueError, OSError) as error:  # a missing fsspec backend, an unknown protocol, an upload
            print(f"torq-nb: export failed: {error}", file=sys.stderr)
            return EXIT_FAILED
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
    _check_exports(args.export)
    from torq_nb.progress.batch_terminal import BatchTerminalProgress
    from torq_nb.research.batch import BatchCancelled, research_many

    options = _source_options(args)
    try:
        results = research_many(topics, args.depth, args.source, query=args.query, concurrency=args.concurrency,
                                display=False, progress_callback=None if args.quiet else BatchTerminalProgress(sys.stderr),
                                allow_private_networks=args.allow_private_networks or None, stream_to=args.stream,
                                **options)
    except BatchCancelled as cancelled:
        print("interrupted" + (": exporting the partial results" if args.export else ""), file=sys.stderr)
        _write_exports(cancelled.results, args.export)
        return EXIT_INTERRUPTED
    except (ValueError, TypeError) as error:
        raise _UsageError(str(error)) from None
    except Exception as error:  # the batch itself failed; say why, exit 1
        print(f"torq-nb: research-many failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    for row in results.summaries.iter_rows(named=True):
        reason = f"  ({row['reason']})" if row["reason"] else ""
        print(f"{row['status']:<9} {row['pages_read']:>4} read {row['pages_failed']:>3} failed  {row['topic']}{reason}")
    _write_exports(results, args.export)
    return EXIT_OK if (results.summaries.get_column("status") == "complete").any() else EXIT_FAILED


def _unrecognized(unknown: list[str], source: type[Source] | None) -> str:
    """argparse's complaint about arguments no flag takes; for a searching command, with the source's own flags
    and the closest of them."""
    message = f"unrecognized arguments: {' '.join(unknown)}"
    if source is None:
        return message
    flags = _add_source_flags(argparse.ArgumentParser(add_help=False), source)
    given = next((word.split("=", 1)[0] for word in unknown if word.startswith("--")), "")
    close = difflib.get_close_matches(given, flags, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"{message}{hint} (the {source.name} source's flags: {', '.join(flags) or 'none'})"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    try:
        from torq_nb.research.interrupts import ctrl_c_noted

        with ctrl_c_noted():  # the one Ctrl-C handling: the run stops on it, anything else at its end
            source, unavailable = _chosen_source(argv)
            parser = _parser(source)
            args, unknown = parser.parse_known_args(argv)
            usage: argparse.ArgumentParser = args.usage
            if unavailable and args.command in _SEARCHING:
                usage.error(unavailable)
            if unknown:
                usage.error(_unrecognized(unknown, source if args.command in _SEARCHING else None))
            try:
                return {"research": _research, "research-many": _research_many, "export": _export}[args.command](args)
            except _UsageError as error:
                usage.error(str(error))  # exits 2
    except KeyboardInterrupt:  # before the run started (while importing), or while exporting
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
