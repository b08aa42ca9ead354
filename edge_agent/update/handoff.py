"""The root side of an update offered over MQTT: ``alpr-edge update
apply-spool``, started by ``alpr-edge-update.path`` when the agent renames a
verified bundle into ``<data_dir>/update/spool/``.

The spool is the agent's folder, so everything in it is treated as hostile:
it is reached without following links below the data folder, only names ``<rollout>-<MAJOR.MINOR.PATCH>.alpr`` are taken, opened without
following links, must be regular files, and are copied into the root-owned
``<app_dir>`` before anything reads them; the copy then goes through the same
:class:`~edge_agent.update.updater.Updater` as ``update apply`` (signature
checked again with the key beside the config, version rule, install beside,
switch, health check, roll back). Nothing is ever written into the spool.
The outcome is the ``spool`` entry of ``<app_dir>/state.json`` (root's, readable
by the agent), which the agent reports to central.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import time
from pathlib import Path

from ..errors import UpdateError
from ..wire import release as fmt
from . import load_trusted_key
from .health import StatusFileHealth
from .releases import Releases
from .updater import CommandRestarter, Updater

logger = logging.getLogger(__name__)

NAME_RE = re.compile(r"^([1-9]\d{0,17})-((?:0|[1-9]\d{0,5})\.(?:0|[1-9]\d{0,5})\.(?:0|[1-9]\d{0,5}))\.alpr\Z")
MAX_BUNDLE = 1 << 32


def _open_spool(spool: Path, data_dir: Path | None) -> int | None:
    """A descriptor of the spool folder, reached without following a link in
    any component the agent could have replaced (below ``data_dir``, or the
    spool itself); None when there is no spool."""
    spool = Path(os.path.abspath(spool))
    try:
        rel = spool.relative_to(os.path.abspath(data_dir)) if data_dir else None
    except ValueError:
        rel = None
    start, parts = (Path(os.path.abspath(data_dir)), rel.parts) if rel is not None else (spool.parent, (spool.name,))
    try:
        fd = os.open(start, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return None
    try:
        for part in parts:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except FileNotFoundError:
        os.close(fd)
        return None
    except OSError as exc:  # ELOOP / ENOTDIR: a link or a file where a folder should be
        os.close(fd)
        raise UpdateError(f"the update spool {spool} is not a plain folder ({exc.strerror})") from None
    return fd


def _take(spool: Path, incoming: Path, data_dir: Path | None = None) -> tuple[str, int, str] | None:
    """Copy the newest handed-over bundle out of the spool into ``incoming``
    (root's); remove every bundle from the spool. (name, rollout, version) or None."""
    dfd = _open_spool(spool, data_dir)
    if dfd is None:
        return None
    try:
        named = []
        for entry in os.scandir(dfd):
            m = NAME_RE.match(entry.name)
            if m:
                named.append((int(m.group(1)), entry.name, m.group(2)))
            elif entry.name.endswith(".alpr"):
                logger.warning("ignoring %r in the update spool (not a handed-over bundle name)", entry.name)
                os.unlink(entry.name, dir_fd=dfd)
        if not named:
            return None
        named.sort()
        rollout, name, version = named[-1]
        for _r, older, _v in named[:-1]:
            os.unlink(older, dir_fd=dfd)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
        except OSError:
            os.unlink(name, dir_fd=dfd)  # a link (or worse) where a bundle should be: dropped, never followed
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_BUNDLE:
                raise UpdateError(f"{name} in the update spool is not a regular file of a sane size")
            out = os.open(incoming, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            try:
                while True:
                    data = os.read(fd, 1 << 20)
                    if not data:
                        break
                    os.write(out, data)
                os.fsync(out)
            finally:
                os.close(out)
        finally:
            os.close(fd)
            os.unlink(name, dir_fd=dfd)  # taken: the path unit does not fire again for it
        return name, rollout, version
    finally:
        os.close(dfd)


def apply_spool(spool: str | os.PathLike, app_dir: str | os.PathLike, config_path, *, audit=None,
                health_timeout: float = 120.0, restart_command=("systemctl", "restart", "alpr-edge.service"),
                require_sync: bool = True, clock=time.time) -> dict:
    releases = Releases(app_dir)
    releases.app_dir.mkdir(parents=True, exist_ok=True)
    incoming = releases.app_dir / ".incoming.alpr"
    try:
        taken = _take(Path(spool), incoming, _data_dir(config_path))
    except (OSError, UpdateError) as exc:
        logger.error("cannot take the handed-over bundle: %s", exc)
        return {"result": "failed", "file": "", "reason": str(exc)}
    if taken is None:
        return {"result": "none", "file": ""}
    name, rollout, version = taken
    outcome = {"file": name, "rollout_id": rollout, "version": version}
    try:
        try:
            key = load_trusted_key(config_path)
        except fmt.BundleRefused as exc:
            if audit is not None:
                audit.append("update-refused", {"reason": str(exc)})
            raise
        status = Path(_data_dir(config_path)) / "status.json"
        updater = Updater(releases, key, CommandRestarter(restart_command),
                          StatusFileHealth(status, require_sync=require_sync), audit=audit,
                          health_timeout=health_timeout, clock=clock)
        result = updater.apply(incoming)
        outcome.update(result=result.outcome, reason="; ".join(result.health.problems)[:500])
    except fmt.BundleRefused as exc:
        outcome.update(result="refused", reason=str(exc)[:500])
    except UpdateError as exc:
        outcome.update(result="failed", reason=str(exc)[:500])
    finally:
        incoming.unlink(missing_ok=True)
    releases.save_state(spool={**outcome, "at": clock()})
    logger.info("handed-over update %s: %s", name, outcome["result"])
    return outcome


def _data_dir(config_path) -> Path:
    from ..config import load
    return load(config_path).data_dir
