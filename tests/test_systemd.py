"""The shipped unit files: hardened, never restart on a config error, and run
commands that exist."""

from __future__ import annotations

import configparser
import shutil
import subprocess
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


ROOT = Path(__file__).resolve().parents[1]


def test_broker_unit_runs_mosquitto_through_broker_run_unprivileged(tmp_path, monkeypatch):
    """The broker's unit: 'broker run' (which execs Mosquitto) as alpr-central,
    reload = SIGHUP to Mosquitto, the CA and broker keys as credentials; the
    key names its comment tells the admin to write resolve there."""
    unit = parse(ROOT / "systemd" / "alpr-central-broker.service")
    svc = unit["Service"]
    assert svc["ExecStart"].split()[1:3] == ["broker", "run"]
    assert svc["User"] == "alpr-central" and svc["Type"] == "exec"
    assert svc["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert svc["CapabilityBoundingSet"] == "" and svc["MemoryDenyWriteExecute"] == "yes"
    creds = dict(line.split(":", 1) for line in
                 [v for k, v in _items(ROOT / "systemd" / "alpr-central-broker.service") if k == "LoadCredential"])
    assert set(creds) == {"ca.key", "broker.key"}
    assert "alpr-central.service" in unit["Unit"]["Before"]
    collector = parse(ROOT / "systemd" / "alpr-central.service")["Unit"]
    assert "alpr-central-broker.service" in collector["Wants"] and "alpr-central-broker.service" in collector["After"]
    # the config lines the unit's comment gives, with the credentials systemd would pass
    (tmp_path / "creds").mkdir()
    for name in creds:
        (tmp_path / "creds" / name).write_text("")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    from central.config import parse as parse_config
    cfg = parse_config({"data_dir": "/var/lib/alpr-central", "ca": {"key_file": "ca.key"},
                        "broker": {"key_file": "broker.key", "pid_file": "broker/mosquitto.pid"}}, Path("/etc/alpr"))
    assert cfg.broker.key_file == str(tmp_path / "creds" / "broker.key")
    assert cfg.ca.key_file == str(tmp_path / "creds" / "ca.key")
    assert cfg.broker.pid_file == "/var/lib/alpr-central/broker/mosquitto.pid" and cfg.broker.run_as == ""
    assert cfg.broker.bind == "127.0.0.1"


def _items(path: Path) -> list[tuple[str, str]]:
    """Every key = value line (repeated keys kept, which configparser merges)."""
    return [tuple(s.strip() for s in line.split("=", 1)) for line in path.read_text().splitlines()
            if "=" in line and not line.lstrip().startswith("#")]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")
@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_systemd_accepts_every_line_of_the_unit(unit, tmp_path):
    """systemd-analyze verify: no unknown key, no value systemd would ignore
    (it ignores such lines at run time, so a mistyped hardening line would
    silently harden nothing). The venv's command stands in for /opt/alpr's."""
    import sys
    venv = Path(sys.executable).parent
    text = unit.read_text().replace("/opt/alpr/.venv/bin/", f"{venv}/")
    copy = tmp_path / unit.name
    copy.write_text(text)
    for timer in unit.parent.glob(unit.stem + ".timer"):
        (tmp_path / timer.name).write_text(timer.read_text())
    done = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    complaints = [line for line in done.stderr.splitlines() if str(copy) in line]
    assert done.returncode == 0 and not complaints, done.stderr


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
