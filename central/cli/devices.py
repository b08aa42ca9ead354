"""``alpr-central ca | enroll | device | business | broker``: device identity,
enrollment of cameras (the department's and private businesses'), and the
broker configuration generated from the registry. A thin shell over
:mod:`central.fleet.registry`, :mod:`central.fleet.ca`, :mod:`central.fleet.enrollment` and
:mod:`central.fleet.broker`.

Every ``enroll``, ``device`` and ``business`` command runs as an
authenticated user (personal token from ``--token-file`` / ``ALPR_TOKEN_FILE``
or ``ALPR_TOKEN``, as in :mod:`central.cli.governance`); the registry checks
the role. ``ca init``, ``broker config`` and ``broker reload`` are host-admin
steps that need file access to the CA key and database but no user: they
change no registry state and ``ca init`` runs before any user exists."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import signal
import sys
import threading
from pathlib import Path

import click

from ..fleet import broker as broker_mod
from . import output as out
from .common import ConfigFailure, TempFailure, config_option
from .common import load_config as _load
from .common import parse_when as _when
from .session import token_option
from .signin import Errors as _Errors
from .signin import open_registry as _registry
from .signin import signed_in as _signed_in
from ..errors import ConfigError

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _ca(cfg):
    from ..fleet.ca import CertificateAuthority, read_passphrase
    try:
        return CertificateAuthority.load(cfg.ca.key_file, cfg.ca.cert_file, read_passphrase(cfg.ca.passphrase_file))
    except ConfigError as exc:
        raise ConfigFailure(str(exc)) from None


def _duration(value: str) -> dt.timedelta:
    m = re.fullmatch(r"(\d+)\s*([mhd])", value.strip())
    if not m or int(m.group(1)) == 0:
        raise click.BadParameter("use a number and m, h or d, e.g. 30m, 24h, 2d", param_hint="--expires")
    unit = {"m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
    return dt.timedelta(**{unit: int(m.group(1))})


def _iso(value):
    return value.isoformat(timespec="seconds") if isinstance(value, dt.datetime) else value


def _crl(cfg, ca, registry) -> bytes:
    """The broker's next CRL: revoked and held certificates, dated after the current one."""
    return ca.crl(registry.crl_entries(), after=broker_mod.crl_last_update(cfg.broker.dir))


def apply_broker(cfg, registry, ca) -> str:
    """Rewrite the broker's ACL and CRL from the registry and reload it.
    Returns a sentence for the operator."""
    try:
        pid = broker_mod.refresh(cfg.broker.dir, cfg.broker.pid_file or None, registry.active_device_ids(),
                                 _crl(cfg, ca, registry), cfg.mqtt.topic_prefix, cfg.broker.collectors,
                                 cfg.broker.run_as or None)
    except (OSError, ValueError) as exc:
        raise TempFailure(f"ACL and CRL rewritten, but the broker could not be reloaded ({exc}); "
                          "reload it yourself (systemctl reload alpr-central-broker)") from None
    if pid is None:
        return (f"broker ACL and CRL rewritten in {cfg.broker.dir}; reload the broker now (systemctl reload "
                "alpr-central-broker; with [broker] pid_file set, central reloads it itself)")
    return f"broker ACL and CRL rewritten and broker (pid {pid}) reloaded"


# -- ca ---------------------------------------------------------------------
@click.group("ca")
def ca_group() -> None:
    """Central's certificate authority."""


@ca_group.command("init")
@config_option
@click.option("--name", default="ALPR Central CA", show_default=True, help="The CA's common name.")
@click.option("--days", default=3650, show_default=True, help="CA lifetime in days.")
def ca_init(config_path: str, name: str, days: int) -> None:
    """Create the CA (key 0600, encrypted when [ca] passphrase_file is set)
    and the broker, enrollment-endpoint and collector certificates (one per
    name in [broker] collectors: ca/collector.NAME.crt, identity
    central.collector.NAME).

    Host-admin step, no user token: it runs before 'user bootstrap' (it needs
    only write access to the CA directory) and changes no registry state. It
    needs no [mqtt] paths: their defaults are the CA certificate and the first
    collector's certificate and key it issues."""
    cfg = _load(config_path)
    from ..fleet import pki
    from ..fleet.ca import init_ca, read_passphrase
    with _Errors():
        fp = init_ca(cfg.ca.key_file, cfg.ca.cert_file, name=name, days=days,
                     passphrase=read_passphrase(cfg.ca.passphrase_file))
        ca = _ca(cfg)
        ca_dir = Path(cfg.ca.cert_file).parent
        for label, cn, names, cert, key in (
                ("broker", cfg.enrollment.broker_host,
                 (cfg.enrollment.broker_host, *cfg.enrollment.server_names, "localhost", "127.0.0.1"),
                 cfg.broker.cert_file, cfg.broker.key_file),
                ("enrollment", cfg.enrollment.server_names[0], cfg.enrollment.server_names,
                 cfg.enrollment.cert_file, cfg.enrollment.key_file)):
            key_pem, cert_pem = ca.issue(cn, server_names=tuple(dict.fromkeys(names)), days=825)
            pki.write_secret(key, key_pem)
            pki.write_public(cert, cert_pem)
            click.echo(f"{label:<11} {cert}")
        for cert in _issue_collectors(ca, cfg.broker.collectors, ca_dir):
            click.echo(f"{'collector':<11} {cert}")
    click.echo(f"CA          {cfg.ca.cert_file}\nfingerprint sha256:{fp}")


def _issue_collectors(ca, names, ca_dir: Path) -> list[Path]:
    """A certificate for each collector name that has none yet."""
    from ..fleet import pki
    made = []
    for name in names:
        cert, key = ca_dir / f"collector.{name}.crt", ca_dir / f"collector.{name}.key"
        if cert.exists() and key.exists():
            continue
        key_pem, cert_pem = ca.issue(pki.collector_identity(name), days=825)
        pki.write_secret(key, key_pem)
        pki.write_public(cert, cert_pem)
        made.append(cert)
    return made


@ca_group.command("collectors")
@config_option
def ca_collectors(config_path: str) -> None:
    """Issue a certificate for each name in [broker] collectors that has none
    (ca/collector.NAME.crt and .key); then run 'broker reload' so the ACL
    lets the new collector in. Point that collector's [mqtt] cert_file and
    key_file at its own pair: two collectors sharing a certificate would
    disconnect each other (the broker uses the certificate as client id)."""
    cfg = _load(config_path)
    ca = _ca(cfg)
    with _Errors():
        made = _issue_collectors(ca, cfg.broker.collectors, Path(cfg.ca.cert_file).parent)
    for cert in made:
        click.echo(f"collector   {cert}")
    if not made:
        click.echo("every collector in [broker] collectors has a certificate")


# -- enroll -----------------------------------------------------------------
@click.group("enroll")
def enroll_group() -> None:
    """One-time enrollment tokens and the HTTPS endpoint devices redeem them at."""


@enroll_group.command("create")
@config_option
@click.option("--owner", default="department", show_default=True,
              help="'department' or the id of an enrolled business.")
@click.option("--camera", "cameras", multiple=True, required=True,
              help="Camera of the device: ID or ID:SOURCE (picamera2, device, stream, file, folder). Repeat.")
@click.option("--device", "device_id", help="Device id (default: generated). Give an existing id to re-provision.")
@click.option("--location", default="", help="Where the device is (free text, e.g. 'Main St & 1st, NB').")
@click.option("--lat", type=float, help="Latitude of the cameras.")
@click.option("--lon", type=float, help="Longitude of the cameras.")
@click.option("--heading", type=float, help="Compass heading the cameras face (degrees).")
@click.option("--expires", default="24h", show_default=True, help="Token lifetime: 30m, 24h, 2d ...")
@token_option
@json_option
def enroll_create(config_path, owner, cameras, device_id, location, lat, lon, heading, expires, token_file,
                  as_json) -> None:
    """Record a device as pending and print its one-time token (shown once).
    Admin or field tech."""
    cfg = _load(config_path)
    from ..fleet.enrollment import Token, ca_pin
    from ..fleet.registry import CameraSpec
    ttl = _duration(expires)
    if ttl > dt.timedelta(hours=cfg.enrollment.max_token_hours):
        raise click.BadParameter(f"at most {cfg.enrollment.max_token_hours}h ([enrollment] max_token_hours)",
                                 param_hint="--expires")
    ca = _ca(cfg)
    with _signed_in(cfg, token_file) as (registry, user):
        new = registry.create_enrollment(owner=owner, cameras=[CameraSpec.parse(c) for c in cameras],
                                         location=location, ttl=ttl, user=user, device_id=device_id,
                                         latitude=lat, longitude=lon, heading=heading)
    token = str(Token(new.token_id, new.secret, ca_pin(ca.cert_pem)))
    central = f"https://{cfg.enrollment.server_names[0]}:{cfg.enrollment.port}"
    if as_json:
        click.echo(json.dumps({"token": token, "device_id": new.device.device_id, "owner": owner,
                               "expires_at": _iso(new.expires_at), "central": central}))
        return
    click.echo(f"device   {new.device.device_id} (owner {owner}, cameras {', '.join(c.id for c in new.device.cameras)})")
    click.echo(f"expires  {out.when(new.expires_at, now=dt.datetime.now(dt.timezone.utc))} (one use)")
    click.echo(f"token    {token}")
    click.echo(f"\non the device:  alpr-edge provision --central {central} --token-file -   (paste the token; "
               "or --token-file FILE, or ALPR_ENROLLMENT_TOKEN)")


@enroll_group.command("list")
@config_option
@token_option
@json_option
def enroll_list(config_path, token_file, as_json) -> None:
    """Unused, unexpired tokens (ids only; secrets are never stored).
    Admin, field tech, auditor."""
    with _signed_in(_load(config_path), token_file) as (registry, user):
        rows = registry.pending_tokens(user)
    if as_json:   # one object a line, as every other listing
        for r in rows:
            click.echo(json.dumps(r))
        return
    click.echo(out.table(["token id", "device", "created by", "expires"],
                         [[r["token_id"], r["device_id"], r["created_by"], out.when(r["expires_at"])] for r in rows]))


@enroll_group.command("serve")
@config_option
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def enroll_serve(config_path, log_level) -> None:
    """Run the HTTPS enrollment endpoint until SIGTERM / Ctrl-C."""
    logging.basicConfig(level=getattr(logging, log_level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = _load(config_path)
    from ..fleet.enrollment import EnrollmentServer, EnrollmentService, EnrollmentSettings, data_public_key_pem
    ca = _ca(cfg)
    from edge_agent.wire import load_public_key
    try:
        if cfg.enrollment.data_public_key:  # the endpoint then needs no private key at all
            data_pub = Path(cfg.enrollment.data_public_key).read_bytes()
            load_public_key(data_pub)
        else:
            data_pub = data_public_key_pem(cfg.keys.data_private_keys[0])
    except (OSError, ValueError) as exc:
        name = "enrollment.data_public_key" if cfg.enrollment.data_public_key else "keys.data_private_keys[0]"
        raise ConfigFailure(f"{name}: {exc}") from None
    release_pub = None
    if cfg.release.public_key:  # handed to new devices: they trust it for updates offered over MQTT
        from edge_agent.wire import release as release_fmt
        try:
            release_pub = Path(cfg.release.public_key).read_bytes()
            release_fmt.load_public_key(release_pub)
        except (OSError, release_fmt.BundleRefused) as exc:
            raise ConfigFailure(f"release.public_key: {exc}") from None
    registry = _registry(cfg)
    service = EnrollmentService(registry, ca, data_pub, EnrollmentSettings(
        cfg.enrollment.broker_host, cfg.enrollment.broker_port, cfg.mqtt.topic_prefix, cfg.ca.device_cert_days),
        on_change=lambda: broker_mod.refresh(cfg.broker.dir, cfg.broker.pid_file or None,
                                             registry.active_device_ids(), _crl(cfg, ca, registry),
                                             cfg.mqtt.topic_prefix, cfg.broker.collectors, cfg.broker.run_as or None),
        config_signing_key=cfg.remote_config.signing_key, release_public_pem=release_pub)
    try:
        server = EnrollmentServer(service, bind=cfg.enrollment.bind, port=cfg.enrollment.port,
                                  cert_file=cfg.enrollment.cert_file, key_file=cfg.enrollment.key_file)
    except OSError as exc:
        registry.close()
        raise TempFailure(f"cannot listen on {cfg.enrollment.bind}:{cfg.enrollment.port}: {exc}") from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    logging.getLogger(__name__).info("enrollment endpoint on %s:%s", cfg.enrollment.bind, server.port)
    try:
        stop.wait()
    finally:
        server.stop()
        registry.close()


# -- device -----------------------------------------------------------------
@click.group("device")
def device_group() -> None:
    """Enrolled devices: list, show, health, alerts, suspend, resume, revoke."""


def _device_doc(d) -> dict:
    return {"device_id": d.device_id, "owner": d.owner, "status": d.status, "reason": d.status_reason,
            "location": d.location, "cameras": [c.id for c in d.cameras], "certificate_serial": d.cert_serial,
            "certificate_expires": _iso(d.cert_expires_at), "enrolled_by": d.enrolled_by,
            "enrolled_at": _iso(d.enrolled_at), "updated_at": _iso(d.updated_at)}


@device_group.command("list")
@config_option
@click.option("--owner", help="Only this owner's devices.")
@click.option("--status", type=click.Choice(["pending", "active", "suspended", "revoked"]), help="Only this status.")
@token_option
@json_option
def device_list(config_path, owner, status, token_file, as_json) -> None:
    """Devices in the registry (admin, auditor; a business user: its own)."""
    with _signed_in(_load(config_path), token_file) as (registry, user):
        devices = registry.list_devices(user, owner=owner, status=status)
    if as_json:
        for d in devices:
            click.echo(json.dumps(_device_doc(d)))
        return
    if not devices:
        click.echo("no devices match")
        return
    click.echo(out.table(["device", "owner", "status", "certificate expires", "cameras", "location"],
                         [[d.device_id, d.owner, d.status, out.when(d.cert_expires_at), [c.id for c in d.cameras],
                           d.location] for d in devices]))


@device_group.command("show")
@config_option
@token_option
@click.argument("device_id")
@json_option
def device_show(config_path, token_file, device_id, as_json) -> None:
    """One device and its registry history (admin, auditor; a business
    user: its own devices). --json: one object, each event's detail as JSON."""
    with _signed_in(_load(config_path), token_file) as (registry, user):
        device, events = registry.show_device(user, device_id)
        doc = _device_doc(device)
        doc["events"] = [{**e, "detail": out.as_json_value(e.get("detail"))} for e in events]
    if as_json:
        click.echo(json.dumps(doc, indent=1))
        return
    for key in ("device_id", "owner", "status", "reason", "location", "cameras", "certificate_serial",
                "certificate_expires", "enrolled_by", "enrolled_at", "updated_at"):
        shown = out.when(doc[key]) if key.endswith(("_at", "_expires")) else out.value(doc[key])
        click.echo(f"{key.replace('_', ' '):<20} {shown}")
    if doc["events"]:
        click.echo("\nhistory")
        click.echo(out.table(["at (UTC)", "by", "action", "detail"],
                             [[out.when(e["at"]), e["actor"], e["action"], e["detail"]] for e in doc["events"]]))


def _set_status(config_path, token_file, device_id, status, reason) -> None:
    cfg = _load(config_path)
    ca = _ca(cfg)
    with _signed_in(cfg, token_file) as (registry, user):
        device = registry.set_status(device_id, status, user=user, reason=reason)
        click.echo(f"device {device.device_id} is {device.status}")
        click.echo(apply_broker(cfg, registry, ca))


@device_group.command("suspend")
@config_option
@click.argument("device_id")
@click.option("--reason", default="", help="Why (recorded).")
@token_option
def device_suspend(config_path, device_id, reason, token_file) -> None:
    """Stop accepting reads from a device (reversible with resume). Admin or
    field tech."""
    _set_status(config_path, token_file, device_id, "suspended", reason)


@device_group.command("resume")
@config_option
@click.argument("device_id")
@click.option("--reason", default="", help="Why (recorded).")
@token_option
def device_resume(config_path, device_id, reason, token_file) -> None:
    """Accept reads from a suspended device again. Admin or field tech."""
    _set_status(config_path, token_file, device_id, "active", reason)


@device_group.command("revoke")
@config_option
@click.argument("device_id")
@click.option("--reason", required=True, help="Why (recorded), e.g. 'stolen', 'decommissioned'.")
@token_option
def device_revoke(config_path, device_id, reason, token_file) -> None:
    """Revoke a device for good: certificates revoked, ACL entry removed,
    broker reloaded; anything it still sends is not stored. Admin only."""
    _set_status(config_path, token_file, device_id, "revoked", reason)


# -- business ---------------------------------------------------------------
@click.group("business")
def business_group() -> None:
    """Private businesses that enroll cameras under a written agreement (MOU)."""


@business_group.command("enroll")
@config_option
@click.option("--id", "business_id", required=True, help="Short id: lower-case letters, digits, '-'.")
@click.option("--name", required=True, help="Legal name.")
@click.option("--contact-name", required=True, help="Contact person.")
@click.option("--contact-email", required=True, help="Contact e-mail.")
@click.option("--contact-phone", default="", help="Contact phone.")
@click.option("--mou", "mou_id", required=True, help="Agreement (MOU) id.")
@click.option("--shares", "shared_data", required=True,
              help="What the agreement lets the department share (e.g. 'plate reads, crops').")
@click.option("--share-with", required=True, help="With whom (e.g. 'CA public agencies with an agreement').")
@click.option("--retention-days", type=int, required=True, help="Days reads from its cameras are kept.")
@click.option("--consent-date", required=True, help="When the business consented (ISO 8601 date).")
@token_option
def business_enroll(config_path, business_id, name, contact_name, contact_email, contact_phone, mou_id, shared_data,
                    share_with, retention_days, consent_date, token_file) -> None:
    """Record a business, its contact, the MOU and its terms, and the consent
    date. Admin only."""
    from ..fleet.registry import Terms
    consent_at = _when(consent_date, "--consent-date")
    with _signed_in(_load(config_path), token_file) as (registry, user):
        b = registry.enroll_business(business_id, name=name, contact_name=contact_name,
                                     contact_email=contact_email, contact_phone=contact_phone, mou_id=mou_id,
                                     terms=Terms(shared_data, share_with, retention_days),
                                     consent_at=consent_at, user=user)
    click.echo(f"business {b.business_id} enrolled under MOU {b.mou_id}; "
               f"enroll its cameras with: alpr-central enroll create --owner {b.business_id} --camera ...; "
               f"its people's health logins: alpr-central user add NAME --role business "
               f"--organization {b.business_id}")


def _business_doc(b) -> dict:
    return {"business_id": b.business_id, "name": b.name, "status": b.status, "mou_id": b.mou_id,
            "contact": {"name": b.contact_name, "email": b.contact_email, "phone": b.contact_phone},
            "terms": {"shared_data": b.terms.shared_data, "share_with": b.terms.share_with,
                      "retention_days": b.terms.retention_days},
            "consent_at": _iso(b.consent_at), "enrolled_at": _iso(b.enrolled_at), "enrolled_by": b.enrolled_by,
            "withdrawn_at": _iso(b.withdrawn_at)}


@business_group.command("list")
@config_option
@token_option
@json_option
def business_list(config_path, token_file, as_json) -> None:
    """Enrolled businesses (admin, auditor)."""
    with _signed_in(_load(config_path), token_file) as (registry, user):
        items = registry.businesses(user)
    if as_json:
        for b in items:
            click.echo(json.dumps(_business_doc(b)))
        return
    click.echo(out.table(["business", "status", "MOU", "retention", "name"],
                         [[b.business_id, b.status, b.mou_id, f"{b.terms.retention_days} days", b.name]
                          for b in items]))


@business_group.command("show")
@config_option
@token_option
@click.argument("business_id", required=False)
@json_option
def business_show(config_path, token_file, business_id, as_json) -> None:
    """A business's agreement: MOU, what it shares and with whom, retention,
    consent, contact, status. A business user reads its own (the default);
    admin, auditor and field tech any."""
    with _signed_in(_load(config_path), token_file) as (registry, user):
        if business_id is None and user.role.value != "business":
            raise click.UsageError("name the business: alpr-central business show BUSINESS_ID "
                                   "(ids: alpr-central business list)")
        b = registry.agreement(user, business_id)
    doc = _business_doc(b)
    if as_json:
        click.echo(json.dumps(doc))
        return
    for label, value in (("business", f"{b.business_id} ({b.name})"), ("status", b.status),
                         ("agreement", b.mou_id), ("shares", b.terms.shared_data), ("with", b.terms.share_with),
                         ("kept", f"{b.terms.retention_days} days"),
                         ("consent", b.consent_at and out.when(b.consent_at)),
                         ("enrolled", f"{out.when(b.enrolled_at)} by {b.enrolled_by}"),
                         ("contact", ", ".join(x for x in (b.contact_name, b.contact_email, b.contact_phone) if x)),
                         ("withdrawn", b.withdrawn_at and out.when(b.withdrawn_at))):
        if value:
            click.echo(f"{label:<10} {value}")


@business_group.command("withdraw")
@config_option
@click.argument("business_id")
@click.option("--reason", default="business withdrew", show_default=True, help="Why (recorded).")
@token_option
def business_withdraw(config_path, business_id, reason, token_file) -> None:
    """The business leaves: its devices are suspended and its users disabled.
    Reads already stored follow the retention policy. Admin only."""
    cfg = _load(config_path)
    ca = _ca(cfg)
    with _signed_in(cfg, token_file) as (registry, user):
        ids = registry.withdraw_business(business_id, user=user, reason=reason)
        click.echo(f"business {business_id} withdrawn; suspended: {', '.join(ids) or 'no devices'}")
        click.echo(apply_broker(cfg, registry, ca))


@business_group.command("health")
@config_option
@token_option
@click.argument("business_id", required=False)
@json_option
def business_health(config_path, token_file, business_id, as_json) -> None:
    """Health of a business's devices (status, certificate, when central
    stored the newest read, reads captured in the last 24 hours; never reads).
    Admin, auditor; a business user: its own (the default)."""
    with _signed_in(_load(config_path), token_file) as (registry, user):
        if business_id is None and user.role.value != "business":   # staff have no business of their own
            raise click.UsageError("name the business: alpr-central business health BUSINESS_ID "
                                   "(ids: alpr-central business list)")
        items = registry.health(user, business_id)
    if as_json:
        for h in items:
            click.echo(json.dumps({"device_id": h.device_id, "status": h.status,
                                   "certificate_expires": _iso(h.cert_expires_at),
                                   "last_read_at": _iso(h.last_read_at), "reads_last_24h": h.reads_last_24h}))
        return
    click.echo(out.table(["device", "status", "certificate expires", "last read", "reads (24 h)"],
                         [[h.device_id, h.status, out.when(h.cert_expires_at), out.when(h.last_read_at),
                           h.reads_last_24h] for h in items]))


# -- broker -----------------------------------------------------------------
@click.group("broker")
def broker_group() -> None:
    """Mosquitto configuration generated from the registry."""


@broker_group.command("config")
@config_option
def broker_config(config_path) -> None:
    """Write mosquitto.conf, the ACL (active devices only) and the CRL into [broker] dir.

    Host-admin step, no user token: it needs file access to the CA and the
    database and writes only what the registry already says."""
    cfg = _load(config_path)
    ca = _ca(cfg)
    registry = _registry(cfg)
    try:
        files = broker_mod.write_config(
            cfg.broker.dir, port=cfg.broker.port, bind=cfg.broker.bind, ca_file=cfg.ca.cert_file,
            cert_file=cfg.broker.cert_file, key_file=cfg.broker.key_file, prefix=cfg.mqtt.topic_prefix,
            run_as=cfg.broker.run_as or None, devices=registry.active_device_ids(),
            crl_file=str(Path(cfg.broker.dir) / "crl.pem"), pid_file=cfg.broker.pid_file or None,
            collectors=cfg.broker.collectors)
        broker_mod.write_registry_files(cfg.broker.dir, registry.active_device_ids(),
                                        _crl(cfg, ca, registry), cfg.mqtt.topic_prefix,
                                        cfg.broker.collectors, cfg.broker.run_as or None)
    finally:
        registry.close()
    click.echo(f"wrote {files.conf}, {files.acl} and {Path(cfg.broker.dir) / 'crl.pem'}")


@broker_group.command("run")
@config_option
def broker_run(config_path) -> None:
    """Run Mosquitto in the foreground with the generated config (rewritten
    first from the registry, as 'broker config' does): listening on [broker]
    bind (loopback unless configured), TLS with client certificates. As root
    it needs [broker] run_as, the account Mosquitto switches to. Stops on
    SIGTERM / Ctrl-C (the signal goes to Mosquitto itself)."""
    cfg = _load(config_path)
    if os.geteuid() == 0 and not cfg.broker.run_as:
        raise ConfigFailure("running as root: set [broker] run_as to the unprivileged account Mosquitto should "
                            "switch to (Debian: \"mosquitto\"), which must be able to read [broker] cert_file and "
                            "key_file; or run this as that account")
    try:
        binary = broker_mod.mosquitto_binary()
    except FileNotFoundError as exc:
        raise ConfigFailure(str(exc)) from None
    from ..keyfiles import check
    problems = [p for p in check(cfg) if p.key.startswith("broker.")]
    if problems:
        raise ConfigFailure("; ".join(str(p) for p in problems))
    ctx = click.get_current_context()
    ctx.invoke(broker_config, config_path=config_path)
    conf = Path(cfg.broker.dir) / "mosquitto.conf"
    click.echo(f"mosquitto on {cfg.broker.bind}:{cfg.broker.port} with {conf}", err=True)
    os.execv(binary, [binary, "-c", str(conf)])   # Mosquitto in this process: signals reach it directly


@broker_group.command("reload")
@config_option
def broker_reload(config_path) -> None:
    """Rewrite the ACL and CRL from the registry and reload the broker.

    Host-admin step, no user token: it changes no registry state."""
    cfg = _load(config_path)
    ca = _ca(cfg)
    registry = _registry(cfg)
    try:
        click.echo(apply_broker(cfg, registry, ca))
    finally:
        registry.close()
