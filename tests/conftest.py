"""Shared fixtures: a throwaway PKI, real Mosquitto brokers on free loopback
ports (TLS with client certificates and the generated ACL), central's data key,
and a running collector over a real SQLite file."""

from __future__ import annotations

import getpass
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from central.fleet import broker as broker_mod
from central.fleet import pki
from central.ingest.collector import Collector, CollectorService
from central.config import Mqtt
from central.ingest.keys import init_data_key, load_opener
from central.store.sqlite import SQLiteStore

DEVICES = ("cam-a", "cam-b")
# Each collector process has its own certificate (the broker uses it as the client id);
# "collector-b" is a second one for tests that connect a second central-side client.
COLLECTORS = {"collector": "test", "collector-b": "test-b"}


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


@pytest.fixture(scope="session")
def mosquitto_bin():
    try:
        return broker_mod.mosquitto_binary()
    except FileNotFoundError:
        if os.environ.get("CI"):
            pytest.fail("mosquitto is not installed, and CI must run the broker tests (apt-get install mosquitto)")
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = pki.new_ca("Test CA")
    pki.write_secret(d / "ca.key", ca_key)
    pki.write_public(d / "ca.crt", ca_cert)
    for name, cn, servers in ([("broker", "localhost", ("localhost", "127.0.0.1"))]
                              + [(f, pki.collector_identity(n), ()) for f, n in COLLECTORS.items()]
                              + [(x, x, ()) for x in DEVICES]):
        key, cert = pki.issue(ca_key, ca_cert, cn, server_names=servers)
        pki.write_secret(d / f"{name}.key", key)
        pki.write_public(d / f"{name}.crt", cert)
    init_data_key(d / "data-key.pem", d / "data-key.pub.pem")
    return d


class Broker:
    def __init__(self, directory: Path, pki_dir: Path) -> None:
        self.port = broker_mod.free_port()
        files = broker_mod.write_config(directory, port=self.port, ca_file=str(pki_dir / "ca.crt"),
                                        cert_file=str(pki_dir / "broker.crt"), key_file=str(pki_dir / "broker.key"),
                                        run_as=getpass.getuser(), collectors=tuple(COLLECTORS.values()))
        self.proc = broker_mod.BrokerProcess(files.conf, self.port, directory / "mosquitto.log")

    def start(self):
        self.proc.start()
        return self

    def kill(self):
        self.proc.kill()

    def stop(self):
        self.proc.stop()


@pytest.fixture
def broker_factory(mosquitto_bin, pki_dir, tmp_path):
    made = []

    def make(name: str = "broker") -> Broker:
        b = Broker(tmp_path / name, pki_dir)
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


@pytest.fixture
def broker(broker_factory):
    return broker_factory().start()


class RunningCollector:
    def __init__(self, port: int, pki_dir: Path, db_path: Path, store=None, client_id: str = "",
                 identity: str = "collector") -> None:
        self.store = store if store is not None else SQLiteStore(db_path)
        self.collector = Collector(self.store, load_opener([pki_dir / "data-key.pem"]))
        # The broker takes the client id from the certificate: two collectors need two certificates.
        cfg = Mqtt(host="127.0.0.1", port=port, ca_file=str(pki_dir / "ca.crt"),
                   cert_file=str(pki_dir / f"{identity}.crt"), key_file=str(pki_dir / f"{identity}.key"),
                   client_id=client_id or f"central.collector-{port}")
        self.service = CollectorService(cfg, self.collector)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.service.run, args=(self.stop_event,), daemon=True)

    def start(self):
        self.thread.start()
        wait_for(self.service.ready.is_set, 15, message="collector subscription")
        return self

    def read_ids(self) -> list[str]:
        if hasattr(self.store, "read_ids"):  # PostgreSQL
            return self.store.read_ids()
        return [r[0] for r in self.store.db.execute("SELECT read_id FROM reads").fetchall()]

    def stop(self):
        self.stop_event.set()
        self.thread.join(timeout=10)
        self.store.close()


@pytest.fixture
def collector_factory(pki_dir, tmp_path):
    made = []

    def make(port: int, db_name: str = "central.sqlite", store=None, client_id: str = "",
             identity: str = "collector") -> RunningCollector:
        c = RunningCollector(port, pki_dir, tmp_path / db_name, store, client_id, identity)
        made.append(c)
        return c.start()

    yield make
    for c in made:
        if not c.stop_event.is_set():
            c.stop()


# -- PostgreSQL: a throwaway cluster from Debian's binaries (tests/pg_cluster.py) ----------
@pytest.fixture(scope="session")
def pg_cluster():
    from pg_cluster import PgCluster, find_bindir
    bindir = find_bindir()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed, and CI must run the PostgreSQL tests (apt-get install postgresql)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql): PostgreSQL tests skipped")
    cluster = PgCluster(bindir).start()
    yield cluster
    cluster.destroy()


@pytest.fixture
def pg_url(pg_cluster):
    """A fresh, migrated database of the session cluster."""
    from central.store.postgres import PostgresStore
    url = pg_cluster.new_database()
    store = PostgresStore(url, check_schema=False)
    store.migrate()
    store.close()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_factory(request, tmp_path):
    """Opens a store of each backend: ``make(sqlite_path)``. With PostgreSQL
    everything is in a fresh migrated database (``sqlite_path`` unused)."""
    made = []

    def make(path: Path):
        if request.param == "sqlite":
            store = SQLiteStore(path)
        else:
            from central.store.postgres import PostgresStore
            url = request.getfixturevalue("pg_url")
            store = PostgresStore(url)
        made.append(store)
        return store

    make.backend = request.param
    yield make
    for store in made:
        store.close()


@pytest.fixture(scope="session")
def sample_clip(tmp_path_factory):
    from edge_agent.sample import generate
    return generate(tmp_path_factory.mktemp("clip"), vehicles=5, seed=11)


def edge_config(tmp_path: Path, pki_dir: Path, port: int, *, device: str = "cam-a", source: str = "file",
                uri: str = "", sidecar: str = "", fps: float = 0.0, extra: str = "") -> Path:
    text = f"""
[device]
id = "{device}"
data_dir = "{tmp_path / ('edge-' + device)}"

[[cameras]]
id = "lane-1"
source = "{source}"
uri = "{uri}"
fps = {fps}

[recognition]
type = "sidecar-oracle"
[recognition.options]
sidecar = "{sidecar}"

[sync]
host = "127.0.0.1"
port = {port}
ca_file = "{pki_dir / 'ca.crt'}"
cert_file = "{pki_dir / (device + '.crt')}"
key_file = "{pki_dir / (device + '.key')}"
central_public_key = "{pki_dir / 'data-key.pub.pem'}"
ack_timeout = 5.0
{extra}
"""
    path = tmp_path / f"edge-{device}.toml"
    path.write_text(text)
    return path


def copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True)


def business_on_file(db, business_id: str) -> None:
    """A business row for fixtures whose subject is not enrollment (accounts of
    role business need an enrolled business): ``db`` is a connection or a path.
    Tests of enrollment itself use Registry.enroll_business / the CLI."""
    import sqlite3
    conn = sqlite3.connect(db) if isinstance(db, (str, Path)) else db  # a path, or a connection of either backend
    try:
        with conn:
            conn.execute("INSERT OR IGNORE INTO businesses VALUES (?,?,'Owner','owner@example.org','','MOU-T',"
                         "'plate reads','CA public agencies with an agreement',60,?,'active',?,'ada',NULL,NULL)",
                         [business_id, business_id, "2026-01-05T00:00:00.000000Z", "2026-01-05T00:00:00.000000Z"])
    finally:
        if conn is not db:
            conn.close()


def central_cli(tmp_path: Path, monkeypatch, toml: str = ""):
    """A central.toml in ``tmp_path`` (data in ``tmp_path/central``, no TLS,
    then ``toml``) and ``run(*args, token=None, env=None)``: ``alpr-central``
    through click, ``--config`` after the command and, with ``token``, the token
    file ``tmp_path/TOKEN.token``. No token from the environment leaks in."""
    from click.testing import CliRunner

    from central.cli import main
    monkeypatch.delenv("ALPR_TOKEN", raising=False)
    monkeypatch.delenv("ALPR_TOKEN_FILE", raising=False)
    cfg = tmp_path / "central.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "central"}"\n[mqtt]\ntls = false\n{toml}')
    runner = CliRunner()

    def run(*args, token=None, env=None):
        extra = ["--token-file", str(tmp_path / f"{token}.token")] if token else []
        n = 1 if args[0] == "query" else 2
        return runner.invoke(main, [*args[:n], "--config", str(cfg), *extra, *args[n:]], env=env)

    return cfg, run
