"""The shipped unit files: hardened, never restart on a config error, and run
commands that exist."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

# Installs application releases the agent hands over (it cannot: NoNewPrivileges, not root).
ROOT_UNITS = {"alpr-edge-update.service"}
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
    if unit.name in ROOT_UNITS:  # root by design, with the least it needs
        assert svc.get("User") == "root"
        caps = set(svc["CapabilityBoundingSet"].split())
        assert caps and caps <= {"CAP_DAC_OVERRIDE", "CAP_CHOWN", "CAP_FOWNER"}
        assert svc["RestrictAddressFamilies"].split() == ["AF_UNIX"]  # no network
        assert svc.get("ReadWritePaths") and svc.get("PrivateDevices") == "yes"
    else:
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


def test_update_path_unit_watches_the_agents_spool():
    """The path unit starts the root-side step when the agent renames a
    bundle into <data_dir>/update/spool (StateDirectory of the agent's unit)."""
    root = Path(__file__).resolve().parents[1]
    path = parse(root / "systemd" / "alpr-edge-update.path")
    agent = parse(root / "systemd" / "alpr-edge.service")["Service"]
    glob = path["Path"]["PathExistsGlob"]
    assert glob == f"/var/lib/{agent['StateDirectory']}/update/spool/*.alpr"
    assert path["Path"]["Unit"] == "alpr-edge-update.service"
    from edge_agent.update.fetcher import SPOOL, spool_name
    from edge_agent.update.handoff import NAME_RE
    assert f"/update/{SPOOL}/" in glob and NAME_RE.match(spool_name(12, "1.2.3"))
    svc = parse(root / "systemd" / "alpr-edge-update.service")["Service"]
    assert f"/var/lib/{agent['StateDirectory']}" in svc["ReadWritePaths"]
