"""Static views of a progress status: one plain-text line and a self-contained HTML snapshot.

Both are pure functions of a status dict (``ProgressTracker.get_status()`` or ``ProgressStatus.to_dict()``).
The text line serves terminals, logs and ``repr``; the HTML goes beside the live widget in the display
bundle, so a saved or exported notebook (nbconvert, GitHub) still shows a true, final picture.
Every string that comes from outside (operation names, messages, errors, stage names) is data:
control characters are removed from the text line and the HTML escapes everything, with inline styles
only and no scripts.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["format_duration", "status_html", "status_line"]

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SPACE = re.compile(r"\s+")

#: One mark per stage state, shared by the text line and the HTML snapshot.
STAGE_MARKS: dict[str, str] = {
    "pending": "○",
    "running": "●",
    "complete": "✓",
    "failed": "✗",
    "cancelled": "■",
    "skipped": "–",
}

#: Bar colours of the snapshot per state; readable on light and dark backgrounds alike.
_STATE_COLOURS: dict[str, str] = {
    "pending": "#9e9e9e",
    "running": "#1e88e5",
    "complete": "#43a047",
    "failed": "#e53935",
    "cancelled": "#fb8c00",
}


def _clean(value: object) -> str:
    """One line of plain text: no control characters (no terminal escapes), whitespace collapsed."""
    return _SPACE.sub(" ", _CONTROL.sub("", str(value))).strip()


def format_duration(seconds: float | None) -> str:
    """``MM:SS`` below an hour, ``H:MM:SS`` above, like tqdm; ``--:--`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "--:--"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _format_rate(rate: float, unit: str) -> str:
    return f"{rate:,.0f} {unit}/s" if rate >= 100 else f"{rate:.2f} {unit}/s"


def _details(status: Mapping[str, Any]) -> list[str]:
    """Counts, rate, ETA and elapsed time, each as a short phrase (shared by both views)."""
    parts = []
    done, total = status.get("done") or 0, status.get("total")
    if total:
        parts.append(f"{done:,}/{total:,}")
    elif done:
        parts.append(f"{done:,}")
    rate, eta = status.get("rate"), status.get("eta")
    if rate:
        parts.append(_format_rate(rate, _clean(str(status.get("unit") or "it"))))
    if eta is not None and status.get("state") == "running":
        parts.append(f"ETA {format_duration(eta)}")
    parts.append(f"elapsed {format_duration(status.get('duration'))}")
    return parts


def _error_text(status: Mapping[str, Any]) -> str | None:
    error = status.get("error")
    if not error:
        return None
    if isinstance(error, Mapping):
        return f"{_clean(error.get('type', 'Error'))}: {_clean(error.get('message', ''))}"
    return _clean(error)


def _headline(status: Mapping[str, Any]) -> tuple[str, str, str]:
    """(operation, state, where): the words both views lead with."""
    operation = _clean(status.get("operation") or "operation")
    state = _clean(status.get("state") or "pending")
    stage = status.get("stage")
    if state == "running":
        where = _clean(stage or "starting")
    elif state in ("failed", "cancelled") and stage:
        where = f"{state} at {_clean(stage)}"
    else:
        where = state
    return operation, state, where


def status_line(status: Mapping[str, Any]) -> str:
    """One line of plain text, for example ``research: searching 37% | 120/400 | 53.20 it/s | ETA 00:05 | ...``."""
    operation, _, where = _headline(status)
    percent = float(status.get("percent") or 0.0)
    parts = [f"{operation}: {where} {percent:.0f}%", *_details(status)]
    error = _error_text(status)
    if error:
        parts.append(error)
    elif status.get("message"):
        parts.append(_clean(status["message"]))
    return " | ".join(parts)


def _stage_items(status: Mapping[str, Any]) -> str:
    items = []
    for stage in status.get("stages") or ():
        state = _clean(stage.get("state", "pending"))
        mark = STAGE_MARKS.get(state, "?")
        weight = "600" if state == "running" else "400"
        opacity = "0.6" if state in ("pending", "skipped") else "1"
        items.append(
            f'<li data-stage-name="{html.escape(_clean(stage.get("name", "")))}" data-stage-state="{html.escape(state)}"'
            f' style="display:inline-block;margin:0 0.9em 0 0;font-weight:{weight};opacity:{opacity}">'
            f"{html.escape(mark)}&nbsp;{html.escape(_clean(stage.get('name', '')))}</li>"
        )
    return "".join(items)


def status_html(status: Mapping[str, Any]) -> str:
    """A self-contained HTML snapshot (inline styles, no scripts) of the status, for saved notebooks."""
    operation, state, where = _headline(status)
    percent = min(max(float(status.get("percent") or 0.0), 0.0), 100.0)
    colour = _STATE_COLOURS.get(state, _STATE_COLOURS["pending"])
    error = _error_text(status)
    message = _clean(status.get("message") or "")
    label = f"{where}, {percent:.0f}%"
    head = (
        f'<div class="torq-progress-snapshot" data-state="{html.escape(state)}" data-percent="{percent:.1f}"'
        " style=\"font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:13px;line-height:1.45;"
        'max-width:46em;padding:0.5em 0.75em;border:1px solid rgba(128,128,128,0.35);border-radius:6px">'
    )
    title = (
        '<div style="display:flex;gap:0.75em;align-items:baseline">'
        f"<strong>{html.escape(operation)}</strong>"
        f'<span style="color:{colour};font-weight:600">{html.escape(where)}</span>'
        f'<span style="margin-left:auto;font-variant-numeric:tabular-nums">{percent:.0f}%</span></div>'
    )
    bar = (
        f'<div role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="{percent:.1f}"'
        f' aria-valuetext="{html.escape(label)}" aria-label="{html.escape(operation)}"'
        ' style="height:6px;margin:0.35em 0;border-radius:3px;background:rgba(128,128,128,0.25);overflow:hidden">'
        f'<div style="height:100%;width:{percent:.1f}%;background:{colour}"></div></div>'
    )
    details = (
        f'<div style="opacity:0.75;font-variant-numeric:tabular-nums">{html.escape(" · ".join(_details(status)))}</div>'
    )
    lines = [head, title, bar, f'<ol style="list-style:none;margin:0;padding:0">{_stage_items(status)}</ol>', details]
    if message:
        lines.append(f"<div>{html.escape(message)}</div>")
    if error:
        lines.append(
            f'<div role="alert" style="color:{_STATE_COLOURS["failed"]};white-space:pre-wrap">{html.escape(error)}</div>'
        )
    lines.append("</div>")
    return "".join(lines)
