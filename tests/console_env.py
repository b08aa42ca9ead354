"""A central holding reads for the console tests: built by :class:`CentralEnv`
(``alpr-central ca init``, ``user bootstrap``, one user per role, the registry),
with a business and its camera, the department's cameras at real positions,
reads sealed the way devices seal them and stored by the real collector, a
pending legal hold and sharing request, and a console password for every user.
Imported by the in-process tests, the browser tests and the screenshot script."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import cv2
import numpy as np

from central.config import load as load_config
from central.console.auth import ConsoleAuth
from central.fleet.registry import CameraSpec, Terms
from central.governance.retention import Governor
from central.governance.sharing import SharingRegistry
from central.governance.users import Role
from central.ingest.collector import Collector
from central.ingest.keys import load_opener
from edge_agent.provision import new_key_and_csr
from edge_agent.wire import (Alternate, Location, PlateRead, Sealer, encode_batch, encode_read, load_public_key,
                             new_read_id)
from test_enrollment_env import CentralEnv, Clock

PASSWORD = "correct horse battery staple"
EXTRA_USERS = [("sam", "City PD", Role.SUPERVISOR), ("pat", "acme", Role.BUSINESS), ("bob", "bobs", Role.BUSINESS)]
PLATES = ["7ABC123", "8XYZ789", "4GHJ556", "6LMN402", "7ABD123", "5TUV918"]


def jpeg(text: str, size=(200, 60), scale=1.4) -> bytes:
    img = np.full((size[1], size[0], 3), 235, np.uint8)
    cv2.rectangle(img, (2, 2), (size[0] - 3, size[1] - 3), (40, 40, 40), 2)
    cv2.putText(img, text, (10, int(size[1] * 0.72)), cv2.FONT_HERSHEY_SIMPLEX, scale, (20, 20, 20), 3)
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()


def context_jpeg(text: str) -> bytes:
    img = np.full((360, 640, 3), (120, 110, 100), np.uint8)
    cv2.rectangle(img, (180, 150), (460, 300), (60, 60, 150), -1)
    cv2.rectangle(img, (260, 250), (380, 285), (235, 235, 235), -1)
    cv2.putText(img, text, (266, 276), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (10, 10, 10), 2)
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 75])[1].tobytes()


class ConsoleWorld:
    """The central, its users' passwords, devices and reads."""

    def __init__(self, root: Path, *, clock: Clock | None = None, console: str = "", pg_url: str = "") -> None:
        self.env = CentralEnv(root / "site", pid_file=False, pg_url=pg_url)
        with open(self.env.config, "a") as fh:
            fh.write("\n[console]\nsession_idle_minutes = 15\nsession_max_hours = 8\nlockout_failures = 3\n"
                     "lockout_minutes = 30\nsign_in_per_minute = 50\n" + console)
        self.cfg = load_config(self.env.config)
        self.clock = clock or Clock()
        reg = self.env.registry(self.clock)
        admin = self.env.user()
        for bid, name in (("acme", "Acme Market"), ("bobs", "Bob's Garage")):
            reg.enroll_business(bid, name=name, contact_name="Owner", contact_email=f"owner@{bid}.example",
                                contact_phone="", mou_id=f"MOU-{bid.upper()}",
                                terms=Terms("plate reads and crops", "California public agencies with an agreement",
                                            60), consent_at=dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc),
                                user=admin)
        for name, org, role in EXTRA_USERS:   # after the businesses: a business account needs its business
            self.env.add_user(name, org, role)
        self.devices = {}
        for key, owner, location, lat, lon in (("dept", "department", "Main St & 5th", 34.0522, -118.2437),
                                               ("dept2", "department", "Harbor Blvd", 34.0407, -118.2468),
                                               ("acme", "acme", "Acme Market lot", 34.0580, -118.2360),
                                               ("bobs", "bobs", "Bob's Garage door", 34.0470, -118.2550)):
            new = reg.create_enrollment(owner=owner, cameras=[CameraSpec.parse("lane-1:file")], location=location,
                                        ttl=dt.timedelta(hours=1), user=self.env.user("tech"), latitude=lat,
                                        longitude=lon, device_id=f"cam-{key}")
            reg.redeem(new.token_id, new.secret, new_key_and_csr()[1], self.env.ca)
            self.devices[key] = new.device.device_id
        reg.close()
        self.store_reads()
        store = self.env.store()
        auth = ConsoleAuth(store.db.conn, self.cfg.console, clock=self.clock)
        for name in ["ada", "tech", "otto", "sue", "audrey"] + [u[0] for u in EXTRA_USERS]:
            auth.set_password(admin, name, PASSWORD)
        gov = Governor(store.db.conn, self.cfg.retention, clock=self.clock)
        now = self.clock()
        gov.request_hold(self.env.user("otto"), case_number="26-004512", plates=["7ABC123"],
                         since=now - dt.timedelta(days=3), until=now, reason="litigation: discovery order",
                         review_on=(now + dt.timedelta(days=90)).date())
        sharing = SharingRegistry(store.db.conn, self.cfg.sharing, purposes=self.cfg.query.purposes, clock=self.clock)
        sharing.add_agreement(admin, agreement_id="AGR-LASD", agency="LA County Sheriff", agency_type="public-agency",
                              jurisdiction="CA", effective_on=dt.date(2026, 1, 1), expires_on=dt.date(2027, 12, 31))
        sharing.request(self.env.user("otto"), agreement_id="AGR-LASD", requesting_person="Det. R. Lopez",
                        case_number="26-004512", purpose="stolen-vehicle", plates=["7ABC123"],
                        since=now - dt.timedelta(days=2), until=now)
        store.close()

    def store_reads(self, count: int = 36) -> None:
        """Reads sealed to central's data key by each device and stored by the real collector."""
        store = self.env.store()
        public = load_public_key((self.env.data / "data-key.pub.pem").read_bytes())
        collector = Collector(store, load_opener([self.env.data / "data-key.pem"]))
        now = self.clock()
        keys = list(self.devices)
        self.read_ids, self.read_times = [], []
        for i in range(count):
            key = keys[i % len(keys)]
            device = self.devices[key]
            plate = PLATES[i % len(PLATES)]
            lat = 34.05 + (i % 7) * 0.002
            read = PlateRead(new_read_id(), device, "lane-1", now - dt.timedelta(minutes=20 * i + 5), plate,
                             0.97 - (i % 5) * 0.04, (40, 60, 200, 60),
                             alternates=(Alternate(plate[:-1] + "8", 0.41),), crop_jpeg=jpeg(plate),
                             context_jpeg=context_jpeg(plate), location=Location(lat, -118.245 + (i % 5) * 0.003, 90.0),
                             model_version="lpr-int8-2026.11")
            sealer = Sealer(public, device)
            payload = encode_batch(new_read_id(), [sealer.seal(read.read_id, encode_read(read))])
            topic_ack = collector.handle(f"alpr/v1/devices/{device}/reads", payload)
            assert topic_ack is not None and read.read_id in topic_ack[1].stored, topic_ack
            self.read_ids.append(read.read_id)
            self.read_times.append(read.captured_at)
        store.close()

    def close(self) -> None:
        self.env.close()


def make_world(request, tmp_path_factory, name: str) -> ConsoleWorld:
    """A console world on the backend ``request.param`` names (for a fixture
    parametrized over "sqlite" and "postgresql"; PostgreSQL: a fresh migrated
    database of the session cluster)."""
    url = ""
    if request.param == "postgresql":
        from central.store.postgres import PostgresStore
        url = request.getfixturevalue("pg_cluster").new_database()
        store = PostgresStore(url, check_schema=False)
        store.migrate()
        store.close()
    return ConsoleWorld(tmp_path_factory.mktemp(name), clock=Clock(), pg_url=url)
