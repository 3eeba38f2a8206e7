"""The extraction workers seen from outside, as a user's script sees them: real processes, real scripts.

A script without ``if __name__ == "__main__":`` runs once, however many workers extract its pages; a run
that ends before the pool has started ends quietly; and no worker or fork server outlives the process that
started it, however that process ends.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from fake_search import SearchServer, load_pages, search_environment

#: The README's two lines, plus a line that records every execution of the script (worker re-imports included).
SCRIPT = """\
import os
with open(os.environ["MARKS"], "a") as marks:
    marks.write(f"{{os.getpid()}}\\n")
import torq_nb
{body}
"""
UNGUARDED = 'r = torq_nb.research("solar power water")\nprint(r.summary)'
GUARDED = 'if __name__ == "__main__":\n    r = torq_nb.research("solar power water")\n    print(r.summary)'


async def run_script(path: Path, *args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=cwd, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 300)
    return process.returncode, out.decode(), err.decode()


def repository_path() -> str:
    """PYTHONPATH that finds torq_nb from a script in another folder, as an installed package would."""
    root = str(Path(__file__).resolve().parents[1])
    return os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))


@pytest.mark.parametrize("how", ["path", "module"])  # python script.py (init_main_from_path) / python -m (..._from_name)
async def test_a_script_without_a_main_guard_runs_once_and_as_quietly_as_a_guarded_one(tmp_path, how):
    (tmp_path / "unguarded.py").write_text(SCRIPT.format(body=UNGUARDED))
    (tmp_path / "guarded.py").write_text(SCRIPT.format(body=GUARDED))
    outputs = {}
    async with SearchServer(load_pages()) as server:
        for name in ("unguarded", "guarded"):
            marks = tmp_path / f"{name}.marks"
            env = {**search_environment(server), "MARKS": str(marks), "PYTHONPATH": repository_path(),
                   "TORQ_NB_STORE": str(tmp_path / f"{name}.sqlite")}  # each run fetches and extracts afresh
            args = (f"{name}.py",) if how == "path" else ("-m", name)
            code, out, err = await run_script(tmp_path / f"{name}.py", *args, env=env, cwd=tmp_path)
            assert code == 0, err
            assert len(marks.read_text().splitlines()) == 1, (name, err)  # once: no worker ran the script
            assert err == "", (name, err)
            outputs[name] = out
    assert "[1]" in outputs["unguarded"]
    assert outputs["unguarded"].splitlines() == outputs["guarded"].splitlines()


#: On PYTHONPATH as sitecustomize: the interpreters multiprocessing starts with ``-c`` (the fork server and
#: the resource tracker) take $HELPER_DELAY seconds (3 by default) to start, as on a loaded machine, then
#: touch $HELPERS_STARTED if it is set.
SLOW_HELPERS = """\
import os, sys, time
if sys.argv == ["-c"]:
    time.sleep(float(os.environ.get("HELPER_DELAY", "3")))
    if os.environ.get("HELPERS_STARTED"):
        open(os.environ["HELPERS_STARTED"], "a").close()
"""

#: A run that ends at once: its source finds nothing, while the extraction workers are still starting.
ENDS_AT_ONCE = """\
import torq_nb
from torq_nb.research.sources import Source


class Nothing(Source):
    name = "nothing"

    async def search(self, query, limit, fetcher):
        return []


if __name__ == "__main__":
    print("rows:", torq_nb.research("solar power water", source=Nothing()).df.height)
"""


def test_a_run_that_ends_before_the_pool_starts_ends_quietly_and_at_once(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SLOW_HELPERS)
    (tmp_path / "instant.py").write_text(ENDS_AT_ONCE)
    started = tmp_path / "helpers-started"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), repository_path()]),
           "HELPER_DELAY": "8", "HELPERS_STARTED": str(started)}
    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("w") as stdout, err.open("w") as stderr:  # files, not pipes: the helpers inherit them
        script = subprocess.Popen([sys.executable, "instant.py"], cwd=tmp_path, env=env, stdout=stdout, stderr=stderr)
        assert script.wait(300) == 0, err.read_text()
    assert not started.exists()  # the script ended without waiting for the fork server to finish starting
    assert out.read_text() == "rows: 0\n"
    assert "Exception in thread" not in err.read_text() and "Traceback" not in err.read_text(), err.read_text()
    assert err.read_text() == ""
    deadline = time.monotonic() + 120  # then the helpers end by themselves (a bound, not a measurement)
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.2)


#: The pool started from a short-lived thread (as the warm-up thread and a notebook cell do), and a page to extract.
POOL_FROM_A_THREAD = """\
from torq_nb.research.extract import shared_extractor
from torq_nb.research.models import Page

extractor = shared_extractor()
starter = threading.Thread(target=extractor.warm_up)
starter.start()
starter.join()
page = Page(url="https://example.org/a", status="ok", content_type="text/html",
            text="<html><body><p>" + "A sentence about trams and the city. " * 40 + "</p></body></html>")
"""

#: A kernel-like parent: threads, a pool started from a short-lived thread (as the warm-up thread does),
#: a page extracted, then it waits to be killed.
PARENT = "import asyncio, threading, time\n" + POOL_FROM_A_THREAD + """\
assert asyncio.run(extractor.extract(page)) is not None
threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
print("ready", flush=True)
time.sleep(600)
"""


def descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """The processes still running (a zombie has ended; only its exit status waits to be collected)."""
    still = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                still.append(process)
        except psutil.NoSuchProcess:
            pass
    return still



def assert_all_end(processes: list[psutil.Process]) -> None:
    """Every one of ``processes`` ends within a minute."""
    deadline = time.monotonic() + 60  # a bound on the wait, not a measurement
    while alive(processes) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = alive(processes)
    assert left == [], [(process.pid, process.cmdline()) for process in left]

@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_workers_and_fork_server_end_when_their_parent_is_killed(how):
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    started: list[psutil.Process] = []
    try:
        assert parent.stdout.readline().strip() == "ready"
        started = descendants(parent.pid)
        commands = [" ".join(process.cmdline()) for process in started]
        assert any("forkserver" in command for command in commands), commands
        assert len(started) >= 3, commands  # the fork server, the resource tracker and the workers
        parent.send_signal(how)
        parent.wait(60)
        assert_all_end(started)
    finally:
        parent.kill()
        parent.wait()
        for process in alive(started):  # leave nothing behind, even when the test fails
            process.kill()


#: A user's own spawn pool whose workers research (quick: snippets only, so no nested extraction pool): in
#: such a child the main module is ``__mp_main__``, which is no reason to refuse.
IN_A_SPAWNED_CHILD = """\
import multiprocessing
import torq_nb


def rows(topic):
    return torq_nb.research(topic, "quick", display=False).df.height


if __name__ == "__main__":
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        print("rows:", pool.map(rows, ["solar power water"]))
"""


async def test_research_runs_in_a_users_own_spawned_worker(tmp_path):
    (tmp_path / "pool.py").write_text(IN_A_SPAWNED_CHILD)
    async with SearchServer(load_pages()) as server:
        env = {**search_environment(server), "PYTHONPATH": repository_path()}
        code, out, err = await run_script(tmp_path / "pool.py", "pool.py", env=env, cwd=tmp_path)
    assert code == 0, err
    assert out.startswith("rows: [") and out.strip() != "rows: [0]", out


#: What a notebook cell does to the pool: started from a short-lived thread, one page extracted.
KERNEL_CELL = "import threading\n" + POOL_FROM_A_THREAD + """\
assert (await extractor.extract(page)) is not None
"""


def test_workers_and_fork_server_end_when_a_real_kernel_is_killed():
    from jupyter_client.manager import KernelManager

    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(env={**os.environ, "PYTHONPATH": repository_path()})
    client = manager.client()
    client.start_channels()
    started: list[psutil.Process] = []
    try:
        client.wait_for_ready(timeout=120)
        reply = client.execute_interactive(KERNEL_CELL, timeout=300, output_hook=lambda message: None)
        assert reply["content"]["status"] == "ok", reply["content"]
        kernel = manager.provisioner.process.pid
        started = descendants(kernel)
        assert any("forkserver" in " ".join(process.cmdline()) for process in started), started
        os.kill(kernel, signal.SIGKILL)  # the kernel dies as an OOM kill or a crashed host leaves it
        assert_all_end(started)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
        for process in alive(started):
            process.kill()
