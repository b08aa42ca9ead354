"""Malicious (or stolen and reprogrammed) device: the collector checks a read's
own claims against the registry and retention (issue 20.5). Real SQLite store
and registry, a registry-enrolled device, the collector's real code path."""

from __future__ import annotations

import datetime as dt

import pytest

from central.config import Retention
from central.governance.retention import Governor
from central.ingest.collector import Collector
from central.ingest.keys import load_opener
from central.store.sqlite import SQLiteStore
from test_enrollment_env import CentralEnv, Clock

from .attack import sealed_batch

DAY = dt.timedelta(days=1)


@pytest.fixture
def site(tmp_path):
    env = CentralEnv(tmp_path / "site", pid_file=False)  # no broker here: the collector's own check
    yield env
    env.close()


@pytest.fixture
def setup(site):
    clock = Clock()
    enrolled = clock.now
    device = site.provisioned("lane-1", "lane-2")
    store = SQLiteStore(site.data / "central.sqlite")
    registry = site.registry()
    retention = Retention(non_hit_days=30, hit_days=730)
    collector = Collector(store, load_opener([site.data / "data-key.pem"]), clock=clock,
                          device_allowed=registry.allow_list(ttl=0), device_facts=registry.device_facts(ttl=0),
                          max_age=dt.timedelta(days=730))
    pub = (site.data / "data-key.pub.pem").read_bytes()

    def send(**kw):
        read_id, payload = sealed_batch(pub, device, **kw)
        topic, ack = collector.handle(f"alpr/v1/devices/{device}/reads", payload)
        return read_id, ack

    yield device, store, collector, send, clock, enrolled, retention
    registry.close()
    store.close()


def _stored(store, read_id) -> bool:
    return store.db.execute("SELECT 1 FROM reads WHERE read_id = ?", [read_id]).fetchone() is not None


def test_a_read_from_a_camera_not_registered_to_the_device_is_refused(setup):
    device, store, collector, send, *_ = setup
    good, ack = send(camera="lane-2")
    assert ack.stored == (good,) and _stored(store, good)
    bad, ack = send(camera="lane-9")
    assert ack.stored == () and ack.rejected == ((bad, "unknown-camera"),)
    assert not _stored(store, bad) and collector.counters["rejected.unknown-camera"] == 1


@pytest.mark.parametrize("age,reason", [(5 * 365 * DAY, "expired"), (3 * DAY, "before-enrollment")])
def test_capture_times_before_enrollment_or_past_retention_are_refused(setup, age, reason):
    device, store, collector, send, clock, enrolled, _ = setup
    read_id, ack = send(captured_at=enrolled - age)  # a device enrolled today sending a read "from 2021"
    assert ack.rejected == ((read_id, reason),) and not _stored(store, read_id)
    assert collector.counters[f"rejected.{reason}"] == 1
    read_id, ack = send(captured_at=enrolled - dt.timedelta(hours=2))  # clock drift is tolerated
    assert ack.stored == (read_id,)


def test_a_replayed_read_that_retention_purged_never_comes_back(setup, site):
    device, store, collector, send, clock, enrolled, retention = setup
    captured = clock.now
    read_id, ack = send(captured_at=captured, read_id=None)
    assert ack.stored == (read_id,)
    replay = sealed_batch((site.data / "data-key.pub.pem").read_bytes(), device, captured_at=captured,
                          read_id=read_id)[1]
    clock.advance(days=40)  # past non_hit_days = 30, well within the longest retention (730 days)
    gov = Governor(store.db.conn, retention, clock=clock)
    result = gov.purge(site.user("ada"), now=clock.now)
    assert result.counts["non_hit_reads"] == 1 and not _stored(store, read_id)
    # the whole original message, byte for byte, arrives again
    topic, ack = collector.handle(f"alpr/v1/devices/{device}/reads", replay)
    assert ack.stored == () and ack.rejected == ((read_id, "purged"),)
    assert not _stored(store, read_id) and collector.counters["rejected.purged"] == 1
    # the tombstone holds no read id (a UUIDv7 would keep the capture time)
    rows = store.db.execute("SELECT digest, purged_on FROM read_tombstones").fetchall()
    assert len(rows) == 1 and len(rows[0][0]) == 16 and read_id.encode() not in rows[0][0]
    # once past the longest retention the mark goes; the capture-time bound refuses the replay
    clock.advance(days=731)
    gov.purge(site.user("ada"), now=clock.now)
    assert store.db.execute("SELECT count(*) FROM read_tombstones").fetchone()[0] == 0
    topic, ack = collector.handle(f"alpr/v1/devices/{device}/reads", replay)
    assert ack.rejected == ((read_id, "expired"),) and not _stored(store, read_id)


def test_a_suspended_or_unknown_device_stores_nothing_even_past_the_broker(setup, site):
    device, store, collector, send, *_ = setup
    assert site.cli("device", "suspend", device, "--reason", "stolen").exit_code == 0
    pub = (site.data / "data-key.pub.pem").read_bytes()
    read_id, payload = sealed_batch(pub, device)
    assert collector.handle(f"alpr/v1/devices/{device}/reads", payload) is None
    assert collector.handle("alpr/v1/devices/cam-nobody/reads", sealed_batch(pub, "cam-nobody")[1]) is None
    assert not _stored(store, read_id) and collector.counters["rejected.unknown-device"] == 2
