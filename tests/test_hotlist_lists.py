"""Hotlists: entries with source and expiry, versions, atomic CSV import with
line-numbered errors, permissions, and an access log without plate text."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io

import pytest

from central.config import Hotlist
from central.errors import PermissionDenied, PolicyError
from central.governance.audit import verify
from central.hotlist.csvimport import MAX_LINE, EntryInput
from central.hotlist.lists import Hotlists, ImportRefused
from test_governance_support import T0, world  # noqa: F401

DAY = dt.timedelta(days=1)
CFG = Hotlist(categories=(("stolen-vehicle", 365), ("missing-person", 30)))
HEADER = b"plate,state,reason,source_agency,source_ref,case_number,expires\n"


@pytest.fixture
def lists(world):
    hl = Hotlists(world.conn, CFG, clock=world.clock)
    hl.create(world.admin, "svs", "stolen-vehicle")
    return hl


def entry(plate="7ABC123", expires=T0 + 30 * DAY, **kw):
    return EntryInput(plate, kw.pop("reason", "stolen"), kw.pop("agency", "LAPD"), kw.pop("ref", "V-1"), expires, **kw)


def csv(*rows: bytes, header: bytes = HEADER) -> io.BytesIO:
    return io.BytesIO(header + b"".join(rows))


def active_plates(lists, world, name="svs"):
    return sorted(e.plate for e in lists.entries(world.admin, name, log=False))


def test_add_validates_and_makes_a_version(world, lists):
    e = lists.add(world.supervisor, "svs", entry("7abc-123", state="ca", case_number="24-1"))
    assert (e.plate, e.state, e.case_number, e.entered_by, e.added_version) == ("7ABC123", "CA", "24-1", "sue", 1)
    assert e.entered_at == T0
    for bad, why in ((entry(expires=None), "expires: required"), (entry(expires=T0 - DAY), "already past"),
                     (entry(expires=T0 + 400 * DAY), "later than this category allows"),
                     (entry(reason=""), "reason: required"), (entry(agency=""), "source_agency: required"),
                     (entry(ref=""), "source_ref: required"), (entry("7AB/C"), "plate:"),
                     (entry("ÄBC123"), "plate:")):
        with pytest.raises(PolicyError, match=why):
            lists.add(world.admin, "svs", bad)
    with pytest.raises(PolicyError, match="already holds an active entry"):
        lists.add(world.admin, "svs", entry("7ABC123", state="CA"))
    assert not hasattr(e, "owner_name") and "name" not in {f.name for f in dataclasses.fields(EntryInput)}
    assert lists.get(world.admin, "svs").version == 1


def test_remove_and_expire_stop_matching_and_keep_old_versions(world, lists):
    a = lists.add(world.admin, "svs", entry("AAA111"))
    b = lists.add(world.admin, "svs", entry("BBB222"))
    lists.remove(world.admin, a.entry_id, reason="entered in error")
    lists.remove(world.admin, b.entry_id, reason="recovered", expire=True)
    assert active_plates(lists, world) == []
    assert [e.plate for e in lists.entries(world.admin, "svs", version=2, log=False)] == ["AAA111", "BBB222"]
    assert [e.plate for e in lists.entries(world.admin, "svs", version=3, log=False)] == ["BBB222"]
    assert [v.action for v in lists.versions(world.admin, "svs")] == ["add", "add", "remove", "expire"]
    with pytest.raises(PolicyError, match="removed in version 3"):
        lists.remove(world.admin, a.entry_id, reason="again")


def test_csv_import_delta_and_replace(world, lists):
    exp = (T0 + 20 * DAY).date().isoformat().encode()
    res = lists.import_csv(world.admin, "svs", csv(b"7ABC123,CA,stolen,LAPD,V-1,,%s\n" % exp,
                                                   b"8XYZ999,,stolen,LAPD,V-2,24-9,%s\n" % exp))
    assert res.counts == {"added": 2, "updated": 0, "removed": 0, "unchanged": 0, "skipped": 0}
    assert res.version == 1 and active_plates(lists, world) == ["7ABC123", "8XYZ999"]
    # replace: the list becomes exactly the file
    res = lists.import_csv(world.admin, "svs", csv(b"5KLM456,,stolen,LAPD,V-3,,%s\n" % exp,
                                                   b"8XYZ999,,stolen,LAPD,V-2,24-9,%s\n" % exp), mode="replace")
    assert active_plates(lists, world) == ["5KLM456", "8XYZ999"]
    assert res.counts == {"added": 1, "updated": 0, "removed": 1, "unchanged": 1, "skipped": 0}
    assert res.version == 2
    with pytest.raises(ImportRefused, match="only 'add' with --replace"):
        lists.import_csv(world.admin, "svs", csv(b"5KLM456,,,,,,,remove\n", header=HEADER.rstrip(b"\n") + b",action\n"),
                         mode="replace")


def test_delta_remove_rows_and_updates(world, lists):
    exp = (T0 + 20 * DAY).date().isoformat().encode()
    lists.import_csv(world.admin, "svs", csv(b"7ABC123,CA,stolen,LAPD,V-1,,%s\n" % exp,
                                             b"8XYZ999,,stolen,LAPD,V-2,,%s\n" % exp))
    header = HEADER.rstrip(b"\n") + b",action\n"
    res = lists.import_csv(world.admin, "svs", csv(
        b"7ABC123,CA,stolen,LAPD,V-1,,%s,add\n" % exp, b"8XYZ999,,stolen,LAPD,V-2b,,%s,\n" % exp,
        b"5KLM456,,stolen,LAPD,V-3,,%s,add\n" % exp, header=header))
    assert res.counts == {"added": 1, "updated": 1, "removed": 0, "unchanged": 1, "skipped": 0}
    res = lists.import_csv(world.admin, "svs", csv(b"7ABC123,CA,,,,,,remove\n", header=header))
    assert res.counts["removed"] == 1 and active_plates(lists, world) == ["5KLM456", "8XYZ999"]
    with pytest.raises(ImportRefused) as refused:
        lists.import_csv(world.admin, "svs", csv(b"7ABC123,CA,,,,,,remove\n", header=header))
    assert refused.value.problems == ((2, "remove: no active entry for this plate and state in the list"),)
    assert [e.source_ref for e in lists.entries(world.admin, "svs", log=False) if e.plate == "8XYZ999"] == ["V-2b"]


def test_bad_files_are_refused_whole_with_each_line_and_why(world, lists):
    exp = (T0 + 20 * DAY).date().isoformat().encode()
    late = (T0 + 400 * DAY).date().isoformat().encode()
    good = b"1GOOD11,,stolen,LAPD,V-1,,%s\n" % exp
    bad = csv(good,                                                    # line 2 ok
              b"2BAD222,,stolen,LAPD,V-2,,\n",                        # 3 missing expiry
              b"3BAD333,,stolen,LAPD,V-3,,%s\n" % late,               # 4 too late
              b"1GOOD11,,stolen,LAPD,V-4,,%s\n" % exp,                # 5 duplicate of line 2
              b"4BAD\xff44,,stolen,LAPD,V-5,,%s\n" % exp,             # 6 not UTF-8
              b"5BAD555,,stolen,LAPD,V-6,,%s,\"" % exp + b"x" * (MAX_LINE + 10) + b"\"\n",  # 7 long line
              b"6BAD666,,stolen\n",                                   # 8 wrong field count
              b"7GOOD77,,stolen,LAPD,V-8,,%s\n" % exp)                # 9 ok
    before = lists.get(world.admin, "svs").version
    with pytest.raises(ImportRefused) as refused:
        lists.import_csv(world.admin, "svs", bad)
    problems = dict(refused.value.problems)
    assert sorted(problems) == [3, 4, 5, 6, 7, 8]
    assert "expires: required" in problems[3] and "later than this category allows" in problems[4]
    assert "duplicate entry" in problems[5] and "line 2" in problems[5] and "not UTF-8" in problems[6]
    assert "longer than" in problems[7] and "fields" in problems[8]
    assert active_plates(lists, world) == [] and lists.get(world.admin, "svs").version == before
    bad.seek(0)
    res = lists.import_csv(world.admin, "svs", bad, skip_bad=True)
    assert active_plates(lists, world) == ["1GOOD11", "7GOOD77"]
    assert [n for n, _ in res.skipped] == [3, 4, 5, 6, 7, 8] and res.counts["skipped"] == 6


def test_ten_megabyte_line_and_bad_headers(world, lists):
    huge = io.BytesIO(HEADER + b"7ABC123," + b"A" * (10 << 20) + b"\n")
    with pytest.raises(ImportRefused, match="line 2: line longer than"):
        lists.import_csv(world.admin, "svs", huge)
    with pytest.raises(ImportRefused, match="no column for .*expires"):
        lists.import_csv(world.admin, "svs", io.BytesIO(b"plate,reason,source,ref\n7ABC123,x,y,z\n"))
    with pytest.raises(ImportRefused, match="empty file"):
        lists.import_csv(world.admin, "svs", io.BytesIO(b""))
    with pytest.raises(ImportRefused, match="line 1: not UTF-8"):
        lists.import_csv(world.admin, "svs", io.BytesIO(b"pl\xe4te,reason\n"))


def test_column_aliases_bom_and_ignored_personal_columns(world, lists):
    exp = (T0 + 5 * DAY).isoformat().encode()
    data = io.BytesIO(b"\xef\xbb\xbfTag,Plate State,Description,ORI,NCIC Number,Expiration,Owner Name\n"
                      b"7ABC 123,CA,\"stolen, grey sedan\",CA0194200,V123,%s,Jane Roe\n" % exp)
    res = lists.import_csv(world.admin, "svs", data)
    assert res.ignored_columns == ("Owner Name",)
    [e] = lists.entries(world.admin, "svs", log=False)
    assert (e.plate, e.state, e.reason, e.source_agency, e.source_ref) == \
        ("7ABC123", "CA", "stolen, grey sedan", "CA0194200", "V123")
    row = world.conn.execute("SELECT * FROM hotlist_entries").fetchone()
    assert "Jane Roe" not in repr(row)


def test_roles_and_access_log_without_plates(world, lists):
    lists.add(world.admin, "svs", entry("7ABC123"))
    lists.import_csv(world.supervisor, "svs", csv(b"8XYZ999,,stolen,LAPD,V-2,,%s\n"
                                                  % (T0 + DAY).date().isoformat().encode()))
    for user in (world.operator, world.auditor, world.tech, world.business):
        with pytest.raises(PermissionDenied):
            lists.add(user, "svs", entry("9NOPE99"))
        with pytest.raises(PermissionDenied):
            lists.import_csv(user, "svs", csv(b""))
        with pytest.raises(PermissionDenied):
            lists.create(user, "x", "stolen-vehicle")
    for user in (world.tech, world.business):
        with pytest.raises(PermissionDenied):
            lists.lists(user)
        with pytest.raises(PermissionDenied):
            lists.entries(user, "svs")
    assert [x.name for x in lists.lists(world.auditor)] == ["svs"]
    logged = lists.log.entries()
    actions = [e.action for e in logged]
    assert {"hotlist-create", "hotlist-add", "hotlist-import"} <= set(actions)
    imp = [e for e in logged if e.action == "hotlist-import"][0]
    assert imp.detail["counts"]["added"] == 1 and imp.user == "sue"
    text = repr([(e.detail, e.case_number) for e in logged])
    assert "7ABC123" not in text and "8XYZ999" not in text
    assert verify(world.conn).ok


def test_unknown_category_refused(world):
    hl = Hotlists(world.conn, CFG, clock=world.clock)
    with pytest.raises(PolicyError, match="not configured"):
        hl.create(world.admin, "x", "parking")
