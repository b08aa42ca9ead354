"""Staged rollouts of signed application releases over MQTT, device groups,
and each device's update state.

An admin offers a bundle (built and signed by ``alpr-central release build``)
to a group or one device, to a percentage of it first::

    offer (percent N) --> promote (percent M > N ... 100)
       active <--> paused          (by hand, or by itself when too many devices fail)
       any ----> superseded        (a newer offer to the same target)

Which devices are in the first N percent is decided by a hash of each device
id: the devices of the target ranked by ``sha256("alpr-rollout:" + id)``, the
first ``ceil(n * N / 100)`` of them. The choice is stable (the same devices
for the same group, every time) and a promotion only adds devices. A device
once offered stays offered.

Central verifies the bundle's signature with the release public key it is
configured with before storing it in ``<data_dir>/releases/<sha256>.alpr``;
each device checks the signature again with the key it trusts before
anything is installed. The chunk hashes the offer carries let a device check
each piece and resume after a disconnect.

Each device's row in ``device_updates``: the rollout, the version offered, the
state (``pending`` until the device says ``offered``, then what it reports:
``downloading``, ``verified``, ``applying``, ``healthy``, ``rolled-back``,
``refused``, ``failed``, ``withdrawn``), the reason, when, and the version it
runs. A rollout pauses itself when ``max_failures`` devices (or
``max_failure_percent`` of those offered) report ``rolled-back``, ``refused``
or ``failed``; offers not yet being installed are then withdrawn.

Who may: ``MANAGE_RELEASES`` (admin) offers, promotes, pauses, resumes and
changes groups; ``VIEW_RELEASES`` (admin, auditor, field tech) sees groups and
states. Every action is an access-log entry in the same transaction as the
change; a pause central makes by itself names the user ``central``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import math
import os
import shutil
from pathlib import Path

from edge_agent.wire import release as fmt
from edge_agent.wire import update as wire

from ..errors import PolicyError, RegistryError
from ..governance.audit import AccessLog, transaction, ts, utcnow
from ..governance.users import Permission, User, require
from ..store.database import dialect
from .registry import validate_id_like

logger = logging.getLogger(__name__)

DEFAULT_CHUNK = 256 * 1024
CENTRAL = "central"
_LONG_AGO = "1970-01-01T00:00:00.000000Z"    # "sent, but send again now"
_LIVE = ("pending", "offered", "downloading", "verified")   # not yet being installed: may be withdrawn


def bucket_key(device_id: str) -> str:
    """The rank of a device in every staged rollout (lower goes first)."""
    return hashlib.sha256(f"alpr-rollout:{device_id}".encode()).hexdigest()


def stage(device_ids, percent: int) -> list[str]:
    """The devices in the first ``percent`` of ``device_ids``: stable, exact
    (``ceil(n * percent / 100)``), and a larger percent only adds devices."""
    ranked = sorted(set(device_ids), key=bucket_key)
    return ranked[:math.ceil(len(ranked) * percent / 100)]


@dataclasses.dataclass(frozen=True)
class Rollout:
    rollout_id: int
    version: str
    bundle_sha256: str
    target_kind: str
    target: str
    percent: int
    status: str
    status_reason: str
    max_failures: int
    max_failure_percent: int
    created_by: str
    created_at: str
    updated_at: str
    counts: dict


@dataclasses.dataclass(frozen=True)
class DeviceUpdate:
    device_id: str
    running_version: str | None
    rollout_id: int | None
    version: str | None
    state: str | None
    reason: str
    progress: int
    state_at: str | None


class Rollouts:
    """The library; ``conn`` is the governance connection of either backend
    (``registry.db``; :mod:`central.store.database`)."""

    def __init__(self, conn, *, data_dir: str | os.PathLike | None = None, clock=utcnow) -> None:
        self.conn = conn
        self.data_dir = Path(data_dir) if data_dir else None
        self._clock = clock
        self.log = AccessLog(conn, clock=clock)

    # -- groups ----------------------------------------------------------------------------
    def create_group(self, user: User, group_id: str, description: str = "") -> None:
        require(user, Permission.MANAGE_RELEASES)
        if not validate_id_like(group_id):
            raise RegistryError("a group id is 1-63 lower-case letters, digits and '-'")
        with transaction(self.conn):
            if self.conn.execute("SELECT 1 FROM device_groups WHERE group_id=?", [group_id]).fetchone():
                raise RegistryError(f"group {group_id} exists already")
            self.conn.execute("INSERT INTO device_groups VALUES (?,?,?,?)",
                              [group_id, description, user.name, ts(self._clock())])
            self._log(user, "device-group-create", group=group_id)

    def set_members(self, user: User, group_id: str, devices, *, add: bool) -> int:
        require(user, Permission.MANAGE_RELEASES)
        devices = sorted(set(devices))
        with transaction(self.conn):
            self._group(group_id)
            changed = 0
            for device in devices:
                if add:
                    row = self.conn.execute("SELECT status FROM devices WHERE device_id=?", [device]).fetchone()
                    if row is None:
                        raise RegistryError(f"no device {device!r}")
                    changed += self.conn.execute(
                        "INSERT OR IGNORE INTO device_group_members VALUES (?,?,?,?)",
                        [group_id, device, user.name, ts(self._clock())]).rowcount
                else:
                    changed += self.conn.execute("DELETE FROM device_group_members WHERE group_id=? AND device_id=?",
                                                 [group_id, device]).rowcount
            self._log(user, "device-group-add" if add else "device-group-remove", group=group_id, devices=devices,
                      changed=changed)
        return changed

    def groups(self, user: User) -> list[dict]:
        require(user, Permission.VIEW_RELEASES)
        members = "string_agg(m.device_id, ',')" if dialect(self.conn) == "postgresql" else "group_concat(m.device_id)"
        rows = self.conn.execute(
            f"SELECT g.group_id, g.description, g.created_by, g.created_at, {members} "
            "FROM device_groups g LEFT JOIN device_group_members m USING (group_id) "
            "GROUP BY g.group_id ORDER BY g.group_id").fetchall()
        return [{"group": r[0], "description": r[1], "created_by": r[2], "created_at": r[3],
                 "devices": sorted((r[4] or "").split(",")) if r[4] else []} for r in rows]

    def _group(self, group_id: str) -> None:
        if not self.conn.execute("SELECT 1 FROM device_groups WHERE group_id=?", [group_id]).fetchone():
            raise RegistryError(f"no device group {group_id!r} (alpr-central device group create)")

    # -- rollouts ----------------------------------------------------------------------------
    def offer(self, user: User, bundle: str | os.PathLike, public_key, *, group: str | None = None,
              device: str | None = None, percent: int = 100, max_failures: int = 1, max_failure_percent: int = 0,
              chunk_size: int = DEFAULT_CHUNK) -> Rollout:
        """Verify ``bundle`` with the release ``public_key``, store it, and
        offer it to the first ``percent`` of the target."""
        require(user, Permission.MANAGE_RELEASES)
        if (group is None) == (device is None):
            raise PolicyError("offer to one --group or one --device")
        if not 1 <= percent <= 100:
            raise PolicyError("--percent: 1-100")
        if max_failures < 0 or not 0 <= max_failure_percent <= 100:
            raise PolicyError("--max-failures must be >= 0 and --max-failure-percent 0-100")
        if not wire.MIN_CHUNK_BYTES <= chunk_size <= wire.MAX_CHUNK_BYTES:
            raise PolicyError(f"chunk size: {wire.MIN_CHUNK_BYTES}-{wire.MAX_CHUNK_BYTES} bytes")
        if self.data_dir is None:
            raise PolicyError("no data folder to keep the bundle in")
        manifest = fmt.open_bundle(bundle, public_key)   # BundleRefused: nothing stored
        whole, size, chunks = wire.chunk_hashes(bundle, chunk_size)
        if len(chunks) > wire.MAX_CHUNKS:
            raise PolicyError("the bundle is too large for its chunk size")
        kept = self._keep(bundle, whole)
        # the stored copy is what devices get: it must be the bundle just verified
        if wire.chunk_hashes(kept, chunk_size)[0] != whole:
            raise PolicyError("the bundle changed while it was being stored; try again")
        now = ts(self._clock())
        with transaction(self.conn):
            if group is not None:
                self._group(group)
            elif self.conn.execute("SELECT status FROM devices WHERE device_id=?", [device]).fetchone() is None:
                raise RegistryError(f"no device {device!r}")
            self.conn.execute("INSERT INTO release_bundles VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (sha256) DO UPDATE "
                              "SET version=excluded.version, size=excluded.size, chunk_size=excluded.chunk_size, "
                              "chunks=excluded.chunks, key_id=excluded.key_id, "
                              "allow_downgrade=excluded.allow_downgrade, path=excluded.path, "
                              "stored_at=excluded.stored_at",
                              [whole, manifest.version, size, chunk_size, json.dumps(chunks), manifest.key_id,
                               int(manifest.allow_downgrade), str(kept), now])
            kind, target = ("group", group) if group is not None else ("device", device)
            superseded = [r[0] for r in self.conn.execute(
                "SELECT rollout_id FROM rollouts WHERE target_kind=? AND target=? AND status <> 'superseded'",
                [kind, target])]
            self.conn.execute("UPDATE rollouts SET status='superseded', status_reason=?, updated_at=? "
                              "WHERE target_kind=? AND target=? AND status <> 'superseded'",
                              ["a newer offer to the same target", now, kind, target])
            cur = self.conn.execute(
                "INSERT INTO rollouts (bundle_sha256, version, target_kind, target, percent, status, max_failures, "
                "max_failure_percent, created_by, created_at, updated_at) VALUES (?,?,?,?,?,'active',?,?,?,?,?)",
                [whole, manifest.version, kind, target, percent, max_failures, max_failure_percent, user.name, now,
                 now])
            rollout_id = cur.lastrowid
            offered = self._select(rollout_id, manifest.version, kind, target, percent)
            self._log(user, "release-offer", rollout=rollout_id, version=manifest.version, bundle_sha256=whole,
                      key_id=manifest.key_id, target=f"{kind}:{target}", percent=percent, devices=offered,
                      max_failures=max_failures, max_failure_percent=max_failure_percent, superseded=superseded)
        logger.info("rollout %s: release %s offered to %s %s (%d%%, %d devices)", rollout_id, manifest.version, kind,
                    target, percent, len(offered))
        return self.rollout(rollout_id)

    def _keep(self, bundle, sha: str) -> Path:
        folder = self.data_dir / "releases"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        final = folder / f"{sha}.alpr"
        if not final.exists():
            tmp = folder / f".{sha}.tmp"
            shutil.copyfile(bundle, tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        return final

    def _targets(self, kind: str, target: str) -> list[str]:
        if kind == "device":
            sql, args = "SELECT device_id FROM devices WHERE device_id=? AND status='active'", [target]
        else:
            sql = ("SELECT m.device_id FROM device_group_members m JOIN devices d USING (device_id) "
                   "WHERE m.group_id=? AND d.status='active'")
            args = [target]
        return [r[0] for r in self.conn.execute(sql, args)]

    def _select(self, rollout_id: int, version: str, kind: str, target: str, percent: int) -> list[str]:
        """Rows for the devices of this stage not yet in this rollout; returns them."""
        now = ts(self._clock())
        added = []
        for device in stage(self._targets(kind, target), percent):
            row = self.conn.execute("SELECT rollout_id FROM device_updates WHERE device_id=?", [device]).fetchone()
            if row is not None and row[0] >= rollout_id:
                continue  # already in this (or a newer) rollout
            self.conn.execute(
                "INSERT INTO device_updates (device_id, rollout_id, version, state, reason, progress, "
                "running_version, state_at, device_at_ms, sent_at) VALUES (?,?,?,'pending','',0,"
                "(SELECT running_version FROM device_updates WHERE device_id=?),?,0,NULL) "
                "ON CONFLICT (device_id) DO UPDATE SET rollout_id=excluded.rollout_id, version=excluded.version, "
                "state=excluded.state, reason=excluded.reason, progress=excluded.progress, "
                "running_version=excluded.running_version, state_at=excluded.state_at, "
                "device_at_ms=excluded.device_at_ms, sent_at=excluded.sent_at",
                [device, rollout_id, version, device, now])
            added.append(device)
        return added

    def _rollout_row(self, rollout_id: int) -> tuple:
        row = self.conn.execute("SELECT version, target_kind, target, percent, status FROM rollouts "
                                "WHERE rollout_id=?", [rollout_id]).fetchone()
        if row is None:
            raise RegistryError(f"no rollout {rollout_id}")
        return row

    def promote(self, user: User, rollout_id: int, percent: int = 100) -> Rollout:
        require(user, Permission.MANAGE_RELEASES)
        with transaction(self.conn):
            version, kind, target, old, status = self._rollout_row(rollout_id)
            if status != "active":
                raise PolicyError(f"rollout {rollout_id} is {status}; "
                                  + ("resume it first" if status == "paused" else "offer the release anew"))
            if not old < percent <= 100:
                raise PolicyError(f"rollout {rollout_id} is at {old}%; promote it to more (up to 100)")
            self.conn.execute("UPDATE rollouts SET percent=?, updated_at=? WHERE rollout_id=?",
                              [percent, ts(self._clock()), rollout_id])
            added = self._select(rollout_id, version, kind, target, percent)
            self._log(user, "release-promote", rollout=rollout_id, version=version, percent=percent,
                      previous_percent=old, devices=added)
        return self.rollout(rollout_id)

    def pause(self, user: User, rollout_id: int, reason: str = "") -> Rollout:
        require(user, Permission.MANAGE_RELEASES)
        with transaction(self.conn):
            self._set_paused(rollout_id, reason or f"paused by {user.name}")
            self._log(user, "release-pause", rollout=rollout_id, reason=reason)
        return self.rollout(rollout_id)

    def _set_paused(self, rollout_id: int, reason: str) -> None:
        status = self._rollout_row(rollout_id)[4]
        if status != "active":
            raise PolicyError(f"rollout {rollout_id} is {status}, not active")
        now = ts(self._clock())
        self.conn.execute("UPDATE rollouts SET status='paused', status_reason=?, updated_at=? WHERE rollout_id=?",
                          [reason, now, rollout_id])
        # what a device may hold is withdrawn (sent again until it says so); never-sent offers just wait
        self.conn.execute("UPDATE device_updates SET sent_at=? WHERE rollout_id=? AND state IN "
                          f"({','.join('?' * len(_LIVE))}) AND sent_at IS NOT NULL", [_LONG_AGO, rollout_id, *_LIVE])

    def resume(self, user: User, rollout_id: int) -> Rollout:
        require(user, Permission.MANAGE_RELEASES)
        with transaction(self.conn):
            status = self._rollout_row(rollout_id)[4]
            if status != "paused":
                raise PolicyError(f"rollout {rollout_id} is {status}, not paused")
            failures = self._failures(rollout_id)
            self.conn.execute("UPDATE rollouts SET status='active', status_reason='', failures_at_resume=?, "
                              "updated_at=? WHERE rollout_id=?", [failures, ts(self._clock()), rollout_id])
            self.conn.execute("UPDATE device_updates SET state='pending', sent_at=NULL WHERE rollout_id=? AND "
                              f"state IN ('withdrawn', {','.join('?' * len(_LIVE))})", [rollout_id, *_LIVE])
            self._log(user, "release-resume", rollout=rollout_id, failures_so_far=failures)
        return self.rollout(rollout_id)

    def _failures(self, rollout_id: int) -> int:
        return self.conn.execute(
            f"SELECT count(*) FROM device_updates WHERE rollout_id=? AND state IN "
            f"({','.join('?' * len(wire.FAILED_STATES))})", [rollout_id, *wire.FAILED_STATES]).fetchone()[0]

    # -- views -------------------------------------------------------------------------------
    def rollout(self, rollout_id: int) -> Rollout:
        row = self.conn.execute(
            "SELECT rollout_id, version, bundle_sha256, target_kind, target, percent, status, status_reason, "
            "max_failures, max_failure_percent, created_by, created_at, updated_at FROM rollouts WHERE rollout_id=?",
            [rollout_id]).fetchone()
        if row is None:
            raise RegistryError(f"no rollout {rollout_id}")
        counts = dict(self.conn.execute("SELECT state, count(*) FROM device_updates WHERE rollout_id=? "
                                        "GROUP BY state", [rollout_id]).fetchall())
        return Rollout(*row, counts=counts)

    def rollouts(self, user: User) -> list[Rollout]:
        require(user, Permission.VIEW_RELEASES)
        return [self.rollout(r[0]) for r in self.conn.execute("SELECT rollout_id FROM rollouts ORDER BY rollout_id")]

    def devices(self, user: User, rollout_id: int | None = None) -> list[DeviceUpdate]:
        """Every enrolled (not revoked) device, or a rollout's devices: the
        version it runs (its last report, else its last heartbeat), what was
        offered, the state and when."""
        require(user, Permission.VIEW_RELEASES)
        where, args = ("u.rollout_id = ?", [rollout_id]) if rollout_id is not None else ("d.status <> 'revoked'", [])
        agent = "h.doc::jsonb ->> 'agent_version'" if dialect(self.conn) == "postgresql" else \
            "json_extract(h.doc, '$.agent_version')"
        rows = self.conn.execute(
            f"SELECT d.device_id, coalesce(u.running_version, {agent}), u.rollout_id, "
            "u.version, u.state, coalesce(u.reason, ''), coalesce(u.progress, 0), u.state_at FROM devices d "
            "LEFT JOIN device_updates u USING (device_id) LEFT JOIN device_health h USING (device_id) "
            f"WHERE {where} ORDER BY d.device_id", args).fetchall()
        return [DeviceUpdate(*r) for r in rows]

    # -- what the MQTT side does (central/fleet/update_service.py) ------------------------------
    def due(self, resend_seconds: float) -> list[tuple[str, wire.Offer]]:
        """Offers (and withdrawals) to publish now: never sent, or sent longer
        than ``resend_seconds`` ago without an answer. Marks them sent."""
        now = self._clock()
        cutoff = ts(now - dt.timedelta(seconds=resend_seconds))
        sql = ("SELECT u.device_id, r.rollout_id, r.status, u.state, b.version, b.size, b.sha256, b.chunk_size, "
               "b.chunks, b.allow_downgrade, b.key_id FROM device_updates u JOIN rollouts r USING (rollout_id) "
               "JOIN release_bundles b ON b.sha256 = r.bundle_sha256 JOIN devices d ON d.device_id = u.device_id "
               "WHERE d.status = 'active' AND (u.sent_at IS NULL OR u.sent_at < ?) AND ("
               "(r.status = 'active' AND u.state = 'pending') OR "
               f"(r.status <> 'active' AND u.state IN ({','.join('?' * len(_LIVE))}) AND "
               "(u.sent_at IS NOT NULL OR u.state <> 'pending')))")
        if not self.conn.execute(sql + " LIMIT 1", [cutoff, *_LIVE]).fetchone():
            return []  # the usual case, every second: no write transaction
        out = []
        with transaction(self.conn):  # again inside: another collector may have sent them meanwhile
            rows = self.conn.execute(sql, [cutoff, *_LIVE]).fetchall()
            for device, rid, status, _state, version, size, sha, chunk_size, chunks, down, key in rows:
                if status == "active":
                    offer = wire.Offer(rid, version, size, sha, chunk_size, tuple(json.loads(chunks)), bool(down), key)
                else:
                    offer = wire.Offer(rid, version, 0, "0" * 64, wire.MIN_CHUNK_BYTES, (), withdraw=True)
                out.append((device, offer))
                self.conn.execute("UPDATE device_updates SET sent_at=? WHERE device_id=?", [ts(now), device])
        return out

    def chunk_source(self, device_id: str, fetch: wire.Fetch) -> tuple[Path, int, int, str] | wire.Offer | None:
        """Where the asked-for chunk is (path, offset, length, sha256); a
        withdrawal when the rollout is no longer active; None when the
        device was never offered it."""
        row = self.conn.execute(
            "SELECT r.status, u.state, b.path, b.size, b.chunk_size, b.chunks, b.version FROM device_updates u "
            "JOIN rollouts r USING (rollout_id) JOIN release_bundles b ON b.sha256 = r.bundle_sha256 "
            "WHERE u.device_id=? AND u.rollout_id=?", [device_id, fetch.rollout_id]).fetchone()
        if row is None:
            return None
        status, _state, path, size, chunk_size, chunks, version = row
        if status != "active":
            return wire.Offer(fetch.rollout_id, version, 0, "0" * 64, wire.MIN_CHUNK_BYTES, (), withdraw=True)
        chunks = json.loads(chunks)
        if fetch.index >= len(chunks):
            return None
        offset = fetch.index * chunk_size
        return Path(path), offset, min(chunk_size, size - offset), chunks[fetch.index]

    def record(self, report: wire.StateReport) -> str:
        """A device's state report; returns what was done ("recorded", "stale",
        "unknown", "paused"). A report about another rollout than the device's
        current one, or older than the last, changes nothing."""
        now = self._clock()
        with transaction(self.conn):
            row = self.conn.execute("SELECT rollout_id, state, device_at_ms FROM device_updates WHERE device_id=?",
                                    [report.device_id]).fetchone()
            if row is None or row[0] != report.rollout_id:
                if row is not None and report.rollout_id < row[0]:
                    # an old rollout's report still tells the version it runs
                    self.conn.execute("UPDATE device_updates SET running_version=? WHERE device_id=?",
                                      [report.running_version, report.device_id])
                return "unknown"
            if report.at_ms < row[2]:
                return "stale"
            self.conn.execute(
                "UPDATE device_updates SET state=?, reason=?, progress=?, running_version=?, state_at=?, "
                "device_at_ms=? WHERE device_id=?",
                [report.state, report.reason[:wire.MAX_REASON], report.progress, report.running_version, ts(now),
                 report.at_ms, report.device_id])
            if report.state in wire.FAILED_STATES and row[1] not in wire.FAILED_STATES:
                if self._over_threshold(report.rollout_id):
                    return "paused"
        return "recorded"

    def _over_threshold(self, rollout_id: int) -> bool:
        status, max_failures, max_percent, at_resume = self.conn.execute(
            "SELECT status, max_failures, max_failure_percent, failures_at_resume FROM rollouts WHERE rollout_id=?",
            [rollout_id]).fetchone()
        if status != "active":
            return False
        failures = self._failures(rollout_id)
        offered = self.conn.execute("SELECT count(*) FROM device_updates WHERE rollout_id=?",
                                    [rollout_id]).fetchone()[0]
        new = failures - at_resume
        if not ((max_failures and new >= max_failures)
                or (max_percent and offered and failures * 100 >= max_percent * offered)):
            return False
        reason = f"paused by central: {failures} of {offered} devices failed (rolled back, refused or failed)"
        self._set_paused(rollout_id, reason)
        self.log.append(user=CENTRAL, organization=CENTRAL, action="release-auto-pause",
                        detail={"rollout": rollout_id, "failures": failures, "offered": offered,
                                "max_failures": max_failures, "max_failure_percent": max_percent})
        logger.warning("rollout %s paused: %d of %d devices failed", rollout_id, failures, offered)
        return True

    def _log(self, user: User, action: str, **detail) -> None:
        self.log.append(user=user.name, organization=user.organization, action=action, detail=detail)
