"""Is the agent healthy? One small interface, one real implementation that
reads the ``status.json`` the running agent rewrites every second.

Healthy means, all at once within the time allowed:

- **up**: ``status.json`` was written after ``since`` (by a process started
  after the switch) and, when a version is expected, by that version;
- **frames**: every camera that is not a finished file/folder replay is
  ``running`` and its frame count went up between two looks;
- **sync**: the agent is connected to the broker.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from pathlib import Path
from typing import Protocol


@dataclasses.dataclass(frozen=True)
class HealthReport:
    ok: bool
    problems: tuple[str, ...] = ()
    version: str | None = None

    def summary(self) -> str:
        return "healthy" if self.ok else "; ".join(self.problems)


class HealthCheck(Protocol):
    def wait(self, *, since: float, expect_version: str | None, timeout: float) -> HealthReport:
        """Poll until healthy or ``timeout`` seconds passed; the last report."""


class StatusFileHealth:
    """Reads ``<data_dir>/status.json``. ``stale_after``: a status older than
    this (seconds) means the agent is not running."""

    def __init__(self, status_path: str | Path, *, require_sync: bool = True, poll: float = 1.0,
                 stale_after: float = 10.0, clock=time.time, sleep=time.sleep) -> None:
        self.path = Path(status_path)
        self.require_sync = require_sync
        self.poll = poll
        self.stale_after = stale_after
        self.clock = clock
        self.sleep = sleep

    def _read(self) -> dict | None:
        try:
            doc = json.loads(self.path.read_text())
            return doc if isinstance(doc, dict) else None
        except (OSError, ValueError):
            return None

    def check(self, doc: dict | None, first: dict | None, *, since: float, expect_version: str | None
              ) -> HealthReport:
        """One look; ``first`` is an earlier fresh look (frames must have advanced since)."""
        if doc is None:
            return HealthReport(False, ("the agent has written no status",))
        try:
            written = dt.datetime.fromisoformat(doc["updated_at"]).timestamp()
        except (KeyError, TypeError, ValueError):
            return HealthReport(False, ("the agent's status is unreadable",))
        version = doc.get("agent_version")
        if written < since - 1.0 or self.clock() - written > self.stale_after:
            return HealthReport(False, ("the agent is not running (no fresh status)",), version)
        problems = []
        if expect_version is not None and version != expect_version:
            problems.append(f"the running agent is version {version}, not {expect_version}")
        cams = doc.get("cameras") or []
        if not cams:
            problems.append("no camera reports")
        before = {c.get("id"): c.get("frames", 0) for c in (first or {}).get("cameras") or []}
        for cam in cams:
            if cam.get("state") == "finished" and cam.get("frames", 0) > 0:
                continue  # a replayed file that ended: it did read frames
            if cam.get("state") != "running":
                problems.append(f"camera {cam.get('id')} is {cam.get('state')}")
            elif first is None or cam.get("frames", 0) <= before.get(cam.get("id"), 0):
                problems.append(f"camera {cam.get('id')} delivers no new frames")
        if self.require_sync and not (doc.get("broker") or {}).get("connected"):
            problems.append("sync is not connected to the broker")
        return HealthReport(not problems, tuple(problems), version)

    def wait(self, *, since: float, expect_version: str | None, timeout: float) -> HealthReport:
        deadline = self.clock() + timeout
        first = None
        report = HealthReport(False, ("not checked",))
        while True:
            doc = self._read()
            report = self.check(doc, first, since=since, expect_version=expect_version)
            if report.ok:
                return report
            if first is None and doc is not None and report.problems and all(
                    "no new frames" in p or "not connected" in p for p in report.problems):
                first = doc  # fresh and the right version: frames are counted from here
            if self.clock() >= deadline:
                return report
            self.sleep(self.poll)
