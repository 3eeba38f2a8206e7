"""Search sources: where a research run's hits come from, chosen by object, by name or by environment.

Every source, the built-in ones ("wikipedia", the default, "searxng", "duckduckgo" and "local") among them,
is registered once: under the `torq_nb.sources` entry-point group of its distribution's pyproject.toml::

    [project.entry-points."torq_nb.sources"]
    mysource = "my_package.module:MySource"   # a subclass of torq_nb.research.sources.Source

Its options are its constructor's parameters. Environment: TORQ_NB_SOURCE picks the source when none is
given; each source's `location` names the variable that supplies where it searches (TORQ_NB_WIKIPEDIA_URL,
TORQ_NB_SEARXNG_URL, TORQ_NB_DUCKDUCKGO_URL, TORQ_NB_LOCAL_PATH) when it is chosen by name without it.
"""

from __future__ import annotations

import difflib
import inspect
import os
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from torq_nb.research.sources.base import (
    Location,
    Source,
    SourceError,
    canonical_url,
    html_to_text,
    unique_hits,
)
from torq_nb.research.sources.duckduckgo import DuckDuckGo
from torq_nb.research.sources.local import LocalFiles
from torq_nb.research.sources.searxng import SearXNG
from torq_nb.research.sources.wikipedia import Wikipedia

ENTRY_POINT_GROUP = "torq_nb.sources"
DEFAULT_SOURCE = "wikipedia"


def _registered() -> dict[str, EntryPoint]:
    """The installed sources by name (the first distribution on the path wins a name, as imports do)."""
    found: dict[str, EntryPoint] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(point.name, point)
    return found


def available_sources() -> list[str]:
    """The names a source can be chosen by: every installed one, torq_nb's own among them."""
    return sorted(_registered())


def source_class(name: str) -> type[Source]:
    """The class registered under `name` (case and surrounding spaces do not matter)."""
    key = name.strip().lower()
    registered = _registered()
    if key not in registered:
        if not registered:
            raise ValueError(
                f"Unknown source {key!r}: no sources are installed, not even torq_nb's own, which are registered "
                "as entry points. Install torq_nb (from a checkout: pip install -e .)."
            )
        close = difflib.get_close_matches(key, registered, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown source {key!r}.{hint} Available sources: {', '.join(sorted(registered))}.")
    loaded = registered[key].load()
    if not (isinstance(loaded, type) and issubclass(loaded, Source)):
        raise TypeError(
            f"The source plug-in {key!r} ({registered[key].value}) is not a subclass of torq_nb.research.sources.Source."
        )
    return loaded


def resolve_source(source: str | Source | None = None, **options: Any) -> Source:
    """The source to search: `source` itself if it is one; else the source registered under that name
    (else $TORQ_NB_SOURCE, else "wikipedia"), constructed with `options`, its location taken from its
    environment variable when `options` do not give it."""
    if isinstance(source, Source):
        if options:
            raise ValueError(
                f"Options {sorted(options)} apply only when a source is chosen by name, not to {source!r}."
            )
        return source
    if source is not None and not isinstance(source, str):
        raise TypeError(f"source must be a name or a Source object, not {type(source).__name__}.")
    name = (source or os.environ.get("TORQ_NB_SOURCE", "") or DEFAULT_SOURCE).strip().lower()
    cls = source_class(name)
    _check_options(name, cls, options)
    where = cls.location
    if where is not None and options.get(where.option) in (None, ""):
        value = os.environ.get(where.env, "").strip()
        if value:
            options = {**options, where.option: value}
    return cls(**options)


def _check_options(name: str, cls: type[Source], options: dict[str, Any]) -> None:
    """A TypeError naming the source, its options and the closest one, for options its constructor refuses."""
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as wrong:
        accepted = list(cls.options())
        unknown = [option for option in options if option not in accepted]
        close = difflib.get_close_matches(unknown[0], accepted, n=1) if unknown else []
        hint = f" Did you mean {close[0]}=?" if close else ""
        where = f"; {cls.location.option}= is where it searches" if cls.location else ""
        raise TypeError(f"Source {name!r} takes ({', '.join(accepted)}){where}: {wrong}.{hint}") from None


__all__ = [
    "DEFAULT_SOURCE",
    "ENTRY_POINT_GROUP",
    "DuckDuckGo",
    "LocalFiles",
    "Location",
    "SearXNG",
    "Source",
    "SourceError",
    "Wikipedia",
    "available_sources",
    "canonical_url",
    "html_to_text",
    "resolve_source",
    "source_class",
    "unique_hits",
]
