"""The hotlist matcher in its own process, as ``alpr-central run`` runs it
(:class:`central.hotlist.service.HotlistProcess`): woken by the real
collector's commits, it raises each hit once; killed, it is started again
and matches what was stored while it was down; stopped, or orphaned by a
collector that died, it ends. Real SQLite, real processes."""

from __future__ import annotations

import datetime as dt
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from central.config import Hotlist
from central.governance.users import Role, User
from central.hotlist.csvimport import EntryInput
from central.hotlist.lists import Hotlists
from central.hotlist.service import HotlistProcess
from central.ingest.collector import Collector, Prepared
from central.store.sqlite import SQLiteStore
from conftest import wait_for
from edge_agent.wire import PlateRead, new_read_id

CFG = Hotlist(categories=(("stolen-vehicle", 365),))
SUE = User("sue", "City PD", Role.SUPERVISOR)


@pytest.fixture
def listed(tmp_path):
    db = tmp_path / "central.sqlite"
    store = SQLiteStore(db)
    lists = Hotlists(store.db.conn, CFG)
    lists.create(SUE, "svs", "stolen-vehicle")
    lists.add(SUE, "svs", EntryInput("7ABC123", "stolen", "LAPD", "V-1",
                                     dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=5)))
    yield db, store, Collector(store, opener=None)
    store.close()


def commit(collector, plate, camera):
    read = PlateRead(new_read_id(), "cam-a", camera, dt.datetime.now(dt.timezone.utc), plate, 0.9, (1, 2, 3, 4),
                     crop_jpeg=b"\xff\xd8crop")
    collector.commit([Prepared("cam-a", new_read_id(), (read,), ())])  # stores, then wakes the matcher
    return read


def hits(db):
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute("SELECT read_id FROM hits ORDER BY hit_id").fetchall()


def test_the_matcher_process_raises_each_hit_once_and_is_restarted_after_a_kill(listed):
    db, store, collector = listed
    proc = HotlistProcess(db, CFG).attach(collector).start()
    try:
        first = commit(collector, "7ABC123", "lane-1")
        commit(collector, "9XYZ000", "lane-1")
        wait_for(lambda: hits(db), 20, message="the first hit")
        wait_for(lambda: proc.counters["reads"] == 2, 10, message="the counters from the child")
        dead = proc.pid
        os.kill(dead, signal.SIGKILL)
        wait_for(lambda: proc.starts == 2 and proc.pid != dead, 20, message="the restarted matcher process")
        second = commit(collector, "7ABC123", "lane-2")   # another camera: another pass
        wait_for(lambda: len(hits(db)) == 2, 20, message="the hit of the read stored after the restart")
        time.sleep(1.0)                                    # nothing more comes
        assert hits(db) == [(first.read_id,), (second.read_id,)]
    finally:
        proc.stop()
    assert proc._process.returncode is not None


def test_the_matcher_process_ends_when_its_collector_process_dies(listed, tmp_path):
    db, store, _ = listed
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {root!r})
        from central.config import Hotlist
        from central.hotlist.service import HotlistProcess
        p = HotlistProcess({str(db)!r}, Hotlist(categories=(("stolen-vehicle", 365),))).start()
        print(p.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        parent.kill()                                      # SIGKILL: no clean-up in the parent
        parent.wait(10)

        def gone():
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                return True
            with open(f"/proc/{child}/stat") as fh:        # a zombie until init reaps it: ended
                return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
        wait_for(gone, 15, message="the orphaned matcher process to end")
    finally:
        if parent.poll() is None:
            parent.kill()


def test_ctrl_c_and_a_hang_up_are_left_to_the_parent(listed):
    """A terminal sends SIGINT (Ctrl-C) and SIGHUP (closed) to its whole process
    group; the child leaves them to its parent (which stops it by closing the
    pipe), so it is neither killed nor restarted under a stopping parent."""
    db, store, collector = listed
    proc = HotlistProcess(db, CFG).attach(collector).start()
    try:
        commit(collector, "9XYZ000", "lane-1")
        wait_for(lambda: proc.counters["reads"] == 1, 20, message="the child running")
        for sig in (signal.SIGINT, signal.SIGHUP):
            os.kill(proc.pid, sig)
        first = commit(collector, "7ABC123", "lane-1")
        wait_for(lambda: hits(db), 20, message="the hit, from the same child")
        assert hits(db) == [(first.read_id,)] and proc.starts == 1 and proc._process.poll() is None
    finally:
        proc.stop()
    assert proc._process.returncode == 0                   # ended by the closed pipe, cleanly


def test_the_process_sends_a_hit_then_its_upgrade_to_a_loopback_receiver(listed, tmp_path):
    """As under 'alpr-central run': the matcher process raises a possible hit,
    its sender delivers it, a better read of the pass upgrades it, and the
    receiver gets the signed hit-upgraded delivery after the hit's."""
    import json

    from central.config import Webhook
    from central.hotlist.webhooks import verify_signature, write_secret
    from test_hotlist_hits import Receiver
    db, store, collector = listed
    receiver = Receiver()
    secret = write_secret(tmp_path / "cad.secret")
    cfg = Hotlist(categories=CFG.categories, webhooks=(Webhook("cad", receiver.url, str(tmp_path / "cad.secret")),))
    proc = HotlistProcess(db, cfg).attach(collector).start()
    try:
        first = commit(collector, "7A8C123", "lane-1")          # B read as 8: a possible hit
        wait_for(lambda: len(receiver.requests) == 1, 20, message="the hit's delivery")
        better = commit(collector, "7ABC123", "lane-1")         # the same pass, read right
        wait_for(lambda: len(receiver.requests) == 2, 20, message="the upgrade's delivery")
        time.sleep(0.5)
        assert len(receiver.requests) == 2
    finally:
        proc.stop()
        receiver.close()
    docs = []
    for headers, body in receiver.requests:
        assert verify_signature(secret, headers["X-ALPR-Timestamp"], body, headers["X-ALPR-Signature"])
        docs.append((headers["X-ALPR-Event"], json.loads(body)))
    (e1, hit), (e2, up) = docs
    assert (e1, hit["read_id"], hit["match_kind"]) == ("hit", first.read_id, "confusable")
    assert (e2, up["hit_id"], up["hit"]["read_id"], up["hit"]["match_kind"]) == \
        ("hit-upgraded", hit["hit_id"], better.read_id, "exact")
    assert up["delivery_id"] != hit["delivery_id"]
