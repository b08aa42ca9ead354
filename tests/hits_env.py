"""Hits for the console tests: a hotlist on a :class:`console_env.ConsoleWorld`
and reads sealed the way a device seals them, stored by the real collector and
matched by the real matcher (its own connection, its durable cursor)."""

from __future__ import annotations

import datetime as dt
import itertools

from central.hotlist.csvimport import EntryInput
from central.hotlist.lists import Hotlists
from central.hotlist.matcher import Matcher
from central.ingest.collector import Collector
from central.ingest.keys import load_opener
from console_env import context_jpeg, jpeg
from edge_agent.wire import (Alternate, Location, PlateRead, Sealer, encode_batch, encode_read, load_public_key,
                             new_read_id)

LISTED = ("7ABC123", "4GHJ556")


class HitWorld:
    """A list ``stolen`` (stolen-vehicle) holding :data:`LISTED`, entered by a supervisor."""

    def __init__(self, world) -> None:
        self.world = world
        self.path = world.env.database   # the SQLite file or the PostgreSQL URL
        self._offsets = itertools.count(0)
        store = world.env.store()
        lists = Hotlists(store.db.conn, world.cfg.hotlist, clock=world.clock)
        sue = world.env.user("sue")
        if not any(h.name == "stolen" for h in lists.lists(sue)):
            lists.create(sue, "stolen", "stolen-vehicle", description="stolen vehicles (CLETS)")
            for i, plate in enumerate(LISTED):
                lists.add(sue, "stolen", EntryInput(plate, "stolen vehicle", "LAPD", f"SV-26-{1040 + i}",
                                                    world.clock() + dt.timedelta(days=30), state="CA",
                                                    case_number=f"26-00{4512 + i}"))
        store.close()
        self.matcher = Matcher(self.path, world.cfg.hotlist, clock=world.clock)
        self.matcher.match_pending()   # the reads stored before the list: raise their hits now

    def read(self, plate: str = LISTED[0], *, device_key: str = "dept2", at: dt.datetime | None = None) -> PlateRead:
        """One read, each on its own vehicle pass (each captured 6 minutes before the last; the world's
        reads on ``dept2`` never show a listed plate, so every one raises a hit), stored by the collector.
        ``at``: this capture time instead (e.g. a second read of the same pass)."""
        device = self.world.devices[device_key]
        if at is None:
            at = self.world.clock() - dt.timedelta(minutes=1 + 6 * next(self._offsets))
        read = PlateRead(new_read_id(), device, "lane-1", at, plate, 0.93, (40, 60, 200, 60),
                         alternates=(Alternate(plate[:-1] + "8", 0.41),), crop_jpeg=jpeg(plate),
                         context_jpeg=context_jpeg(plate), location=Location(34.0525, -118.2431, 270.0),
                         model_version="lpr-int8-2026.11")
        store = self.world.env.store()
        try:
            public = load_public_key((self.world.env.data / "data-key.pub.pem").read_bytes())
            collector = Collector(store, load_opener([self.world.env.data / "data-key.pem"]))
            sealed = Sealer(public, device).seal(read.read_id, encode_read(read))
            ack = collector.handle(f"alpr/v1/devices/{device}/reads", encode_batch(new_read_id(), [sealed]))
            assert ack is not None and read.read_id in ack[1].stored, ack
        finally:
            store.close()
        return read

    def hit(self, plate: str = LISTED[0], **kw) -> int:
        """A new read of a listed plate, matched: the new hit's id."""
        self.read(plate, **kw)
        ids = self.matcher.match_pending()
        assert len(ids) == 1, ids
        return ids[0]

    def close(self) -> None:
        self.matcher.close()
