"""A run's results in the research layer: ``ResearchResults`` and ``SCHEMA`` (defined in ``torq_nb.results``,
which the export layer shares) and ``load_run``, which gives back a past run from the run store or a file."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from torq_nb.research.store import DEFAULT_STORE, StoreArgument, resolve_store
from torq_nb.results import SCHEMA, ResearchResults, counted, empty_frame

__all__ = ["SCHEMA", "ResearchResults", "counted", "empty_frame", "load_run"]


def load_run(run: str | os.PathLike[str], *, store: StoreArgument = DEFAULT_STORE) -> ResearchResults:
    """A past run as ResearchResults, to look at or export again. ``run`` is a run id from ``torq_nb.runs()`` or
    its first characters (at least 4, as git takes a commit's), read from ``store`` (by default
    ``$TORQ_NB_STORE`` or the user's cache folder); or the path of a run saved as JSON
    (``results.export("run.json")``): one that names a file or ends in ``.json``."""
    text = os.fspath(run)
    if text.lower().endswith(".json") or os.path.isfile(text):
        return _read_json_run(text)
    found = resolve_store(store)
    missing = f"no run {text!r} (the run store is off)"
    try:
        if found is not None:
            return found.load(text)
    except KeyError as error:  # none, or more than one: the store's message says which
        missing = str(error.args[0])
    raise FileNotFoundError(f"{missing}, and no saved run file of that name; torq_nb.runs() lists the stored runs")


def _read_json_run(path: str) -> ResearchResults:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise FileNotFoundError(f"no saved run at {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a run saved as JSON ({error})") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"{path} holds JSON but not a saved run (expected an object with 'results')")
    return ResearchResults.from_dict(data)
