"""A device's read activity for the fleet pages: its newest read and how many
it read in the last 24 hours, from index seeks alone.

Scanning a device's reads (``max(captured_at), max(stored_at) ... WHERE
device_id = ?``) took about a second per device on a million-read SQLite
store and grows with every read kept; a city keeps hundreds of millions. The
index on ``(device_id, camera_id, captured_at)`` answers both questions one
camera at a time in well under a millisecond, on SQLite and PostgreSQL
alike (docs/scaling.md).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from .registry import Device, _from_ts, _ts

RECENT = dt.timedelta(hours=24)


@dataclasses.dataclass(frozen=True)
class ReadActivity:
    last_captured_at: dt.datetime | None   # capture time of the device's newest read
    last_stored_at: dt.datetime | None     # when central stored that read
    reads_last_24h: int                    # reads captured in the 24 hours before ``now``


def read_activity(conn, device: Device, now: dt.datetime) -> ReadActivity:
    """``device``'s newest read and its reads of the last 24 hours, camera by
    camera (central stores reads only from a device's registered cameras)."""
    newest: tuple | None = None
    recent = 0
    since = _ts(now - RECENT)
    for camera in device.cameras:
        row = conn.execute("SELECT captured_at, stored_at FROM reads WHERE device_id = ? AND camera_id = ? "
                           "ORDER BY captured_at DESC LIMIT 1", [device.device_id, camera.id]).fetchone()
        if row is not None:
            captured = _from_ts(row[0])
            if newest is None or captured > newest[0]:
                newest = (captured, _from_ts(row[1]))
            recent += conn.execute("SELECT count(*) FROM reads WHERE device_id = ? AND camera_id = ? "
                                   "AND captured_at >= ?", [device.device_id, camera.id, since]).fetchone()[0]
    return ReadActivity(newest[0] if newest else None, newest[1] if newest else None, recent)
