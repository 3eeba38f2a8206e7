"""The README's Python, as a user's type checker sees it: mypy --strict accepts it and knows the types."""

from __future__ import annotations

import re
from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parent.parent

#: What a notebook cell has that a plain module lacks: display(), and the user's own data.
PRELUDE = """\
from IPython.display import display
batches: list[int] = []
"""


def test_readme_snippets_type_check(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    assert blocks, "the README has Python examples"
    snippet = tmp_path / "readme_snippet.py"
    snippet.write_text(
        PRELUDE + "\n".join(blocks) + "\nreveal_type(results)\nreveal_type(torq_nb.export)\nreveal_type(job)\n",
        encoding="utf-8",
    )
    out, err, status = api.run(
        ["--strict", "--cache-dir", str(tmp_path / "cache"), "--no-error-summary", str(snippet)]
    )
    notes = [line for line in out.splitlines() if "Revealed type" in line]
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert not errors, "\n".join(errors)
    assert status == 0, out + err
    assert 'Revealed type is "torq_nb.results.ResearchResults"' in notes[0]
    assert notes[1].split('"')[1].startswith("def (results:")
    assert 'torq_nb.research.jobs.ResearchJob' in notes[2]
