"""Catch-up: a device with 50,000 buffered reads reconnects; how long until
central has stored them all (target <= 30 s; issue 24: <= 5 s), with no loss
and no duplicates, and how long a read captured *during* the drain takes to
reach central (fresh reads first, issue 21).

Real processes: Mosquitto (TLS), `alpr-central run`, `alpr-edge run
--exit-when-drained` on a device whose outbox was filled while offline; the
device's camera reads a new plate every half second meanwhile (folder source,
sidecar oracle), and the bench compares each fresh read's capture time with
central's ``stored_at``.

    .venv/bin/python bench/bench_catchup.py [--reads 50000] [--batch-size 500] [--fresh 20] [--profile DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from harness import Rig, percentile, python_command  # noqa: E402

from edge_agent.outbox import Outbox  # noqa: E402
from edge_agent.wire import PlateRead, Sealer, encode_read, load_public_key, new_read_id  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reads", type=int, default=50_000)
    ap.add_argument("--batch-size", type=int, default=500, help="the device's [sync] batch_size (its default)")
    ap.add_argument("--in-flight", type=int, default=8, help="the device's [sync] max_in_flight (its default)")
    ap.add_argument("--collectors", type=int, default=2, help="collector processes sharing the subscription")
    ap.add_argument("--fresh", type=int, default=20, help="frames (2 fps), each with a new plate, the camera "
                    "reads while the backlog drains")
    ap.add_argument("--profile", type=Path, help="profile every thread of the collectors and the agent "
                    "(bench/profiled.py) and write DIR/collector-N.prof, DIR/agent.prof")
    args = ap.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        rig = Rig(root, ["cam-catchup"])
        ob = Outbox(root / "edge-cam-catchup" / "outbox.sqlite")
        sealer = Sealer(load_public_key((root / "data-key.pub.pem").read_bytes()), "cam-catchup")
        crop = b"\xff\xd8" + os.urandom(2500)
        t0 = time.time() - 3 * 86400  # three days offline
        ids = []
        for start in range(0, args.reads, 1000):
            items = []
            for i in range(start, min(args.reads, start + 1000)):
                ts = t0 + i * 5
                r = PlateRead(new_read_id(), "cam-catchup", "lane-1",
                              dt.datetime.fromtimestamp(ts, dt.timezone.utc), f"CU{i:06d}"[-8:], 0.9,
                              (10, 10, 150, 75), crop_jpeg=crop)
                ids.append(r.read_id)
                items.append((r.read_id, ts, sealer.seal(r.read_id, encode_read(r))))
            ob.add(items)
        ob.close()
        # The camera keeps reading plates while the backlog drains: a folder of
        # frames at 2 fps, each with a new plate (FR and five random characters) in a new place.
        frames = root / "frames"
        frames.mkdir()
        blank = np.zeros((360, 640, 3), np.uint8)
        for n in range(args.fresh):
            cv2.imwrite(str(frames / f"{n:05d}.png"), blank)
        rng = random.Random(5)  # plates unlike each other, or the tracker would take them for one car
        (root / "fresh.json").write_text(json.dumps({"frames": [
            [{"plate": "FR" + "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ23456789") for _ in range(5)),
              "box": [40 + (n % 8) * 70, 40 + (n // 8 % 4) * 70, 60, 30]}]
            for n in range(args.fresh)]}))
        rig.start_broker()
        rig.start_collectors(args.collectors, args.profile)
        cfg = rig.edge_config("cam-catchup", source_dir=frames, batch_size=args.batch_size,
                              max_in_flight=args.in_flight, sidecar=str(root / "fresh.json"))
        cfg.write_text(cfg.read_text().replace(f'uri = "{frames}"', f'uri = "{frames}"\nfps = 2.0'))
        load = os.getloadavg()[0]
        cpu0 = {name: _cpu(pid) for name, pid in _central_pids(rig).items()}
        started, started_wall = time.monotonic(), time.time()
        proc = subprocess.Popen(python_command(args.profile and args.profile / "agent.prof")
                                + ["-m", "edge_agent", "run", "--config", str(cfg),
                                 "--exit-when-drained", "--log-level", "warning"])
        try:
            edge_cpu = _wait_cpu(proc, timeout=300)
        except BaseException:
            rig.stop()
            raise
        finally:
            if proc.poll() is None:
                proc.kill()
        edge = proc
        cpu = {name: _cpu(pid) - cpu0[name] for name, pid in _central_pids(rig).items()}
        # the agent exits once its outbox is empty, i.e. once every read was acknowledged as stored
        drained = time.monotonic() - started
        if edge.returncode != 0:
            rig.stop()
            sys.exit(f"the agent failed with exit code {edge.returncode}")
        with sqlite3.connect(rig.db) as conn:
            got = [r[0] for r in conn.execute("SELECT read_id FROM reads WHERE plate NOT LIKE 'FR%'")]
            first_backlog, last_backlog = conn.execute(
                "SELECT min(stored_at), max(stored_at) FROM reads WHERE plate NOT LIKE 'FR%'").fetchone()
            fresh = [(_ts(cap), _ts(at)) for cap, at in conn.execute(
                "SELECT captured_at, stored_at FROM reads WHERE plate LIKE 'FR%'")]
        rig.stop()
        print(f"reads buffered:      {args.reads:,} (batch size {args.batch_size}, {args.in_flight} batches in flight, "
              f"{args.collectors} collector(s))")
        backlog_end = _ts(last_backlog)
        backlog_s = backlog_end - started_wall
        print(f"drain time:          last backlog read stored {backlog_s:.1f} s after the agent started "
              f"({args.reads / backlog_s:,.0f} reads/s, start-up included); the agent exited drained after "
              f"{drained:.1f} s (it also waits for its camera's {args.fresh} frames at 2 fps)")
        first_s = _ts(first_backlog) - started_wall
        print(f"                     first read stored after {first_s:.1f} s (start-up); first to last "
              f"{backlog_s - first_s:.1f} s ({args.reads / (backlog_s - first_s):,.0f} reads/s)")
        print(f"agent exit code:     {edge.returncode}")
        print(f"CPU seconds:         agent {edge_cpu:.1f} (its whole run)  "
              + "  ".join(f"{name} {sec:.1f}" for name, sec in cpu.items())
              + f"  (while the agent ran; load average before: {load:.1f})")
        print(f"stored at central:   {len(got):,}  missing: {len(set(ids) - set(got))}  "
              f"extra: {len(set(got) - set(ids))}  duplicates: {len(got) - len(set(got))}")
        during = [stored - cap for cap, stored in fresh if cap < backlog_end]
        print(f"fresh reads:         {len(fresh)} read by the camera, {len(during)} captured while the backlog "
              f"drained; capture -> stored at central p50 {percentile(during, 50):.2f} s, "
              f"max {max(during, default=float('nan')):.2f} s (includes the tracker's 1.5 s wait for the car to "
              f"leave the view)")


def _central_pids(rig: Rig) -> dict[str, int]:
    pids = {f"collector-{i}": p.pid for i, p in enumerate(rig.collectors)}
    pids["broker"] = rig.broker.proc.pid
    return pids


def _cpu(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_cpu(proc: subprocess.Popen, timeout: float) -> float:
    """Wait for ``proc`` to exit; its user + system CPU seconds (threads included)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        time.sleep(0.02)
    raise subprocess.TimeoutExpired(proc.args, timeout)


def _ts(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc).timestamp()

if __name__ == "__main__":
    main()
