"""The sibling sweep of issue 23, as tests: every command of ``alpr-central``
and ``alpr-edge``, walked from the click trees.

- ``--help`` of every command works and names no internal permission
  identifier (``device-health-own``) and no Python value.
- every command prints data only with a ``--json`` twin: a command without
  --json must be named in ``NO_DATA`` with why it prints none (an action's
  one-line confirmation, a service, files written). A new command fails here
  until someone decides which it is.
- the commands that print data, run against a central with devices, a
  heartbeat, reads, a hotlist, hits, a hold and a sharing request, on an 80
  column terminal: human output has no Python reprs (None, [...], {...},
  True/False), no raw epoch seconds, table headers within 80 columns and ids
  never cut; --json is real JSON (no JSON inside a string, no epoch floats);
  refusals and bad input give one message in words, never a traceback.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import click
import pytest
from click.testing import CliRunner

from central.cli import main as central_main
from central.config import load as load_central_config
from central.fleet.health import HealthHandler
from central.governance.users import Permission, Role
from central.hotlist.matcher import Matcher
from central.store.sqlite import SQLiteStore
from edge_agent.cli import main as edge_main
from edge_agent.wire import PlateRead, new_read_id
from edge_agent.wire.health import CameraHealth, encode_health
from conftest import edge_config
from test_business import MOU
from test_enrollment_env import CentralEnv
from test_health import sample

ROOTS = {"alpr-central": central_main, "alpr-edge": edge_main}
PYTHON_VALUES = re.compile(r"\bNone\b|\['|\{'|\(\)|\": |\b1[6-9]\d{8}\.\d+\b|\bTrue\b|\bFalse\b")
INTERNAL = [p.value for p in Permission if "-" in p.value]     # 'search', 'enroll' are plain words too
EXCEPTION_NAMES = re.compile(r"\b\w+(Error|Exception|Denied|Failure)\b|Traceback")
WIDTH = 80

# Commands without --json, and why they print no data.
NO_DATA = {
    "alpr-central broker config": "writes the broker's files and names them",
    "alpr-central broker reload": "an action: one sentence",
    "alpr-central broker run": "a service (execs Mosquitto)",
    "alpr-central business enroll": "an action: one sentence",
    "alpr-central business withdraw": "an action: one sentence",
    "alpr-central ca collectors": "writes certificates and names them",
    "alpr-central ca init": "writes the CA and certificates and names them",
    "alpr-central config check": "a verdict; the exit code says it",
    "alpr-central db maintain": "an action: one sentence (partitions made)",
    "alpr-central demo": "an interactive demonstration",
    "alpr-central device resume": "an action: one sentence",
    "alpr-central device revoke": "an action: one sentence",
    "alpr-central device suspend": "an action: one sentence",
    "alpr-central device config init-key": "writes keys and names them",
    "alpr-central device group add": "an action: one sentence",
    "alpr-central device group create": "an action: one sentence",
    "alpr-central device group remove": "an action: one sentence",
    "alpr-central enroll serve": "a service",
    "alpr-central hold approve": "an action: one sentence",
    "alpr-central hold release": "an action: one sentence",
    "alpr-central hold request": "an action: one sentence",
    "alpr-central init": "writes a central home and says what to run next",
    "alpr-central keys init": "writes keys and names them",
    "alpr-central keys init-signing": "writes keys and names them",
    "alpr-central models init-signing": "writes keys and names them",
    "alpr-central release init-key": "writes keys and names them",
    "alpr-central release verify": "a verdict; the exit code says it",
    "alpr-central report transparency": "writes the report (HTML and its JSON twin) and names the files",
    "alpr-central run": "a service",
    "alpr-central serve": "a service (the console)",
    "alpr-central share agreement-add": "an action: one sentence",
    "alpr-central share agreement-revoke": "an action: one sentence",
    "alpr-central share approve": "an action: one sentence",
    "alpr-central share deny": "an action: one sentence",
    "alpr-central share export": "writes the signed bundle and names it",
    "alpr-central share request": "an action: one sentence",
    "alpr-central user add": "an action; the token goes to a file or is shown once",
    "alpr-central user bootstrap": "an action; the token goes to a file or is shown once",
    "alpr-central user disable": "an action: one sentence",
    "alpr-central user enable": "an action: one sentence",
    "alpr-central user passwd": "an action: one sentence",
    "alpr-central user token": "an action; the token goes to a file or is shown once",
    "alpr-central user unlock": "an action: one sentence",
    "alpr-edge config check": "a verdict; the exit code says it",
    "alpr-edge renew": "an action: one sentence",
    "alpr-edge run": "a service (the agent)",
    "alpr-edge sample": "writes a sample clip and names it",
    "alpr-edge update trust": "an action: one sentence",
}


def _walk(command: click.Command, path: tuple[str, ...]):
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _walk(sub, path + (name,))


def _leaves():
    for prog, root in ROOTS.items():
        for path, command in _walk(root, ()):
            if not isinstance(command, click.Group):
                yield " ".join((prog, *path)), command


LEAVES = dict(_leaves())
HELPS = [(prog, path) for prog, root in ROOTS.items() for path, _ in _walk(root, ())]


def _has_json(command: click.Command) -> bool:
    return any("--json" in p.opts for p in command.params if isinstance(p, click.Option))


@pytest.mark.parametrize("prog, path", HELPS, ids=[" ".join((p, *c)) for p, c in HELPS])
def test_help_works_and_names_no_internal_identifier(prog, path):
    res = CliRunner().invoke(ROOTS[prog], [*path, "--help"], prog_name=prog, env={"COLUMNS": str(WIDTH)})
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"Usage: {' '.join((prog, *path))}")
    named = [i for i in INTERNAL if re.search(rf"(?<![\w-]){re.escape(i)}(?![\w-])", res.output)]
    assert not named, f"{' '.join(path)} --help names {named}"
    assert not re.search(r"\bNone\b|\['|\{'|\bTrue\b|\bFalse\b", res.output), res.output   # JSON examples are fine
    assert not EXCEPTION_NAMES.search(res.output), res.output


def test_every_command_that_prints_data_has_json():
    lacking = sorted(name for name, command in LEAVES.items() if not _has_json(command) and name not in NO_DATA)
    assert not lacking, f"give these --json, or name them in NO_DATA with why they print no data: {lacking}"
    stale = sorted(name for name in NO_DATA if name not in LEAVES or _has_json(LEAVES[name]))
    assert not stale, f"NO_DATA names commands that are gone or have --json now: {stale}"


# -- the commands run on a central with data ----------------------------------------------
@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    c = CentralEnv(root / "site", pid_file=False)
    c.config.write_text(c.config.read_text().replace("[mqtt]", '[query]\npurposes = ["stolen-vehicle"]\n'
                                                     '[hotlist]\ndedupe_seconds = 0\n[hotlist.categories]\n'
                                                     'stolen-vehicle = 365\n[mqtt]', 1))
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    today = now.date()
    assert c.cli("business", "enroll", "--id", "acme-market", "--name", "Acme Market", *MOU).exit_code == 0
    c.add_user("bob", "acme-market", Role.BUSINESS)
    device = c.provisioned("lane-1")
    c.provisioned("door", owner="acme-market")
    handler = HealthHandler(c.data / "central.sqlite")
    handler.handle(f"alpr/v1/devices/{device}/health", encode_health(sample(
        device, sent_at=now - dt.timedelta(minutes=40),
        cameras=(CameraHealth("lane-1", "running", 9.0, 10, 0, None, ("black",)),))))
    handler.close()
    store = SQLiteStore(c.data / "central.sqlite")
    reads = [PlateRead(new_read_id(), device, "lane-1", now - dt.timedelta(minutes=i), "7ABC123", 0.93, (1, 2, 3, 4))
             for i in range(4)]
    store.add_reads(reads, now)
    store.close()
    steps = [
        (("enroll", "create", "--camera", "lane-9:file", "--expires", "2h"), "tech"),
        (("hotlist", "create", "svs", "--category", "stolen-vehicle", "--description", "SVS extract, daily"), "ada"),
        (("hotlist", "add", "7ABC123", "--list", "svs", "--reason", "stolen", "--source-agency", "LAPD",
          "--source-ref", "V-1", "--expires", str(today + dt.timedelta(days=30))), "ada"),
        (("share", "agreement-add", "--id", "MOU-7", "--agency", "Burbank PD", "--agency-type", "public-agency",
          "--jurisdiction", "CA", "--effective", str(today - dt.timedelta(days=10)),
          "--expires", str(today + dt.timedelta(days=10))), "ada"),
        (("share", "request", "--purpose", "stolen-vehicle", "--person", "Sgt. Lee", "--case", "BPD-1", "--plate",
          "7ABC123", "--since", str(today - dt.timedelta(days=5)), "--until", str(today), "--agreement", "MOU-7"),
         "otto"),
        (("hold", "request", "--case", "26-0042", "--since", "2026-01-01", "--until", "2026-02-01", "--reason",
          "homicide investigation", "--review-on", str(today + dt.timedelta(days=90))), "otto"),
    ]
    for args, who in steps:
        res = c.cli(*args, as_=who)
        assert res.exit_code == 0, (args, res.output)
    matcher = Matcher(c.data / "central.sqlite", load_central_config(c.config).hotlist)
    assert len(matcher.match_pending()) == 4
    matcher.close()
    yield c, device, reads
    c.close()


def _run(c, args, who="ada"):
    """``alpr-central ARGS`` as ``who`` on an 80-column terminal (COLUMNS), stdout and stderr apart."""
    env = {"ALPR_TOKEN": c.tokens[who], "ALPR_TOKEN_FILE": None, "COLUMNS": str(WIDTH)}
    return CliRunner().invoke(central_main, [*args, "--config", str(c.config)], env=env)


# (command, user, a header the human output starts with or None); each is run as is and with --json
DATA_COMMANDS = [
    ("audit device DEVICE", "ada", None),
    ("audit head", "audrey", None),
    ("audit log --limit 3", "audrey", "seq"),
    ("audit verify", "audrey", None),
    ("business health acme-market", "ada", "device"),
    ("business list", "ada", "business"),
    ("business show acme-market", "ada", "business"),
    ("business show", "bob", "business"),
    ("db migrate", "ada", None),
    ("device alerts", "tech", "device"),
    ("device config status", "ada", "device"),
    ("release status", "tech", "device"),
    ("device health", "tech", None),
    ("device health DEVICE", "tech", None),
    ("device health", "bob", None),
    ("device list", "audrey", "device"),
    ("device list", "bob", "device"),
    ("device show DEVICE", "ada", "device"),
    ("enroll list", "tech", "token id"),
    ("hits list --limit 2", "otto", "hit"),
    ("hits show 1", "otto", "hit"),
    ("hits deliveries 1", "otto", None),
    ("hits watch --after 0 --duration 0.5", "otto", None),
    ("hits check-image 2 --yes", "otto", None),
    ("hits check-source 2 --yes --note NCIC", "sue", None),
    ("hits close 3 --disposition no-action", "otto", None),
    ("hold list", "sue", "hold"),
    ("hotlist categories", "otto", "category"),
    ("hotlist list", "otto", "list"),
    ("hotlist show svs", "otto", "entry"),
    ("hotlist show svs --history", "otto", "version"),
    ("query --plate 7ABC123 --purpose stolen-vehicle --case 26-0001 --limit 2", "otto", "captured"),
    ("retention show", "ada", "what"),
    ("retention purge --dry-run", "ada", "what"),
    ("share agreements", "sue", "agreement"),
    ("share requests", "sue", "request"),
    ("share list-recipients", "sue", None),
    ("user list", "ada", "user"),
    ("user inactive", "ada", None),
    ("user whoami", "tech", None),
]


def _json_docs(text: str) -> list:
    try:
        return [json.loads(text)]
    except ValueError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def _no_json_in_strings_nor_epochs(value, where=""):
    if isinstance(value, dict):
        for k, v in value.items():
            _no_json_in_strings_nor_epochs(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _no_json_in_strings_nor_epochs(v, f"{where}[{i}]")
    elif isinstance(value, str) and value[:1] in "{[":
        with pytest.raises(ValueError):
            json.loads(value)
            pytest.fail(f"{where} holds JSON as a string: {value[:60]}")
    elif isinstance(value, float):
        assert not 1e9 < value < 4e9, f"{where} is epoch seconds ({value}): give an ISO 8601 time"


@pytest.mark.parametrize("line, who, header", DATA_COMMANDS, ids=[c[0] for c in DATA_COMMANDS])
def test_data_commands_in_words_and_in_real_json(site, line, who, header):
    c, device, reads = site
    args = [a.replace("DEVICE", device) for a in line.split()]
    human = _run(c, args, who)
    if args[0] == "audit" and args[1] == "device":
        assert human.exit_code == 1 and human.stderr.count("Error:") == 1   # no records from it yet: a finding
    else:
        assert human.exit_code == 0, human.output
    text = human.stdout
    assert text.strip() and not PYTHON_VALUES.search(text), text
    assert not EXCEPTION_NAMES.search(human.output), human.output
    if header:
        first = text.splitlines()[0]
        assert first.split()[0] == header.split()[0] and len(first) <= WIDTH, first
    for full_id in {device, *(r.read_id for r in reads)}:      # an id shown is shown whole
        for shown in re.findall(rf"{re.escape(full_id[:8])}[0-9a-f-]*…?", text):
            assert shown == full_id, (shown, text)
    if "check" in line or "close" in line:
        args = [*args[:2], str(int(args[2]) + 1), *args[3:]]          # the same action on the next hit
    as_json = _run(c, [*args, "--json"], who)
    assert as_json.exit_code == human.exit_code, as_json.output
    docs = _json_docs(as_json.stdout)
    if not (line.startswith("hits watch") or "deliveries" in line or "recipients" in line):
        assert docs, line
    for doc in docs:
        _no_json_in_strings_nor_epochs(doc)


def test_query_never_cuts_a_read_id(site):
    c, device, reads = site
    args = ["query", "--plate", "7ABC123", "--purpose", "stolen-vehicle", "--case", "26-0001"]
    records = _run(c, args, "otto").stdout          # 80 columns: too narrow for the table, a record a read
    assert [x.split()[-1] for x in records.splitlines() if x.startswith("read id ")] == [r.read_id for r in reads]
    assert records.startswith("captured (UTC)  ") and max(len(x) for x in records.splitlines()[:24]) <= WIDTH
    wide = CliRunner().invoke(central_main, [*args, "--config", str(c.config)],
                              env={"ALPR_TOKEN": c.tokens["otto"], "ALPR_TOKEN_FILE": None, "COLUMNS": "120"}).stdout
    rows = wide.splitlines()[1:5]
    assert wide.split()[:2] == ["captured", "(UTC)"] and [row.split()[-1] for row in rows] == [r.read_id for r in reads]


def test_device_alerts_table(site):
    c, device, _ = site
    lines = _run(c, ["device", "alerts"], "tech").stdout.splitlines()
    assert lines[0].split() == ["device", "alert", "since", "what"]
    [tamper] = [x for x in lines if "camera-tampered" in x]
    assert tamper.startswith(f"{device}  ") and re.search(r"\b\d+ (s|min) ago\b", tamper)
    assert tamper.rstrip().endswith("camera lane-1: view black")


def test_retention_in_words_and_json(site):
    c, _, _ = site
    shown = _run(c, ["retention", "show"]).stdout.splitlines()
    assert shown[0].split() == ["what", "kept", "for"]
    assert re.fullmatch(r"reads without a hit +730 days", shown[1]) and not any("_" in x for x in shown)
    assert json.loads(_run(c, ["retention", "show", "--json"]).stdout)["non_hit_days"] == 730
    purge = _run(c, ["retention", "purge", "--dry-run"]).stdout.splitlines()
    assert purge[0].split() == ["what", "would", "delete", "older", "than"]
    assert re.fullmatch(r"non-hit reads +0 +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", purge[3]), purge


def test_audit_head_and_whoami_as_json(site):
    c, _, _ = site
    head = json.loads(_run(c, ["audit", "head", "--json"], "audrey").stdout)
    assert head["head"] == f"{head['seq']}:{head['hash']}" and len(head["hash"]) == 64
    assert json.loads(_run(c, ["user", "whoami", "--json"], "tech").stdout) == {
        "name": "tech", "role": "field-tech", "organization": "City PD"}


def test_hotlist_add_says_the_expiry_in_words(site):
    c, _, _ = site
    day = dt.date.today() + dt.timedelta(days=100)
    res = _run(c, ["hotlist", "add", "8XYZ999", "--list", "svs", "--reason", "stolen", "--source-agency", "LAPD",
                   "--source-ref", "V-2", "--expires", str(day)])
    end = day + dt.timedelta(days=1)                                     # the end of that day
    assert res.exit_code == 0 and res.stdout.rstrip().endswith(f"expires {end} 00:00:00 UTC"), res.output


@pytest.mark.parametrize("line, who, words", [
    ("device list", "otto", "otto (an operator) may not see the health of every device"),
    ("device alerts", "otto", "otto (an operator) may not see the health of every device"),
    ("audit log", "otto", "otto (an operator) may not read the access log"),
    ("hits list", "ada", "ada (an administrator) may not see hotlist hits"),
    ("query --plate 7ABC123 --purpose stolen-vehicle --case 1", "bob", "bob (a business account) may not search"),
    ("hold list", "tech", "tech (a field technician) may not list holds"),
    ("device show nosuch", "ada", "no device 'nosuch'"),
    ("audit device nosuch", "audrey", "no device 'nosuch' (ids: alpr-central device list)"),
    ("hits show 99", "otto", "no hit 99"),
    ("hold approve 99", "sue", "99"),
    ("reads confirm nosuch --text 7ABC123 --purpose stolen-vehicle --case 26-1", "otto", "no read nosuch"),
])
def test_refusals_are_said_once_in_words(site, line, who, words):
    c, _, _ = site
    res = _run(c, line.split(), who)
    assert res.exit_code == 1 and res.stdout == "", res.output
    assert res.stderr.count("Error:") == 1 and words in res.stderr, res.stderr
    assert not any(i in res.stderr for i in INTERNAL) and not EXCEPTION_NAMES.search(res.stderr), res.stderr


@pytest.mark.parametrize("line", ["hits show abc", "query --plate 7ABC123 --purpose stolen-vehicle --case 1 "
                                  "--since yesterday", "device list --status lost", "audit log --limit 0"])
def test_bad_input_is_a_usage_message(site, line):
    c, _, _ = site
    res = _run(c, line.split(), "otto")
    assert res.exit_code == 2 and "Error:" in res.stderr and not EXCEPTION_NAMES.search(res.stderr), res.output


def test_a_status_change_names_the_broker_reload_command(site):
    c, _, _ = site
    res = _run(c, ["device", "suspend", c.provisioned("lane-7"), "--reason", "maintenance"], "ada")
    assert res.exit_code == 0 and "systemctl reload alpr-central-broker" in res.stdout, res.output
    assert "mosquitto)" not in res.stdout


# -- alpr-edge ---------------------------------------------------------------------------
def test_edge_update_status_says_the_last_outcome_in_words(tmp_path, pki_dir):
    conf = edge_config(tmp_path, pki_dir, 8883, uri=str(tmp_path / "clip.avi"))
    app = tmp_path / "app"
    app.mkdir()
    (app / "state.json").write_text(json.dumps({"last": {"result": "refused", "version": "0.3.0",
                                                         "reason": "bad signature", "at": 1796415369.04}}))
    res = CliRunner().invoke(edge_main, ["update", "status", "--config", str(conf), "--app-dir", str(app)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[1] == "installed  -" and not PYTHON_VALUES.search(res.output), res.output
    assert lines[2] == "last       refused 0.3.0 at 2026-12-04 20:16:09 UTC: bad signature"
    res = CliRunner().invoke(edge_main, ["update", "status", "--config", str(conf), "--app-dir", str(app), "--json"])
    doc = json.loads(res.output)
    assert doc["last"]["at"] == "2026-12-04T20:16:09.040000+00:00" and doc["installed"] == []
    _no_json_in_strings_nor_epochs(doc)


def test_edge_device_without_its_files_is_told_which_ones(tmp_path):
    """config check said ok with the CA, certificate and keys missing; status then blamed the network with an
    errno: now check names each file, and status says the device's own files cannot be loaded."""
    conf = edge_config(tmp_path, tmp_path / "nowhere", 8883, uri=str(tmp_path / "clip.avi"))
    res = CliRunner().invoke(edge_main, ["config", "check", "--config", str(conf)])
    assert res.exit_code == 78, res.output
    for key, name in (("ca_file", "ca.crt"), ("cert_file", "cam-a.crt"), ("key_file", "cam-a.key"),
                      ("central_public_key", "data-key.pub.pem")):
        assert f"sync.{key}: {tmp_path / 'nowhere' / name} cannot be read (no such file or directory)" in res.output
    assert "Errno" not in res.output and res.output.count("Error:") == 1
    res = CliRunner().invoke(edge_main, ["status", "--config", str(conf), "--json"])
    doc = json.loads(res.stdout)
    assert doc["broker_error"].startswith("cannot load the device's TLS files") and "Errno" not in doc["broker_error"]
    [problem] = [p for p in doc["problems"] if p["code"] == "broker-unreachable"]
    assert "alpr-edge config check" in problem["action"]


def test_auditing_an_unknown_device_is_refused_by_name_and_still_logged(site):
    c, _, _ = site
    res = _run(c, ["audit", "device", "cam-typo"], "audrey")
    assert res.exit_code == 1 and res.stderr == "Error: no device 'cam-typo' (ids: alpr-central device list)\n"
    entries = _json_docs(_run(c, ["audit", "log", "--action", "audit-device", "--json"], "audrey").stdout)
    assert entries[-1]["detail"] == {"device": "cam-typo", "ok": False}


def test_edge_test_camera_names_an_unreadable_recognizer_file_without_an_errno(tmp_path):
    conf = edge_config(tmp_path, tmp_path / "nowhere", 8883, uri=str(tmp_path / "clip.avi"),
                       sidecar=str(tmp_path / "missing.json"))
    res = CliRunner().invoke(edge_main, ["test-camera", "--config", str(conf)])
    assert res.exit_code == 78, res.output
    assert f"recognition: cannot read {tmp_path / 'missing.json'}: no such file or directory" in res.output
    assert "Errno" not in res.output


def test_enroll_list_json_is_one_object_a_line_like_every_listing(site):
    c, _device, _reads = site
    for _ in range(2):
        assert c.cli("enroll", "create", "--camera", "lane-9:file", "--expires", "2h", as_="tech").exit_code == 0
    res = _run(c, ["enroll", "list", "--json"], "tech")
    lines = res.stdout.splitlines()
    assert res.exit_code == 0 and len(lines) >= 2
    assert all(isinstance(json.loads(line), dict) for line in lines)
