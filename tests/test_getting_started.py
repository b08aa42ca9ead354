"""docs/getting-started.md, followed literally: every ``sh`` block is run in
order with bash (HOME is a temporary folder, this venv first on PATH), lines
marked ``# keeps running`` in the background; the ``sh install`` block is
skipped (this venv is the installation), as are the ``sh not run here``
blocks after the first search (another machine's names, root, systemd), and
free ports replace 8883 and 8443. The first search must find a read within
120 s."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from central.fleet.broker import free_port

DOC = Path(__file__).resolve().parent.parent / "docs" / "getting-started.md"


def blocks(text: str) -> list[list[str]]:
    found = []
    for info, body in re.findall(r"^```([^\n]*)\n(.*?)^```", text, flags=re.S | re.M):
        if info.strip() != "sh":
            continue
        found.append([line for line in body.replace("\\\n", " ").splitlines() if line.strip()])
    return found


@pytest.fixture
def home():
    """A home folder Mosquitto's own account can pass through, as a user's is
    (pytest's tmp_path sits under a 0700 folder when the tests run as root)."""
    path = Path(tempfile.mkdtemp(prefix="alpr-home-", dir="/tmp"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_getting_started_literally(home, mosquitto_bin):
    tmp_path = home
    mqtt, enroll = free_port(), free_port()
    text = DOC.read_text().replace("8883", str(mqtt)).replace("8443", str(enroll))
    steps = blocks(text)
    assert len(steps) >= 6 and steps[0][0].startswith("alpr-central init"), steps
    env = {**os.environ, "HOME": str(tmp_path), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for name in ("ALPR_TOKEN", "ALPR_TOKEN_FILE", "ALPR_CENTRAL_CONFIG", "ALPR_EDGE_CONFIG", "ALPR_ENROLLMENT_TOKEN"):
        env.pop(name, None)
    background: list[tuple[str, subprocess.Popen]] = []
    logs = tmp_path / "logs"
    logs.mkdir()
    try:
        for block in steps[:-1]:
            for line in block:
                if line.rstrip().endswith("# keeps running"):
                    log = open(logs / f"bg{len(background)}.log", "wb")
                    background.append((line, subprocess.Popen(["bash", "-c", line], env=env, stdout=log,
                                                              stderr=subprocess.STDOUT, start_new_session=True)))
                    time.sleep(1.5)   # as a person would: start it, then go on
                    for cmd, proc in background:
                        assert proc.poll() is None, (cmd, (logs / f"bg{background.index((cmd, proc))}.log")
                                                     .read_text())
                    continue
                done = subprocess.run(["bash", "-c", line], env=env, capture_output=True, text=True, timeout=120)
                assert done.returncode == 0, (line, done.stdout, done.stderr)
        [search] = steps[-1]
        assert search.startswith("alpr-central query")
        deadline = time.monotonic() + 120
        while True:
            done = subprocess.run(["bash", "-c", search], env=env, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, (done.stdout, done.stderr)
            if re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +[A-Z0-9]+ +[01]\.\d+ +lane-1 ", done.stdout, re.M):
                break
            assert time.monotonic() < deadline, (done.stdout, [p.read_text()[-2000:] for p in logs.iterdir()])
            time.sleep(3)
        assert "read(s)" in done.stdout
    finally:
        for _cmd, proc in reversed(background):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for _cmd, proc in background:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="run_as applies when central runs as root")
def test_broker_run_names_a_folder_mosquitto_cannot_enter(tmp_path, mosquitto_bin):
    """tmp_path is under a 0700 folder (like /root): refused before Mosquitto starts, naming it."""
    port = free_port()
    assert subprocess.run([sys.executable, "-m", "central", "init", str(tmp_path / "c"), "--port", str(port),
                           "--enrollment-port", str(free_port())], capture_output=True, timeout=60).returncode == 0
    done = subprocess.run([sys.executable, "-m", "central", "broker", "run", "--config",
                           str(tmp_path / "c" / "central.toml")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 78 and "mosquitto (broker.run_as) cannot pass through" in done.stderr, done.stderr


def test_run_with_the_broker_down_says_why_and_exits_75(home):
    config = home / "c" / "central.toml"
    assert subprocess.run([sys.executable, "-m", "central", "init", str(home / "c"), "--port", str(free_port()),
                           "--enrollment-port", str(free_port())], capture_output=True, timeout=60).returncode == 0
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "central", "run", "--config", str(config), "--connect-timeout", "4"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 75, done.stderr
    assert time.monotonic() - started < 30
    assert "cannot reach the MQTT broker at 127.0.0.1:" in done.stderr and "Connection refused" in done.stderr
    assert "Traceback" not in done.stderr


def test_run_names_a_missing_mqtt_file_instead_of_a_traceback(home):
    assert subprocess.run([sys.executable, "-m", "central", "init", str(home / "c"), "--port", str(free_port()),
                           "--enrollment-port", str(free_port())], capture_output=True, timeout=60).returncode == 0
    (home / "c" / "data" / "ca" / "collector.main.key").unlink()
    done = subprocess.run([sys.executable, "-m", "central", "run", "--config", str(home / "c" / "central.toml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 78 and "Traceback" not in done.stderr
    assert "mqtt.key_file:" in done.stderr and "collector.main.key: does not exist" in done.stderr, done.stderr
