"""The governance commands end to end through the CLI: bootstrap, tokens in
0600 files, roles refused with exit 1, holds and purge, config sections."""

from __future__ import annotations

import datetime as dt
import json
import os
import re

import pytest
from click.testing import CliRunner

from central.cli import main
from conftest import business_on_file, central_cli
from central.config import load
from central.store.sqlite import SQLiteStore
from edge_agent.wire import PlateRead, new_read_id


@pytest.fixture
def env(tmp_path, monkeypatch):
    cfg, run = central_cli(tmp_path, monkeypatch, '[query]\npurposes = ["stolen-vehicle"]\n[retention]\nnon_hit_days = 30\n')
    return tmp_path, cfg, run


def test_bootstrap_then_named_users_with_token_files(env):
    tmp_path, cfg, run = env
    res = run("user", "bootstrap", "--name", "ada", "--organization", "City PD", "--token-out",
              str(tmp_path / "ada.token"))
    assert res.exit_code == 0 and "written to" in res.output, res.output
    assert (tmp_path / "ada.token").stat().st_mode & 0o777 == 0o600
    assert "alpr_" not in res.output  # never echoed when written to a file
    res = run("user", "bootstrap", "--name", "eve", "--organization", "X")
    assert res.exit_code == 1 and "bootstrap only works on an empty user table" in res.output
    business_on_file(tmp_path / "central" / "central.sqlite", "bobs-garage")
    for name, role in (("otto", "operator"), ("sue", "supervisor"), ("bob", "business")):
        res = run("user", "add", name, "--organization", "bobs-garage" if role == "business" else "City PD",
                  "--role", role, "--token-out",
                  str(tmp_path / f"{name}.token"), token="ada")
        assert res.exit_code == 0, res.output
    res = run("user", "whoami", token="otto")
    assert res.output.strip() == "otto (operator, City PD)"
    res = run("user", "add", "zed", "--organization", "x", "--role", "admin", token="otto")
    assert res.exit_code == 1 and "may not add, change or disable user accounts" in res.output
    res = run("user", "list", "--json", token="ada")
    assert {u["name"]: u["role"] for u in json.loads(res.output)} == \
        {"ada": "admin", "otto": "operator", "sue": "supervisor", "bob": "business"}
    res = run("user", "disable", "otto", token="ada")
    assert res.exit_code == 0
    res = run("user", "whoami", token="otto")
    assert res.exit_code == 1 and "authentication failed" in res.output
    os.chmod(tmp_path / "sue.token", 0o644)
    res = run("user", "whoami", token="sue")
    assert res.exit_code == 1 and "readable by others" in res.output


def test_business_user_cannot_read_plates_via_query(env):
    tmp_path, cfg, run = env
    run("user", "bootstrap", "--name", "ada", "--organization", "City PD", "--token-out", str(tmp_path / "ada.token"))
    business_on_file(tmp_path / "central" / "central.sqlite", "bobs-garage")
    run("user", "add", "bob", "--organization", "bobs-garage", "--role", "business", "--token-out",
        str(tmp_path / "bob.token"), token="ada")
    res = run("query", "--plate", "7ABC123", "--purpose", "stolen-vehicle", "--case", "C-1", token="bob")
    assert res.exit_code == 1 and "(a business account) may not search plate reads" in res.output
    res = run("audit", "log", "--json", "--action", "search-refused", token="ada")
    [entry] = [json.loads(line) for line in res.output.splitlines()]
    assert entry["user"] == "bob" and entry["organization"] == "bobs-garage"


def test_holds_and_purge_through_the_cli(env):
    tmp_path, cfg, run = env
    run("user", "bootstrap", "--name", "ada", "--organization", "City PD", "--token-out", str(tmp_path / "ada.token"))
    for name, role in (("otto", "operator"), ("sue", "supervisor"), ("audrey", "auditor")):
        run("user", "add", name, "--organization", "City PD", "--role", role, "--token-out",
            str(tmp_path / f"{name}.token"), token="ada")
    now = dt.datetime.now(dt.timezone.utc)
    store = SQLiteStore(tmp_path / "central" / "central.sqlite")
    for plate, days in (("HELD1", 40), ("GONE1", 40), ("NEW1", 1)):
        store.add_reads([PlateRead(new_read_id(), "cam-a", "lane-1", now - dt.timedelta(days=days), plate, 0.9,
                                   (1, 2, 3, 4))], now)
    store.close()
    res = run("hold", "request", "--case", "24-77", "--plate", "held1", "--since", (now - dt.timedelta(days=50))
              .isoformat(), "--until", now.isoformat(), "--reason", "litigation",
              "--review-on", (now + dt.timedelta(days=90)).date().isoformat(), token="otto")
    assert res.exit_code == 0 and "hold 1 requested" in res.output, res.output
    res = run("hold", "approve", "1", token="otto")
    assert res.exit_code == 1 and "may not approve keeping reads past their retention period" in res.output
    res = run("hold", "approve", "1", token="sue")
    assert res.exit_code == 0 and "hold 1 active" in res.output
    res = run("retention", "purge", "--json", token="sue")
    assert res.exit_code == 1 and "may not run the retention purge" in res.output
    res = run("retention", "purge", "--dry-run", "--json", token="ada")
    assert json.loads(res.output)["counts"]["non_hit_reads"] == 1
    res = run("retention", "purge", token="ada")
    assert res.exit_code == 0 and re.search(r"^non-hit reads +1 +\d{4}-\d\d-\d\d ", res.output, re.M), res.output
    assert "1 read(s) past retention kept under legal hold" in res.output
    store = SQLiteStore(tmp_path / "central" / "central.sqlite")
    assert sorted(r[0] for r in store.db.execute("SELECT plate FROM reads")) == ["HELD1", "NEW1"]
    store.close()
    res = run("hold", "list", "--json", token="audrey")
    assert json.loads(res.output)[0]["status"] == "active"
    res = run("audit", "verify", token="audrey")
    assert res.exit_code == 0, res.output


def test_config_sections_and_errors(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('data_dir = "d"\n[mqtt]\ntls = false\n[retention]\nnon_hit_days = 365\naccess_log_days = 1825\n'
                   '[sharing]\neligible_jurisdictions = ["CA", "NV"]\n[policy]\ncustodian = "Lt. X"\n')
    c = load(cfg)
    assert (c.retention.non_hit_days, c.retention.hit_days, c.sharing.eligible_jurisdictions, c.policy.custodian) \
        == (365, 730, ("CA", "NV"), "Lt. X")
    assert c.sharing.signing_key == str(tmp_path / "d" / "signing-key.pem")
    for bad, message in (("[retention]\nreads_days = 1\n", "retention.reads_days: unknown key"),
                         ("[retention]\nnon_hit_days = 0\n", "retention.non_hit_days: must be at least 1 day"),
                         ("[sharing]\neligible_agency_types = \"x\"\n", "sharing.eligible_agency_types: expected")):
        cfg.write_text('data_dir = "d"\n[mqtt]\ntls = false\n' + bad)
        res = CliRunner().invoke(main, ["config", "check", "--config", str(cfg)])
        assert res.exit_code == 78 and message in res.output, res.output
