"""The torq-nb command, run as a user runs it: a real process against loopback servers."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios

import polars as pl
import psutil
import pytest
from fake_search import SearchServer, load_pages

CLI = [sys.executable, "-m", "torq_nb.cli"]


async def run_cli(*args: str, env: dict[str, str] | None = None, interrupt_after: str | None = None,
                  timeout: float = 120) -> tuple[int, str, str]:
    """Run torq-nb; with ``interrupt_after``, send SIGINT once that text shows on standard error."""
    process = await asyncio.create_subprocess_exec(
        *CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    if interrupt_after is None:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
        return process.returncode, out.decode(), err.decode()
    seen = b""
    while interrupt_after.encode() not in seen:
        line = await asyncio.wait_for(process.stderr.readline(), timeout)
        assert line, f"the CLI ended before {interrupt_after!r}: {seen.decode()}"
        seen += line
    process.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    return process.returncode, out.decode(), seen.decode() + err.decode()


def searxng_env(server: SearchServer) -> dict[str, str]:
    return {"TORQ_NB_SOURCE": "searxng", "TORQ_NB_SEARXNG_URL": server.searxng_url,
            "TORQ_NB_ALLOW_PRIVATE_NETWORKS": "1"}


async def test_research_prints_stages_and_summary_and_exports(tmp_path):
    async with SearchServer(load_pages()) as server:
        code, out, err = await run_cli(
            "research", "solar power water", "--export", str(tmp_path / "report.md"),
            "--export", str(tmp_path / "results.csv"), "--export", str(tmp_path / "run.json"),
            env=searxng_env(server))
    assert code == 0, err
    lines = err.splitlines()
    for stage in ("initializing", "searching", "extracting", "synthesizing", "complete"):
        assert any(stage in line for line in lines), (stage, err)
    assert "\r" not in err  # not a terminal: plain lines
    assert "[1]" in out
    table = pl.read_csv(tmp_path / "results.csv")
    assert table.height > 0 and set(table["status"]) == {"ok"}
    assert "| rank" in (tmp_path / "report.md").read_text() or "|" in (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "run.json").read_text())["topic"] == "solar power water"


async def test_export_re_exports_a_saved_run(tmp_path):
    async with SearchServer(load_pages()) as server:
        code, _, err = await run_cli("research", "solar power water", "--depth", "quick", "--export", str(tmp_path / "run.json"),
                                     env=searxng_env(server))
    assert code == 0, err
    code, _, err = await run_cli("export", str(tmp_path / "run.json"), str(tmp_path / "again.csv"))
    assert code == 0, err
    assert pl.read_csv(tmp_path / "again.csv")["status"].to_list() == ["snippet"] * pl.read_csv(tmp_path / "again.csv").height


async def test_export_takes_several_outputs_and_a_stored_run_by_the_start_of_its_id(tmp_path):
    store = {"TORQ_NB_STORE": str(tmp_path / "store.sqlite")}
    async with SearchServer(load_pages()) as server:
        code, _, err = await run_cli("research", "solar power water", "--depth", "quick", "--export", str(tmp_path / "run.json"),
                                     env={**searxng_env(server), **store})
    assert code == 0, err
    run_id = json.loads((tmp_path / "run.json").read_text())["operation_id"]
    code, _, err = await run_cli("export", run_id[:8], str(tmp_path / "again.md"), str(tmp_path / "again.xlsx"), env=store)
    assert code == 0, err
    assert err.count("wrote ") == 2 and (tmp_path / "again.md").read_text().startswith("# ")
    saved = json.loads((tmp_path / "run.json").read_text())["results"]
    assert saved and pl.read_excel(tmp_path / "again.xlsx", sheet_name="results").height == len(saved)
    code, _, err = await run_cli("export", run_id[:3], str(tmp_path / "short.md"), env=store)
    assert code == 2 and "at least 4 characters" in err and not (tmp_path / "short.md").exists()  # 3 are too few
    assert err.startswith("usage: torq-nb export ")  # the command's own usage, not the top level's


async def test_bad_arguments_exit_2_before_any_work(tmp_path):
    code, _, err = await run_cli("research", "x", "--export", str(tmp_path / "out.docx"))
    assert code == 2 and "unknown suffix" in err and not (tmp_path / "out.docx").exists()
    code, _, err = await run_cli("research", "x", "--depth", "enormous")
    assert code == 2 and "invalid choice" in err
    code, _, err = await run_cli("research", "x", "--source", "nowhere")
    assert code == 2 and "Available sources" in err
    code, _, err = await run_cli("export", str(tmp_path / "missing.json"), str(tmp_path / "x.md"))
    assert code == 2 and "missing.json" in err


async def test_a_failed_search_exits_1_with_the_reason():
    async with SearchServer(load_pages()) as server:
        server.searxng_json = False
        code, _, err = await run_cli("research", "solar power water", env=searxng_env(server))
    assert code == 1
    assert "research failed" in err and "JSON" in err


async def test_ctrl_c_exits_130_and_still_exports_partial_results(tmp_path):
    async with SearchServer(load_pages()) as server:
        server.delay = 8.0  # pages stay in flight long after the interrupt, even on a loaded machine
        code, _, err = await run_cli("research", "solar power water", "--export", str(tmp_path / "partial.csv"),
                                     env=searxng_env(server), interrupt_after="extracting")
    assert code == 130, err
    rows = pl.read_csv(tmp_path / "partial.csv")
    assert rows.height > 0 and "cancelled" in set(rows["status"])


def test_help_explains_both_commands_and_env_twins():
    top = subprocess.run([*CLI, "--help"], capture_output=True, text=True, check=True).stdout
    assert "research" in top and "export" in top
    detail = subprocess.run([*CLI, "research", "--help"], capture_output=True, text=True, check=True).stdout
    for variable in ("TORQ_NB_SOURCE", "TORQ_NB_SEARXNG_URL", "TORQ_NB_ALLOW_PRIVATE_NETWORKS", "TORQ_NB_DEPTH"):
        assert variable in detail


def help_of(*args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run([*CLI, *args, "--help"], capture_output=True, text=True, check=True,
                          env={**os.environ, **(env or {})}).stdout


def test_each_source_brings_its_own_flags():
    default = help_of("research")  # wikipedia: its constructor's parameters, its location twice
    assert "--endpoint URL, --wikipedia-url URL" in default and "--maxlag-wait" in default and "--path" not in default
    local = help_of("research", "--source", "local")
    assert "--path DIR, --local-path DIR" in local and "[env: TORQ_NB_LOCAL_PATH]" in local
    assert "--endpoint" not in local
    assert "--base-url URL, --searxng-url URL" in help_of("research-many", "--source", "searxng")


def plugin_env(tmp_path) -> dict[str, str]:
    """The echo plug-in of test_sources installed as a distribution (a .dist-info on PYTHONPATH): the command
    finds it through its entry point, as it would after pip install."""
    from test_sources import write_plugin

    folder = write_plugin(tmp_path, "torq_echo_cli", {"echo": "EchoSource"})
    path = os.pathsep.join(filter(None, [str(folder), os.getcwd(), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, "TORQ_NB_STORE": "off", "TORQ_NB_SOURCE": "", "TORQ_NB_ECHO_PREFIX": ""}


async def test_a_plugin_source_gets_flags_from_its_constructor(tmp_path):
    env = plugin_env(tmp_path)
    shown = help_of("research", "--source", "echo", env=env)
    assert "--prefix TEXT, --echo-prefix TEXT" in shown and "[env: TORQ_NB_ECHO_PREFIX]" in shown
    assert "--times TIMES" in shown and "--shout, --no-shout" in shown and "Echoes the query" in shown

    code, _, err = await run_cli("research", "bees", "--source", "echo", "--prefix", "heard", "--times", "2", "--shout",
                                 "--depth", "quick", "--quiet", "--export", str(tmp_path / "echo.csv"), env=env)
    assert code == 0, err
    assert pl.read_csv(tmp_path / "echo.csv")["title"].to_list() == ["HEARD: BEES", "HEARD: BEES"]

    code, _, err = await run_cli("research", "bees", "--source", "echo", "--depth", "quick", "--quiet",
                                 "--export", str(tmp_path / "env.csv"), env={**env, "TORQ_NB_ECHO_PREFIX": "from env"})
    assert code == 0, err
    assert pl.read_csv(tmp_path / "env.csv")["title"].to_list() == ["from env: bees"]

    code, _, err = await run_cli("research", "bees", "--source", "echo", "--tims", "2", env=env)
    assert code == 2 and "did you mean --times?" in err and "the echo source's flags: --prefix" in err, err


def test_a_source_option_named_like_a_command_flag_gets_the_source_name_in_front():
    from torq_nb.cli import _parser, _source_options
    from torq_nb.research.sources import Source

    class Deep(Source):
        name = "deep"

        def __init__(self, depth: int = 1, export: bool = False) -> None:
            pass

        async def search(self, query, limit, fetcher):
            return []

    for command in ("research", "research-many"):
        args = _parser(Deep).parse_args([command, "x", "--depth", "quick", "--deep-depth", "3", "--deep-export"])
        assert args.depth == "quick" and _source_options(args) == {"depth": 3, "export": True}


async def test_on_a_terminal_the_progress_is_one_live_line():
    async with SearchServer(load_pages()) as server:
        leader, follower = pty.openpty()
        process = await asyncio.create_subprocess_exec(
            *CLI, "research", "solar power water", "--depth", "quick", stdin=follower, stdout=follower, stderr=follower,
            env={**os.environ, **searxng_env(server), "COLUMNS": "100"})
        os.close(follower)

        output = await asyncio.wait_for(asyncio.to_thread(read_terminal, leader), 120)
        await asyncio.wait_for(process.wait(), 30)
        os.close(leader)
    text = output.decode(errors="replace")
    assert process.returncode == 0
    rewrites = re.findall(r"\r(?!\n)", text)  # a terminal also turns each \n into \r\n
    assert len(rewrites) >= 3, text  # the progress line was rewritten in place


def open_terminal(columns: int = 100) -> tuple[int, int]:
    """A pty (leader, follower) whose window is ``columns`` wide, as a terminal emulator sets it."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    return leader, follower


def read_terminal(leader: int) -> bytes:
    """Everything the program writes to the terminal, until it closes it."""
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the process closed the terminal
            return output
        if not chunk:
            return output
        output += chunk


def terminal_env(server: SearchServer) -> dict[str, str]:
    env = {**os.environ, **searxng_env(server)}
    env.pop("COLUMNS", None)  # the width comes from the terminal itself
    return env


@pytest.mark.parametrize("after", [0.5, 2.0, 5.0])  # importing; searching / workers starting; pages in flight
async def test_ctrl_c_at_any_moment_exits_130_without_a_traceback(tmp_path, after):
    async with SearchServer(load_pages()) as server:
        server.delay = 2.0  # the search and every page take a while, so the run is still going at 5 s
        leader, follower = open_terminal()
        # A session of its own, as a shell gives a job: Ctrl-C signals the whole foreground process group.
        process = await asyncio.create_subprocess_exec(
            *CLI, "research", "solar power water", "--export", str(tmp_path / "partial.csv"),
            stdin=follower, stdout=follower, stderr=follower, env=terminal_env(server), start_new_session=True)
        os.close(follower)
        reading = asyncio.ensure_future(asyncio.to_thread(read_terminal, leader))
        await asyncio.sleep(after)
        os.killpg(process.pid, signal.SIGINT)
        output = (await asyncio.wait_for(reading, 120)).decode(errors="replace")
        await asyncio.wait_for(process.wait(), 60)
        os.close(leader)
    assert process.returncode == 130, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert "interrupted" in output
    assert await group_ends(process.pid), "a worker or the fork server outlived the interrupted command"


async def group_ends(pgid: int, bound: float = 60) -> bool:
    """Whether every process of the group has ended within ``bound`` seconds (a bound, not a measurement)."""
    deadline = asyncio.get_running_loop().time() + bound
    while asyncio.get_running_loop().time() < deadline:
        members = []
        for process in psutil.process_iter(["status"]):
            try:
                if os.getpgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                    members.append(process)
            except (ProcessLookupError, psutil.NoSuchProcess):
                pass
        if not members:
            return True
        await asyncio.sleep(0.1)
    return False


def test_help_imports_nothing_heavy():
    heavy = {"polars", "aiohttp", "trafilatura", "lxml", "nbformat", "nbconvert", "typst", "bm25s", "anywidget",
             "ipywidgets", "multiprocessing", "torq_nb.research.pipeline", "torq_nb.export.manager"}
    for args in (["--help"], ["research", "--help"], ["export", "--help"]):
        done = subprocess.run([sys.executable, "-X", "importtime", *CLI[1:], *args], capture_output=True, text=True,
                              check=True)
        assert "usage: torq-nb" in done.stdout
        imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
        assert imported & heavy == set(), (args, sorted(imported & heavy))


async def test_on_a_terminal_the_summary_is_wrapped_to_its_width():
    async with SearchServer(load_pages()) as server:
        leader, follower = open_terminal(columns=60)
        process = await asyncio.create_subprocess_exec(
            *CLI, "research", "solar power water", "--quiet",
            stdin=follower, stdout=follower, stderr=follower, env=terminal_env(server))
        os.close(follower)
        output = await asyncio.wait_for(asyncio.to_thread(read_terminal, leader), 120)
        await asyncio.wait_for(process.wait(), 30)
        os.close(leader)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    lines = [line for line in text.replace("\r\n", "\n").splitlines() if line.strip()]
    assert "[1]" in text and len(lines) >= 2, text
    assert [line for line in lines if len(line) > 60 and " " in line.strip()] == [], text  # long URLs may overflow


async def test_ctrl_c_while_the_workers_start_reaches_no_worker(tmp_path):
    """The fork server and its workers start with SIGINT blocked: a Ctrl-C then is the command's alone."""
    from test_processes import SLOW_HELPERS  # the fork server takes 3 s to start, as on a loaded machine

    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SLOW_HELPERS)
    async with SearchServer(load_pages()) as server:
        server.delay = 2.0
        leader, follower = open_terminal()
        env = {**terminal_env(server), "PYTHONPATH": os.pathsep.join(filter(None, [
            str(tmp_path / "site"), os.getcwd(), os.environ.get("PYTHONPATH")]))}
        process = await asyncio.create_subprocess_exec(
            *CLI, "research", "solar power water", stdin=follower, stdout=follower, stderr=follower, env=env,
            start_new_session=True)
        os.close(follower)
        reading = asyncio.ensure_future(asyncio.to_thread(read_terminal, leader))
        assert await fork_server_started(process.pid)  # and importing (3 s): the run is searching meanwhile
        os.killpg(process.pid, signal.SIGINT)
        output = await asyncio.wait_for(reading, 120)
        await asyncio.wait_for(process.wait(), 60)
        os.close(leader)
    text = output.decode(errors="replace")
    assert process.returncode == 130, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert await group_ends(process.pid)


async def fork_server_started(pid: int, bound: float = 120) -> bool:
    """Whether the command has started its fork server within ``bound`` seconds (a bound, not a measurement)."""
    deadline = asyncio.get_running_loop().time() + bound
    while asyncio.get_running_loop().time() < deadline:
        try:
            if any("forkserver" in " ".join(child.cmdline()) for child in psutil.Process(pid).children()):
                return True
        except psutil.NoSuchProcess:
            return False
        await asyncio.sleep(0.02)
    return False


SCRIPT = 'import torq_nb\nresults = torq_nb.research("solar power water", depth="quick")\nprint(len(results.df))\n'


async def test_a_script_on_a_terminal_shows_the_live_line_and_in_a_pipe_stays_quiet(tmp_path):
    """research() in a plain script: on a terminal the same live line as the CLI (as tqdm does), in logs nothing."""
    script = tmp_path / "run.py"
    script.write_text(SCRIPT, encoding="utf-8")
    async with SearchServer(load_pages()) as server:
        leader, follower = open_terminal()
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(script), stdin=follower, stdout=follower, stderr=follower, env=terminal_env(server))
        os.close(follower)
        output = await asyncio.wait_for(asyncio.to_thread(read_terminal, leader), 120)
        await asyncio.wait_for(process.wait(), 30)
        os.close(leader)
        piped = await asyncio.create_subprocess_exec(
            sys.executable, str(script), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=terminal_env(server))
        out, err = await asyncio.wait_for(piped.communicate(), 120)
    text = output.decode(errors="replace")
    assert process.returncode == 0 and "research: solar power water" in text and "complete" in text, text
    assert piped.returncode == 0 and err == b"" and out.strip().isdigit()


#: A Ctrl-C that lands where Python's own handler would raise it badly while the engine is imported: inside generated
#: code (dataclasses exec() a string; a KeyboardInterrupt that leaves one makes ``python -m`` die by SIGINT at exit,
#: even once it was handled), or inside a weakref callback (the import system's module locks have them; there it is
#: "Exception ignored" and the run goes on). ``signal.raise_signal`` puts it exactly there, as a Ctrl-C may.
CTRL_C_INSIDE = """\
import os, signal, sys, weakref

class _CtrlCOnImport:
    def find_spec(self, name, path=None, target=None):
        if name == "torq_nb.research.pipeline" and self in sys.meta_path:
            sys.meta_path.remove(self)
            if os.environ["CTRL_C_INSIDE"] == "exec":
                exec("import signal; signal.raise_signal(signal.SIGINT)", {})
            else:
                class Gone:
                    pass
                gone = Gone()
                reference = weakref.ref(gone, lambda _: signal.raise_signal(signal.SIGINT))
                del gone
        return None

sys.meta_path.insert(0, _CtrlCOnImport())
"""


@pytest.mark.parametrize("inside", ["exec", "weakref callback"])
@pytest.mark.parametrize("command", ["cli", "script"])
async def test_ctrl_c_while_the_engine_imports_is_never_lost(tmp_path, command, inside):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(CTRL_C_INSIDE)
    (tmp_path / "run.py").write_text(SCRIPT, encoding="utf-8")
    async with SearchServer(load_pages()) as server:
        env = {**searxng_env(server), "CTRL_C_INSIDE": inside.split()[0], "PYTHONPATH": os.pathsep.join(filter(None, [
            str(tmp_path / "site"), os.getcwd(), os.environ.get("PYTHONPATH")]))}
        if command == "cli":
            code, out, err = await run_cli("research", "solar power water", "--quiet", env=env)
        else:
            process = await asyncio.create_subprocess_exec(
                sys.executable, str(tmp_path / "run.py"), stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env={**os.environ, **env})
            out, err = (text.decode() for text in await asyncio.wait_for(process.communicate(), 120))
            code = process.returncode
    assert out == "" and "ignored" not in err, err  # the run did not go on
    if command == "cli":
        assert code == 130 and err == "\ninterrupted\n", (code, err)
    else:  # Python's way for a script: the traceback of the user's own call, then death by SIGINT
        assert code == -signal.SIGINT, err
        assert err.strip().endswith("KeyboardInterrupt") and err.count('File "') == 2, err  # run.py, research()
