"""The torq-nb command, run as a user runs it: a real process against loopback servers."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import signal
import sys

import polars as pl
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
    import subprocess

    top = subprocess.run([*CLI, "--help"], capture_output=True, text=True, check=True).stdout
    assert "research" in top and "export" in top
    detail = subprocess.run([*CLI, "research", "--help"], capture_output=True, text=True, check=True).stdout
    for variable in ("TORQ_NB_SOURCE", "TORQ_NB_SEARXNG_URL", "TORQ_NB_ALLOW_PRIVATE_NETWORKS", "TORQ_NB_DEPTH"):
        assert variable in detail


async def test_on_a_terminal_the_progress_is_one_live_line():
    async with SearchServer(load_pages()) as server:
        leader, follower = pty.openpty()
        process = await asyncio.create_subprocess_exec(
            *CLI, "research", "solar power water", "--depth", "quick", stdin=follower, stdout=follower, stderr=follower,
            env={**os.environ, **searxng_env(server), "COLUMNS": "100"})
        os.close(follower)

        def read_all() -> bytes:
            output = b""
            while True:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: the process closed the terminal
                    return output
                if not chunk:
                    return output
                output += chunk

        output = await asyncio.wait_for(asyncio.to_thread(read_all), 120)
        await asyncio.wait_for(process.wait(), 30)
        os.close(leader)
    text = output.decode(errors="replace")
    assert process.returncode == 0
    rewrites = re.findall(r"\r(?!\n)", text)  # a terminal also turns each \n into \r\n
    assert len(rewrites) >= 3, text  # the progress line was rewritten in place
