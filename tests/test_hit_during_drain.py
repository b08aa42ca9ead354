"""Issue 21: a hit arrives in time while the device drains a backlog. A
device comes back with a large backlog; a listed plate read captured during
the drain travels the live lane (edge_agent/sync.py), is stored by the real
collector and matched by the real matcher, and its hit is raised while most
of the backlog is still on the device. Real Mosquitto, real SQLite; order,
not wall-clock, is asserted."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time

import pytest

from central.config import Hotlist
from central.governance.audit import parse_ts
from central.governance.users import Role, User
from central.hotlist.csvimport import EntryInput
from central.hotlist.lists import Hotlists
from central.hotlist.service import HotlistProcess
from central.store.sqlite import SQLiteStore
from conftest import wait_for
from edge_agent.outbox import Outbox
from edge_agent.sync import SyncClient, SyncSettings
from edge_agent.wire import Sealer, load_public_key
from test_outbox import sealed

pytestmark = pytest.mark.slow

BACKLOG = 20_000
CFG = Hotlist(categories=(("stolen-vehicle", 365),))


@pytest.mark.parametrize("captured", ["during the drain", "just before the reconnect"])
def test_a_listed_read_captured_during_a_backlog_drain_raises_its_hit_before_the_backlog_ends(
        broker, collector_factory, pki_dir, tmp_path, captured):
    """``during the drain``: read after the device reconnected (the live lane). ``just before the
    reconnect``: the newest read of the backlog itself (a wanted car that passed seconds before the link
    came back), which goes first on the live lane too."""
    central = collector_factory(broker.port)
    db = tmp_path / "central.sqlite"
    sue = User("sue", "City PD", Role.SUPERVISOR)
    store = SQLiteStore(db)
    lists = Hotlists(store.db.conn, CFG)
    lists.create(sue, "svs", "stolen-vehicle")
    lists.add(sue, "svs", EntryInput("HIT0000", "stolen vehicle", "LAPD", "SV-1",
                                     dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=5)))
    store.close()
    service = HotlistProcess(db, CFG).attach(central.collector).start()   # as 'alpr-central run' does

    sealer = Sealer(load_public_key((pki_dir / "data-key.pub.pem").read_bytes()), "cam-a")
    ob = Outbox(tmp_path / "edge" / "outbox.sqlite")
    backlog = sealed(BACKLOG, plate_prefix="BK", sealer=sealer)           # buffered while offline; none listed
    for i in range(0, BACKLOG, 1000):
        ob.add(backlog[i:i + 1000])
    fresh = sealed(1, plate_prefix="HIT", t0=time.time(), sealer=sealer)       # plate HIT0000: listed
    if captured == "just before the reconnect":
        ob.add(fresh)
    sync = SyncClient(SyncSettings(host="127.0.0.1", port=broker.port, device_id="cam-a",
                                   ca_file=str(pki_dir / "ca.crt"), cert_file=str(pki_dir / "cam-a.crt"),
                                   key_file=str(pki_dir / "cam-a.key"), batch_size=200, max_in_flight=8,
                                   ack_timeout=60.0), ob)
    stop = threading.Event()
    th = threading.Thread(target=sync.run, args=(stop,), daemon=True)
    th.start()
    conn = sqlite3.connect(db, timeout=30)
    try:
        if captured == "during the drain":
            wait_for(lambda: sync.counters["acks"] >= 1, timeout=60, message="the backlog drain under way")
            ob.add(fresh)
        hit = wait_for(lambda: conn.execute("SELECT hit_id, read_id, hit_at, match_kind FROM hits").fetchone(),
                       timeout=60, message="the hit raised")
        wait_for(lambda: ob.depth == 0, timeout=180, message="the backlog drained")
        wait_for(lambda: service.counters["reads"] >= BACKLOG + 1, timeout=60,
                 message="the matcher caught up")
    finally:
        stop.set()
        th.join(10)
        service.stop()
    assert hit[1] == fresh[0][0] and hit[3] == "exact"
    hit_at = parse_ts(hit[2])
    stored = [parse_ts(s) for (s,) in conn.execute("SELECT stored_at FROM reads WHERE read_id != ?", [hit[1]])]
    after_hit = sum(1 for s in stored if s > hit_at)
    # The hit was raised before the backlog had finished: most of the backlog reached central after it
    # (without the live lane the fresh read waits behind all 20,000 and none is stored after its hit).
    assert after_hit >= BACKLOG / 2, f"only {after_hit} backlog reads were stored after the hit"
    assert max(stored) > hit_at
    ids = [r[0] for r in conn.execute("SELECT read_id FROM reads")]
    hits = conn.execute("SELECT count(*) FROM hits").fetchone()[0]
    conn.close()
    assert len(ids) == len(set(ids)) == BACKLOG + 1                       # nothing lost or duplicated
    assert hits == 1                                                      # one hit, for the listed read only
