"""ProgressWidget and the static snapshots: comm messages counted on a real kernel's IOPub (one per status
the tracker publishes, the tracker's throttle the only one), immediate stage and terminal messages, the
trailing publish, the display bundle kept to the final state, and text/HTML snapshots that treat outside
strings as data."""

from __future__ import annotations

import ast
import dataclasses
import re
import textwrap
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbconvert import HTMLExporter

from torq_nb.progress import ProgressStatus, ProgressTracker
from torq_nb.progress.snapshot import status_html, status_line
from torq_nb.progress.widget import ProgressWidget, asset_dir

HOSTILE = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
STATUS_FIELDS = {field.name for field in dataclasses.fields(ProgressStatus)}
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"


# ----------------------------------------------------------------------------- a real kernel


class Kernel:
    """A live ipykernel; ``run`` executes code and returns every IOPub message until the kernel is idle."""

    def __init__(self, manager: KernelManager) -> None:
        self.manager = manager
        self.client = manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, code: str, **expressions: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """(IOPub messages of the execution, {name: evaluated user expression})."""
        return self.finish(self.start(code, **expressions))

    def start(self, code: str, **expressions: str) -> str:
        """Send a cell for execution and return at once (its message id, for finish())."""
        return str(self.client.execute(textwrap.dedent(code), user_expressions=expressions))

    def click(self, model_id: str, content: dict[str, Any]) -> None:
        """What a widget view's ``model.send(content)`` sends the kernel: a custom comm message."""
        message = self.client.session.msg("comm_msg", {"comm_id": model_id, "data": {"method": "custom", "content": content}})
        self.client.shell_channel.send(message)

    def finish(self, msg_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Wait until a started cell has run: (its IOPub messages, {name: evaluated user expression})."""
        messages = []
        while True:
            message = self.client.get_iopub_msg(timeout=120)
            messages.append(message)
            if (
                message["msg_type"] == "status"
                and message["parent_header"].get("msg_id") == msg_id
                and message["content"]["execution_state"] == "idle"
            ):
                break
        reply = self.client.get_shell_msg(timeout=30)
        while reply["parent_header"].get("msg_id") != msg_id:  # e.g. wait_for_ready's kernel_info_reply
            reply = self.client.get_shell_msg(timeout=30)
        errors = [m["content"] for m in messages if m["msg_type"] == "error"]
        assert reply["content"]["status"] == "ok", errors or reply["content"]
        values = {}
        for name, result in reply["content"]["user_expressions"].items():
            assert result["status"] == "ok", result
            values[name] = ast.literal_eval(result["data"]["text/plain"])
        return messages, values

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def kernel() -> Iterator[Kernel]:
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel()
    live = Kernel(manager)
    live.run(SETUP)
    try:
        yield live
    finally:
        live.close()


def widget_updates(messages: list[dict[str, Any]], model_id: str) -> list[dict[str, Any]]:
    """The status carried by each comm 'update' message of one widget, in order of arrival."""
    return [
        m["content"]["data"]["state"]["status"]
        for m in messages
        if m["msg_type"] == "comm_msg"
        and m["content"]["comm_id"] == model_id
        and m["content"]["data"].get("method") == "update"
        and "status" in m["content"]["data"]["state"]
    ]


def position(messages: list[dict[str, Any]], predicate: Any) -> int:
    for index, message in enumerate(messages):
        if predicate(message):
            return index
    raise AssertionError("no such message")


def is_marker(text: str) -> Any:
    return lambda m: m["msg_type"] == "display_data" and m["content"]["data"].get("text/plain") == repr(text)


def is_update_with(**fields: Any) -> Any:
    def check(m: dict[str, Any]) -> bool:
        if m["msg_type"] != "comm_msg" or m["content"]["data"].get("method") != "update":
            return False
        state = m["content"]["data"]["state"].get("status", {})
        return all(state.get(key) == value for key, value in fields.items())

    return check


SETUP = """
import time
from IPython.display import display
from torq_nb.progress import ProgressTracker
from torq_nb.progress.widget import ProgressWidget
"""


def test_200k_advances_send_at_most_ten_messages_a_second_plus_stage_changes(kernel: Kernel) -> None:
    messages, values = kernel.run(
        """
        tracker = ProgressTracker("flood")
        widget = ProgressWidget(tracker)
        display(widget)
        started = time.monotonic()
        tracker.progress("initializing")
        calls = 0
        for stage in ("searching", "extracting", "synthesizing"):
            tracker.progress(stage)
            for i in range(200_000 // 4):
                tracker.advance()
                calls += 1
                if i % 2_000 == 0:
                    time.sleep(0.02)  # a little real work, so the run spans a few seconds
        for i in range(200_000 - calls):
            tracker.advance()
        tracker.complete()
        run_seconds = time.monotonic() - started
        """,
        model_id="widget.model_id",
        run_seconds="run_seconds",
        done="tracker.done",
    )
    updates = widget_updates(messages, values["model_id"])
    stage_changes = 5  # initializing, searching, extracting, synthesizing, complete
    assert 0 < len(updates) <= 10 * values["run_seconds"] + stage_changes + 1, (len(updates), values["run_seconds"])
    stages = [u["stage"] for u in updates]
    assert [stage for i, stage in enumerate(stages) if i == 0 or stages[i - 1] != stage] == [
        "initializing",
        "searching",
        "extracting",
        "synthesizing",
        "complete",
    ]
    # The last message carries the final state; every message carries the whole status as one value.
    assert updates[-1]["state"] == "complete" and updates[-1]["percent"] == 100.0
    assert all(STATUS_FIELDS - {"metadata", "timestamp"} == update.keys() for update in updates)


def test_stage_changes_and_terminal_states_go_out_at_once(kernel: Kernel) -> None:
    messages, values = kernel.run(
        """
        tracker = ProgressTracker("order", refresh_interval=3600)  # ordinary publishes would wait an hour
        widget = ProgressWidget(tracker)
        display(widget)
        tracker.progress("initializing")
        tracker.update(3, total=10)
        tracker.progress("searching", "querying sources")
        display("after searching")
        tracker.complete()
        display("after complete")
        """,
        model_id="widget.model_id",
    )
    searching = position(messages, is_update_with(stage="searching", message="querying sources"))
    assert searching < position(messages, is_marker("after searching"))
    complete = position(messages, is_update_with(state="complete", percent=100.0))
    assert complete < position(messages, is_marker("after complete"))
    # Held back meanwhile: the count 3/10 never went out on its own, only the stage and terminal flushes did.
    assert [(u["stage"], u["done"]) for u in widget_updates(messages, values["model_id"])] == [
        ("initializing", 0),
        ("initializing", 3),  # a new total goes out at once
        ("searching", 0),
        ("complete", 0),
    ]


def test_trailing_flush_sends_the_last_state_while_the_kernel_is_busy(kernel: Kernel) -> None:
    messages, values = kernel.run(
        """
        tracker = ProgressTracker("trail", refresh_interval=0.3)
        widget = ProgressWidget(tracker)
        display(widget)
        tracker.progress("searching")
        tracker.update(3, total=10)  # a new total: published at once
        tracker.update(7)  # inside the interval: held back
        held_back = widget.status["done"]
        deadline = time.monotonic() + 30  # the cell stays busy until the trailing publish went out
        while widget.status["done"] != 7 and time.monotonic() < deadline:
            time.sleep(0.01)
        display("still busy")
        """,
        model_id="widget.model_id",
        held_back="held_back",
    )
    assert values["held_back"] == 3
    trailing = position(messages, is_update_with(done=7, total=10, percent=42.5))
    assert trailing < position(messages, is_marker("still busy"))


def test_display_bundle_is_brought_up_to_the_final_state(kernel: Kernel) -> None:
    messages, _ = kernel.run(
        f"""
        tracker = ProgressTracker({HOSTILE!r})
        display(tracker)
        with tracker:
            tracker.progress("searching", {HOSTILE!r})
        """
    )
    shown = next(m for m in messages if m["msg_type"] == "display_data")
    display_id = shown["content"]["transient"]["display_id"]
    view = shown["content"]["data"][WIDGET_VIEW_MIME]
    assert view["version_major"] == 2 and view["version_minor"] == 1 and view["model_id"]
    assert 'data-state="pending"' in shown["content"]["data"]["text/html"]
    assert shown["content"]["data"]["text/plain"].endswith("pending 0% | elapsed 00:00")

    updated = [m for m in messages if m["msg_type"] == "update_display_data"]
    assert len(updated) == 1 and updated[0]["content"]["transient"]["display_id"] == display_id
    final = updated[0]["content"]["data"]
    assert final[WIDGET_VIEW_MIME] == view  # the live view stays
    assert 'data-state="complete"' in final["text/html"] and 'data-percent="100.0"' in final["text/html"]
    assert "<img" not in final["text/html"] and "<script" not in final["text/html"]
    assert ": complete 100%" in final["text/plain"]


def test_display_bundle_holds_anywidgets_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """What anywidget puts in a widget's bundle (the view; in Colab, metadata naming its widget manager) is in
    ours too, with the static snapshot beside it."""
    import anywidget.widget

    tracker = ProgressTracker("bundle")
    widget = ProgressWidget(tracker)
    try:
        colab = {WIDGET_VIEW_MIME: {"colab": {"custom_widget_manager": {"url": "https://example.invalid/m.js"}}}}
        for host_metadata in ({}, colab):
            monkeypatch.setattr(anywidget.widget, "repr_mimebundle",
                                lambda model_id, repr_text, m=host_metadata: ({"text/plain": repr_text, WIDGET_VIEW_MIME: {
                                    "version_major": 2, "version_minor": 1, "model_id": model_id}}, m))
            own, own_metadata = widget._repr_mimebundle_()
            data, metadata = widget._bundle(tracker.status())
            assert metadata == own_metadata
            assert data[WIDGET_VIEW_MIME] == own[WIDGET_VIEW_MIME] and data["text/html"].startswith("<")
    finally:
        widget.close()


def test_failure_reaches_the_widget_and_the_saved_snapshot(kernel: Kernel) -> None:
    messages, values = kernel.run(
        """
        tracker = ProgressTracker("fails")
        widget = ProgressWidget(tracker)
        display(widget)
        try:
            with tracker:
                tracker.progress("extracting")
                raise ValueError("no <pages> found")
        except ValueError:
            pass
        """,
        model_id="widget.model_id",
    )
    last = widget_updates(messages, values["model_id"])[-1]
    assert last["state"] == "failed" and last["error"] == {"type": "ValueError", "message": "no <pages> found"}
    final = next(m for m in messages if m["msg_type"] == "update_display_data")["content"]["data"]
    assert 'data-state="failed"' in final["text/html"]
    assert "ValueError: no &lt;pages&gt; found" in final["text/html"]
    assert final["text/plain"].endswith("ValueError: no <pages> found")


@pytest.mark.parametrize("store_widget_state", [False, True])
def test_executed_notebook_keeps_the_final_state(tmp_path: Path, store_widget_state: bool) -> None:
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "from torq_nb.progress import ProgressTracker\n"
                "tracker = ProgressTracker('export check')\n"
                "display(tracker)\n"
                "with tracker:\n"
                "    tracker.progress('searching', 'querying')\n"
            )
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    NotebookClient(notebook, timeout=120, kernel_name="python3", store_widget_state=store_widget_state).execute()
    path = tmp_path / "export.ipynb"
    nbformat.write(notebook, path)
    saved = nbformat.read(path, as_version=4)
    output = saved.cells[0].outputs[0]
    assert 'data-state="complete"' in output["data"]["text/html"]
    assert ": complete 100%" in output["data"]["text/plain"]
    body, _ = HTMLExporter().from_filename(str(path))
    if store_widget_state:
        # nbconvert then renders the live view from the saved model state, which is the final one.
        model_id = output["data"][WIDGET_VIEW_MIME]["model_id"]
        model = saved.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"][model_id]
        assert (model["state"]["status"]["state"], model["state"]["status"]["percent"]) == ("complete", 100.0)
    else:
        # What JupyterLab saves by default: no widget state, so the export shows the HTML snapshot.
        snapshot_tag = re.search(r'<div class="torq-progress-snapshot"[^>]*>', body)
        assert snapshot_tag and 'data-state="complete"' in snapshot_tag.group(0)


FAKE_JOB = """
import threading
from torq_nb.display import show
from torq_nb.progress.widget import view_state
import torq_nb.progress.widget as view

class FakeJob:  # what show() needs of a research job
    def __init__(self, name):
        self.tracker = ProgressTracker(name)
        self.cancelled = threading.Event()
    def cancel(self):
        self.cancelled.set()
        return True
    def on_blocking(self, callback):
        callback(True)  # a caller blocks on it, as research() does
        return lambda: None
"""


def shown_model_id(messages: list[dict[str, Any]]) -> str:
    shown = next(m for m in messages if m["msg_type"] == "display_data" and WIDGET_VIEW_MIME in m["content"]["data"])
    return str(shown["content"]["data"][WIDGET_VIEW_MIME]["model_id"])


def test_a_cancel_click_reaches_a_kernel_whose_cell_is_busy(kernel: Kernel) -> None:
    """Issue 8 item 11: ipykernel 7 reads shell messages in a thread of its own; the job widget's messages go to
    a subshell, so on_cancel runs while the main shell is still in the blocking cell."""
    messages, _ = kernel.run(FAKE_JOB + "job = FakeJob('busy cancel')\nshow(job)\n")
    model_id = shown_model_id(messages)
    busy = kernel.start(
        """
        job.tracker.progress("searching")
        reached = job.cancelled.wait(30)  # the main thread is blocked here, as in research()
        print("cancel reached the busy cell" if reached else "cancel did not arrive")
        """
    )
    time.sleep(1.0)  # let the cell start blocking (not a measurement: the click must simply come while it blocks)
    kernel.click(model_id, {"type": "cancel"})
    messages, _ = kernel.finish(busy)
    printed = "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")
    assert "cancel reached the busy cell" in printed


def test_without_a_subshell_a_blocked_job_shows_the_stop_hint_not_cancel(kernel: Kernel) -> None:
    messages, _ = kernel.run(
        FAKE_JOB
        + textwrap.dedent(
            """
            saved, view._subshell[:] = list(view._subshell), [None]  # a kernel without subshells
            try:
                job = FakeJob('no subshell')
                show(job)
            finally:
                view._subshell[:] = saved
            """
        )
    )
    model_id = shown_model_id(messages)
    opened = next(m for m in messages if m["msg_type"] == "comm_open" and m["content"]["comm_id"] == model_id)
    assert opened["content"]["data"]["state"]["cancellable"] is True  # a Cancel button at first...
    final = {}
    for m in messages:
        if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == model_id:
            final.update(m["content"]["data"].get("state", {}))
    assert final["cancellable"] is False and "interrupt the kernel" in final["stop_hint"]  # ...swapped at once


# ----------------------------------------------------------------------------- in-process


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def finished_status(state: str = "complete") -> dict[str, Any]:
    tracker = ProgressTracker("research_task")
    tracker.progress("searching", "querying")
    tracker.update(120, total=400)
    if state == "failed":
        tracker.fail(ValueError("no pages"))
    else:
        tracker.complete()
    return tracker.get_status()


def test_snapshot_html_treats_every_outside_string_as_text() -> None:
    tracker = ProgressTracker(HOSTILE, stages=[HOSTILE, "second"])
    tracker.progress(HOSTILE, HOSTILE)
    tracker.fail(RuntimeError(HOSTILE))
    parsed = _Elements()
    parsed.feed(status_html(tracker.get_status()))
    assert parsed.tags <= {"div", "strong", "span", "ol", "li"}
    assert all(a in {"class", "style", "role"} or a.startswith(("data-", "aria-")) for a in parsed.attributes)
    text = "".join(parsed.text)
    assert HOSTILE in text and f"RuntimeError: {HOSTILE}" in text


def test_snapshot_html_shows_final_state_stages_and_error() -> None:
    html_text = status_html(finished_status("failed"))
    assert 'data-state="failed"' in html_text
    assert 'data-stage-name="searching" data-stage-state="failed"' in html_text
    assert 'data-stage-name="initializing" data-stage-state="skipped"' in html_text
    assert 'role="progressbar"' in html_text and 'aria-valuenow="32.5"' in html_text
    assert "ValueError: no pages" in html_text


def test_rates_are_in_the_trackers_unit() -> None:
    tracker = ProgressTracker("crawl", unit="pages")
    tracker.progress("searching")
    tracker.update(120, total=400)
    status = tracker.get_status()
    assert status["unit"] == "pages" and " pages/s | ETA " in status_line(status)
    assert " pages/s" in status_html(status)
    with pytest.raises(ValueError, match="unit must be a non-empty string"):
        ProgressTracker("crawl", unit="")


def test_status_line_running_with_counts() -> None:
    tracker = ProgressTracker("research_task")
    tracker.progress("searching", "querying\nsources")
    tracker.update(120, total=400)
    line = status_line(tracker.get_status())
    assert line.startswith("research_task: searching 32% | 120/400 | ")
    assert " it/s | ETA " in line and "| elapsed 00:00 |" in line
    assert line.endswith("| querying sources")


def test_status_line_terminal_states() -> None:
    assert status_line(finished_status()).startswith("research_task: complete 100% | 120/400 |")
    failed = status_line(finished_status("failed"))
    assert failed.startswith("research_task: failed at searching 32% |") and failed.endswith("| ValueError: no pages")
    assert "ETA" not in failed


def test_status_line_strips_terminal_escapes() -> None:
    tracker = ProgressTracker("op\x1b]0;pwned\x07")
    tracker.progress("searching", "\x1b[2Jcleared")
    line = status_line(tracker.get_status())
    assert "\x1b" not in line and "\x07" not in line and line.endswith("| [2Jcleared")


def test_widget_loads_its_front_end_from_the_package() -> None:
    widget = ProgressWidget(ProgressTracker("assets"))
    assert (asset_dir() / "progress.js").is_file()
    assert "export default" in widget._esm and ".torq-progress" in widget._css
    widget.close()


def test_widget_follows_tracker_and_repr_is_the_text_line() -> None:
    tracker = ProgressTracker("repr check")
    widget = ProgressWidget(tracker)
    tracker.progress("extracting", "reading")
    status = widget.status
    assert (status["stage"], status["state"], status["message"]) == ("extracting", "running", "reading")
    assert repr(widget) == status_line(tracker.get_status())
    widget.close()
    widget.close()  # twice is fine
    tracker.complete()
    assert widget.status["state"] == "running"  # a closed widget no longer follows


def test_the_widget_syncs_every_status_field_but_the_kernel_only_ones() -> None:
    """A field added to ProgressStatus reaches the front-end with no list to edit; metadata stays behind."""
    tracker = ProgressTracker("fields", metadata={"session": object()})
    widget = ProgressWidget(tracker)
    tracker.progress("searching")
    assert set(widget.status) == STATUS_FIELDS - {"metadata", "timestamp"}
    assert {name for name, trait in widget.traits(sync=True).items() if not name.startswith("_")} >= {
        "status", "cancellable", "stop_hint"
    }
    assert not {"stage", "done", "percent"} & set(widget.traits(sync=True))
    widget.close()


def test_the_widget_subscribes_and_needs_no_lock_of_the_tracker() -> None:
    tracker = ProgressTracker("subscriber")
    subscribed: list[Any] = []
    real = tracker.subscribe
    tracker.subscribe = lambda callback: subscribed.append(callback) or real(callback)  # type: ignore[method-assign]
    widget = ProgressWidget(tracker)
    assert len(subscribed) == 1
    source = (Path(__file__).resolve().parent.parent / "torq_nb" / "progress" / "widget.py").read_text()
    assert "tracker._lock" not in source and "_tracker._lock" not in source
    widget.close()


def test_widget_refuses_bad_arguments() -> None:
    with pytest.raises(TypeError, match="ProgressTracker"):
        ProgressWidget("not a tracker")  # type: ignore[arg-type]
