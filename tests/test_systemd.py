"""The shipped unit files: hardened, never restart on a config error, and run
commands that exist."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

UNITS = sorted((Path(__file__).resolve().parents[1] / "systemd").glob("*.service"))


def parse(path: Path) -> configparser.RawConfigParser:
    cp = configparser.RawConfigParser(strict=False, delimiters=("=",))
    cp.optionxform = str
    cp.read(path)
    return cp


@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_unit_is_hardened_and_runs_a_real_command(unit):
    svc = parse(unit)["Service"]
    from click.testing import CliRunner

    from central.cli import main as central_main
    from edge_agent.cli import main as edge_main
    argv = svc["ExecStart"].split()
    assert argv[0].endswith(("alpr-edge", "alpr-central"))
    cli = edge_main if argv[0].endswith("alpr-edge") else central_main
    words = [w for w in argv[1:] if not w.startswith("-") and not w.startswith("/")]
    result = CliRunner().invoke(cli, [*words, "--help"])
    assert result.exit_code == 0, f"{unit.name}: {' '.join(words)} is not a command"
    assert svc.get("NoNewPrivileges") == "yes" and svc.get("ProtectSystem") == "strict"
    assert svc.get("User") not in (None, "root")
    if svc.get("Type") != "oneshot":
        assert "78" in svc.get("RestartPreventExitStatus", "").split()


def test_edge_unit_is_watched():
    """The agent's unit restarts a hung agent: Type=notify (READY=1 once
    started) and a watchdog the agent pets only while it makes progress."""
    svc = parse(Path(__file__).resolve().parents[1] / "systemd" / "alpr-edge.service")["Service"]
    assert svc["Type"] == "notify" and svc.get("NotifyAccess") == "main"
    seconds = int(svc["WatchdogSec"].rstrip("s"))
    from edge_agent.watchdog import ProgressWatchdog
    import inspect
    stall_after = inspect.signature(ProgressWatchdog).parameters["stall_after"].default
    assert stall_after < seconds <= 120  # a stall is noticed before systemd's deadline, and not hours later
    assert svc["Restart"] == "on-failure"  # a watchdog timeout counts as a failure
