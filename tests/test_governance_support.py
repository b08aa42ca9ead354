"""Shared helpers for the governance tests (no tests here): a real store
(a SQLite file in tmp_path, or a fresh PostgreSQL database: ``world`` is
parametrized over both), a fixed clock, and one named user per role."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from central.store.sqlite import SQLiteStore
from central.governance.users import Role, UserDirectory
from edge_agent.wire import PlateRead, new_read_id

T0 = dt.datetime(2026, 8, 15, 12, 0, tzinfo=dt.timezone.utc)
PURPOSES = ("stolen-vehicle", "criminal-investigation")


class Clock:
    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@dataclasses.dataclass
class World:
    store: SQLiteStore
    clock: Clock
    users: UserDirectory
    admin: object
    operator: object
    supervisor: object
    supervisor2: object
    auditor: object
    tech: object
    business: object
    tokens: dict

    @property
    def conn(self):
        return self.store.db.conn

    @property
    def database(self) -> str:
        """What Matcher, Sender, Registry take: the SQLite file or the PostgreSQL URL."""
        return getattr(self.store, "url", "") or str(self.store.path)

    @property
    def store_toml(self) -> str:
        """The ``[store]`` table a CLI test's config needs to reach this world's store."""
        url = getattr(self.store, "url", "")
        return f'[store]\nurl = "{url}"\n' if url else ""

    def add_read(self, plate: str, at: dt.datetime, *, device: str = "cam-a", camera: str = "lane-1",
                 crop: bytes | None = b"\xff\xd8crop") -> PlateRead:
        read = PlateRead(new_read_id(), device, camera, at, plate, 0.9, (1, 2, 3, 4), crop_jpeg=crop)
        self.store.add_reads([read], at)
        return read


def listed(world: "World", plate: str, *, added_at: dt.datetime, expires_at: dt.datetime, list_name: str = "svs",
           category: str = "stolen-vehicle"):
    """Put ``plate`` on a hotlist as if entered at ``added_at`` (the clock is set back meanwhile)."""
    from central.config import Hotlist
    from central.hotlist.csvimport import EntryInput
    from central.hotlist.lists import Hotlists
    saved = world.clock.now
    world.clock.now = added_at
    try:
        lists = Hotlists(world.conn, Hotlist(categories=((category, 3650),)), clock=world.clock)
        if not world.conn.execute("SELECT 1 FROM hotlists WHERE name = ?", [list_name]).fetchone():
            lists.create(world.admin, list_name, category)
        return lists.add(world.admin, list_name, EntryInput(plate, "stolen", "SVS", "SVS-1", expires_at))
    finally:
        world.clock.now = saved


def make_world(path, url: str = "") -> World:
    """One named user per role in a fresh store: the SQLite file at ``path``, or
    (``url``) everything in a fresh migrated PostgreSQL database."""
    if url:
        from central.store.postgres import PostgresStore
        store = PostgresStore(url)
    else:
        store = SQLiteStore(path)
    clock = Clock()
    users = UserDirectory(store.db.conn, clock=clock)
    admin, admin_token = users.bootstrap("ada", "City PD")
    from conftest import business_on_file
    business_on_file(store.db.conn, "Bob's Garage")   # an account of role business needs its business
    tokens = {"ada": admin_token}
    made = {}
    for name, org, role in [("otto", "City PD", Role.OPERATOR), ("sue", "City PD", Role.SUPERVISOR),
                            ("sam", "City PD", Role.SUPERVISOR), ("audrey", "City Auditor", Role.AUDITOR),
                            ("tech", "City PD", Role.FIELD_TECH), ("bob", "Bob's Garage", Role.BUSINESS)]:
        made[name], tokens[name] = users.add(admin, name, org, role)
    return World(store, clock, users, admin, made["otto"], made["sue"], made["sam"], made["audrey"], made["tech"],
                 made["bob"], tokens)


# The suites run on both backends; the console's run on SQLite only (its code
# uses the same storage layer, but its browser tests are slow on 2 shared cores).
BOTH_BACKENDS = {"test_users", "test_audit", "test_retention", "test_sharing", "test_governance_cli",
                 "test_hotlist_lists", "test_hotlist_hits", "test_report", "test_insider", "test_labels"}


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request, tmp_path):
    """The governance world on each backend (the PostgreSQL one in a throwaway
    cluster; see conftest.pg_cluster) for the suites in BOTH_BACKENDS."""
    if request.param == "postgresql" and request.module.__name__.rsplit(".", 1)[-1] not in BOTH_BACKENDS:
        pytest.skip("this suite runs on SQLite only (test_governance_support.BOTH_BACKENDS)")
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""
    w = make_world(tmp_path / "central" / "central.sqlite", url)
    yield w
    w.store.close()
