"""Sharing: only public agencies with an agreement in force; a second person
approves; the export is signed and verifies offline; forged or altered
bundles fail; every step is logged; the recipients list."""

from __future__ import annotations

import datetime as dt
import io
import re
import json
import zipfile

import pytest
from click.testing import CliRunner

from central.governance.bundle import init_signing_key, load_signing_key, load_verify_key, verify_bundle
from central.cli import main
from central.config import Sharing
from central.errors import BundleError, PermissionDenied, PolicyError, SharingRefused
from central.governance.sharing import SharingRegistry
from test_governance_support import PURPOSES, T0, world  # noqa: F401

DAY = dt.timedelta(days=1)


@pytest.fixture
def keys(tmp_path):
    init_signing_key(tmp_path / "signing-key.pem", tmp_path / "signing-key.pub.pem")
    return load_signing_key(tmp_path / "signing-key.pem"), tmp_path / "signing-key.pub.pem"


@pytest.fixture
def reg(world):
    r = SharingRegistry(world.conn, Sharing(), purposes=PURPOSES, clock=world.clock)
    today = T0.date()
    for aid, agency, kind, state, eff, exp in [
            ("MOU-1", "Glendale Police Department", "public-agency", "CA", today - 100 * DAY, today + 265 * DAY),
            ("MOU-OLD", "Pasadena Police Department", "public-agency", "CA", today - 500 * DAY, today - 1 * DAY),
            ("MOU-NV", "Las Vegas Metro PD", "public-agency", "NV", today - 10 * DAY, today + 300 * DAY),
            ("MOU-BIZ", "Acme Repo LLC", "commercial", "CA", today - 10 * DAY, today + 300 * DAY),
            ("MOU-FED", "ICE", "federal-agency", "US", today - 10 * DAY, today + 300 * DAY)]:
        r.add_agreement(world.admin, agreement_id=aid, agency=agency, agency_type=kind, jurisdiction=state,
                        effective_on=eff, expires_on=exp)
    return r


def _request(reg, world, agreement="MOU-1", **kw):
    args = dict(agreement_id=agreement, requesting_person="Det. R. Diaz", case_number="GPD-26-1182",
                purpose="stolen-vehicle", plates=["7abc123"], since=T0 - 10 * DAY, until=T0)
    args.update(kw)
    return reg.request(world.operator, **args)


def test_full_flow_exports_a_signed_bundle_that_verifies_offline(world, reg, keys, tmp_path):
    key, pub = keys
    world.add_read("7ABC123", T0 - 2 * DAY, crop=b"\xff\xd8one")
    world.add_read("7ABC123", T0 - 20 * DAY)              # outside the requested range
    world.add_read("8XYZ999", T0 - 2 * DAY)               # not requested
    req = _request(reg, world)
    assert req.status == "pending"
    with pytest.raises(PolicyError, match="only approved"):
        reg.export(world.supervisor, req.request_id, world.store, tmp_path / "b.zip", key)
    reg.decide(world.supervisor, req.request_id, approve=True, note="ok")
    done = reg.export(world.supervisor, req.request_id, world.store, tmp_path / "b.zip", key)
    assert done.status == "exported" and done.exported_reads == 1
    assert (tmp_path / "b.zip").stat().st_mode & 0o777 == 0o600   # it holds plates
    bundle = verify_bundle(tmp_path / "b.zip", load_verify_key(pub))
    assert [r["plate"] for r in bundle.reads] == ["7ABC123"]
    m = bundle.manifest
    assert (m["recipient"]["agency"], m["approved_by"], m["entered_by"], m["case_number"]) == \
        ("Glendale Police Department", "sue", "otto", "GPD-26-1182")
    assert any(name.startswith("images/") for name in m["files"])
    steps = [(e.action, e.user) for e in reg.log.entries() if e.action.startswith("share")]
    assert steps == [("share-request", "otto"), ("share-approve", "sue"), ("share-export", "sue")]
    assert reg.log.entries(action="share-export")[0].result_count == 1
    with pytest.raises(PolicyError, match="exported"):  # one export per request
        reg.export(world.supervisor, req.request_id, world.store, tmp_path / "c.zip", key)
    [recipient] = reg.recipients(world.auditor)
    assert (recipient.agency, recipient.exports, recipient.reads) == ("Glendale Police Department", 1, 1)


def test_self_approval_is_refused(world, reg):
    req = reg.request(world.supervisor, agreement_id="MOU-1", requesting_person="Det. Diaz", case_number="C-12",
                      purpose="stolen-vehicle", plates=["7ABC123"], since=T0 - DAY, until=T0)
    with pytest.raises(PolicyError, match="other than the one who entered it"):
        reg.decide(world.supervisor, req.request_id, approve=True)
    with pytest.raises(PermissionDenied):
        reg.decide(world.operator, req.request_id, approve=True)   # operators cannot approve
    assert reg.decide(world.supervisor2, req.request_id, approve=True).status == "approved"
    assert reg.log.entries(action="share-refused")[0].detail["reason"] == "self-approval"


@pytest.mark.parametrize("agreement,reason", [
    ("MOU-OLD", "expired on"),
    ("MOU-NV", "out of state (NV)"),
    ("MOU-BIZ", "is a commercial entity"),
    ("MOU-FED", "is a federal-agency"),
    ("MOU-NONE", "agencies without an agreement may not receive data"),
])
def test_ineligible_recipients_are_refused_with_the_reason(world, reg, agreement, reason):
    with pytest.raises(SharingRefused, match=re.escape(reason)):
        _request(reg, world, agreement)
    [entry] = reg.log.entries(action="share-refused")
    assert reason in entry.detail["reason"] and entry.user == "otto"
    assert reg.requests() == []


def test_eligibility_is_checked_again_at_approval_and_export(world, reg, keys, tmp_path):
    key, _ = keys
    req = _request(reg, world)
    world.clock.now = T0 + 300 * DAY          # the agreement expired meanwhile
    with pytest.raises(SharingRefused, match="expired"):
        reg.decide(world.supervisor, req.request_id, approve=True)
    world.clock.now = T0
    reg.decide(world.supervisor, req.request_id, approve=True)
    reg.revoke_agreement(world.admin, "MOU-1")
    with pytest.raises(SharingRefused, match="revoked"):
        reg.export(world.supervisor, req.request_id, world.store, tmp_path / "b.zip", key)
    assert not (tmp_path / "b.zip").exists()


def test_requests_need_purpose_case_and_plates(world, reg):
    with pytest.raises(PolicyError, match="not an authorized purpose"):
        _request(reg, world, purpose="marketing")
    with pytest.raises(PolicyError, match="case or incident number"):
        _request(reg, world, case_number="")
    with pytest.raises(PolicyError, match="no bulk exports"):
        _request(reg, world, plates=[])
    with pytest.raises(PermissionDenied):
        reg.request(world.business, agreement_id="MOU-1", requesting_person="x", case_number="C-1",
                    purpose="stolen-vehicle", plates=["A1"], since=T0 - DAY, until=T0)


def _rewrite(src, dst, change):
    members = {}
    with zipfile.ZipFile(src) as z:
        for name in z.namelist():
            members[name] = z.read(name)
    change(members)
    with zipfile.ZipFile(dst, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


@pytest.fixture
def bundle(world, reg, keys, tmp_path):
    key, pub = keys
    world.add_read("7ABC123", T0 - 2 * DAY)
    req = _request(reg, world)
    reg.decide(world.supervisor, req.request_id, approve=True)
    reg.export(world.supervisor, req.request_id, world.store, tmp_path / "b.zip", key)
    return tmp_path / "b.zip", load_verify_key(pub)


def _set_reads(m):
    reads = json.loads(m["reads.json"])
    reads[0]["plate"] = "FORGED1"
    m["reads.json"] = json.dumps(reads).encode()


def _set_manifest(m):
    doc = json.loads(m["manifest.json"])
    doc["recipient"]["agency"] = "Acme Repo LLC"
    m["manifest.json"] = json.dumps(doc).encode()


@pytest.mark.parametrize("change,message", [
    (_set_reads, "reads.json was altered"),
    (_set_manifest, "bad signature"),
    (lambda m: m.update({"extra.txt": b"hi"}), "files not in the signed manifest: extra.txt"),
    (lambda m: m.pop("reads.json"), "reads.json is listed in the manifest but missing"),
    (lambda m: m.pop("signature.json"), "signature.json is missing"),
])
def test_altered_bundles_fail_verification(bundle, tmp_path, change, message):
    path, pub = bundle
    _rewrite(path, tmp_path / "bad.zip", change)
    with pytest.raises(BundleError, match=message):
        verify_bundle(tmp_path / "bad.zip", pub)


def test_bundle_signed_with_another_key_is_refused(bundle, tmp_path):
    path, _ = bundle
    init_signing_key(tmp_path / "k2.pem", tmp_path / "k2.pub")
    with pytest.raises(BundleError, match="bad signature"):
        verify_bundle(path, load_verify_key(tmp_path / "k2.pub"))
    with pytest.raises(BundleError, match="not a readable bundle"):
        verify_bundle(io.BytesIO(b"junk").getvalue(), load_verify_key(tmp_path / "k2.pub"))


def test_signing_key_is_private_and_not_overwritten(keys, tmp_path):
    assert (tmp_path / "signing-key.pem").stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        init_signing_key(tmp_path / "signing-key.pem", tmp_path / "x.pub")


def test_cli_share_flow_verify_and_recipients(world, tmp_path, monkeypatch):
    world.add_read("7ABC123", T0 - 2 * DAY)
    now = dt.datetime.now(dt.timezone.utc)
    world.add_read("7ABC123", now - DAY)
    cfg = tmp_path / "central.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "central"}"\n[mqtt]\ntls = false\n' + world.store_toml +
                   '[query]\npurposes = ["stolen-vehicle"]\n')
    r = CliRunner()

    def run(who, *args):
        monkeypatch.setenv("ALPR_TOKEN", world.tokens[who])
        return r.invoke(main, [args[0], args[1], "--config", str(cfg), *args[2:]])

    res = r.invoke(main, ["keys", "init-signing", "--private", str(tmp_path / "central" / "signing-key.pem"),
                          "--public", str(tmp_path / "pub.pem")])
    assert res.exit_code == 0, res.output
    today = now.date()
    res = run("ada", "share", "agreement-add", "--id", "MOU-7", "--agency", "Burbank PD", "--agency-type",
              "public-agency", "--jurisdiction", "CA", "--effective", str(today - 10 * DAY),
              "--expires", str(today + 10 * DAY))
    assert res.exit_code == 0, res.output
    res = run("ada", "share", "agreement-add", "--id", "MOU-8", "--agency", "DataBroker Inc", "--agency-type",
              "commercial", "--jurisdiction", "CA", "--effective", str(today - 10 * DAY),
              "--expires", str(today + 10 * DAY))
    assert res.exit_code == 0, res.output
    req = ["share", "request", "--purpose", "stolen-vehicle", "--person", "Sgt. Lee", "--case", "BPD-1",
           "--plate", "7ABC123", "--since", str(today - 5 * DAY), "--until", str(today + DAY)]
    res = run("otto", *req, "--agreement", "MOU-8")
    assert res.exit_code == 1 and "DataBroker Inc is a commercial entity" in res.output
    res = run("otto", *req, "--agreement", "MOU-7")
    assert res.exit_code == 0 and "request 1 entered" in res.output
    res = run("otto", "share", "approve", "1")
    assert res.exit_code == 1 and "may not approve sharing reads with another agency" in res.output
    res = run("sue", "share", "approve", "1")
    assert res.exit_code == 0 and "request 1 approved" in res.output
    res = run("sue", "share", "export", "1", "--out", str(tmp_path / "out.zip"))
    assert res.exit_code == 0 and "1 read(s)" in res.output, res.output
    res = r.invoke(main, ["share", "verify", str(tmp_path / "out.zip"), "--public-key", str(tmp_path / "pub.pem")])
    assert res.exit_code == 0 and res.output.startswith("valid: request 1 for Burbank PD"), res.output
    assert re.search(r", exported \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$", res.output.strip()), res.output  # a time in words
    _rewrite(tmp_path / "out.zip", tmp_path / "bad.zip", _set_reads)
    res = r.invoke(main, ["share", "verify", str(tmp_path / "bad.zip"), "--public-key", str(tmp_path / "pub.pem")])
    assert res.exit_code == 1 and "NOT VALID: reads.json was altered" in res.output
    res = run("audrey", "share", "list-recipients", "--json")
    assert res.exit_code == 0, res.output
    [row] = json.loads(res.output)
    assert (row["agency"], row["agency_type"], row["agreement_id"], row["exports"], row["reads"]) == \
        ("Burbank PD", "public-agency", "MOU-7", 1, 1)
    res = run("bob", "share", "list-recipients")
    assert res.exit_code == 1 and "may not read reports" in res.output
