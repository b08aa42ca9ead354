"""``alpr-edge status``: what a field tech at the pole needs to know, and a
verdict with what to do (:mod:`edge_agent.checkup`). Reads only what the
agent leaves behind (``status.json``, the buffer's counts, the lock on the
data folder), the certificate, the disk, chrony, and one probe connection to
the broker. No plate text is read: the buffer is sealed and only counted."""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
from pathlib import Path

import click

from .checkup import diagnose
from .cli_common import config_option
from .cli_common import load_config as _load
from .errors import EdgeError

def agent_holds_lock(data_dir: Path) -> bool | None:
    """True if an agent holds the data folder's lock (it is running), False
    if none does, None if this user cannot tell (no permission)."""
    path = data_dir / "agent.lock"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    except OSError as exc:
        return None if exc.errno != errno.EWOULDBLOCK else True
    finally:
        os.close(fd)


def gather(cfg, *, probe: bool, clock_offset=None, warn=lambda _m: None) -> tuple[dict, bool | None]:
    """The facts, as one JSON-able document (see ``status --json``), and
    whether an agent holds the data folder (:func:`agent_holds_lock`)."""
    from .agent import FULL_BELOW
    from .health import certificate_expiry
    from .outbox import Outbox
    cert = None
    if cfg.sync.tls:
        expires = certificate_expiry(cfg.sync.cert_file)
        cert = expires.isoformat() if expires else None
    path = cfg.data_dir / "status.json"
    unreadable = False
    try:
        live = json.loads(path.read_text()) if path.exists() else None
        if live is not None and not isinstance(live, dict):
            raise ValueError("not an object")
    except (OSError, ValueError):  # cut short by a power loss, or unreadable: say so, do not crash
        live, unreadable = None, True
        warn(f"warning: {path} is unreadable; showing the buffer only")
    outbox_path = cfg.data_dir / "outbox.sqlite"
    stats = None
    if outbox_path.exists():
        try:
            ob = Outbox(outbox_path, exclusive_fallback=False)  # never takes the file from a running agent
            stats = ob.stats()
            ob.close()
        except EdgeError as exc:  # a full disk, or the agent holds the file alone: show what it last wrote
            warn(f"warning: cannot read the buffer ({exc}); showing the agent's last status")
    live = live or {}
    buffer = live.get("buffer") or {}
    try:
        st = os.statvfs(cfg.data_dir)
        free = st.f_bavail * st.f_frsize
    except OSError:
        free = None
    disk = live.get("disk") or {}
    if stats:
        oldest = stats.oldest_day and dt.datetime.fromtimestamp(stats.oldest_day, dt.timezone.utc).date().isoformat()
    else:
        oldest = buffer.get("oldest_day")
    updated = live.get("updated_at")
    try:
        updated_at = dt.datetime.fromisoformat(updated) if isinstance(updated, str) else None
        if updated_at is not None and updated_at.tzinfo is None:
            updated_at = updated_at.replace(tzinfo=dt.timezone.utc)
    except ValueError:
        updated_at, unreadable = None, True
    locked = agent_holds_lock(cfg.data_dir)
    fresh = updated_at is not None and (dt.datetime.now(dt.timezone.utc) - updated_at).total_seconds() < 10
    audit = live.get("audit") or {}
    doc = {
        "device_id": cfg.device.id,
        "tls": cfg.sync.tls,
        "certificate_expires": cert,
        "broker": f"{cfg.sync.host}:{cfg.sync.port}",
        "broker_reachable": None,
        "broker_error": None,
        "agent_running": bool(fresh or locked),
        "status_updated_at": updated_at.isoformat() if updated_at else None,
        "status_unreadable": unreadable,
        "agent_version": live.get("agent_version"),
        "connected": (live.get("broker") or {}).get("connected") if live else None,
        "broker_error_live": (live.get("broker") or {}).get("last_error") if live else None,
        "last_ack_at": _iso(live.get("last_ack_at")),   # the agent writes epoch seconds; --json gives a time
        "buffer_depth": stats.depth if stats else buffer.get("depth", 0),
        "oldest_read_day": oldest,  # the outbox keeps capture days, not times
        "counters": stats.counters if stats else buffer.get("counters", {}),
        "reads_lost_unbufferable": live.get("reads_lost_unbufferable", 0) if live else None,
        "disk_full": bool(disk.get("full")) or (free is not None and free < FULL_BELOW),
        "disk_free_bytes": free,
        "disk_reserve_held": (cfg.data_dir / "reserve").exists() if cfg.buffer.reserve_megabytes > 0 else None,
        "audit_open": audit.get("open") if audit else None,
        "audit_error": audit.get("error") if audit else None,
        "audit_unrecorded": audit.get("unrecorded"),
        "clock_offset_s": clock_offset() if clock_offset else None,
        "watchdog_stalled": list((live.get("watchdog") or {}).get("stalled") or []),
        "cameras": live.get("cameras") or [],
        "remote_config": live.get("remote_config"),   # central's signed settings: version and state
        "update": _update_job(cfg.data_dir),           # an update central offered: version and state
    }
    if probe:
        from .provision import probe_broker
        doc["broker_error"] = probe_broker(cfg.sync, cfg.device.id)
        doc["broker_reachable"] = doc["broker_error"] is None
    return doc, locked


def _update_job(data_dir: Path) -> dict | None:
    """The update central offered last (edge_agent/update/fetcher.py's job
    file): version, state and reason only; None when there is none."""
    try:
        job = json.loads((data_dir / "update" / "job.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(job, dict):
        return None
    return {k: job.get(k) for k in ("version", "rollout_id", "state", "reason")}


# what the human form shows, in this order (the rest is in --json)
def _iso(seconds) -> str | None:
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
        return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat()
    return seconds if isinstance(seconds, str) else None


SHOWN = ("device_id", "agent_running", "agent_version", "status_updated_at", "certificate_expires", "broker",
         "broker_reachable", "connected", "last_ack_at", "buffer_depth", "oldest_read_day", "counters",
         "reads_lost_unbufferable", "disk_full", "disk_free_bytes", "disk_reserve_held", "audit_unrecorded",
         "clock_offset_s")
LABELS = {"status_updated_at": "status written", "clock_offset_s": "clock offset (NTP)"}


@click.command()
@config_option
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object: the facts, 'verdict' (ok/problem/unknown) and 'problems' [{code, message, "
                   "action}]. Same exit status.")
@click.option("--probe/--no-probe", default=True, show_default=True,
              help="Connect to the broker once with this device's certificate to check it is reachable.")
def status(config_path: str, as_json: bool, probe: bool) -> None:
    """Is this device healthy? Identity, agent running, certificate expiry,
    broker reachable, last acknowledgement from central, buffer depth and
    age, disk, audit log, clock, cameras (frame rate, errors, tamper:
    view black, blurred, moved), watchdog, the remote configuration it
    runs and the update central offered; then OK, or each problem in
    plain words with what to do. Shows counts, never plate text.

    \b
    Exit status: 0 healthy; 1 one or more problems (each listed with what
    to do); 3 cannot tell (the agent is not running or left no readable
    status); 78 the config file is invalid."""
    cfg = _load(config_path)
    from .health import SystemProbe
    warnings: list[str] = []
    doc, locked = gather(cfg, probe=probe, clock_offset=SystemProbe().clock_offset_s, warn=warnings.append)
    now = dt.datetime.now(dt.timezone.utc)
    verdict = diagnose(doc, now=now, agent_locked=locked)
    if as_json:
        doc["verdict"] = verdict.state
        doc["problems"] = [p.to_doc() for p in verdict.problems]
        click.echo(json.dumps(doc))
        click.get_current_context().exit(verdict.exit_code)
    for w in warnings:
        click.echo(w, err=True)
    click.echo("\n".join(render(doc, verdict, now)))
    click.get_current_context().exit(verdict.exit_code)


def render(doc: dict, verdict, now: dt.datetime) -> list[str]:
    from . import output as out
    lines = []
    for key in SHOWN:
        value = doc.get(key)
        if key in ("last_ack_at", "certificate_expires", "status_updated_at"):
            shown = out.when(value, now=now) if value is not None else (
                "never (since the agent started)" if key == "last_ack_at" and doc.get("agent_running") else "-")
        elif key == "disk_free_bytes" and value is not None:
            shown = f"{value / 1e9:.2f} GB" if value >= 1e8 else f"{value / 1e6:.1f} MB"
        elif key == "clock_offset_s":
            shown = "unknown (no chrony)" if value is None else f"{value:+.3f} s"
        elif key in ("broker_reachable", "connected", "agent_running") and value is None:
            shown = "unknown" if key != "broker_reachable" else "not probed (--no-probe)"
        else:
            shown = out.value(value)
        lines.append(f"{LABELS.get(key, key.replace('_', ' ')):<24} {shown}")
    rc = doc.get("remote_config")
    if rc:
        runs = f"version {rc['applied_version']}" if rc.get("applied_version") else "its own file only"
        lines.append(f"{'remote configuration':<24} {runs}, {rc.get('state')}"
                     + (f" (version {rc['offered_version']} {rc['state']}: {rc['reason']})"
                        if rc.get("reason") and rc.get("offered_version") else ""))
    up = doc.get("update")
    if up:
        lines.append(f"{'update offered':<24} {up.get('version')}: {up.get('state')}"
                     + (f" ({up['reason']})" if up.get("reason") else ""))
    for cam in doc["cameras"]:
        lines.append(f"camera {cam.get('id', '?'):<17} {cam.get('state', '?'):<9} {cam.get('fps') or 0:>6.1f} fps"
                     + (f"  {cam['frames']} frames" if cam.get("frames") is not None else "")
                     + (f"  error: {cam['last_error']}" if cam.get("last_error") else "")
                     + (f"  TAMPER: view {', '.join(cam['tamper'])}" if cam.get("tamper") else ""))
    lines.append("")
    if verdict.state == "ok":
        lines.append("OK: nothing needs doing.")
        return lines
    head = ("CANNOT TELL whether this device is healthy" if verdict.state == "unknown"
            else f"{len(verdict.problems)} PROBLEM{'S' if len(verdict.problems) != 1 else ''}")
    lines.append(f"{head}:")
    for i, p in enumerate(verdict.problems, 1):
        lines.append(f"  {i}. {p.message}")
        lines.append(f"     what to do: {p.action}")
    return lines
