"""A whole central for enrollment tests, built the way an operator would:
``central.toml`` on disk, ``alpr-central ca init``, the HTTPS enrollment
endpoint, Mosquitto configured by ``alpr-central broker config`` (per-device
ACL from the registry, CRL), and a collector that stores only active devices'
reads. Named users are bootstrapped the same way (``alpr-central user
bootstrap`` for the first admin, then one user per role); ``cli`` runs as the
admin unless told ``as_=<name>``. Imported by the enrollment, provisioning,
device and business tests."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import threading
from pathlib import Path

from click.testing import CliRunner

from central.fleet import broker as broker_mod
from central.fleet.ca import CertificateAuthority
from central.cli import main as central_main
from central.ingest.collector import Collector, CollectorService
from central.config import Mqtt
from central.config import load as load_central_config
from central.fleet.enrollment import EnrollmentServer, EnrollmentService, EnrollmentSettings, data_public_key_pem
from central.ingest.keys import init_data_key, load_opener
from central.fleet.registry import CameraSpec, Registry
from central.store import open_store
from central.store.database import open_governance
from central.governance.users import Role, User, UserDirectory
from conftest import wait_for

STAFF = [("tech", "City PD", Role.FIELD_TECH), ("otto", "City PD", Role.OPERATOR),
         ("sue", "City PD", Role.SUPERVISOR), ("audrey", "City Auditor", Role.AUDITOR)]


class CentralEnv:
    def __init__(self, root: Path, *, pid_file: bool = True, pg_url: str = "") -> None:
        """``pg_url``: keep everything in that (migrated) PostgreSQL database
        instead of the SQLite file ``central/central.sqlite``."""
        self.root = root
        self.data = root / "central"
        self.database = pg_url or str(self.data / "central.sqlite")
        self.broker_port = broker_mod.free_port()
        self.enroll_port = broker_mod.free_port()
        root.mkdir(parents=True, exist_ok=True)
        self.config = root / "central.toml"
        self.config.write_text(f"""
data_dir = "{self.data}"
[mqtt]
host = "127.0.0.1"
port = {self.broker_port}
ca_file = "{self.data / 'ca' / 'ca.crt'}"
cert_file = "{self.data / 'ca' / 'collector.main.crt'}"
key_file = "{self.data / 'ca' / 'collector.main.key'}"
client_id = "central.collector-test"
[enrollment]
bind = "127.0.0.1"
port = {self.enroll_port}
server_names = ["127.0.0.1", "localhost"]
broker_host = "127.0.0.1"
broker_port = {self.broker_port}
[broker]
bind = "127.0.0.1"
port = {self.broker_port}
{'pid_file = "broker/mosquitto.pid"' if pid_file else ''}
run_as = "{getpass.getuser()}"
{f'[store]{chr(10)}url = "{pg_url}"' if pg_url else ''}
""")
        init_data_key(self.data / "data-key.pem", self.data / "data-key.pub.pem")
        self.tokens: dict[str, str] = {}
        result = self.cli("ca", "init", as_=None)
        assert result.exit_code == 0, result.output
        self.ca = CertificateAuthority.load(self.data / "ca" / "ca.key", self.data / "ca" / "ca.crt")
        result = self.cli("user", "bootstrap", "--name", "ada", "--organization", "City PD",
                          "--token-out", str(root / "ada.token"), as_=None)
        assert result.exit_code == 0, result.output
        self.tokens["ada"] = (root / "ada.token").read_text().strip()
        for name, org, role in STAFF:
            self.add_user(name, org, role)
        self._stop: list = []
        self._broker_up = False

    @property
    def central_url(self) -> str:
        return f"https://127.0.0.1:{self.enroll_port}"

    def cli(self, *args, input=None, as_: str | None = "ada"):
        """``alpr-central`` as user ``as_`` (token in ALPR_TOKEN; None: no token)."""
        group, *rest = args
        sub = []
        if rest and not rest[0].startswith("-"):
            sub, rest = [rest[0]], rest[1:]
        env = {"ALPR_TOKEN": self.tokens[as_] if as_ else None, "ALPR_TOKEN_FILE": None}
        return CliRunner().invoke(central_main, [group, *sub, "--config", str(self.config), *rest], input=input,
                                  env=env)

    def _directory(self):
        store = open_governance(self.database)
        return store, UserDirectory(store.db.conn)

    def add_user(self, name: str, organization: str, role: Role) -> str:
        store, users = self._directory()
        try:
            if role is Role.BUSINESS:  # an account of role business needs its business on file
                from conftest import business_on_file
                business_on_file(users.conn, organization)
            _, self.tokens[name] = users.add(users.get("ada"), name, organization, role)
        finally:
            store.close()
        return self.tokens[name]

    def user(self, name: str = "ada") -> User:
        store, users = self._directory()
        try:
            return users.get(name)
        finally:
            store.close()

    def token(self, *cameras: str, owner: str = "department", device: str | None = None,
              expires: str = "1h") -> tuple[str, str]:
        args = ["enroll", "create", "--owner", owner, "--expires", expires, "--json"]
        for cam in cameras or ("lane-1:file",):
            args += ["--camera", cam]
        if device:
            args += ["--device", device]
        result = self.cli(*args, as_="tech")
        assert result.exit_code == 0, result.output
        doc = json.loads(result.output)
        return doc["token"], doc["device_id"]

    def provisioned(self, *cameras: str, owner: str = "department") -> str:
        """A device enrolled and provisioned through the registry (no HTTP); returns its id."""
        from edge_agent.provision import new_key_and_csr
        registry = self.registry()
        try:
            new = registry.create_enrollment(owner=owner, cameras=[CameraSpec.parse(c) for c in cameras or
                                                                   ("lane-1",)], location="test", ttl=dt.timedelta(hours=1),
                                             user=self.user("tech"))
            registry.redeem(new.token_id, new.secret, new_key_and_csr()[1], self.ca)
            return new.device.device_id
        finally:
            registry.close()

    def store(self):
        """The store (reads and governance) on this central's backend."""
        pg = self.database.startswith("postgresql")
        return open_store("postgresql" if pg else "sqlite", self.database, self.database if pg else "")

    def registry(self, clock=None) -> Registry:
        return Registry(self.database, clock=clock)

    def start_enrollment(self, clock=None) -> EnrollmentServer:
        registry = self.registry(clock)
        cfg = load_central_config(self.config)
        service = EnrollmentService(
            registry, self.ca, data_public_key_pem(self.data / "data-key.pem"),
            EnrollmentSettings("127.0.0.1", self.broker_port),
            on_change=lambda: broker_mod.refresh(cfg.broker.dir, cfg.broker.pid_file if self._broker_up else None,
                                                 registry.active_device_ids(),
                                                 self.ca.crl(registry.crl_entries(), after=broker_mod.crl_last_update(cfg.broker.dir))),
            config_signing_key=cfg.remote_config.signing_key)
        server = EnrollmentServer(service, bind="127.0.0.1", port=self.enroll_port,
                                  cert_file=str(self.data / "ca" / "enrollment.crt"),
                                  key_file=str(self.data / "ca" / "enrollment.key")).start()
        self._stop += [server.stop, registry.close]
        return server

    def start_broker(self) -> broker_mod.BrokerProcess:
        result = self.cli("broker", "config")
        assert result.exit_code == 0, result.output
        proc = broker_mod.BrokerProcess(self.data / "broker" / "mosquitto.conf", self.broker_port,
                                        self.data / "broker" / "mosquitto.log")
        proc.start()
        wait_for(lambda: (self.data / "broker" / "mosquitto.pid").exists(), 5, message="broker pid file")
        self._stop.append(proc.stop)
        self._broker_up = True
        return proc

    def start_collector(self):
        store = self.store()
        registry = self.registry()
        collector = Collector(store, load_opener([self.data / "data-key.pem"]),
                              device_allowed=registry.allow_list(ttl=0.0))
        service = CollectorService(Mqtt(host="127.0.0.1", port=self.broker_port,
                                        ca_file=str(self.data / "ca" / "ca.crt"),
                                        cert_file=str(self.data / "ca" / "collector.main.crt"),
                                        key_file=str(self.data / "ca" / "collector.main.key"),
                                        client_id="central.collector-test"), collector)
        stop = threading.Event()
        thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
        thread.start()
        wait_for(service.ready.is_set, 15, message="collector subscription")

        def halt():
            stop.set()
            thread.join(10)
            store.close()
            registry.close()
        self._stop.append(halt)
        return collector, store

    def close(self) -> None:
        for fn in reversed(self._stop):
            fn()


class Clock:
    """A settable UTC clock for the registry."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.now = start or dt.datetime.now(dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kw) -> None:
        self.now += dt.timedelta(**kw)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777
