"""The agent on a full data folder (issue 26, part 2): it starts, syncs and
deletes what central acknowledges (which frees space), counts what it could
not record, and says so in its status.

A real full disk: each scenario runs in a child process with its own small
tmpfs mounted in a private mount namespace (``unshare -rm``: no root needed
where unprivileged user namespaces are allowed), against the real Mosquitto
and collector of the test process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from central.fleet.broker import free_port
from conftest import edge_config

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_PRELUDE = r"""
import datetime as dt, json, os, sys, threading, time
from pathlib import Path
from edge_agent import auditlog
from edge_agent.agent import Agent
from edge_agent.config import load
from edge_agent.errors import BufferError_
from edge_agent.outbox import Outbox
from edge_agent.reserve import Reserve
from edge_agent.wire import PlateRead, Sealer, encode_read, load_public_key, new_read_id

cfg = load(sys.argv[1])
data = cfg.data_dir

def buffer_until_full(ob):
    sealer = Sealer(load_public_key(Path(cfg.sync.central_public_key).read_bytes()), cfg.device.id)
    ids, now = [], time.time()
    while True:
        items = []
        for i in range(100):
            r = PlateRead(new_read_id(), cfg.device.id, "lane-1", dt.datetime.fromtimestamp(now, dt.timezone.utc),
                          "FD%05d" % (len(ids) + i), 0.9, (1, 2, 3, 4), crop_jpeg=os.urandom(2000))
            items.append((r.read_id, now, sealer.seal(r.read_id, encode_read(r))))
        try:
            ob.add(items)
        except BufferError_:
            return ids
        ids += [i[0] for i in items]

def fill(path):
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
"""

_DRAIN_ON_FULL_DISK = _PRELUDE + r"""
# A device that ran offline until its disk filled: audit log, reserve, buffer.
auditlog.open_for(cfg).close()
(data / "status.json").write_text(json.dumps({"left": "by the last run"}, indent=1) + " " * 1500)
reserve = Reserve(data / "reserve", int(cfg.buffer.reserve_megabytes * (1 << 20)))
assert reserve.ensure()
ob = Outbox(data / "outbox.sqlite", reserve=reserve)
ids = buffer_until_full(ob)
ob.close()
fill(data / "filler")
assert os.statvfs(data).f_bavail < 4
agent = Agent(cfg)  # the agent is restarted on the full disk
stop = threading.Event()
th = threading.Thread(target=agent.run, args=(stop,), kwargs={"exit_when_drained": True}, daemon=True)
th.start()
th.join(float(sys.argv[2]))
drained = not th.is_alive()
stop.set()
th.join(30)
print(json.dumps({"ids": ids, "drained": drained, "status": json.loads((data / "status.json").read_text())}))
"""

_START_WITHOUT_RESERVE = _PRELUDE + r"""
# No reserve (an install from before it existed, or reserve_megabytes = 0).
auditlog.open_for(cfg).close()
(data / "old.log").write_bytes(b"\0" * (2 << 20))  # what the field tech deletes later
(data / "status.json").write_text(json.dumps({"left": "by the last run"}, indent=1) + " " * 1500)
ob = Outbox(data / "outbox.sqlite")
ids = buffer_until_full(ob)
ob.close()
fill(data / "filler")
agent = Agent(cfg)
stop = threading.Event()
th = threading.Thread(target=agent.run, args=(stop,), daemon=True)
th.start()
time.sleep(2.5)
on_full = agent.status()
status_file = json.loads((data / "status.json").read_text())
from click.testing import CliRunner
from edge_agent.cli import main
cli = CliRunner().invoke(main, ["status", "--config", sys.argv[1], "--json", "--no-probe"])
os.unlink(data / "old.log")     # someone frees space
agent._expire()                 # the agent's once-a-minute housekeeping
after = agent.status()
stop.set()
th.join(30)
from edge_agent.auditlog import DeviceAuditLog
log = DeviceAuditLog(data / "audit.sqlite", cfg.device.id, cfg.sync.key_file)
events = [(r.event, r.detail) for r in log.records()]
print(json.dumps({"ids": len(ids), "on_full": on_full, "status_file": status_file, "events": events, "cli": [cli.exit_code, cli.stdout],
                  "after": after}))
"""


def _on_small_disk(tmp_path, size: str, script: str, config, *args, timeout: float = 180):
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    mount = tmp_path / "edge-cam-a"
    mount.mkdir()
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=1m tmpfs "$0"', str(mount)],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a private namespace here: {probe.stderr.strip()}")
    out = subprocess.run(
        ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size="$0" tmpfs "$1" && shift && exec "$@"',
         size, str(mount), sys.executable, "-c", script, str(config), *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def _config(tmp_path, pki_dir, port, reserve_mb):
    empty = tmp_path / "empty"
    empty.mkdir()
    sidecar = tmp_path / "empty.json"
    sidecar.write_text('{"frames": [[]]}')
    return edge_config(tmp_path, pki_dir, port, source="folder", uri=str(empty), sidecar=str(sidecar),
                       extra=f"batch_size = 200\n[buffer]\nreserve_megabytes = {reserve_mb}\n")


def test_an_agent_restarted_on_a_full_disk_starts_syncs_and_deletes_what_central_stored(
        broker, collector_factory, pki_dir, tmp_path):
    """The fault campaign's case: the outbox filled the disk while offline and
    the agent was restarted. Opening the outbox failed ("disk I/O error": the
    WAL index could not be sized), and even an open outbox could delete
    nothing (the WAL cannot be checkpointed when the main file may not grow),
    so the agent held every read for ever. With the reserve it gives back, it
    drains the whole buffer: every read stored once, none left on the device."""
    central = collector_factory(broker.port)
    cfg = _config(tmp_path, pki_dir, broker.port, reserve_mb=6)
    res, log = _on_small_disk(tmp_path, "24m", _DRAIN_ON_FULL_DISK, cfg, 90)
    ids = res["ids"]
    assert len(ids) > 3000
    assert res["drained"], res["status"]["buffer"]
    stored = central.read_ids()
    assert sorted(stored) == sorted(ids)  # every read once, nothing else
    status = res["status"]
    assert status["buffer"]["depth"] == 0
    assert status["disk"]["reserve_releases"] == 1 and status["disk"]["full_errors"] >= 1
    # the audit log is open (at start, or once space came back), or what it
    # could not record is counted and shown
    audit = status["audit"]
    assert (audit["open"] and audit["unrecorded"] == {}) or audit["unrecorded"].get("agent-start") == 1, log[-3000:]


def test_an_agent_without_a_reserve_starts_on_a_full_disk_counts_what_it_cannot_record_and_says_so(
        pki_dir, tmp_path):
    """Without a reserve to give back, the agent still starts (it exited 1 on an
    uncaught "database or disk is full" from the audit log's agent-start, a
    crash loop under systemd), reports the full disk and the audit events it
    could not write in status, and writes an ``unrecorded`` record with their
    counts once there is room."""
    cfg = _config(tmp_path, pki_dir, free_port(), reserve_mb=0)  # offline: nothing could be deleted anyway
    res, _ = _on_small_disk(tmp_path, "8m", _START_WITHOUT_RESERVE, cfg)
    on_full = res["on_full"]
    assert on_full["disk"]["reserve_held"] is False and on_full["disk"]["free_bytes"] < 4096
    assert on_full["audit"]["unrecorded"].get("agent-start") == 1, on_full["audit"]
    assert on_full["buffer"]["depth"] == res["ids"]
    # status.json could not be replaced (no room for a new file): rewritten in place
    assert res["status_file"]["audit"]["unrecorded"].get("agent-start") == 1
    code, out = res["cli"]
    shown = json.loads(out)
    assert code == 1 and shown["disk_full"] is True and shown["disk_reserve_held"] is None  # none configured
    assert "disk-full" in [p["code"] for p in shown["problems"]]      # a problem: exit 1, with what to do
    assert shown["audit_unrecorded"] == {"agent-start": 1} and shown["buffer_depth"] == res["ids"]
    events = [e for e, _ in res["events"]]
    assert "unrecorded" in events, events
    unrecorded = dict(res["events"])["unrecorded"]["counts"]
    assert unrecorded["agent-start"] == 1
    assert events.index("unrecorded") < len(events) - 1 or events[-1] == "unrecorded"
    assert res["after"]["audit"]["unrecorded"] == {} and res["after"]["audit"]["open"]


def test_the_reserve_is_written_again_once_acknowledgements_made_room(tmp_path):
    """After a full disk spent the reserve, the pages acknowledgements freed go
    back to the file system and the reserve is written again."""
    from edge_agent.outbox import Outbox
    from edge_agent.reserve import Reserve
    from test_outbox import sealed

    reserve = Reserve(tmp_path / "reserve", 1 << 20)
    assert reserve.ensure() and reserve.held
    ob = Outbox(tmp_path / "outbox.sqlite", reserve=reserve)
    items = [(rid, ts, env + os.urandom(3000)) for rid, ts, env in sealed(2000)]
    ob.add(items)
    assert reserve.release() and not reserve.held  # as a full disk would
    size_before = (tmp_path / "outbox.sqlite").stat().st_size
    ob.acknowledge([i[0] for i in items])
    ob.maintain()
    assert reserve.held
    ob.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert (tmp_path / "outbox.sqlite").stat().st_size < size_before / 4  # freed pages handed back
    ob.close()
