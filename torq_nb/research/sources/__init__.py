"""Search sources: where a research run's hits come from, chosen by object, by name or by environment.

Built in: "wikipedia" (the default), "searxng", "duckduckgo" and "local". Others plug in through the
`torq_nb.sources` entry-point group, for example in a plug-in's pyproject.toml::

    [project.entry-points."torq_nb.sources"]
    mysource = "my_package.module:MySource"   # a subclass of torq_nb.research.sources.Source

Environment: TORQ_NB_SOURCE picks the source when none is given; TORQ_NB_WIKIPEDIA_URL,
TORQ_NB_SEARXNG_URL, TORQ_NB_DUCKDUCKGO_URL and TORQ_NB_LOCAL_PATH give each built-in source's
endpoint when its constructor is not given one.
"""

from __future__ import annotations

import inspect
import os
from importlib.metadata import entry_points
from typing import Any

from torq_nb.research.sources.base import Source, SourceError, canonical_url, html_to_text, unique_hits
from torq_nb.research.sources.duckduckgo import DuckDuckGo
from torq_nb.research.sources.local import LocalFiles
from torq_nb.research.sources.searxng import SearXNG
from torq_nb.research.sources.wikipedia import Wikipedia

ENTRY_POINT_GROUP = "torq_nb.sources"
DEFAULT_SOURCE = "wikipedia"

_BUILT_IN: dict[str, type[Source]] = {cls.name: cls for cls in (Wikipedia, SearXNG, DuckDuckGo, LocalFiles)}


def available_sources() -> list[str]:
    """The names a source can be chosen by: the built-in ones and every installed plug-in."""
    return sorted(set(_BUILT_IN) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def resolve_source(source: str | Source | None = None, **options: Any) -> Source:
    """The source to search: `source` itself if it is one; else the source registered under that name
    (else $TORQ_NB_SOURCE, else "wikipedia"), constructed with `options`."""
    if isinstance(source, Source):
        if options:
            raise ValueError(
                f"Options {sorted(options)} apply only when a source is chosen by name, not to {source!r}."
            )
        return source
    if source is not None and not isinstance(source, str):
        raise TypeError(f"source must be a name or a Source object, not {type(source).__name__}.")
    name = (source or os.environ.get("TORQ_NB_SOURCE", "") or DEFAULT_SOURCE).strip().lower()
    cls = _source_class(name)
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as wrong:
        raise TypeError(f"Source {name!r} takes {inspect.signature(cls)}; {wrong}.") from None
    return cls(**options)


def _source_class(name: str) -> type[Source]:
    """The class registered under `name`: an installed entry point, else a built-in source."""
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        if name in _BUILT_IN:
            return _BUILT_IN[name]
        raise ValueError(f"Unknown source {name!r}. Available sources: {', '.join(available_sources())}.")
    loaded = found[0].load()
    if not (isinstance(loaded, type) and issubclass(loaded, Source)):
        raise TypeError(
            f"The source plug-in {name!r} ({found[0].value}) is not a subclass of torq_nb.research.sources.Source."
        )
    return loaded


__all__ = [
    "DEFAULT_SOURCE",
    "ENTRY_POINT_GROUP",
    "DuckDuckGo",
    "LocalFiles",
    "SearXNG",
    "Source",
    "SourceError",
    "Wikipedia",
    "available_sources",
    "canonical_url",
    "html_to_text",
    "resolve_source",
    "unique_hits",
]
