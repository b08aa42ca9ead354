"""The systemd watchdog is petted only while the agent makes progress (real
unix datagram sockets standing in for systemd's notify socket), and one
data folder runs one agent."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from edge_agent import config as config_mod
from edge_agent.errors import AlreadyRunning
from edge_agent.watchdog import IDLE, ProgressWatchdog, SdNotifier, watchdog_seconds

from conftest import edge_config, wait_for


class NotifySocket:
    """What systemd listens on: a unix datagram socket; collects what arrives."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.05)
        self.address = address
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._recv, daemon=True)
        self.thread.start()

    def _recv(self):
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def pets(self, after: float = 0.0) -> int:
        return sum(1 for t, m in list(self.messages) if t >= after and "WATCHDOG=1" in m.split("\n"))

    def close(self):
        self._stop.set()
        self.thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path):
    s = NotifySocket(str(tmp_path / "notify"))
    yield s
    s.close()


def test_sd_notifier_speaks_the_datagram_protocol(notify_socket):
    n = SdNotifier(notify_socket.address)
    assert n.enabled and n.notify("READY=1\nSTATUS=running")
    wait_for(lambda: notify_socket.messages, 5, message="a datagram")
    assert notify_socket.messages[0][1] == "READY=1\nSTATUS=running"
    abstract = NotifySocket(f"@alpr-test-{os.getpid()}")
    try:
        assert SdNotifier(abstract.address).notify("WATCHDOG=1")
        wait_for(lambda: abstract.pets() == 1, 5, message="abstract-namespace datagram")
    finally:
        abstract.close()
    assert not SdNotifier("").enabled and not SdNotifier("").notify("WATCHDOG=1")


def test_watchdog_interval_from_systemd_env():
    assert watchdog_seconds({"WATCHDOG_USEC": "60000000"}) == 60.0
    assert watchdog_seconds({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}) == 60.0
    assert watchdog_seconds({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}) is None  # meant for another
    assert watchdog_seconds({}) is None


def test_a_stalled_loop_stops_the_notifications(notify_socket):
    """Two worker loops (a camera and sync); while both turn, the watchdog is
    petted; when the camera loop wedges, the petting stops and the status
    names it; when it turns again, the petting resumes. An idle camera (not
    running) is not a stall."""
    turns = {"capture:lane-1": 0, "sync": 0}
    running = {"capture:lane-1": threading.Event(), "sync": threading.Event()}
    idle = threading.Event()
    stop = threading.Event()

    def loop(name):
        while not stop.is_set():
            running[name].wait(0.2)          # cleared = wedged (blocked, not turning)
            if running[name].is_set():
                turns[name] += 1
            time.sleep(0.01)

    threads = [threading.Thread(target=loop, args=(n,), daemon=True) for n in turns]
    for e in running.values():
        e.set()
    for t in threads:
        t.start()
    wd = ProgressWatchdog(SdNotifier(notify_socket.address), {
        "capture:lane-1": lambda: IDLE if idle.is_set() else turns["capture:lane-1"],
        "sync": lambda: turns["sync"]}, stall_after=0.4, pet_every=0.0)
    ticking = threading.Event()

    def housekeeping():  # the agent's main loop, ticking the watchdog
        while not stop.is_set():
            if ticking.is_set():
                wd.tick()
            time.sleep(0.05)

    hk = threading.Thread(target=housekeeping, daemon=True)
    hk.start()
    try:
        ticking.set()
        wait_for(lambda: notify_socket.pets() >= 5, 5, message="pets while everything turns")
        running["capture:lane-1"].clear()                                    # the camera thread wedges
        wait_for(lambda: wd.stalled == ("capture:lane-1",), 5, message="the stall to be noticed")
        time.sleep(0.1)
        quiet_from = time.monotonic()
        time.sleep(1.0)
        assert notify_socket.pets(after=quiet_from) == 0                    # no petting: systemd will restart
        assert any(m == "STATUS=stalled: capture:lane-1" for _, m in notify_socket.messages)
        running["capture:lane-1"].set()                                      # it turns again
        wait_for(lambda: wd.stalled == (), 5, message="recovery")
        resumed = time.monotonic()
        wait_for(lambda: notify_socket.pets(after=resumed) >= 3, 5, message="pets again")
        running["sync"].clear()                                              # a wedged sync loop stops it too
        wait_for(lambda: wd.stalled == ("sync",), 5, message="the sync stall")
        running["sync"].set()
        wait_for(lambda: wd.stalled == (), 5, message="sync recovery")
        running["capture:lane-1"].clear()
        idle.set()                                                           # a camera not running is idle
        time.sleep(1.0)
        assert wd.stalled == ()
        ticking.clear()                                                      # the main loop itself hangs
        time.sleep(0.2)
        hung_from = time.monotonic()
        time.sleep(0.6)
        assert notify_socket.pets(after=hung_from) == 0
    finally:
        stop.set()
        for e in running.values():
            e.set()
        for t in threads + [hk]:
            t.join(timeout=2)


def test_the_agent_reports_ready_and_pets_while_running(tmp_path, pki_dir, broker, sample_clip, notify_socket,
                                                        monkeypatch):
    from edge_agent.agent import Agent
    video, sidecar = sample_clip
    cfg = config_mod.load(edge_config(tmp_path, pki_dir, broker.port, uri=str(video), sidecar=str(sidecar),
                                      fps=10.0))
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.address)
    monkeypatch.setenv("WATCHDOG_USEC", "1500000")      # WatchdogSec=1.5s: pet every 0.5 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    agent = Agent(cfg)
    assert set(agent.watchdog.markers) == {"capture:lane-1", "sync"}
    stop = threading.Event()
    th = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    th.start()
    try:
        wait_for(lambda: any(m.startswith("READY=1") for _, m in notify_socket.messages), 30, message="READY=1")
        wait_for(lambda: notify_socket.pets() >= 2, 30, message="the agent to pet the watchdog")
    finally:
        stop.set()
        th.join(timeout=60)
    assert any(m == "STOPPING=1" for _, m in notify_socket.messages)


def test_a_second_agent_on_the_same_data_folder_refuses_to_start(tmp_path, pki_dir, sample_clip):
    from edge_agent.agent import Agent
    video, sidecar = sample_clip
    path = edge_config(tmp_path, pki_dir, 1, uri=str(video), sidecar=str(sidecar))
    first = Agent(config_mod.load(path))
    with pytest.raises(AlreadyRunning, match=f"pid {os.getpid()}.*already running on the data folder"):
        Agent(config_mod.load(path))
    r = subprocess.run([sys.executable, "-m", "edge_agent", "run", "--config", str(path)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1
    assert "another alpr-edge agent" in r.stderr and "already running on the data folder" in r.stderr
    first._lock.release()
    second = Agent(config_mod.load(path))               # the first one gone: the folder is free
    second._lock.release()


def test_a_slow_camera_is_not_a_stall(notify_socket):
    """A camera configured for a frame every 40 s has three frame intervals
    before it counts as stalled; the sync loop keeps the default."""
    now = [0.0]
    frames = {"cam": 0, "sync": 0}
    wd = ProgressWatchdog(SdNotifier(notify_socket.address),
                          {"capture:slow": lambda: frames["cam"], "sync": lambda: frames["sync"]},
                          stall_after=30.0, limits={"capture:slow": 3 * 40.0}, pet_every=0.0, clock=lambda: now[0])
    for t in range(0, 200, 5):
        now[0] = float(t)
        frames["sync"] += 1
        if t % 40 == 0:
            frames["cam"] += 1
        assert wd.tick() == ()
    for t in range(200, 330, 5):                 # the slow camera stops
        now[0] = float(t)
        frames["sync"] += 1
        wd.tick()
    assert wd.stalled == ("capture:slow",)
    wait_for(lambda: any(m == "STATUS=stalled: capture:slow" for _, m in notify_socket.messages), 5,
             message="the stall status")
