"""Cost per update and comm traffic of ProgressTracker against tqdm, measured inside a real IPython kernel.

One run starts an ipykernel with jupyter_client, runs every case as its own cell and reads the kernel's
IOPub channel. Each case drives one progress display through ``--updates`` updates (200,000 by default):

* ``advance()`` / ``track()`` of a ProgressTracker, bare and with the widget displayed (``display(tracker)``),
  and ``update(i, total=N)`` with the widget (a total passed on every call waits for the throttle too);
* ``tqdm.std`` and ``tqdm.notebook``: ``update(1)`` and iteration, on the same loop;
* a plain loop, for the loop's own cost.

"Hot" cases do nothing else per update and give the cost per update (best and median of ``--repeats``
runs, loop only, inside a function). "Paced" cases do about 10 µs of work per update, so the run lasts seconds
and shows the message rate a display settles to. The machine may be shared: the best run is the
cost of the code, the median shows the noise. Messages are the IOPub ``comm_msg`` messages the case
sent (widget updates; ``comm_open`` and display messages are not counted), including any trailing flush
in the 0.5 s after the run. The goal (issue 2 §4): no slower than tqdm.notebook per update, and at most
10 messages per second of run plus one per stage change (a tracker run has two: entering its stage and
completing; tqdm has none).

    python benchmarks/bench_progress.py [--updates 200000] [--repeats 11]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import textwrap
from dataclasses import dataclass
from queue import Empty

from jupyter_client.manager import KernelManager

SETUP = """
import json, time
from time import perf_counter
from IPython.display import display
import tqdm.std, tqdm.notebook
from torq_nb.progress.tracker import ProgressTracker

def _pace():
    return sum(range(300))  # about 10 µs of work per update in the paced cases
"""

#: (name, stage changes, setup, loop body, finish); PACE stands for the per-update work.
CASES: list[tuple[str, int, str, str, str]] = [
    ("plain loop (no progress)", 0, "", "for _ in range(N):\n    PACE", ""),
    (
        "tqdm.std update(1)",
        0,
        "bar = tqdm.std.tqdm(total=N, file=sys.stderr)",
        "for _ in range(N):\n    bar.update(1)\n    PACE",
        "bar.close()",
    ),
    ("tqdm.std iteration", 0, "", "for _ in tqdm.std.tqdm(range(N), file=sys.stderr):\n    PACE", ""),
    (
        "tqdm.notebook update(1)",
        0,
        "bar = tqdm.notebook.tqdm(total=N)",
        "for _ in range(N):\n    bar.update(1)\n    PACE",
        "bar.close()",
    ),
    ("tqdm.notebook iteration", 0, "", "for _ in tqdm.notebook.tqdm(range(N)):\n    PACE", ""),
    (
        "ProgressTracker.advance(), bare",
        2,
        "t = ProgressTracker('bench'); t.progress('searching'); t.update(0, total=N)",
        "for _ in range(N):\n    t.advance()\n    PACE",
        "t.complete()",
    ),
    (
        "ProgressTracker.track(), bare",
        2,
        "t = ProgressTracker('bench'); t.progress('searching')",
        "for _ in t.track(range(N)):\n    PACE",
        "t.complete()",
    ),
    (
        "ProgressTracker.advance(), widget displayed",
        2,
        "t = ProgressTracker('bench'); display(t); t.progress('searching'); t.update(0, total=N)",
        "for _ in range(N):\n    t.advance()\n    PACE",
        "t.complete()",
    ),
    (
        "ProgressTracker.track(), widget displayed",
        2,
        "t = ProgressTracker('bench'); display(t); t.progress('searching')",
        "for _ in t.track(range(N)):\n    PACE",
        "t.complete()",
    ),
    (
        "ProgressTracker.update(i, total=N), widget displayed",
        2,
        "t = ProgressTracker('bench'); display(t); t.progress('searching')",
        "for i in range(N):\n    t.update(i + 1, total=N)\n    PACE",
        "t.complete()",
    ),
]

CELL = """
import sys
def _case(N):
    start = perf_counter()
{setup}
    loop_start = perf_counter()
{loop}
    loop_end = perf_counter()
{finish}
    return loop_end - loop_start, perf_counter() - start
_loop, _run = _case({updates})
time.sleep(0.5)  # let trailing flushes (timer threads) go out inside this cell
print("BENCH" + json.dumps({{"loop": _loop, "run": _run}}))
"""


@dataclass
class Run:
    loop: float
    run: float
    messages: int


def cell(setup: str, loop: str, finish: str, updates: int, paced: bool) -> str:
    loop = loop.replace("PACE", "_pace()" if paced else "pass")
    return CELL.format(
        setup=textwrap.indent(setup or "pass", "    "),
        loop=textwrap.indent(loop, "    "),
        finish=textwrap.indent(finish or "pass", "    "),
        updates=updates,
    )


class Kernel:
    """A real ipykernel; ``run(code)`` executes a cell and returns its stdout and IOPub comm_msg count."""

    def __init__(self) -> None:
        self.manager = KernelManager(kernel_name="python3", transport="ipc")  # local sockets, no TCP port
        self.manager.start_kernel()
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=120)

    def run(self, code: str) -> tuple[str, int]:
        msg_id = self.client.execute(code, store_history=False)
        stdout, comm_msgs = [], 0
        while True:
            try:
                msg = self.client.get_iopub_msg(timeout=600)
            except Empty:
                raise RuntimeError("the kernel sent nothing for 10 minutes") from None
            kind, content = msg["msg_type"], msg["content"]
            if kind == "comm_msg":
                comm_msgs += 1
            elif kind == "stream" and content["name"] == "stdout":
                stdout.append(content["text"])
            elif kind == "error":
                raise RuntimeError("a benchmark cell failed:\n" + "\n".join(content["traceback"]))
            elif (
                kind == "status"
                and content["execution_state"] == "idle"
                and msg["parent_header"].get("msg_id") == msg_id
            ):
                return "".join(stdout), comm_msgs

    def measure(self, code: str) -> Run:
        stdout, messages = self.run(code)
        line = next(line for line in stdout.splitlines() if line.startswith("BENCH"))
        figures = json.loads(line[len("BENCH") :])
        return Run(figures["loop"], figures["run"], messages)

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


def row(name: str, updates: int, stage_changes: int, runs: list[Run], *, hot: bool) -> list[str]:
    """ns/update (best and median run; hot cases only), then messages, run seconds and messages/s of the best run."""
    best = min(runs, key=lambda r: r.loop)
    median = statistics.median(r.loop for r in runs)
    budget = 10 * best.run + stage_changes
    return [
        name,
        f"{best.loop / updates * 1e9:.0f}" if hot else "—",
        f"{median / updates * 1e9:.0f}" if hot else "—",
        str(best.messages),
        f"{best.run:.3f}",
        f"{best.messages / best.run:.1f}",
        f"{budget:.1f}",
        "yes" if best.messages <= budget else "**no**",
    ]


def table(rows: list[list[str]]) -> str:
    header = [
        "method", "ns/update (best)", "ns/update (median)", "messages", "run seconds", "messages per second",
        "budget: 10/s + stage changes", "within budget",
    ]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--updates", type=int, default=200_000, help="updates per case (default 200000)")
    parser.add_argument("--repeats", type=int, default=11, help="runs of each hot case (best and median shown)")
    args = parser.parse_args()

    kernel = Kernel()
    try:
        kernel.run(SETUP)
        # warm-up: imports, the widget's first display, tqdm's first bar
        for _, _, setup, loop, finish in CASES:
            kernel.measure(cell(setup, loop, finish, 1000, paced=False))
        hot: dict[str, list[Run]] = {name: [] for name, *_ in CASES}
        for _ in range(args.repeats):  # round-robin, so a busy moment of the machine hits every case alike
            for name, _, setup, loop, finish in CASES:
                hot[name].append(kernel.measure(cell(setup, loop, finish, args.updates, paced=False)))
        paced = {
            name: kernel.measure(cell(setup, loop, finish, args.updates, paced=True))
            for name, _, setup, loop, finish in CASES
        }
        info, _ = kernel.run(
            "import sys, tqdm, ipykernel, ipywidgets; "
            "print(sys.version.split()[0], tqdm.__version__, ipykernel.__version__, ipywidgets.__version__)"
        )
    finally:
        kernel.close()

    python, tqdm_version, ipykernel_version, ipywidgets_version = info.split()
    rows = [row(f"{name}, hot", args.updates, changes, hot[name], hot=True) for name, changes, *_ in CASES]
    rows += [row(f"{name}, paced", args.updates, changes, [paced[name]], hot=False) for name, changes, *_ in CASES]
    print(
        f"{args.updates:,} updates per case in one ipykernel {ipykernel_version} (Python {python}, "
        f"tqdm {tqdm_version}, ipywidgets {ipywidgets_version}), {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at the end. Hot: best and median of {args.repeats} runs (messages etc. "
        "of the best run); paced: about 10 µs of work per update, one run.\n"
    )
    print(table(rows))
    best = {name: min(r.loop for r in runs) / args.updates * 1e9 for name, runs in hot.items()}
    print()
    for ours, theirs in [
        ("ProgressTracker.advance(), bare", "tqdm.notebook update(1)"),
        ("ProgressTracker.advance(), widget displayed", "tqdm.notebook update(1)"),
        ("ProgressTracker.track(), bare", "tqdm.notebook iteration"),
        ("ProgressTracker.track(), widget displayed", "tqdm.notebook iteration"),
    ]:
        print(f"{ours}: {best[ours]:.0f} ns/update = {best[ours] / best[theirs]:.2f} x {theirs} ({best[theirs]:.0f})")


if __name__ == "__main__":
    sys.exit(main())
