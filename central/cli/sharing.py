"""``alpr-central share ...`` (agreements, requests, approvals, signed exports,
offline verification, the published recipients list) and
``alpr-central keys init-signing``."""

from __future__ import annotations

import dataclasses
import json

import click

from ..governance.bundle import init_signing_key, load_signing_key, load_verify_key, verify_bundle
from . import output as out
from .session import Session, json_option, parse_date, token_option
from .common import config_option
from .common import parse_when as _when
from ..errors import BundleError


def _registry(s: Session):
    from ..governance.sharing import SharingRegistry
    return SharingRegistry(s.conn, s.cfg.sharing, purposes=s.cfg.query.purposes,
                           case_number_pattern=s.cfg.query.case_number_pattern)


@click.command("init-signing")
@click.option("--private", "private_path", required=True, type=click.Path(dir_okay=False),
              help="Where to write the Ed25519 private key (mode 0600); config [sharing] signing_key.")
@click.option("--public", "public_path", required=True, type=click.Path(dir_okay=False),
              help="Where to write the public key (give it to recipients and auditors).")
def keys_init_signing(private_path, public_path) -> None:
    """Generate the Ed25519 key that signs export bundles."""
    try:
        kid = init_signing_key(private_path, public_path)
    except FileExistsError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {private_path} (0600) and {public_path}; key id {kid}")


@click.group("share")
def share_group() -> None:
    """Sharing with public agencies under an agreement (Civ. Code 1798.90.55)."""


@share_group.command("agreement-add")
@config_option
@token_option
@click.option("--id", "agreement_id", required=True, help="Agreement id (e.g. MOU-2026-014).")
@click.option("--agency", required=True, help="Agency name.")
@click.option("--agency-type", required=True, help="public-agency, federal-agency, commercial, ...")
@click.option("--jurisdiction", required=True, help="State code, e.g. CA.")
@click.option("--effective", required=True, help="Effective date (YYYY-MM-DD).")
@click.option("--expires", required=True, help="Expiry date (YYYY-MM-DD).")
@click.option("--purpose", "purposes", multiple=True, help="Authorized purpose (repeat; default: all configured).")
def agreement_add(config_path, token_file, agreement_id, agency, agency_type, jurisdiction, effective, expires,
                  purposes) -> None:
    """Register a sharing agreement (admin)."""
    with Session(config_path, token_file) as s:
        a = _registry(s).add_agreement(s.user, agreement_id=agreement_id, agency=agency, agency_type=agency_type,
                                       jurisdiction=jurisdiction, effective_on=parse_date(effective, "--effective"),
                                       expires_on=parse_date(expires, "--expires"), purposes=tuple(purposes))
    click.echo(f"agreement {a.agreement_id} with {a.agency} ({a.agency_type}, {a.jurisdiction}) "
               f"{a.effective_on}..{a.expires_on}")


@share_group.command("agreement-revoke")
@config_option
@token_option
@click.argument("agreement_id")
def agreement_revoke(config_path, token_file, agreement_id) -> None:
    """Revoke an agreement (admin); nothing more is shared under it."""
    with Session(config_path, token_file) as s:
        _registry(s).revoke_agreement(s.user, agreement_id)
    click.echo(f"agreement {agreement_id} revoked")


@share_group.command("agreements")
@config_option
@token_option
@json_option
def agreements(config_path, token_file, as_json) -> None:
    """List agreements and whether each agency is eligible today."""
    from ..errors import SharingRefused
    with Session(config_path, token_file) as s:
        reg = _registry(s)
        rows = []
        for a in reg.agreements():
            try:
                reg.check_eligible(a.agreement_id)
                why = "eligible"
            except SharingRefused as exc:
                why = str(exc)
            rows.append((a, why))
    if as_json:
        click.echo(json.dumps([{"agreement_id": a.agreement_id, "agency": a.agency, "agency_type": a.agency_type,
                                "jurisdiction": a.jurisdiction, "effective_on": a.effective_on.isoformat(),
                                "expires_on": a.expires_on.isoformat(), "purposes": list(a.purposes),
                                "status": why} for a, why in rows], indent=1))
        return
    click.echo(out.table(["agreement", "agency", "type", "state", "expires", "status"],
                         [[a.agreement_id, a.agency, a.agency_type, a.jurisdiction, a.expires_on.isoformat(), why]
                          for a, why in rows]))


@share_group.command("request")
@config_option
@token_option
@click.option("--agreement", "agreement_id", required=True, help="The requesting agency's agreement id.")
@click.option("--person", required=True, help="The requesting person at that agency.")
@click.option("--case", "case_number", required=True, help="Their case or incident number.")
@click.option("--purpose", required=True, help="One of the configured purposes.")
@click.option("--plate", "plates", multiple=True, required=True, help="Plate requested (repeat).")
@click.option("--since", required=True, help="Reads captured from (ISO 8601).")
@click.option("--until", required=True, help="... until (ISO 8601).")
def share_request(config_path, token_file, agreement_id, person, case_number, purpose, plates, since,
                  until) -> None:
    """Enter a request from an agency (operator, supervisor)."""
    with Session(config_path, token_file) as s:
        req = _registry(s).request(s.user, agreement_id=agreement_id, requesting_person=person,
                                   case_number=case_number, purpose=purpose, plates=plates,
                                   since=_when(since, "--since"), until=_when(until, "--until"))
    click.echo(f"request {req.request_id} entered; a supervisor other than you must approve it")


def _decide(config_path, token_file, request_id, approve, note):
    with Session(config_path, token_file) as s:
        req = _registry(s).decide(s.user, request_id, approve=approve, note=note)
    click.echo(f"request {req.request_id} {req.status}")


@share_group.command("approve")
@config_option
@token_option
@click.argument("request_id", type=int)
@click.option("--note", default="", help="Note for the record.")
def share_approve(config_path, token_file, request_id, note) -> None:
    """Approve a request (a supervisor who did not enter it)."""
    _decide(config_path, token_file, request_id, True, note)


@share_group.command("deny")
@config_option
@token_option
@click.argument("request_id", type=int)
@click.option("--note", required=True, help="Why it is denied.")
def share_deny(config_path, token_file, request_id, note) -> None:
    """Deny a request (supervisor)."""
    _decide(config_path, token_file, request_id, False, note)


@share_group.command("requests")
@config_option
@token_option
@click.option("--status", type=click.Choice(["pending", "approved", "denied", "exported"]), help="Only these.")
@json_option
def share_requests(config_path, token_file, status, as_json) -> None:
    """List sharing requests."""
    from ..governance.users import Permission, in_words
    with Session(config_path, token_file) as s:
        if not (s.user.can(Permission.REQUEST_SHARE) or s.user.can(Permission.READ_AUDIT)):
            raise click.ClickException(f"{in_words(s.user)} may not list sharing requests")
        reqs = _registry(s).requests(status)
    if as_json:
        click.echo(out.dumps([{"request_id": r.request_id, "agreement_id": r.agreement_id, "status": r.status,
                               "case_number": r.case_number, "purpose": r.purpose, "plates": len(r.plates),
                               "since": r.since, "until": r.until, "entered_by": r.entered_by,
                               "entered_at": r.entered_at, "decided_by": r.decided_by, "decided_at": r.decided_at,
                               "exported_at": r.exported_at, "exported_reads": r.exported_reads} for r in reqs]))
        return
    if not reqs:
        click.echo("no sharing requests" + (f" {status}" if status else ""))
        return
    click.echo(out.table(["request", "agreement", "status", "case", "purpose", "plates", "entered", "by", "decided by",
                          "reads exported"],
                         [[r.request_id, r.agreement_id, r.status, r.case_number, r.purpose, len(r.plates) or "all",
                           out.when(r.entered_at), r.entered_by, r.decided_by, r.exported_reads] for r in reqs]))


@share_group.command("export")
@config_option
@token_option
@click.argument("request_id", type=int)
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Bundle file to write (.zip).")
@click.option("--no-images", is_flag=True, help="Leave plate crops out of the bundle.")
def share_export(config_path, token_file, request_id, out_path, no_images) -> None:
    """Write the signed bundle of an approved request (supervisor)."""
    with Session(config_path, token_file) as s:
        key = load_signing_key(s.cfg.sharing.signing_key)
        req = _registry(s).export(s.user, request_id, s.store, out_path, key, include_images=not no_images)
    click.echo(f"wrote {out_path}: {req.exported_reads} read(s), sha256 {req.bundle_sha256}")


@share_group.command("verify")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False))
@click.option("--public-key", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Central's export public key (from 'keys init-signing').")
@json_option
def share_verify(bundle, public_key, as_json) -> None:
    """Verify an export bundle offline: signature, every file's hash, nothing added or missing."""
    try:
        result = verify_bundle(bundle, load_verify_key(public_key))
    except BundleError as exc:
        raise click.ClickException(f"{bundle}: NOT VALID: {exc}") from None
    m = result.manifest
    if as_json:
        click.echo(json.dumps({"valid": True, "manifest": m}, indent=1))
        return
    click.echo(f"valid: request {m['request_id']} for {m['recipient']['agency']} (agreement "
               f"{m['recipient']['agreement_id']}), case {m['case_number']}, purpose {m['purpose']}; "
               f"{result.read_count} read(s); approved by {m['approved_by']}, exported {out.when(m['exported_at'])}")


@share_group.command("list-recipients")
@config_option
@token_option
@json_option
def list_recipients(config_path, token_file, as_json) -> None:
    """The entities data was shared with, for the published usage and privacy policy."""
    with Session(config_path, token_file) as s:
        rows = _registry(s).recipients(s.user)
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(r) for r in rows], indent=1))
        return
    if not rows:
        click.echo("no data has been shared")
        return
    click.echo(out.table(["agency", "type", "state", "agreement", "exports", "reads", "first shared", "last shared"],
                         [[r.agency, r.agency_type, r.jurisdiction, r.agreement_id, r.exports, r.reads,
                           r.first_shared, r.last_shared] for r in rows]))


COMMANDS = (share_group,)
