"""The one-command demo: a TLS Mosquitto broker, the central collector, and an
edge agent fed by a generated clip, all on loopback; reads are printed as
central stores them. One of the clip's plates is put on a demo hotlist, and
its hit is printed live as the matcher raises it (the matcher runs in a child
process of its own, as under ``alpr-central run``). Ctrl-C stops everything.

Everything is generated into one folder (CA, certificates, keys, configs, the
clip, the databases), so the demo never touches system paths.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID

from ..fleet import broker as broker_mod
from ..fleet import pki
from ..fleet.ca import CertificateAuthority
from ..ingest.collector import Collector, CollectorService
from ..config import Mqtt
from ..ingest.keys import init_data_key, load_opener
from ..fleet.registry import DEPARTMENT, CameraSpec, Registry
from ..store.sqlite import SQLiteStore
from ..governance.users import User, UserDirectory
from ..config import Hotlist
from ..hotlist.csvimport import EntryInput
from ..hotlist.lists import Hotlists
from ..hotlist.service import HotlistProcess

logger = logging.getLogger(__name__)


DEMO_ADMIN = "demo-admin"


def local_admin(registry: Registry) -> User:
    """The demo's own admin (``demo-admin``, organization "Demo"): bootstrapped
    on a database without users, reused afterwards. Refused (PolicyError) on a
    database whose users are real people: there, pass a real user."""
    directory = UserDirectory(registry.db)
    if registry.db.execute("SELECT 1 FROM users WHERE name = ?", [DEMO_ADMIN]).fetchone():
        return directory.get(DEMO_ADMIN)
    user, _token = directory.bootstrap(DEMO_ADMIN, "Demo")  # the token is not kept: nobody logs in as it
    return user


def enroll_locally(registry: Registry, ca: CertificateAuthority, device_id: str, out_dir: Path, *,
                   user: User | None = None, cameras: tuple[str, ...] = ("gate-north",)) -> None:
    """Enroll a device whose key lives on this machine, the way a field tech
    would (one-time token -> key and CSR made "on the device" -> certificate),
    writing ``<device>.key`` (0600) and ``<device>.crt`` into ``out_dir``. For
    the demo and the benchmarks; real devices run ``alpr-edge provision``.
    Acts as ``user`` (default: :func:`local_admin`); the registry checks the
    role and logs the action like any other. ``cameras``: the camera ids the
    registry records (the collector refuses reads from any other)."""
    user = user or local_admin(registry)
    token = registry.create_enrollment(owner=DEPARTMENT, cameras=[CameraSpec(c, "file") for c in cameras],
                                       location="demo", ttl=dt.timedelta(minutes=10), user=user,
                                       device_id=device_id)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
           .sign(key, hashes.SHA256()))
    _, cert = registry.redeem(token.token_id, token.secret, csr.public_bytes(Encoding.PEM), ca)
    pki.write_secret(out_dir / f"{device_id}.key",
                     key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    pki.write_public(out_dir / f"{device_id}.crt", cert)


def prepare(root: Path, *, device_id: str = "demo-cam-1", port: int | None = None) -> dict:
    """Generate the CA, service certificates, central's data key, the demo
    device's enrollment and the broker config under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    pk = root / "pki"
    ca_key, ca_cert = pki.new_ca("ALPR Demo CA")
    pki.write_secret(pk / "ca.key", ca_key)
    pki.write_public(pk / "ca.crt", ca_cert)
    for name, cn, servers in (("broker", "localhost", ("localhost", "127.0.0.1")),
                              ("collector", pki.collector_identity("demo"), ())):
        key, cert = pki.issue(ca_key, ca_cert, cn, server_names=servers)
        pki.write_secret(pk / f"{name}.key", key)
        pki.write_public(pk / f"{name}.crt", cert)
    if not (root / "central" / "data-key.pem").exists():
        init_data_key(root / "central" / "data-key.pem", root / "central" / "data-key.pub.pem")
    db = root / "central" / "central.sqlite"
    SQLiteStore(db).close()  # every migration applied
    registry = Registry(db)
    try:
        # A new CA each run, so the device is (re-)enrolled each run; its outbox is kept.
        enroll_locally(registry, CertificateAuthority(ca_key, ca_cert), device_id, pk)
        active = registry.active_device_ids()
    finally:
        registry.close()
    port = port or broker_mod.free_port()
    files = broker_mod.write_config(root / "broker", port=port, ca_file=str(pk / "ca.crt"),
                                    cert_file=str(pk / "broker.crt"), key_file=str(pk / "broker.key"),
                                    run_as=getpass.getuser(), devices=active, collectors=("demo",))
    return {"root": root, "pki": pk, "port": port, "broker_conf": files.conf, "device_id": device_id}


def edge_config_text(paths: dict, *, clip: Path, sidecar: Path, recognizer: str) -> str:
    pk = paths["pki"]
    rec = ('type = "sidecar-oracle"\n[recognition.options]\nsidecar = "%s"\n' % sidecar
           if recognizer == "sidecar-oracle" else 'type = "tflite"\n')
    return f"""# Generated by alpr-central demo.
[device]
id = "{paths['device_id']}"
data_dir = "{paths['root'] / 'edge'}"

[[cameras]]
id = "gate-north"
source = "file"
uri = "{clip}"
fps = 10.0
loop = true
latitude = 34.0522
longitude = -118.2437
heading = 90.0

[tracking]
reemit_seconds = 5.0

[recognition]
{rec}
[sync]
host = "127.0.0.1"
port = {paths['port']}
ca_file = "{pk / 'ca.crt'}"
cert_file = "{pk / (paths['device_id'] + '.crt')}"
key_file = "{pk / (paths['device_id'] + '.key')}"
central_public_key = "{paths['root'] / 'central' / 'data-key.pub.pem'}"
batch_size = 50
"""


DEMO_LIST = "demo-stolen"


def put_on_demo_hotlist(db: Path, sidecar: Path) -> str:
    """Put the clip's first plate on the demo hotlist (once; the entry expires
    in 7 days), as the demo admin. Returns the plate."""
    plate = json.loads(sidecar.read_text())["plates"][0]
    registry = Registry(db)
    try:
        admin = local_admin(registry)
        lists = Hotlists(registry.db, Hotlist())
        if not registry.db.execute("SELECT 1 FROM hotlists WHERE name = ?", [DEMO_LIST]).fetchone():
            lists.create(admin, DEMO_LIST, "stolen-vehicle", description="the demo's listed plate")
        if not any(e.plate == plate for e in lists.entries(admin, DEMO_LIST, log=False)):
            lists.add(admin, DEMO_LIST, EntryInput(plate, "stolen vehicle (demo)", "Demo PD", "DEMO-1",
                                                   dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=7)))
    finally:
        registry.close()
    return plate


DEMO_OPERATOR = "demo-operator"
DEMO_AUDITOR = "demo-auditor"


def start_console(root: Path, paths: dict, echo: Callable[[str], None]):
    """The browser console over the demo's database, with a certificate from
    the demo CA and two demo accounts whose passwords are new each run (shown
    once: demo only; a real site sets them with 'alpr-central user passwd')."""
    import secrets

    from ..config import parse
    from ..console.auth import ConsoleAuth
    from ..console.server import ConsoleServer
    from ..governance.users import Role
    pk = paths["pki"]
    for name in ("console.crt", "console.key"):   # a new CA each run: a new certificate too
        (pk / name).unlink(missing_ok=True)
    cfg = parse({"data_dir": str(root / "central"), "mqtt": {"tls": False},
                 "ca": {"key_file": str(pk / "ca.key"), "cert_file": str(pk / "ca.crt")},
                 "console": {"port": broker_mod.free_port(), "cert_file": str(pk / "console.crt"),
                             "key_file": str(pk / "console.key")}}, root)
    store = SQLiteStore(root / "central" / "central.sqlite")
    registry = Registry(root / "central" / "central.sqlite")
    passwords = {}
    try:
        admin = local_admin(registry)
        users = UserDirectory(store.db.conn)
        auth = ConsoleAuth(store.db.conn, cfg.console)
        for name, role in ((DEMO_OPERATOR, Role.OPERATOR), (DEMO_AUDITOR, Role.AUDITOR)):
            if not store.db.execute("SELECT 1 FROM users WHERE name = ?", [name]).fetchone():
                users.add(admin, name, "Demo", role)
            passwords[name] = secrets.token_urlsafe(12)
            auth.set_password(admin, name, passwords[name])
    finally:
        registry.close()
        store.close()
    server = ConsoleServer(cfg).start()
    echo(f"console     {server.url}  (certificate from the demo CA: {pk / 'ca.crt'})")
    for name, password in passwords.items():
        echo(f"            sign in as {name} / {password}  (demo only; new each run)")
    return server


DEMO_INVESTIGATOR = "demo-investigator"


class _Stopped(BaseException):
    """Raised once, from the signal handler, by the first SIGTERM / SIGINT / SIGHUP (a BaseException,
    like KeyboardInterrupt, so no library `except Exception` swallows it)."""


def central_config_text(paths: dict) -> str:
    """The demo's central config, kept in the demo folder so that, after the
    demo, ``alpr-central query --config <dir>/central.toml`` searches its reads."""
    return f"""# Generated by alpr-central demo: central's config for the demo folder.
# Relative paths: data_dir and [mqtt] files beside this file; keys and the store under data_dir.
data_dir = "central"

[mqtt]
host = "127.0.0.1"
port = {paths['port']}
ca_file = "pki/ca.crt"
cert_file = "pki/collector.crt"
key_file = "pki/collector.key"
client_id = "central.collector-demo"
"""


def demo_investigator(db: Path, root: Path) -> Path:
    """An operator account (``demo-investigator``, organization "Demo") that may
    search the demo's reads after the demo; its token, new each run (older ones
    revoked), is written 0600 to ``<root>/demo-investigator.token``."""
    from ..governance.users import Role
    registry = Registry(db)
    try:
        admin = local_admin(registry)
        users = UserDirectory(registry.db)
        if registry.db.execute("SELECT 1 FROM users WHERE name = ?", [DEMO_INVESTIGATOR]).fetchone():
            token = users.new_token(admin, DEMO_INVESTIGATOR)
        else:
            _user, token = users.add(admin, DEMO_INVESTIGATOR, "Demo", Role.OPERATOR)
    finally:
        registry.close()
    path = root / f"{DEMO_INVESTIGATOR}.token"
    pki.write_secret(path, (token + "\n").encode())
    return path


def summary(stored_now: int, stored_total: int, counters: dict[str, int], hits: int) -> list[str]:
    """The closing lines: what this run stored, in words."""
    rejected = {k.removeprefix("rejected."): v for k, v in counters.items() if k.startswith("rejected.")}
    lines = [f"stopped. central stored {stored_now} read{'s' if stored_now != 1 else ''} this run "
             f"({stored_total} in all), from {counters.get('messages', 0)} message(s); "
             f"{hits} hotlist hit{'s' if hits != 1 else ''} this run."]
    if rejected:
        lines.append("rejected: " + ", ".join(f"{n} {reason.replace('-', ' ').replace('_', ' ')}"
                                                for reason, n in sorted(rejected.items())))
    return lines


def run(root: Path, *, vehicles: int = 6, recognizer: str = "tflite", duration: float | None = None,
        echo: Callable[[str], None] = print, console: bool = True) -> int:
    """Run the demo until ``duration`` passes, the edge agent exits, or the
    first SIGTERM, SIGINT or SIGHUP; every child (Mosquitto, the edge agent,
    the hotlist matcher process, the console server, the collector thread) is stopped before
    this returns, however it ends. Returns the number of reads shown."""
    fired: list[int] = []

    def on_signal(signum, _frame):
        if not fired:          # the first signal unwinds the demo; later ones must not cut the clean-up short
            fired.append(signum)
            raise _Stopped(signum)

    handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    old = {sig: signal.signal(sig, on_signal) for sig in handled}
    cleanups: list[Callable[[], None]] = []
    seen = 0
    try:
        seen = _run(root, vehicles=vehicles, recognizer=recognizer, duration=duration, echo=echo,
                    console=console, cleanups=cleanups)
    except _Stopped:
        pass
    finally:
        fired.append(0)        # from here on, signals are ignored by the handler
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except Exception:  # noqa: BLE001 - one failed step must not leave the other children running
                logger.exception("demo clean-up step failed")
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return seen


def _stop_process(proc: subprocess.Popen, timeout: float = 20) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _run(root: Path, *, vehicles: int, recognizer: str, duration: float | None, echo: Callable[[str], None],
         console: bool, cleanups: list[Callable[[], None]]) -> int:
    paths = prepare(root)
    db = root / "central" / "central.sqlite"
    # The store (migrated) and the closing summary come first: a stop at any later point prints it.
    store = SQLiteStore(db)
    cleanups.append(store.close)
    stored_before = store.count()
    hits_before = store.db.execute("SELECT coalesce(max(hit_id), 0) FROM hits").fetchone()[0]
    running: dict = {}   # the collector service, once it exists

    def report() -> None:
        hits = store.db.execute("SELECT count(*) FROM hits WHERE hit_id > ?", [hits_before]).fetchone()[0]
        total = store.count()
        counters = dict(running["service"].collector.counters) if "service" in running else {}
        for line in summary(total - stored_before, total, counters, hits):
            echo(line)
    cleanups.append(report)
    broker = broker_mod.BrokerProcess(paths["broker_conf"], paths["port"], root / "broker" / "mosquitto.log")
    cleanups.append(broker.stop)
    broker.start()
    echo(f"broker      mosquitto on 127.0.0.1:{paths['port']} (TLS, client certificates, per-device ACL)")
    pk = paths["pki"]
    mqtt_cfg = Mqtt(host="127.0.0.1", port=paths["port"], ca_file=str(pk / "ca.crt"),
                    cert_file=str(pk / "collector.crt"), key_file=str(pk / "collector.key"),
                    client_id="central.collector-demo")
    registry = Registry(db)
    cleanups.append(registry.close)
    from ..fleet.device_audit import DeviceAuditHandler
    from ..fleet.device_status import DeviceStatusHandler
    from ..fleet.health import HealthHandler
    service = CollectorService(mqtt_cfg, Collector(store, load_opener([root / "central" / "data-key.pem"]),
                                                   device_allowed=registry.allow_list()),
                               status_handler=DeviceStatusHandler(db), audit_handler=DeviceAuditHandler(db),
                               health_handler=HealthHandler(db))
    running["service"] = service
    stop = threading.Event()
    collector_thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    cleanups.append(lambda: (stop.set(), collector_thread.join(timeout=10)))
    collector_thread.start()
    service.ready.wait(10)
    echo(f"central     collector storing into {db}")
    config_file = root / "central.toml"
    config_file.write_text(central_config_text(paths))
    token_file = demo_investigator(db, root)
    if console:
        console_server = start_console(root, paths, echo)
        cleanups.append(console_server.stop)
    clip_dir = root / "clip"
    sample = subprocess.Popen([sys.executable, "-m", "edge_agent", "sample", str(clip_dir), "--vehicles",
                               str(vehicles)], stdout=subprocess.DEVNULL)
    cleanups.append(lambda: _stop_process(sample, 5))
    if sample.wait() != 0:
        raise RuntimeError(f"generating the demo clip failed (exit {sample.returncode})")
    listed = put_on_demo_hotlist(db, clip_dir / "sample.json")
    # The matcher in its own process, as 'alpr-central run' runs it; its clean-up is registered
    # before it starts, so a signal during the start still stops it (stop() copes with no child yet).
    hotlists = HotlistProcess(db, Hotlist())
    cleanups.append(hotlists.stop)
    hotlists.attach(service.collector).start()
    echo(f"hotlist     {listed} is on the demo hotlist 'demo-stolen' (a stolen-vehicle list); its hit shows "
         f"live below, unverified")
    edge_conf = root / "edge.toml"
    edge_conf.write_text(edge_config_text(paths, clip=clip_dir / "sample.avi", sidecar=clip_dir / "sample.json",
                                          recognizer=recognizer))
    edge_log = root / "edge.log"
    with open(edge_log, "ab") as log:  # the agent's own output (and the TFLite runtime's) goes to its log
        edge = subprocess.Popen([sys.executable, "-m", "edge_agent", "run", "--config", str(edge_conf),
                                 "--log-level", "warning"], start_new_session=True, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    cleanups.append(lambda: _stop_process(edge))
    cleanups.append(lambda: echo("\nstopping ..."))
    echo(f"edge agent  {paths['device_id']} replaying {clip_dir / 'sample.avi'} (recognizer: {recognizer}; "
         f"its log: {edge_log})")
    if recognizer == "sidecar-oracle":
        echo("            note: the sidecar-oracle is a test double that knows the rendered plates; "
             "it reads no pixels")
    if stored_before:
        echo(f"            {stored_before} read(s) from earlier runs are already stored; only new ones show")
    today = dt.datetime.now(dt.timezone.utc).date()
    echo(f"afterwards  search them: alpr-central query --config {config_file} --token-file {token_file} "
         f"--since {today - dt.timedelta(days=1)} --until {today + dt.timedelta(days=1)} "
         f"--purpose stolen-vehicle --case DEMO-1")
    echo("Ctrl-C stops everything.\n")
    echo(f"{'captured (UTC)':<24} {'plate':<9} {'conf':>5}  {'camera':<11} {'device':<11} read id")
    seen = 0
    seen_hit = hits_before
    started = time.monotonic()
    while True:
        rows = store.db.execute(
            "SELECT captured_at, plate, confidence, camera_id, device_id, read_id FROM reads "
            "ORDER BY stored_at, read_id LIMIT -1 OFFSET ?", [stored_before + seen]).fetchall()
        for cap, plate, conf, cam, dev, rid in rows:
            echo(f"{cap[:23]:<24} {plate:<9} {conf:>5.3f}  {cam:<11} {dev:<11} {rid}")
        seen += len(rows)
        for hid, cap, kind, text, entry, cam, dev in store.db.execute(
                "SELECT hit_id, captured_at, match_kind, matched_text, entry, camera_id, device_id FROM hits "
                "WHERE hit_id > ? ORDER BY hit_id", [seen_hit]).fetchall():
            e = json.loads(entry)
            echo(f"*** HIT #{hid} {cap[:19]} read {text} = listed {e['plate']} ({kind}; {e['reason']}, "
                 f"{e['source_agency']} {e['source_ref']}) on {dev}/{cam}: UNVERIFIED, check the image and "
                 f"the source before any action (an operator: alpr-central hits show {hid})")
            seen_hit = hid
        if edge.poll() is not None:
            echo(f"edge agent exited with {edge.returncode}; see {edge_log}")
            break
        if duration is not None and time.monotonic() - started > duration:
            break
        time.sleep(0.5)
    return seen
