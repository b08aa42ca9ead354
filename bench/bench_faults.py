"""Fault campaign: N random faults against a running deployment, then drain and
reconcile every read produced against what central stored.

The deployment, all real processes on loopback:
- Mosquitto with TLS, client certificates, the generated ACL and persistence;
- two `alpr-central run` collectors (separate processes) on one SQLite store
  (on its own small tmpfs when the machine allows mounting one: you are root);
- four devices, each restarted like systemd would (Restart=always) when it exits:
  `gen-direct`  the agent's sync pipeline (real Outbox + Sealer + SyncClient) fed
                by a generator at --rate reads/s, straight to the broker;
  `gen-proxy`   the same behind a TCP proxy on loopback that the bench cuts;
  `gen-small`   the same with its data directory on a small tmpfs (--agent-disk-mb);
  `cam-real`    a real `alpr-edge run` (sidecar-oracle recognizer on a generated
                looping clip) on the same small tmpfs.

Faults (drawn at random with --seed; durations up to --max-fault-seconds):
  agent-kill9 / agent-term / agent-stop (SIGSTOP, then SIGCONT)  any device process
  collector-kill9 / collector-stop                                either collector
  broker-kill9 / broker-term / broker-stop                        Mosquitto
  link-cut (connections reset, new ones refused)                   gen-proxy's link
  link-blackhole (bytes dropped silently, then reset)              gen-proxy's link
  agent-disk-full       the small tmpfs filled for a while (gen-small, cam-real)
  central-disk-full     central's tmpfs filled for a while
  agent-restart-full-disk  cam-real killed and restarted while its disk is full:
                        OFF by default until issue 26 fault 2 (the agent exits at start
                        on a full disk) is fixed; --restart-on-full-disk turns it on.
Without tmpfs (not root, or mount refused) the disk faults are skipped and said so.

How produced reads are recorded: each device's outbox gets a side table and an
``AFTER INSERT`` trigger (``bench_produced``) before the device first runs, so a
read id is recorded by SQLite in the SAME transaction that commits it to the
outbox, by the unmodified agent code. A read is in ``bench_produced`` if and only
if it entered the outbox: a kill between sealing and commit, or a commit refused
on a full disk, records nothing, and nothing recorded is ever missing from the
record. (A producer-side journal fsynced before the insert cannot be exact: a
kill between the journal write and the commit leaves an id that never entered
the outbox, indistinguishable from one the outbox lost.)

After the last fault the bench stops production (generators stop, the real agent
restarts on an idle source), waits until every outbox holds no sendable read, and
reconciles: lost (produced, neither stored nor in an outbox, beyond what the
outboxes counted as evicted), duplicated, extra (stored, never produced),
misattributed (stored under another device), parked, evicted; faults by kind;
drain time after the last fault. Exit status 1 if anything was lost, duplicated,
extra or not drained.

    .venv/bin/python bench/bench_faults.py [--faults 1000] [--seed 1] [--json]
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import Rig  # noqa: E402

GENERATORS = ("gen-direct", "gen-proxy", "gen-small")
REAL = "cam-real"
DEVICES = (*GENERATORS, REAL)
KINDS = ("agent-kill9", "agent-term", "agent-stop", "collector-kill9", "collector-stop", "broker-kill9",
         "broker-term", "broker-stop", "link-cut", "link-blackhole", "agent-disk-full", "central-disk-full")
FAULT2_KIND = "agent-restart-full-disk"
DISK_KINDS = ("agent-disk-full", "central-disk-full", FAULT2_KIND)
PRODUCED_SQL = [
    "CREATE TABLE IF NOT EXISTS bench_produced (read_id TEXT PRIMARY KEY)",
    "CREATE TRIGGER IF NOT EXISTS bench_produced_log AFTER INSERT ON outbox "
    "BEGIN INSERT OR IGNORE INTO bench_produced(read_id) VALUES (NEW.read_id); END",
]


# -- the generator device (a subprocess: `bench_faults.py device ...`) -----------
def device_main(argv) -> int:
    """The agent's sync pipeline fed by a generator: real Outbox, Sealer and
    SyncClient in one process, producing --rate reads/s until SIGTERM or until
    the file ``<root>/stop-producing`` exists (then it only syncs)."""
    import logging
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--device", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rate", type=float, default=20)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from edge_agent.errors import BufferError_
    from edge_agent.outbox import Outbox
    from edge_agent.sync import SyncClient, SyncSettings
    from edge_agent.wire import PlateRead, Sealer, encode_read, load_public_key, new_read_id

    root, data = Path(a.root), Path(a.data_dir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while True:
        try:
            outbox = Outbox(data / "outbox.sqlite")
            break
        except BufferError_ as exc:  # e.g. a full disk: try again (the real agent is issue 26 fault 2)
            logging.error("%s; trying again in 1 s", exc)
            if stop.wait(1.0):
                return 0
    sealer = Sealer(load_public_key((root / "data-key.pub.pem").read_bytes()), a.device)
    sync = SyncClient(SyncSettings(host="127.0.0.1", port=a.port, device_id=a.device,
                                   ca_file=str(root / "pki" / "ca.crt"), cert_file=str(root / "pki" / f"{a.device}.crt"),
                                   key_file=str(root / "pki" / f"{a.device}.key"), batch_size=100, max_in_flight=4,
                                   ack_timeout=5.0, keepalive=10), outbox)
    thread = threading.Thread(target=sync.run, args=(stop,), daemon=True)
    thread.start()
    rng = random.Random()
    marker = root / "stop-producing"
    tick, owed, i = 0.1, 0.0, 0
    while not stop.wait(tick):
        if marker.exists():
            continue
        owed += a.rate * tick
        n, owed = int(owed), owed - int(owed)
        now = dt.datetime.now(dt.timezone.utc)
        items = []
        for _ in range(n):
            r = PlateRead(new_read_id(), a.device, "lane-1", now, f"F{i % 1000000:06d}", 0.9, (1, 2, 150, 75),
                          crop_jpeg=b"\xff\xd8" + rng.randbytes(200), model_version="bench")
            items.append((r.read_id, now.timestamp(), sealer.seal(r.read_id, encode_read(r))))
            i += 1
        if items:
            try:
                outbox.add(items)
            except BufferError_ as exc:  # full disk: as the agent's ReadWriter does, count and log
                logging.error("could not buffer %d reads: %s", len(items), exc)
    thread.join(timeout=15)
    outbox.close()
    return 0


# -- pieces of the rig -----------------------------------------------------------
class Proxy:
    """A TCP proxy on loopback the bench can cut (reset every connection and
    refuse new ones) or blackhole (drop bytes silently, then reset)."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.refuse_until = 0.0
        self.drop_until = 0.0
        self._socks: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            if time.monotonic() < self.refuse_until:
                conn.close()
                continue
            try:
                up = socket.create_connection(("127.0.0.1", self.target), timeout=2)
            except OSError:
                conn.close()
                continue
            with self._lock:
                self._socks |= {conn, up}
            threading.Thread(target=self._pump, args=(conn, up), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([a, b], [], [], 0.5)
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        return
                    if time.monotonic() < self.drop_until:
                        continue  # the link swallows it
                    (b if src is a else a).sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            self._close(a, b)

    def _close(self, *socks) -> None:
        for s in socks:
            with self._lock:
                self._socks.discard(s)
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def reset(self) -> None:
        with self._lock:
            socks = list(self._socks)
        self._close(*socks)

    def cut(self, seconds: float) -> None:
        self.refuse_until = time.monotonic() + seconds
        self.reset()
        time.sleep(seconds)

    def blackhole(self, seconds: float) -> None:
        self.drop_until = time.monotonic() + seconds
        time.sleep(seconds)
        self.reset()  # the TLS streams lost bytes: they cannot go on

    def close(self) -> None:
        self._stop.set()
        self.reset()
        self.server.close()


class Disk:
    """A small tmpfs the bench can fill and free."""

    def __init__(self, path: Path, size_mb: int) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.mounted = False
        self.why = ""
        if os.geteuid() != 0:
            self.why = "not root"
            return
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(path)],
                           capture_output=True, text=True)
        self.mounted = r.returncode == 0
        self.why = r.stderr.strip()

    def fill(self) -> Path:
        filler = self.path / ".bench-filler"
        fd = os.open(filler, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        try:
            for chunk in (1 << 20, 4096, 512):
                block = b"\0" * chunk
                try:
                    while True:
                        os.write(fd, block)
                except OSError:
                    pass
        finally:
            os.close(fd)
        return filler

    def free(self) -> None:
        try:
            (self.path / ".bench-filler").unlink()
        except FileNotFoundError:
            pass

    def unmount(self) -> None:
        if self.mounted:
            self.free()
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
            self.mounted = False


class Managed:
    """A process the supervisor restarts when it exits (like systemd's
    Restart=always), recording each exit code."""

    def __init__(self, name: str, argv, log: Path) -> None:
        self.name, self.argv, self.log = name, argv, log
        self.proc: subprocess.Popen | None = None
        self.exits: collections.Counter[int] = collections.Counter()
        self.exit_times: list[tuple[float, int]] = []
        self.enabled = True

    def start(self) -> None:
        argv = self.argv() if callable(self.argv) else self.argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"),
                                     start_new_session=True)

    def signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        self.enabled = False
        if self.proc and self.proc.poll() is None:
            self.signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Supervisor:
    def __init__(self, procs: list[Managed], restart_delay: float = 0.5) -> None:
        self.procs = procs
        self.delay = restart_delay
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        for p in self.procs:
            p.start()
        self._thread.start()

    def _run(self) -> None:
        down: dict[str, float] = {}
        while not self._stop.wait(0.1):
            for p in self.procs:
                if not p.enabled or p.proc is None or p.proc.poll() is None:
                    continue
                if p.name not in down:
                    p.exits[p.proc.returncode] += 1
                    p.exit_times.append((time.monotonic(), p.proc.returncode))
                    down[p.name] = time.monotonic()
                elif time.monotonic() - down[p.name] >= self.delay:
                    del down[p.name]
                    p.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for p in self.procs:
            p.stop()


def instrument(outbox_path: Path) -> None:
    """Create the outbox as the agent would, then the side table and trigger
    that record each read id in the transaction that commits it."""
    from edge_agent.outbox import Outbox
    Outbox(outbox_path).close()
    with sqlite3.connect(outbox_path) as conn:
        for sql in PRODUCED_SQL:
            conn.execute(sql)


def outbox_state(path: Path) -> dict:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as conn:
        produced = [r[0] for r in conn.execute("SELECT read_id FROM bench_produced")]
        rows = conn.execute("SELECT read_id, rejected FROM outbox").fetchall()
        counters = dict(conn.execute("SELECT name, value FROM counters").fetchall())
    return {"produced": produced, "pending": [r for r, why in rows if why is None],
            "parked": [r for r, why in rows if why is not None], "counters": counters}


def sendable(path: Path) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM outbox WHERE rejected IS NULL").fetchone()[0]
    except sqlite3.Error:
        return -1


def produced_count(path: Path) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM bench_produced").fetchone()[0]
    except sqlite3.Error:
        return -1


def log_count(paths, needle: str, *, unless: str | None = None) -> int:
    return sum(1 for p in paths if p.exists() for line in p.read_text(errors="replace").splitlines()
               if needle in line and (unless is None or unless not in line))


def audit_state(path: Path) -> dict:
    """The real agent's own audit log: which seqs it holds, which it thinks published."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            rows = conn.execute("SELECT seq, published FROM records").fetchall()
    except sqlite3.Error:
        return {"seqs": set(), "published": set(), "unpublished": -1}
    return {"seqs": {s for s, _ in rows}, "published": {s for s, p in rows if p},
            "unpublished": sum(1 for _, p in rows if not p)}


def tracebacks(paths) -> dict:
    """Exceptions logged with a traceback, by process and exception line."""
    found: collections.Counter[str] = collections.Counter()
    for p in paths:
        if not p.exists():
            continue
        lines = p.read_text(errors="replace").splitlines()
        for i, line in enumerate(lines):
            if line.startswith("Traceback"):
                context = lines[i - 1][:160] if i else ""
                end = next((ln for ln in lines[i + 1:] if ln and not ln.startswith(" ")), "?")
                key = f"{p.stem}: {end[:120]}" + (f" (logged as: {context.split(': ', 1)[-1][:80]})"
                                                  if context.strip() else "")
                found[re.sub(r"/tmp\S*/", ".../", re.sub(r"\b\d+ (batches|reads)", r"N \1", key))] += 1
    return dict(found.most_common())


def real_agent_config(path: Path, rig: Rig, data_dir: Path, *, clip: Path | None, sidecar: Path) -> None:
    cam = (f'source = "file"\nuri = "{clip}"\nfps = 20.0\nloop = true' if clip
           else f'source = "folder"\nuri = "{rig.root / "empty"}"')
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"""[device]
id = "{REAL}"
data_dir = "{data_dir}"
[[cameras]]
id = "lane-1"
{cam}
[recognition]
type = "sidecar-oracle"
[recognition.options]
sidecar = "{sidecar}"
[tracking]
window_seconds = 0.3
reemit_seconds = 2.0
[sync]
host = "127.0.0.1"
port = {rig.port}
ca_file = "{rig.pki / 'ca.crt'}"
cert_file = "{rig.pki / (REAL + '.crt')}"
key_file = "{rig.pki / (REAL + '.key')}"
central_public_key = "{rig.root / 'data-key.pub.pem'}"
batch_size = 100
max_in_flight = 4
ack_timeout = 5.0
keepalive = 10
""")
    os.replace(tmp, path)


# -- the campaign ----------------------------------------------------------------
class Campaign:
    def __init__(self, args, root: Path) -> None:
        self.args = args
        self.root = root
        self.rng = random.Random(args.seed)
        self.small = Disk(root / "small-disk", args.agent_disk_mb)
        self.central_disk = Disk(root / "central", args.central_disk_mb)
        self.disks_ok = self.small.mounted and self.central_disk.mounted
        self.kinds = [k for k in KINDS if self.disks_ok or k not in DISK_KINDS]
        if args.restart_on_full_disk and self.disks_ok:
            self.kinds.append(FAULT2_KIND)
        if args.kinds:
            wanted = set(args.kinds.split(","))
            self.kinds = [k for k in self.kinds if k in wanted]
        self.faults: collections.Counter[str] = collections.Counter()
        self.fault2_start_failures = 0
        self.reads_drained_at: float | None = None

    def data_dir(self, dev: str) -> Path:
        return (self.small.path if dev in ("gen-small", REAL) else self.root) / f"edge-{dev}"

    def setup(self) -> None:
        from central.fleet import broker as broker_mod
        from edge_agent.sample import generate
        root, args = self.root, self.args
        rig = self.rig = Rig(root, list(DEVICES))
        files = broker_mod.write_config(root / "broker", port=rig.port, ca_file=str(rig.pki / "ca.crt"),
                                        cert_file=str(rig.pki / "broker.crt"), key_file=str(rig.pki / "broker.key"),
                                        run_as=_user(), persistence=True, collectors=rig.collector_names)
        rig.broker = broker_mod.BrokerProcess(files.conf, rig.port, root / "broker" / "mosquitto.log")
        rig.start_broker()
        self.proxy = Proxy(rig.port)
        (root / "empty").mkdir()
        (root / "empty.json").write_text('{"frames": [[]]}')
        self.clip, self.sidecar = generate(root / "clip", vehicles=12, seed=args.seed, frames_per_vehicle=6,
                                           gap_frames=8)
        for dev in DEVICES:
            instrument(self.data_dir(dev) / "outbox.sqlite")
        self.logs = root / "logs"
        self.logs.mkdir()
        py = sys.executable
        self.collectors = [Managed(f"collector-{i}", [py, "-m", "central", "run", "--config",
                                                      str(rig.central_config(i)), "--log-level", "warning"],
                                   self.logs / f"collector-{i}.log") for i in range(2)]
        self.agents = []
        for dev in GENERATORS:
            port = self.proxy.port if dev == "gen-proxy" else rig.port
            self.agents.append(Managed(dev, [py, __file__, "device", "--root", str(root), "--data-dir",
                                             str(self.data_dir(dev)), "--device", dev, "--port", str(port),
                                             "--rate", str(args.rate)], self.logs / f"{dev}.log"))
        self.real_cfg = root / f"edge-{REAL}.toml"
        real_agent_config(self.real_cfg, rig, self.data_dir(REAL), clip=self.clip, sidecar=self.sidecar)
        self.agents.append(Managed(REAL, [py, "-m", "edge_agent", "run", "--config", str(self.real_cfg),
                                          "--log-level", "warning"], self.logs / f"{REAL}.log"))
        self.supervisor = Supervisor(self.collectors + self.agents)
        self.supervisor.start()

    def stored_by_device(self) -> dict:
        try:
            with sqlite3.connect(f"file:{self.rig.db}?mode=ro", uri=True, timeout=5) as conn:
                return dict(conn.execute("SELECT device_id, count(*) FROM reads GROUP BY device_id").fetchall())
        except sqlite3.Error:
            return {}

    def central_audit_seqs(self) -> set:
        try:
            with sqlite3.connect(f"file:{self.rig.db}?mode=ro", uri=True, timeout=5) as conn:
                return {r[0] for r in conn.execute("SELECT seq FROM device_audit WHERE device_id = ?", [REAL])}
        except sqlite3.Error:
            return set()

    def warm_up(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.stored_by_device().get(d) for d in DEVICES):
                return
            time.sleep(0.5)
        raise RuntimeError(f"not every device reached central within {timeout:.0f}s: {self.stored_by_device()}")

    # faults
    def inject(self, kind: str) -> None:
        rng, a = self.rng, self.args
        d = rng.uniform(a.min_fault_seconds, a.max_fault_seconds)
        broker = self.rig.broker
        if kind.startswith("agent-") and kind not in DISK_KINDS:
            target = rng.choice(self.agents)
            if kind == "agent-kill9":
                target.signal(signal.SIGKILL)
            elif kind == "agent-term":
                target.signal(signal.SIGTERM)
            else:
                target.signal(signal.SIGSTOP)
                time.sleep(d)
                target.signal(signal.SIGCONT)
        elif kind.startswith("collector-"):
            target = rng.choice(self.collectors)
            if kind == "collector-kill9":
                target.signal(signal.SIGKILL)
            else:
                target.signal(signal.SIGSTOP)
                time.sleep(d)
                target.signal(signal.SIGCONT)
        elif kind == "broker-stop":
            os.kill(broker.proc.pid, signal.SIGSTOP)
            time.sleep(d)
            os.kill(broker.proc.pid, signal.SIGCONT)
        elif kind in ("broker-kill9", "broker-term"):
            if kind == "broker-kill9":
                broker.kill()
            else:
                broker.stop()
            time.sleep(d)
            broker.start()
        elif kind == "link-cut":
            self.proxy.cut(d)
        elif kind == "link-blackhole":
            self.proxy.blackhole(d)
        elif kind == "agent-disk-full":
            self.small.fill()
            time.sleep(d * 2)
            self.small.free()
        elif kind == "central-disk-full":
            self.central_disk.fill()
            time.sleep(d * 2)
            self.central_disk.free()
        elif kind == FAULT2_KIND:
            real = next(p for p in self.agents if p.name == REAL)
            self.small.fill()
            t0 = time.monotonic()
            real.signal(signal.SIGKILL)
            time.sleep(max(d * 2, 2 * self.supervisor.delay + 1.5))  # restarted at least once on the full disk
            self.small.free()
            self.fault2_start_failures += sum(1 for t, code in real.exit_times if t > t0 and code not in (-9, 0))
        self.faults[kind] += 1

    def drain(self) -> tuple[float, bool]:
        """Stop production, wait until no outbox holds a sendable read."""
        (self.root / "stop-producing").touch()
        real_agent_config(self.real_cfg, self.rig, self.data_dir(REAL), clip=None, sidecar=self.root / "empty.json")
        real = next(p for p in self.agents if p.name == REAL)
        real.signal(signal.SIGCONT)
        real.signal(signal.SIGTERM)  # it flushes its tracks, exits, and is restarted on the idle source
        started = time.monotonic()
        deadline = started + self.args.drain_timeout
        outboxes = [self.data_dir(d) / "outbox.sqlite" for d in DEVICES]
        last = None
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if real.proc.poll() is not None or time.monotonic() - started < 1.0:
                continue  # not yet restarted on the idle source
            audit = audit_state(self.data_dir(REAL) / "audit.sqlite")
            # the audit log is drained when nothing is unpublished and central holds what was
            # published, or nothing changed for 10 s (a record central dropped never comes)
            audit_done = audit["unpublished"] == 0 and (audit["published"] <= self.central_audit_seqs()
                                                        or time.monotonic() - started > 10)
            state = ([sendable(p) for p in outboxes], [produced_count(p) for p in outboxes], len(audit["seqs"]))
            if all(n == 0 for n in state[0]) and self.reads_drained_at is None:
                self.reads_drained_at = time.monotonic()
            elif any(n != 0 for n in state[0]):
                self.reads_drained_at = None
            if all(n == 0 for n in state[0]) and audit_done:
                if state == last:
                    return time.monotonic() - 0.5, True
                last = state
            else:
                last = None
        return time.monotonic(), False

    def run(self) -> dict:
        a = self.args
        self.setup()
        self.warm_up()
        t_start = time.monotonic()
        last_fault_end = t_start
        for i in range(a.faults):
            time.sleep(self.rng.uniform(0, 2 * a.gap))
            self.inject(self.rng.choice(self.kinds))
            last_fault_end = time.monotonic()
            if not a.json and (i + 1) % 50 == 0:
                print(f"  {i + 1} faults, stored so far: {sum(self.stored_by_device().values()):,}", file=sys.stderr)
        drained_at, drained = self.drain()
        self.supervisor.stop()
        self.rig.broker.stop()
        self.proxy.close()
        self.reads_drain_s = (self.reads_drained_at or drained_at) - last_fault_end
        return self.reconcile(drained, drained_at - last_fault_end, last_fault_end - t_start)

    def reconcile(self, drained: bool, drain_s: float, faults_s: float) -> dict:
        produced: dict[str, str] = {}
        pending, parked, evicted = set(), set(), 0
        for dev in DEVICES:
            st = outbox_state(self.data_dir(dev) / "outbox.sqlite")
            produced.update((rid, dev) for rid in st["produced"])
            pending |= set(st["pending"])
            parked |= set(st["parked"])
            evicted += st["counters"].get("evicted_capacity", 0) + st["counters"].get("evicted_age", 0)
        audit = audit_state(self.data_dir(REAL) / "audit.sqlite")
        with sqlite3.connect(self.rig.db, timeout=30) as conn:
            rows = conn.execute("SELECT read_id, device_id FROM reads").fetchall()
            audit_central = {r[0] for r in conn.execute("SELECT seq FROM device_audit WHERE device_id = ?", [REAL])}
            integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        stored = dict(rows)
        missing = set(produced) - set(stored) - pending - parked
        lost = max(0, len(missing) - evicted)
        by_device = collections.Counter(produced.values())
        agent_logs = [self.logs / f"{d}.log" for d in DEVICES]
        collector_logs = [self.logs / f"collector-{i}.log" for i in range(2)]
        return {
            "seed": self.args.seed, "faults": sum(self.faults.values()), "faults_by_kind": dict(sorted(self.faults.items())),
            "kinds_skipped": sorted(set(KINDS) - set(self.kinds)),
            "disk_faults": "tmpfs" if self.disks_ok else f"skipped ({self.small.why or self.central_disk.why})",
            "faults_seconds": round(faults_s, 1),
            "produced": len(produced), "produced_by_device": dict(sorted(by_device.items())),
            "stored": len(stored), "lost": lost, "missing": len(missing), "missing_sample": sorted(missing)[:10],
            "duplicated": len(rows) - len(stored),
            "extra": len(set(stored) - set(produced)),
            "misattributed": sum(1 for rid, dev in produced.items() if rid in stored and stored[rid] != dev),
            "parked": len(parked), "evicted": evicted, "still_buffered": len(pending),
            "drained": drained, "drain_seconds_after_last_fault": round(drain_s, 1),
            "reads_drain_seconds_after_last_fault": round(self.reads_drain_s, 1),
            "store_integrity": integrity,
            "process_exits": {p.name: {str(k): v for k, v in sorted(p.exits.items())}
                              for p in self.collectors + self.agents},
            "capture_refusals_on_full_disk": log_count(agent_logs, "could not buffer"),
            "acks_refused_on_full_disk": log_count(agent_logs, "cannot delete acknowledged reads"),
            "central_store_failures": log_count(collector_logs, "store failed"),
            "collector_unexpected_errors": log_count(collector_logs, "unexpected error"),
            # audit records, status and heartbeats central could not write (its disk full): counted, not fatal
            "collector_message_store_errors": log_count(collector_logs, "cannot record the message on"),
            "audit_records": len(audit["seqs"]), "audit_records_at_central": len(audit_central & audit["seqs"]),
            "audit_records_lost": len(audit["published"] - audit_central),
            "audit_records_unpublished": audit["unpublished"],
            "agent_tracebacks": log_count(agent_logs, "Traceback"),
            "tracebacks": tracebacks(agent_logs + collector_logs),
            "fault2_enabled": FAULT2_KIND in self.kinds,
            "agent_start_failures_on_full_disk": self.fault2_start_failures,
        }

    def cleanup(self) -> None:
        for step in (lambda: self.supervisor.stop(), lambda: self.rig.broker.stop(), lambda: self.proxy.close()):
            try:
                step()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        self.small.unmount()
        self.central_disk.unmount()


def _user() -> str:
    import getpass
    return getpass.getuser()


def report(f: dict) -> None:
    print(f"faults: {f['faults']:,} in {f['faults_seconds']} s (seed {f['seed']}); disk faults: {f['disk_faults']}")
    print("  by kind: " + ", ".join(f"{k} {v}" for k, v in f["faults_by_kind"].items()))
    if f["kinds_skipped"]:
        print(f"  kinds not injected: {', '.join(f['kinds_skipped'])}")
    print(f"reads produced (recorded in the outbox's own transaction): {f['produced']:,}  "
          + ", ".join(f"{k} {v:,}" for k, v in f["produced_by_device"].items()))
    print(f"stored at central: {f['stored']:,}")
    print(f"lost: {f['lost']}   duplicated: {f['duplicated']}   extra: {f['extra']}   "
          f"misattributed: {f['misattributed']}")
    print(f"parked: {f['parked']}   evicted: {f['evicted']}   still buffered: {f['still_buffered']}   "
          f"(missing before evictions: {f['missing']})")
    if f["evicted"]:
        print("  (with evictions, lost = missing - evicted is a lower bound: a read evicted while in flight "
              "may also have been stored)")
    print(f"drained: {f['drained']}; drain time after the last fault: reads {f['reads_drain_seconds_after_last_fault']}"
          f" s, with the audit log {f['drain_seconds_after_last_fault']} s")
    print(f"store integrity_check: {f['store_integrity']}")
    print("process exits (code: count): " + "; ".join(
        f"{name} {codes}" for name, codes in f["process_exits"].items()))
    print(f"full disk: capture refusals logged {f['capture_refusals_on_full_disk']}, acks refused "
          f"{f['acks_refused_on_full_disk']}, central store failures {f['central_store_failures']}")
    print(f"{REAL}'s audit log: {f['audit_records']} records, {f['audit_records_at_central']} at central, "
          f"{f['audit_records_lost']} marked published but missing at central, "
          f"{f['audit_records_unpublished']} not yet confirmed (the final agent-stop); audit, status and "
          f"heartbeat messages central could not write: {f['collector_message_store_errors']}")
    print(f"collector unexpected errors: {f['collector_unexpected_errors']}; agent tracebacks: {f['agent_tracebacks']}")
    for what, n in f["tracebacks"].items():
        print(f"  {n} x {what}")
    if f["fault2_enabled"]:
        print(f"agent start failures on a full disk (issue 26 fault 2): {f['agent_start_failures_on_full_disk']}")
    else:
        print("agent restart on a full disk: not injected (issue 26 fault 2; --restart-on-full-disk)")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["device"]:
        return device_main(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faults", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rate", type=float, default=20.0, help="reads/s produced by each generator device")
    ap.add_argument("--gap", type=float, default=0.2, help="mean pause between faults (s)")
    ap.add_argument("--min-fault-seconds", type=float, default=0.1)
    ap.add_argument("--max-fault-seconds", type=float, default=1.0)
    ap.add_argument("--agent-disk-mb", type=int, default=32)
    ap.add_argument("--central-disk-mb", type=int, default=512)
    ap.add_argument("--drain-timeout", type=float, default=300.0)
    ap.add_argument("--restart-on-full-disk", action="store_true",
                    help="also kill and restart the real agent on a full disk (issue 26 fault 2)")
    ap.add_argument("--kinds", help="comma-separated fault kinds to draw from (default: all feasible)")
    ap.add_argument("--keep-logs", metavar="DIR", help="copy every process's log here at the end")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        campaign = Campaign(args, Path(tmp))
        try:
            figures = campaign.run()
        finally:
            campaign.cleanup()
            if args.keep_logs and (Path(tmp) / "logs").exists():
                shutil.copytree(Path(tmp) / "logs", args.keep_logs, dirs_exist_ok=True)
    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        report(figures)
    bad = figures["lost"] or figures["duplicated"] or figures["extra"] or figures["misattributed"] \
        or not figures["drained"] or figures["store_integrity"] != "ok"
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
