"""``alpr-central device health`` and ``device alerts [--watch]``: each
device's latest heartbeat in human form, and what needs a field tech's
attention (computed now, or followed live as ``alpr-central run`` records it). A thin shell
over :mod:`central.fleet.health` and :mod:`central.fleet.alerts`; the registry
decides who sees which devices (admins, auditors and field techs: all; a
business user: its own)."""

from __future__ import annotations

import datetime as dt
import json

import click

from ..errors import PolicyError, RegistryError, StoreError
from . import output as out
from .common import TempFailure, config_option
from .common import load_config as _load
from .session import read_token, token_option
from .signin import signed_in

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output (one object a line).")
owner_option = click.option("--owner", help="Only this owner's devices ('department' or a business id).")


def _views(config_path, token_file, owner, *, alerts: bool = False):
    cfg = _load(config_path)
    from ..fleet.alerts import Thresholds, fleet_alerts
    from ..fleet.health import fleet_health
    with signed_in(cfg, token_file) as (registry, user):
        if alerts:
            thresholds = Thresholds.from_config(cfg.alerts)
            return cfg, fleet_alerts(registry, registry.db, user, thresholds, owner=owner)
        return cfg, fleet_health(registry, registry.db, user, owner=owner)


def _ago(t: dt.datetime | None, now: dt.datetime) -> str:
    if t is None:
        return "never"
    return f"{_span((now - t).total_seconds())} ago" if now >= t else f"in {_span((t - now).total_seconds())}"


def _span(seconds: float) -> str:
    s = int(abs(seconds))
    if s < 90:
        return f"{s} s"
    if s < 90 * 60:
        return f"{s // 60} min"
    if s < 48 * 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} days"


def _bytes(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _or(value, fmt: str, missing: str = "not reported") -> str:
    return missing if value is None else fmt.format(value)


def render(view, now: dt.datetime) -> list[str]:
    """The human lines for one device."""
    head = f"{view.device_id}  ({view.owner}, {view.status}, {view.connection or 'connection not reported'})"
    latest = view.latest
    if latest is None:
        return [head, "  no heartbeat received yet"]
    h = latest.health
    cams = [f"  camera {c.id}: {c.state}, {c.fps:g} fps, {c.frames} frames, {c.errors} errors"
            + (f", last error: {c.last_error}" if c.last_error else "")
            + (f", TAMPER: {', '.join(c.tamper)}" if c.tamper else "") for c in h.cameras]
    oldest = ("empty" if h.buffer_depth == 0 else
              _or(h.buffer_oldest_age_days, "oldest {} days old", "oldest age not reported"))
    offset = latest.clock_offset_s
    source = "device's NTP" if h.clock_offset_s is not None else "measured at central"
    return [
        head,
        f"  heard {_ago(latest.received_at, now)}; agent {h.agent_version}, model {h.model_version or '-'}, "
        f"up {_span(h.agent_uptime_s)}",
        f"  OS {h.os_version}; system up {_or(h.system_uptime_s and _span(h.system_uptime_s), '{}')}",
        f"  CPU load {_or(h.load_1m, '{:g}')}, temperature {_or(h.cpu_temp_c, '{:g} °C')}; memory "
        f"{_bytes(h.memory_available_bytes)} free of {_bytes(h.memory_total_bytes)}; disk "
        f"{_bytes(h.disk_free_bytes)} free{' (FULL)' if h.disk_full else ''}",
        f"  buffer {h.buffer_depth} reads ({_bytes(h.buffer_bytes)}), {oldest}; last read "
        f"{_or(h.last_read_at and h.last_read_at.strftime('%Y-%m-%d %H:%M UTC'), '{}', 'none since the agent started')}",
        f"  clock {offset:+.3f} s ({source}); certificate expires "
        f"{_or(h.cert_expires_at and h.cert_expires_at.date().isoformat(), '{}')}"
        f"{'' if h.cert_expires_at is None else ' (' + _ago(h.cert_expires_at, now) + ')'}",
        *cams,
    ]


@click.command("health")
@config_option
@owner_option
@token_option
@json_option
@click.argument("device_id", required=False)
def health(config_path, owner, token_file, as_json, device_id) -> None:
    """Each device's latest heartbeat: versions, uptime, CPU, memory, disk,
    buffer, cameras (frame rate, errors, tamper), clock and certificate
    (admin, auditor, field tech; a business user: its own devices)."""
    from ..fleet.health import to_doc
    _cfg, views = _views(config_path, token_file, owner)
    if device_id:
        views = [v for v in views if v.device_id == device_id]
        if not views:
            raise click.ClickException(f"no device {device_id!r} you may see")
    if as_json:
        for v in views:
            click.echo(json.dumps(to_doc(v), sort_keys=True))
        return
    now = dt.datetime.now(dt.timezone.utc)
    for i, v in enumerate(views):
        if i:
            click.echo("")
        click.echo("\n".join(render(v, now)))
    if not views:
        click.echo("no devices")


@click.command("alerts")
@config_option
@owner_option
@token_option
@json_option
@click.option("--watch", is_flag=True,
              help="Follow alerts as 'alpr-central run' raises and clears them: the open ones first, then one "
                   "line per change, until Ctrl-C (or --timeout).")
@click.option("--timeout", type=click.FloatRange(min=0), default=None,
              help="With --watch: stop after this many seconds (default: never).")
@click.option("--poll", type=click.FloatRange(0.1, 60), default=1.0, show_default=True,
              help="With --watch: seconds between looks at the alert log.")
def alerts(config_path, owner, token_file, as_json, watch, timeout, poll) -> None:
    """What needs attention: devices offline too long, buffers that keep
    growing, low disk, clocks off by more than the limit, certificates about to
    expire, cameras tampered with (thresholds: [alerts] in the config). Admin,
    auditor, field tech; a business user: its own devices.

    Without --watch the alerts are computed now. With --watch the alerts
    'alpr-central run' records (each once when raised, once when cleared,
    every [alerts] check_seconds) are followed live; --json prints one object
    a line with 'event': open (already open when the watch began), raised or
    cleared."""
    if watch:
        _watch(config_path, token_file, owner, as_json, timeout, poll)
        return
    _cfg, found = _views(config_path, token_file, owner, alerts=True)
    if as_json:
        for a in found:
            click.echo(json.dumps(a.to_doc(), sort_keys=True))
        return
    if not found:
        click.echo("no alerts")
        return
    now = dt.datetime.now(dt.timezone.utc)
    click.echo(out.table(["device", "alert", "since", "what"],
                         [[a.device_id, a.kind, a.since and out.ago(now - a.since), a.message] for a in found]))


def _watch(config_path, token_file, owner, as_json, timeout, poll) -> None:
    import time

    from ..fleet.alert_feed import events_after, last_check, last_event_id, open_alerts
    from ..fleet.registry import Registry
    cfg = _load(config_path)
    try:
        registry = Registry(cfg.store.database)
    except StoreError as exc:
        raise TempFailure(str(exc)) from None
    deadline = None if timeout is None else time.monotonic() + timeout
    warned = False

    def emit(ev, event):
        if as_json:
            click.echo(json.dumps({**ev.to_doc(), "event": event}, sort_keys=True))
        else:
            at = ev.raised_at if event == "open" else ev.at
            click.echo(f"{out.when(at)}  {event.upper() if event == 'raised' else event:<7}  "
                       f"{ev.device_id:<20} {ev.kind:<21} {ev.message}")   # a stream: fixed widths, nothing cut

    try:
        user = registry.authenticate(read_token(token_file))
        visible = {d.device_id for d in registry.list_devices(user, owner=owner)}
        cursor = last_event_id(registry.db)
        for ev in open_alerts(registry.db):
            if ev.device_id in visible and ev.event_id <= cursor:
                emit(ev, "open")
        while deadline is None or time.monotonic() < deadline:
            checked = last_check(registry.db)
            now = dt.datetime.now(dt.timezone.utc)
            if not warned and (checked is None or (now - checked[0]).total_seconds() > 3 * checked[1] + 5):
                click.echo("warning: no 'alpr-central run' is evaluating alerts (last: "
                           f"{'never' if checked is None else _ago(checked[0], now)}); nothing new will show "
                           "until one runs", err=True)
                warned = True
            events = events_after(registry.db, cursor)
            if events:  # who may see what is asked again: a suspended user stops here
                visible = {d.device_id for d in registry.list_devices(user, owner=owner)}
            for ev in events:
                cursor = ev.event_id
                if ev.device_id in visible:
                    emit(ev, ev.event)
            time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))
    except KeyboardInterrupt:
        pass
    except (RegistryError, PolicyError) as exc:
        raise click.ClickException(str(exc)) from None
    except StoreError as exc:
        raise TempFailure(str(exc)) from None
    finally:
        registry.close()


COMMANDS = [health, alerts]
