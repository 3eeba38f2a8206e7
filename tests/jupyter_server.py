"""Test helpers for notebook tests: a real JupyterLab on loopback, and Debian's Chromium through Playwright.

    from tests.jupyter_server import jupyter_lab, launch_chromium

    with jupyter_lab(tmp_path) as lab, sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page()
        page.goto(lab.url("lab/tree/demo.ipynb"))
        wait_for_kernel_idle(page)

Notebook 7's page (``lab.url("notebooks/demo.ipynb")``, served by the same server) has no status bar:
start the server with ``extra_args=NOTEBOOK7_ARGS`` and use ``wait_for_kernel_ready(page)``, which works
in both front-ends. ``fake_search.serve_in_thread(FaultServer())`` keeps a loopback web server that the notebook's
kernel can reach running beside a sync (Playwright) test.

The server listens on 127.0.0.1 only, with a random token, ``tmp_path`` as its root and its own config,
settings, workspace and runtime directories (nothing from the user's setup leaks in; news and update
checks are off). It runs the kernels of the Python running the tests, so the package under test is the
one installed there.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import nbformat
import pytest

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "NOTEBOOK7_ARGS",
    "JupyterLab",
    "cell",
    "jupyter_lab",
    "launch_chromium",
    "record_progress",
    "recorded_progress",
    "require_chromium",
    "require_notebook7",
    "run_cell",
    "wait_for_kernel_idle",
    "wait_for_kernel_ready",
    "wait_until_executed",
]


CHROMIUM = Path("/usr/bin/chromium")
#: Flags for Debian's Chromium as root in a container, with no traffic of its own (field notes).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

#: Server settings for tests that open Notebook 7's page: it exposes its app as ``window.jupyterapp`` too.
NOTEBOOK7_ARGS = ("--JupyterNotebookApp.expose_app_in_browser=True",)

#: JupyterLab user settings that keep toasts (news, update checks) from covering the page.
_QUIET_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "checkForUpdates": False,
        "doNotDisturbMode": True,
        "fetchNews": "false",
    },
}


def write_notebook(path: Path, cells: Sequence[str]) -> None:
    """A notebook of these code cells at ``path``, on the python3 kernel."""
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(source) for source in cells],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
    )
    nbformat.write(notebook, path)


def end_with_parent() -> None:
    """In a server's child process before exec (Linux): SIGTERM it when the test process dies, however it dies,
    so a killed or timed-out pytest leaves no server behind (a session of its own escapes the group's signals)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def require_chromium() -> str:
    """The Chromium executable's path. Missing: the test fails under CI=true, and is skipped otherwise."""
    if CHROMIUM.is_file():
        return str(CHROMIUM)
    reason = f"{CHROMIUM} not found: install it with `apt-get install chromium`"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: browser tests must run)")
    pytest.skip(reason)


def launch_chromium(playwright: Any, **options: Any) -> Any:
    """Launch Debian's Chromium (Playwright cannot download its own here) with the container-safe flags."""
    return playwright.chromium.launch(executable_path=require_chromium(), args=CHROMIUM_ARGS, **options)


@contextmanager
def chromium_page(address: str, viewport: tuple[int, int] = (1200, 900)) -> Iterator[Any]:
    """A page of a fresh Chromium (``viewport``: width, height), opened at ``address``; the browser closes after."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.goto(address)
            yield page
        finally:
            browser.close()


def wait_for_kernel_idle(page: Any, timeout_ms: float = 60_000) -> None:
    """Wait until the notebook's kernel is connected and idle.

    The execution indicator says idle before the kernel is connected, and a Shift+Enter sent then is
    lost; the status bar's "| Idle" appears only once the kernel answered (field notes).
    """
    page.wait_for_function("document.body.innerText.includes('| Idle')", timeout=timeout_ms)


def require_notebook7() -> None:
    """Notebook 7 (the `notebook` package, a JupyterLab-based front-end) must be installed.

    Missing: the test fails under CI=true, and is skipped otherwise.
    """
    try:
        from notebook import version_info
    except ImportError:
        pass
    else:
        if version_info[0] >= 7:
            return
    reason = "Notebook 7 is not installed: install it with `pip install 'notebook>=7'`"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: browser tests must run)")
    pytest.skip(reason)


def wait_for_kernel_ready(page: Any, timeout_ms: float = 60_000) -> None:
    """Wait until the open notebook's kernel is connected and idle, in JupyterLab or in Notebook 7.

    Asks the kernel connection itself through ``window.jupyterapp`` (exposed by jupyter_lab(), and by
    Notebook 7 with NOTEBOOK7_ARGS): Notebook 7 has no status bar showing "| Idle", and its execution
    indicator says idle before the kernel is connected.
    """
    page.wait_for_function(
        """() => {
          const kernel = window.jupyterapp?.shell?.currentWidget?.sessionContext?.session?.kernel;
          return kernel?.connectionStatus === "connected" && kernel?.status === "idle";
        }""",
        timeout=timeout_ms,
    )


def cell(page: Any, index: int) -> Any:
    """The notebook's ``index``-th cell (0-based), in JupyterLab or Notebook 7."""
    return page.locator(".jp-Notebook .jp-Cell").nth(index)


def run_cell(page: Any, index: int) -> None:
    """Put the cursor in a cell's editor and run it with Shift+Enter (focus may be anywhere before)."""
    cell(page, index).locator(".cm-content").click()
    page.keyboard.press("Shift+Enter")


def wait_until_executed(page: Any, index: int, timeout_ms: float = 60_000) -> None:
    """Wait until a cell's prompt shows its execution count ("[3]:", not "[*]:"): the cell has finished."""
    prompt = cell(page, index).locator(".jp-InputPrompt")
    prompt.filter(has_text=re.compile(r"\[\d+\]")).wait_for(timeout=timeout_ms)


#: Records what every progress widget on the page shows, each time it changes (a MutationObserver).
_PROGRESS_RECORDER = """
() => {
  window.__torqRecorded = [];
  const last = new WeakMap();
  const record = () => {
    for (const root of document.querySelectorAll('.torq-progress')) {
      const cancel = root.querySelector('.torq-progress__cancel');
      const entry = {
        operation: root.querySelector('.torq-progress__operation').textContent,
        state: root.dataset.state,
        stage: root.dataset.stage,
        percent: root.dataset.percent,
        counts: root.querySelector('.torq-progress__counts').textContent,
        elapsed: root.querySelector('.torq-progress__elapsed').textContent,
        eta: root.querySelector('.torq-progress__eta').hidden ? '' : root.querySelector('.torq-progress__eta').textContent,
        cancel: cancel !== null && !cancel.hidden,
        hint: root.querySelector('.torq-progress__hint')?.hidden === false ? root.querySelector('.torq-progress__hint').textContent : '',
      };
      const key = JSON.stringify(entry);
      if (last.get(root) !== key) {
        last.set(root, key);
        window.__torqRecorded.push({...entry, at: Date.now()});  // when the page first showed it (ms, wall clock)
      }
    }
  };
  new MutationObserver(record).observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
  record();
}
"""


def record_progress(page: Any) -> None:
    """Start recording every state the page's progress widgets show; read it with recorded_progress()."""
    page.evaluate(_PROGRESS_RECORDER)


def recorded_progress(page: Any, operation: str = "") -> list[dict[str, Any]]:
    """What the progress widgets showed since record_progress(), in order (operation, state, stage,
    percent, counts, elapsed, eta, cancel, hint, and ``at``: the page's wall clock in ms when it first showed
    that), for the widgets whose operation contains ``operation``."""
    return [entry for entry in page.evaluate("window.__torqRecorded") if operation in entry["operation"]]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class JupyterLab:
    """A running JupyterLab server: its root directory, loopback port and token."""

    root_dir: Path
    port: int
    token: str
    process: subprocess.Popen[bytes]
    state_dir: Path
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.state_dir / "server.log"

    def url(self, path: str = "lab", **query: str) -> str:
        """An address on this server, with the token, e.g. ``url("lab/tree/demo.ipynb")``."""
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}?{urlencode({**query, 'token': self.token})}"

    def api(self, path: str) -> Any:
        """GET a REST endpoint (``api/status``, ``api/contents/demo.ipynb``…) and return its JSON."""
        request = urllib.request.Request(self.url(path), headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:  # loopback only
            return json.load(response)

    def log(self) -> str:
        """The server's output so far (for failure messages)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                self.api("api/status")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        raise TimeoutError(
            f"JupyterLab did not answer on port {self.port} within {timeout:.0f} s:\n{self.log()[-3000:]}"
        )

    def stop(self) -> None:
        """Stop the server (which shuts its kernels down); kill its process group if it will not stop."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.send_signal(signal.SIGINT)  # jupyter_server asks for confirmation on the first
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def start_jupyter_lab(root_dir: Path, *, timeout: float = 90.0, extra_args: Sequence[str] = ()) -> JupyterLab:
    """Start JupyterLab serving ``root_dir`` on 127.0.0.1 and wait until it answers.

    ``extra_args`` are added to the server's command line (``--Class.trait=value`` settings).
    """
    state_dir = Path(tempfile.mkdtemp(prefix="torq-lab-"))
    settings_dir = state_dir / "settings"
    for relative, values in _QUIET_SETTINGS.items():
        target = settings_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(state_dir / "config"),
        "JUPYTER_RUNTIME_DIR": str(state_dir / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings_dir),
        "JUPYTERLAB_WORKSPACES_DIR": str(state_dir / "workspaces"),
        "IPYTHONDIR": str(state_dir / "ipython"),
    }
    env.pop("JUPYTER_PORT", None)
    token, port = secrets.token_hex(16), _free_port()
    command = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser", "--allow-root",
        "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        "--LabApp.expose_app_in_browser=True",
        *extra_args,
    ]  # fmt: skip
    log = (state_dir / "server.log").open("wb")
    process = subprocess.Popen(
        command, cwd=root_dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=end_with_parent,
    )
    log.close()
    lab = JupyterLab(root_dir=Path(root_dir), port=port, token=token, process=process, state_dir=state_dir)
    try:
        lab.wait_ready(timeout)
    except BaseException:
        lab.stop()
        raise
    return lab


@contextmanager
def jupyter_lab(root_dir: Path, *, timeout: float = 90.0, extra_args: Sequence[str] = ()) -> Iterator[JupyterLab]:
    """JupyterLab on loopback for the ``with`` block; stopped and cleaned up afterwards."""
    lab = start_jupyter_lab(root_dir, timeout=timeout, extra_args=extra_args)
    try:
        yield lab
    finally:
        lab.stop()
        shutil.rmtree(lab.state_dir, ignore_errors=True)


@contextmanager
def notebook_lab(notebook: Path, cells: Sequence[str], *, extra_args: Sequence[str] = ()) -> Iterator[JupyterLab]:
    """JupyterLab serving ``notebook``'s folder, the notebook written there with these code cells first
    (Chromium required: the browser tests are what open it)."""
    require_chromium()
    write_notebook(notebook, cells)
    with jupyter_lab(notebook.parent, extra_args=extra_args) as server:
        yield server


@contextmanager
def marimo_run(app: Path, log: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """``marimo run app`` on loopback (no token) for the block, with ``env`` added to the environment; its
    address. Stopped with its process group."""
    if importlib.util.find_spec("marimo") is None:
        pytest.skip("marimo is not installed: pip install marimo")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "marimo", "run", str(app), "--headless", "--host", "127.0.0.1",
               "--port", str(port), "--no-token"]  # fmt: skip
    with log.open("wb") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                  preexec_fn=end_with_parent,
                                  env={**os.environ, **(env or {})})
    address = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(address, timeout=5).close()  # loopback only
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"marimo did not start:\n{log.read_text(errors='replace')[-2000:]}") from None
                time.sleep(0.2)
        yield address
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
