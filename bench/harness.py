"""What the data-path benchmarks share: a throwaway PKI for N devices, a TLS
Mosquitto on a free loopback port with the generated ACL, central's data key,
and config files for the real `alpr-central run` / `alpr-edge run` processes."""

from __future__ import annotations

import datetime as dt
import getpass
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from central.fleet import broker as broker_mod
from central.fleet import pki
from central.fleet.ca import CertificateAuthority
from central.cli.demo import enroll_locally
from central.ingest.keys import init_data_key
from central.fleet.registry import Registry
from central.store.sqlite import SQLiteStore


class Rig:
    def __init__(self, root: Path, devices: list[str], max_collectors: int = 8) -> None:
        self.root = root
        self.pki = root / "pki"
        ca_key, ca_cert = pki.new_ca("Bench CA")
        pki.write_public(self.pki / "ca.crt", ca_cert)
        # One certificate per collector process: the broker uses it as the client id.
        names = self.collector_names = [f"bench-{i}" for i in range(max_collectors)]
        for name, cn, servers in [("broker", "localhost", ("127.0.0.1",))] + [
                (f"collector-{i}", pki.collector_identity(n), ()) for i, n in enumerate(names)]:
            key, cert = pki.issue(ca_key, ca_cert, cn, server_names=servers)
            pki.write_secret(self.pki / f"{name}.key", key)
            pki.write_public(self.pki / f"{name}.crt", cert)
        self.db = root / "central" / "central.sqlite"
        self._enroll(devices, CertificateAuthority(ca_key, ca_cert))
        init_data_key(root / "data-key.pem", root / "data-key.pub.pem")
        self.port = broker_mod.free_port()
        files = broker_mod.write_config(root / "broker", port=self.port, ca_file=str(self.pki / "ca.crt"),
                                        cert_file=str(self.pki / "broker.crt"),
                                        key_file=str(self.pki / "broker.key"), run_as=getpass.getuser(),
                                        persistence=False, collectors=names)
        self.broker = broker_mod.BrokerProcess(files.conf, self.port, root / "broker" / "mosquitto.log")
        self.collectors: list[subprocess.Popen] = []

    def _enroll(self, devices: list[str], ca) -> None:
        """Enroll every device through the registry, so the collector's check passes."""
        SQLiteStore(self.db).close()  # create the database with every migration
        # Enrolled a month ago: the benchmarks replay reads from days of buffering, and
        # the collector refuses reads dated before a device's enrollment.
        enrolled = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)
        registry = Registry(self.db, clock=lambda: enrolled)
        try:
            for dev in devices:
                enroll_locally(registry, ca, dev, self.pki, cameras=("lane-1",))
        finally:
            registry.close()

    def start_broker(self) -> None:
        self.broker.start()

    def central_config(self, index: int) -> Path:
        path = self.root / f"central-{index}.toml"
        path.write_text(f"""data_dir = "{self.root / 'central'}"
[mqtt]
host = "127.0.0.1"
port = {self.port}
ca_file = "{self.pki / 'ca.crt'}"
cert_file = "{self.pki / f'collector-{index}.crt'}"
key_file = "{self.pki / f'collector-{index}.key'}"
client_id = "central.collector-{index}"
[keys]
data_private_keys = ["{self.root / 'data-key.pem'}"]
""")
        return path

    def start_collectors(self, n: int, profile_dir: Path | None = None) -> None:
        """Start ``n`` `alpr-central run` processes; with ``profile_dir``, each
        under bench/profiled.py (every thread profiled, stats written on exit)."""
        for i in range(n):
            self.collectors.append(subprocess.Popen(
                python_command(profile_dir and profile_dir / f"collector-{i}.prof")
                + ["-m", "central", "run", "--config", str(self.central_config(i)), "--log-level", "warning"]))
        time.sleep(2.0)

    def edge_config(self, device: str, *, source_dir: Path, batch_size: int = 200, max_in_flight: int = 4,
                    sidecar: str | None = None, clip: str | None = None) -> Path:
        rec = f'type = "sidecar-oracle"\n[recognition.options]\nsidecar = "{sidecar}"\n' if sidecar else \
            'type = "tflite"\n'
        cam = (f'source = "file"\nuri = "{clip}"\nfps = 10.0\nloop = true' if clip else
               f'source = "folder"\nuri = "{source_dir}"')
        path = self.root / f"edge-{device}.toml"
        path.write_text(f"""[device]
id = "{device}"
data_dir = "{self.root / ('edge-' + device)}"
[[cameras]]
id = "lane-1"
{cam}
[recognition]
{rec}
[sync]
host = "127.0.0.1"
port = {self.port}
ca_file = "{self.pki / 'ca.crt'}"
cert_file = "{self.pki / (device + '.crt')}"
key_file = "{self.pki / (device + '.key')}"
central_public_key = "{self.root / 'data-key.pub.pem'}"
batch_size = {batch_size}
max_in_flight = {max_in_flight}
""")
        return path

    def stored(self) -> int:
        if not self.db.exists():
            return 0
        with sqlite3.connect(self.db, timeout=30) as conn:
            return conn.execute("SELECT count(*) FROM reads").fetchone()[0]

    def stop(self) -> None:
        for p in self.collectors:
            p.terminate()
        for p in self.collectors:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        self.broker.stop()


def python_command(profile: Path | None = None) -> list[str]:
    """This interpreter, under bench/profiled.py when ``profile`` names a stats file."""
    if profile is None:
        return [sys.executable]
    return [sys.executable, str(Path(__file__).with_name("profiled.py")), str(profile)]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]
