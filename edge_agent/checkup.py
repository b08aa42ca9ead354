"""What ``alpr-edge status`` concludes: is this device healthy, and if not,
what is wrong and what should the field tech do, in their words.

:func:`diagnose` reads the facts ``status`` gathers (the agent's
``status.json``, the buffer, the certificate, the disk, the broker probe,
chrony) and returns a :class:`Verdict`:

- ``ok``: nothing needs doing (exit 0);
- ``problem``: one :class:`Problem` per thing to fix (exit 1);
- ``unknown``: it cannot tell, because the agent is not running or left no
  status to read (exit 3). Other problems it can see (an expired certificate,
  a full disk) are listed too.

No plate text is read or shown: the buffer holds sealed reads and only
counts, days and times are looked at. The thresholds match central's alert
defaults (``[alerts]`` in central's config), so the tech at the pole and the
operator at central see the same problems.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping

OK, PROBLEM, UNKNOWN = "ok", "problem", "unknown"
EXIT_CODES = {OK: 0, PROBLEM: 1, UNKNOWN: 3}

STALE_STATUS_S = 10.0           # the agent rewrites status.json every second
DISK_LOW_BYTES = 512 << 20      # central's [alerts] disk_free_megabytes default
CERT_DAYS = 14                  # central's [alerts] certificate_days default
CLOCK_OFF_S = 2.0               # central's [alerts] clock_offset_seconds default
SYNC_STALL_S = 15 * 60          # reads waiting while the last acknowledgement is older than this


@dataclasses.dataclass(frozen=True)
class Problem:
    code: str          # stable, for scripts: agent-not-running, camera-tampered, ...
    message: str       # what is wrong
    action: str        # what to do about it

    def to_doc(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Verdict:
    state: str                       # ok / problem / unknown
    problems: tuple[Problem, ...] = ()

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.state]


def _ago(seconds: float) -> str:
    s = int(max(0, seconds))
    if s < 90:
        return f"{s} s"
    if s < 90 * 60:
        return f"{s // 60} min"
    if s < 48 * 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} days"


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def diagnose(doc: Mapping, *, now: dt.datetime, agent_locked: bool | None = None) -> Verdict:
    """The verdict on the facts in ``doc`` (the document ``alpr-edge status
    --json`` prints, without ``verdict``/``problems``). ``agent_locked``: an
    agent holds the data folder's lock (None: could not tell)."""
    out: list[Problem] = []

    def add(code, message, action):
        out.append(Problem(code, message, action))

    unknown = False
    updated = doc.get("status_updated_at")
    age = (now - dt.datetime.fromisoformat(updated)).total_seconds() if updated else None
    if doc.get("status_unreadable"):
        unknown = True
        add("status-unreadable", "the agent's status file is unreadable (cut short or damaged)",
            "if the agent runs it rewrites it within a second: run this again; otherwise start the agent "
            "(systemctl start alpr-edge) and read its log (journalctl -u alpr-edge)")
    elif updated is None:
        unknown = True
        add("agent-not-running", "the agent has not run on this data folder (no status file)",
            "start it (systemctl start alpr-edge) and read its log (journalctl -u alpr-edge -e)")
    elif age > STALE_STATUS_S:
        if agent_locked:
            add("agent-hung", f"the agent is running but has not updated its status for {_ago(age)}: it is stuck",
                "the watchdog restarts it within a minute; if this persists: systemctl restart alpr-edge, "
                "and send the log (journalctl -u alpr-edge -e) to support")
        else:
            unknown = True
            add("agent-not-running", f"the agent is not running (its status is {_ago(age)} old)",
                "start it (systemctl start alpr-edge); if it stops again read why: journalctl -u alpr-edge -e")
    running = updated is not None and not unknown and age is not None and age <= STALE_STATUS_S

    cert = doc.get("certificate_expires")
    if doc.get("tls", True):
        if cert is None:
            add("certificate-unreadable", "the device certificate cannot be read",
                "check sync.cert_file in the config; if the file is gone, enroll the device again "
                "(alpr-edge provision) with a token from central")
        else:
            left = (dt.datetime.fromisoformat(cert) - now).total_seconds()
            if left <= 0:
                add("certificate-expired", f"the device certificate expired {_ago(-left)} ago: central refuses it",
                    "ask central for a new enrollment token and run alpr-edge provision again")
            elif left < CERT_DAYS * 86400:
                add("certificate-expiring", f"the device certificate expires in {_ago(left)}",
                    "renew it now while the broker still accepts it: alpr-edge renew")

    if doc.get("broker_reachable") is False and str(doc.get("broker_error")).startswith("cannot load the device's"):
        add("broker-unreachable", f"cannot connect to the broker {doc.get('broker')}: {doc.get('broker_error')}",
            "run alpr-edge config check: it names each file that cannot be read; if they are gone, enroll the "
            "device again (alpr-edge provision) with a token from central")
    elif doc.get("broker_reachable") is False:
        add("broker-unreachable", f"cannot connect to the broker {doc.get('broker')}: {doc.get('broker_error')}",
            "check the network (cable, SIM, firewall: TCP port open to central) and the device clock; "
            "a refused certificate means the device was suspended or revoked at central")
    elif running and doc.get("connected") is False:
        add("not-connected", "the agent is not connected to the broker"
            + (f" ({doc['broker_error_live']})" if doc.get("broker_error_live") else ""),
            "check the network to central; reads wait safely in the buffer meanwhile")
    depth = doc.get("buffer_depth") or 0
    last_ack = doc.get("last_ack_at")
    if running and doc.get("connected") and depth > 0 and last_ack is not None:
        acked = (dt.datetime.fromisoformat(last_ack) if isinstance(last_ack, str)   # ISO 8601 (status), or
                 else dt.datetime.fromtimestamp(last_ack, dt.timezone.utc))         # epoch seconds
        quiet = (now - acked).total_seconds()
        if quiet > SYNC_STALL_S:
            add("sync-stalled", f"{depth} reads wait but central has acknowledged none for {_ago(quiet)}",
                "central may be refusing this device or be down: call the central operator "
                "(alpr-central device health)")
    oldest = doc.get("oldest_read_day")
    if depth > 0 and oldest:
        days = (now.date() - dt.date.fromisoformat(oldest)).days
        if days >= 2:
            add("buffer-old", f"{depth} reads have waited on the device since {oldest} ({days} days)",
                "they have not reached central: fix the connection (see the other problems); they are kept "
                "until central acknowledges them or their retention ends")

    free = doc.get("disk_free_bytes")
    if doc.get("disk_full"):
        add("disk-full", "the data disk is full: new reads may be lost",
            "free space on the data partition (old logs, stray files); the buffer drains once central is reachable")
    elif free is not None and free < DISK_LOW_BYTES:
        add("disk-low", f"the data disk is low: {_size(free)} free",
            "free space on the data partition before it fills (old logs, stray files)")
    if running and doc.get("disk_reserve_held") is False and not doc.get("disk_full"):
        add("reserve-released", "the disk reserve was given up to keep buffering (the disk was full)",
            "free space; the agent takes the reserve back by itself")
    lost = doc.get("reads_lost_unbufferable") or 0
    if lost:
        add("reads-lost", f"{lost} reads could not be buffered since the agent started (disk full)",
            "free space on the data partition; the count clears when the agent restarts")
    unrecorded = doc.get("audit_unrecorded") or {}
    if sum(unrecorded.values()) if isinstance(unrecorded, Mapping) else unrecorded:
        n = sum(unrecorded.values()) if isinstance(unrecorded, Mapping) else unrecorded
        add("audit-unrecorded", f"{n} events could not be written to the device's audit log (disk full)",
            "free space on the data partition; central sees the gap and its reason")
    if running and doc.get("audit_open") is False:
        add("audit-closed", "the device's audit log is not open" +
            (f" ({doc['audit_error']})" if doc.get("audit_error") else ""),
            "free space on the data partition; restart the agent (systemctl restart alpr-edge)")

    offset = doc.get("clock_offset_s")
    if offset is not None and abs(offset) > CLOCK_OFF_S:
        add("clock-off", f"the device clock is {abs(offset):.1f} s {'ahead' if offset > 0 else 'behind'} of NTP time",
            "check time sync: chronyc tracking; chronyc sources (NTP must reach its servers)")

    # a running camera that delivers no frames shows here (capture:<id>, after 30 s), not from
    # its fps, which is 0 for the first 5 s of every start and keeps its last value when frames stop
    for stalled in doc.get("watchdog_stalled") or ():
        add("watchdog-stalled", f"{stalled.replace(':', ' ')} is making no progress",
            "the watchdog restarts the agent within a minute; if it repeats, send journalctl -u alpr-edge -e to "
            "support")

    if running:
        for cam in doc.get("cameras") or ():
            name = f"camera {cam.get('id')}"
            state = cam.get("state")
            if state == "failed":
                add("camera-failed", f"{name} cannot be read: {cam.get('last_error') or 'unknown error'}",
                    "check its cable/power/network and cameras[].uri in the config; then "
                    "alpr-edge test-camera --camera " + str(cam.get("id")))
            elif state == "stopped":      # its thread ended while the agent runs ("starting" is transient)
                add("camera-not-running", f"{name} has stopped",
                    "restart the agent (systemctl restart alpr-edge) and read its log (journalctl -u alpr-edge -e)")
            for flag in cam.get("tamper") or ():
                add("camera-tampered", f"{name}: view {flag} " + {
                    "black": "(covered, or no light at all)",
                    "blurred": "(lens dirty, fogged, sprayed or out of focus)",
                    "moved": "(turned away from where it was installed)"}.get(flag, ""),
                    {"black": "look at the camera: remove what covers it",
                     "blurred": "clean the lens or housing window; check the focus",
                     "moved": "re-aim it, then restart the agent so it takes the new view as its reference"}.get(
                         flag, "look at the camera"))
    state = UNKNOWN if unknown else PROBLEM if out else OK
    return Verdict(state, tuple(out))
