"""Fleet figures: tamper check time per frame, heartbeat size, alert evaluation time.

- Tamper check: :meth:`edge_agent.tamper.TamperDetector.check` on a textured
  BGR frame (640x480, 1280x720, 1920x1080), after a reference was taken, on
  one core; median and 95th percentile. The agent runs it once per camera per
  ``[health] tamper_check_seconds`` (5 s by default); the per-frame cost of a
  check that is not due (:meth:`observe`) is printed too.
- Heartbeat size: the encoded ``alpr/v1/devices/<id>/health`` payload
  (:func:`edge_agent.wire.health.encode_health`) with 1, 4 and 32 cameras
  (32 is the wire maximum), with realistic values and with every optional
  field at its longest (camera errors, versions), against the 32 KiB limit.
- Alert evaluation: one :meth:`central.fleet.alert_feed.AlertFeed.check`
  over N enrolled devices that each sent heartbeats (a real SQLite registry,
  or with ``--backend postgresql`` a throwaway cluster from the installed
  PostgreSQL binaries), the work ``alpr-central run`` does every
  ``[alerts] check_seconds``.

    .venv/bin/python bench/bench_fleet.py [--checks 1000] [--devices 200] [--backend sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from edge_agent.tamper import TamperDetector, TamperSettings
from edge_agent.wire.health import CameraHealth, Health, encode_health

UTC = dt.timezone.utc


def street(w: int, h: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 90, np.uint8)
    for _ in range(120):
        x, y = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
        cv2.rectangle(img, (x, y), (x + int(rng.integers(10, w // 5)), y + int(rng.integers(10, h // 6))),
                      tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    noise = rng.normal(0, 6, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def bench_tamper(checks: int) -> None:
    print("tamper check (TamperDetector.check, one core)")
    for w, h in ((640, 480), (1280, 720), (1920, 1080)):
        frames = [street(w, h, seed) for seed in range(4)]
        d = TamperDetector(TamperSettings(check_seconds=5.0))
        d.check(frames[0])
        times = []
        for i in range(checks):
            t0 = time.perf_counter()
            d.check(frames[i % 4])
            times.append(time.perf_counter() - t0)
        times.sort()
        print(f"  {w}x{h}: median {statistics.median(times) * 1e3:.3f} ms, p95 {times[int(len(times) * .95)] * 1e3:.3f} ms"
              f" ({checks} checks)")
    d = TamperDetector(TamperSettings(check_seconds=5.0))
    frame = street(1280, 720)
    d.observe(frame, 0.0)
    t0 = time.perf_counter()
    for i in range(checks * 10):
        d.observe(frame, 1.0 + i * 1e-6)          # not due: returns at once
    print(f"  observe() when no check is due: {(time.perf_counter() - t0) / (checks * 10) * 1e6:.2f} µs per frame")


def health(cameras: int, longest: bool) -> Health:
    now = dt.datetime.now(UTC)
    err = ("x" * 200) if longest else None
    cams = tuple(CameraHealth(f"lane-{i + 1}" if not longest else f"camera-{i:02d}-" + "c" * 20, "running", 9.87,
                              1234567, 3 if not longest else 999999, err, ("black", "blurred", "moved") if longest else ())
                 for i in range(cameras))
    return Health(device_id="cam-1a2b3c4d", sent_at=now, agent_version="0.2.0" if not longest else "10.20.30",
                  model_version="alpr-tflite-1.3" if not longest else "m" * 64,
                  os_version="Debian GNU/Linux 12 (bookworm); kernel 6.6.51+rpt-rpi-2712", agent_uptime_s=11040,
                  system_uptime_s=432000, load_1m=0.62, cpu_temp_c=54.3, memory_total_bytes=4 << 30,
                  memory_available_bytes=3 << 30, disk_free_bytes=21 << 30, disk_full=False, buffer_depth=1250,
                  buffer_bytes=5_400_000, buffer_oldest_age_days=0, last_read_at=now - dt.timedelta(minutes=1),
                  clock_offset_s=0.004, cert_expires_at=now + dt.timedelta(days=360), sync_connected=True,
                  sync_resends=0, cameras=cams)


def bench_heartbeat() -> None:
    print("heartbeat payload (encode_health; limit 32768 B)")
    for n in (1, 4, 32):
        typical, longest = len(encode_health(health(n, False))), len(encode_health(health(n, True)))
        print(f"  {n:>2} camera(s): {typical} B typical, {longest} B with every field at its longest")


def bench_alerts(devices: int, backend: str = "sqlite") -> None:
    from central.config import Alerts
    from central.fleet.alert_feed import AlertFeed
    from central.fleet.ca import CertificateAuthority, init_ca
    from central.fleet.health import HealthHandler
    from central.fleet.registry import CameraSpec, Registry
    from central.governance.users import UserDirectory
    from edge_agent.provision import new_key_and_csr
    cluster = None
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "central.sqlite"
        if backend == "postgresql":
            import sys
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
            from pg_cluster import PgCluster, find_bindir

            from central.store.postgres import PostgresStore
            cluster = PgCluster(find_bindir(), fsync=True).start()
            db = cluster.new_database("alerts")
            store = PostgresStore(db, check_schema=False)
            store.migrate()
            store.close()
        registry = Registry(db)
        admin, _token = UserDirectory(registry.db).bootstrap("ada", "City PD")
        init_ca(Path(tmp) / "ca.key", Path(tmp) / "ca.crt")
        ca = CertificateAuthority.load(Path(tmp) / "ca.key", Path(tmp) / "ca.crt")
        _key, csr = new_key_and_csr()
        ids = []
        for _ in range(devices):
            new = registry.create_enrollment(owner="department", cameras=[CameraSpec.parse("lane-1")],
                                             location="bench", ttl=dt.timedelta(hours=1), user=admin)
            registry.redeem(new.token_id, new.secret, csr, ca)
            ids.append(new.device.device_id)
        handler = HealthHandler(db)
        for i, device in enumerate(ids):            # a fifth of them with something wrong
            h = dataclasses.replace(health(1, False), device_id=device)
            if i % 5 == 0:
                h = dataclasses.replace(h, disk_free_bytes=100 << 20)
            for _ in range(10):                      # some history for buffer-growing
                handler.handle(f"alpr/v1/devices/{device}/health", encode_health(h))
        handler.close()
        registry.close()
        feed = AlertFeed(db, Alerts())
        t0 = time.perf_counter()
        raised, _ = feed.check()
        first = time.perf_counter() - t0
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            feed.check()
            times.append(time.perf_counter() - t0)
        feed.stop()
        if cluster is not None:
            cluster.destroy()
        print(f"alert evaluation (AlertFeed.check, {devices} devices, 10 heartbeats each, "
              f"{'PostgreSQL' if cluster is not None else 'SQLite'})")
        print(f"  first check (raises {len(raised)}): {first * 1e3:.0f} ms; steady: median "
              f"{statistics.median(times) * 1e3:.0f} ms ({statistics.median(times) / devices * 1e3:.2f} ms per device)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checks", type=int, default=1000)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="sqlite",
                    help="where the alert evaluation's registry and heartbeats are")
    args = ap.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    cv2.setNumThreads(1)
    bench_tamper(args.checks)
    bench_heartbeat()
    if args.devices:
        for backend in (("sqlite", "postgresql") if args.backend == "both" else (args.backend,)):
            bench_alerts(args.devices, backend)


if __name__ == "__main__":
    main()
