"""Local attacker with write access to an output directory (issue 20.4) and
forged export bundles (20.6): output files never follow a planted symbolic
link; the broker's files are private; a bundle is exactly one signed zip."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import zipfile

import pytest

from central.errors import BundleError, UnsafePathError
from central.fleet import broker as broker_mod
from central.fleet import pki
from central.governance import report
from central.governance.bundle import init_signing_key, load_signing_key, load_verify_key, verify_bundle, write_bundle
from edge_agent.wire import PlateRead, new_read_id

VICTIM = b"root's file\n"


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "elsewhere" / "victim"
    path.parent.mkdir()
    path.write_bytes(VICTIM)
    return path


@pytest.fixture
def signing(tmp_path):
    init_signing_key(tmp_path / "k.pem", tmp_path / "k.pub")
    return load_signing_key(tmp_path / "k.pem"), load_verify_key(tmp_path / "k.pub")


def _read():
    return PlateRead(new_read_id(), "cam-a", "lane-1", dt.datetime(2026, 8, 1, tzinfo=dt.timezone.utc), "7ABC123",
                     0.9, (1, 2, 3, 4), crop_jpeg=b"\xff\xd8crop")


def _bundle(path, key):
    write_bundle(path, {"request_id": 1}, [_read()], key)


def test_export_never_writes_through_a_link_at_the_old_temporary_name(tmp_path, victim, signing):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".case.zip.tmp").symlink_to(victim)
    for pid in range(1, 64):  # the names the old writers used, whatever they were
        (out / f".case.zip.tmp{pid}").symlink_to(victim)
    _bundle(out / "case.zip", signing[0])
    assert victim.read_bytes() == VICTIM
    assert verify_bundle(out / "case.zip", signing[1]).read_count == 1
    assert (out / "case.zip").stat().st_mode & 0o777 == 0o600


def test_export_refuses_a_link_at_the_output_name(tmp_path, victim, signing):
    (tmp_path / "case.zip").symlink_to(victim)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        _bundle(tmp_path / "case.zip", signing[0])
    assert victim.read_bytes() == VICTIM and (tmp_path / "case.zip").is_symlink()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # no debris


def test_transparency_report_refuses_links_at_either_name(tmp_path, victim, monkeypatch):
    doc = {"period": {"name": "2026-Q3"}}
    out = tmp_path / "reports"
    out.mkdir()
    monkeypatch.setattr(report, "render_html", lambda d: "<html></html>")  # the writing is under test
    for name in ("transparency-2026-Q3.json", "transparency-2026-Q3.html"):
        (out / name).symlink_to(victim)
        with pytest.raises(UnsafePathError):
            report.write(doc, out)
        for p in out.iterdir():
            p.unlink()
    html, js = report.write(doc, out)
    assert victim.read_bytes() == VICTIM and json.loads(js.read_text()) == doc
    assert not html.is_symlink() and html.stat().st_mode & 0o777 == 0o644


def test_keys_and_broker_files_never_follow_links_and_are_private(tmp_path, victim):
    (tmp_path / "ca.key").symlink_to(victim)
    with pytest.raises(UnsafePathError):
        pki.write_secret(tmp_path / "ca.key", b"secret")
    d = tmp_path / "broker"
    d.mkdir()
    (d / "acl").symlink_to(victim)
    with pytest.raises(UnsafePathError):
        broker_mod.write_config(d, port=1883, ca_file="ca", cert_file="c", key_file="k", run_as=getpass.getuser())
    (d / "acl").unlink()
    files = broker_mod.write_config(d, port=1883, ca_file="ca", cert_file="c", key_file="k", devices=["cam-a"],
                                    crl_file=str(d / "crl.pem"))
    broker_mod.write_registry_files(d, ["cam-a"], b"-----CRL-----\n")
    assert victim.read_bytes() == VICTIM
    for path in (files.conf, files.acl, d / "crl.pem"):
        assert path.stat().st_mode & 0o777 == 0o600, path  # the broker runs as central's account
    fresh = broker_mod.write_config(tmp_path / "new-broker", port=1883, ca_file="ca", cert_file="c", key_file="k")
    assert fresh.conf.parent.stat().st_mode & 0o777 == 0o700


# -- forged bundles: a valid bundle with something prepended or appended ---------------------------
def _forged_zip() -> bytes:
    import io
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("reads.json", json.dumps([{"plate": "FORGED1"}]))
    return buf.getvalue()


@pytest.mark.parametrize("how", ["prepend-zip", "prepend-junk", "append-junk", "append-zip", "comment"])
def test_share_verify_refuses_a_bundle_with_anything_before_or_after_it(tmp_path, signing, how):
    _bundle(tmp_path / "b.zip", signing[0])
    raw = (tmp_path / "b.zip").read_bytes()
    assert verify_bundle(raw, signing[1]).read_count == 1
    if how == "comment":
        with zipfile.ZipFile(tmp_path / "b.zip", "a") as z:
            z.comment = b"looks harmless"
        forged = (tmp_path / "b.zip").read_bytes()
    else:
        extra = _forged_zip() if how.endswith("zip") else b"\x00junk" * 10
        forged = extra + raw if how.startswith("prepend") else raw + extra
    with pytest.raises(BundleError):
        verify_bundle(forged, signing[1])


def test_share_verify_cli_says_not_valid_for_a_prefixed_bundle(tmp_path, signing):
    from click.testing import CliRunner
    from central.cli import main
    _bundle(tmp_path / "b.zip", signing[0])
    (tmp_path / "forged.zip").write_bytes(_forged_zip() + (tmp_path / "b.zip").read_bytes())
    result = CliRunner().invoke(main, ["share", "verify", str(tmp_path / "forged.zip"), "--public-key",
                                       str(tmp_path / "k.pub")])
    assert result.exit_code == 1 and "NOT VALID" in result.output


def test_share_verify_refuses_altered_reads_an_added_file_and_another_key(tmp_path, signing):
    _bundle(tmp_path / "b.zip", signing[0])
    with zipfile.ZipFile(tmp_path / "b.zip") as z:
        members = {i.filename: z.read(i) for i in z.infolist()}

    def rewritten(change) -> bytes:
        m = dict(members)
        change(m)
        import io
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for name, data in m.items():
                z.writestr(name, data)
        return buf.getvalue()

    reads = json.loads(members["reads.json"])
    reads[0]["plate"] = "FORGED1"
    with pytest.raises(BundleError, match="reads.json was altered"):
        verify_bundle(rewritten(lambda m: m.update({"reads.json": json.dumps(reads).encode()})), signing[1])
    with pytest.raises(BundleError, match="not in the signed manifest"):
        verify_bundle(rewritten(lambda m: m.update({"images/../../evil.jpg": b"x"})), signing[1])
    init_signing_key(tmp_path / "k2.pem", tmp_path / "k2.pub")
    with pytest.raises(BundleError, match="bad signature"):
        verify_bundle(tmp_path / "b.zip", load_verify_key(tmp_path / "k2.pub"))
