"""Run a Python script inside a network namespace that has only loopback (`unshare -n`).

For tests that aim a URL at a non-loopback address to prove it is refused: in the namespace a connect to
any other address fails with "Network is unreachable", so a guard that fails cannot send traffic, and the
error text tells a policy refusal ("refused: ...") from a connection attempt. The script runs with the
tests folder on its path (so it can use FaultServer and SearchServer) and the test is skipped, saying why,
where unshare is not permitted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def _skip_unless_unshare_works() -> None:
    """Skip where a loopback-only namespace cannot be made; under CI=true fail instead: CI must run these."""
    why = None
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        why = "needs unshare and ip (util-linux, iproute2) to run the check in a loopback-only namespace"
    else:
        probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, check=False)
        if probe.returncode != 0:
            why = f"unshare -n is not permitted here ({probe.stderr.strip()}); it needs root or user namespaces"
    if why is not None:
        (pytest.fail if os.environ.get("CI", "").lower() == "true" else pytest.skip)(why)


def run_isolated(script: str, *, timeout: float = 120) -> str:
    """Run `script` with this Python in a loopback-only network namespace; return its standard output."""
    _skip_unless_unshare_works()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        ["unshare", "-n", "bash", "-c", 'ip link set lo up && exec "$0" -c "$1"', sys.executable, script],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=TESTS, check=False,
    )
    assert done.returncode == 0, f"the isolated script failed:\n{done.stderr}"
    return done.stdout
