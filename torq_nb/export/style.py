"""How a report document looks, chosen by the user: its title, author and logo, and a template of their own.

One ``ReportStyle`` travels from ``export()`` to the document writers (HTML, PDF, Markdown). It is checked
when it is made, so a missing logo or template is an error at the ``export()`` call that named it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: Image files a logo may be (every document writer can embed them).
LOGO_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg")
#: A template's suffix says which document it is for.
TEMPLATE_SUFFIXES = {".typ": "pdf", ".j2": "html", ".jinja": "html", ".html": "html"}


def _existing(path: str | os.PathLike[str], what: str, suffixes: tuple[str, ...]) -> Path:
    file = Path(path).expanduser()
    if file.suffix.lower() not in suffixes:
        raise ValueError(f"{what} {str(path)!r} must be one of {', '.join(suffixes)} files")
    if not file.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist (or is not a file); give the path of an existing "
                                f"{'/'.join(suffixes)} file")
    return file


@dataclass(frozen=True)
class ReportStyle:
    """A report's title (instead of "Research: <topic>"), author line, logo image, and a user template:
    a ``.typ`` file for PDF or a Jinja ``.html.j2`` file for HTML (see docs/templates.md)."""

    title: str | None = None
    author: str | None = None
    logo: Path | None = None
    template: Path | None = None

    @classmethod
    def of(cls, *, title: str | None = None, author: str | None = None, logo: str | os.PathLike[str] | None = None,
           template: str | os.PathLike[str] | None = None, format: str | None = None) -> ReportStyle:
        """A checked style: the logo and the template must be existing files of a known kind, and the template
        one for ``format`` (the export's format name; a ZIP holds every document, so any template fits it)."""
        for name, value in (("title", title), ("author", author)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be text, got {type(value).__name__}")
        style = cls(title=title or None, author=author or None,
                    logo=_existing(logo, "logo", LOGO_SUFFIXES) if logo is not None else None,
                    template=_existing(template, "template", tuple(TEMPLATE_SUFFIXES)) if template is not None else None)
        if style.template is not None and format not in (None, "zip"):
            kind = TEMPLATE_SUFFIXES[style.template.suffix.lower()]
            if kind != format:
                raise ValueError(f"template {style.template.name} is a {kind.upper()} template, but this is a {format} "
                                 f"export; pass it when exporting a .{kind} file")
        return style

    def template_for(self, document: str) -> Path | None:
        """The user's template if it is one for ``document`` ("pdf" or "html"), else None."""
        if self.template is None or TEMPLATE_SUFFIXES[self.template.suffix.lower()] != document:
            return None
        return self.template


PLAIN = ReportStyle()
