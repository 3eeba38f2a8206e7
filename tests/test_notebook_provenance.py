"""Committed notebooks are honest about where their saved outputs came from."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_from_the_offline_corpus_say_so_up_front(path):
    notebook = nbformat.read(path, as_version=4)
    outputs = nbformat.writes(nbformat.v4.new_notebook(cells=[c for c in notebook.cells if c.cell_type == "code"]))
    if "127.0.0.1" not in outputs:
        return
    intro = notebook.cells[0].source
    assert notebook.cells[0].cell_type == "markdown" and "Where the saved outputs come from" in intro
    assert "127.0.0.1" in intro and "refresh_notebooks.py" in intro
    # No text claims the saved table shows what it does not: a Wikipedia run's domain is not the saved one.
    text = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    assert "a Wikipedia run has one domain;" not in text
