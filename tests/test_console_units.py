"""The console's parts on their own: passwords and their rules, the
``[console]`` config, relative time ranges, the offline map, and the
``user passwd`` / ``serve`` commands (a real ``alpr-central serve`` process
answering over HTTPS with a certificate from central's CA)."""

from __future__ import annotations

import datetime as dt
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from central.config import parse
from central.console import geomap
from central.console.auth import ConsoleAuth
from central.console.backend import relative, span
from central.errors import AuthenticationError, ConfigError, PermissionDenied, PolicyError, QueryError
from central.fleet.broker import free_port
from central.governance.users import Role
from central.store.sqlite import SQLiteStore
from test_enrollment_env import CentralEnv


@pytest.fixture
def env(tmp_path):
    e = CentralEnv(tmp_path / "site", pid_file=False)
    yield e
    e.close()


def _auth(env):
    store = SQLiteStore(env.data / "central.sqlite")
    return store, ConsoleAuth(store.db.conn)


def test_password_rules_and_who_may_set_them(env):
    store, auth = _auth(env)
    try:
        ada, otto = env.user("ada"), env.user("otto")
        for bad, why in (("short", "at least 12"), (" padded password ", "spaces"), ("x" * 1025, "at most")):
            with pytest.raises(PolicyError, match=why):
                auth.set_password(ada, "otto", bad)
        env.add_user("patrolofficer1", "City PD", Role.OPERATOR)
        with pytest.raises(PolicyError, match="user name"):
            auth.set_password(ada, "patrolofficer1", "PatrolOfficer1")
        assert not auth.has_password("otto")
        auth.set_password(otto, "otto", "my own long passphrase")       # oneself
        with pytest.raises(PermissionDenied):
            auth.set_password(otto, "sue", "someone elses passphrase")  # not someone else
        auth.set_password(ada, "sue", "the admin sets this one")        # an admin may
        row = store.db.execute("SELECT hash FROM user_passwords WHERE user_name = 'otto'").fetchone()
        assert row[0].startswith("$argon2id$") and "passphrase" not in row[0]
        assert auth.sign_in("otto", "my own long passphrase").session.user.name == "otto"
        with pytest.raises(AuthenticationError):
            auth.sign_in("audrey", "no password was ever set")           # token-only account
    finally:
        store.close()


def test_a_password_change_and_a_disabled_account_end_sessions(env):
    store, auth = _auth(env)
    try:
        auth.set_password(env.user("ada"), "otto", "first long passphrase")
        signed = auth.sign_in("otto", "first long passphrase")
        assert auth.session(signed.token).user.name == "otto"
        auth.set_password(env.user("ada"), "otto", "second long passphrase")
        with pytest.raises(AuthenticationError):
            auth.session(signed.token)
        signed = auth.sign_in("otto", "second long passphrase")
        auth.users.set_disabled(env.user("ada"), "otto", True)
        with pytest.raises(AuthenticationError):
            auth.session(signed.token)
        with pytest.raises(AuthenticationError):
            auth.sign_in("otto", "second long passphrase")
    finally:
        store.close()


def test_console_config_is_validated():
    base = {"data_dir": "/tmp/x", "mqtt": {"tls": False}}
    cfg = parse(base, Path("/tmp"))
    assert cfg.console.bind == "127.0.0.1" and cfg.console.cert_file == "/tmp/x/ca/console.crt"
    for section, message in (({"port": 0}, "console.port"), ({"nope": 1}, "console.nope: unknown key"),
                             ({"tile_url": "ftp://x/{z}"}, "console.tile_url"),
                             ({"min_password_length": 4}, "console.min_password_length"),
                             ({"session_idle_minutes": "15"}, "expected an integer")):
        with pytest.raises(ConfigError, match=message):
            parse({**base, "console": section}, Path("/tmp"))


def test_relative_time_ranges():
    now = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.timezone.utc)
    assert relative("24h") == relative("last 24 h") == dt.timedelta(hours=24)
    assert relative("90m") == dt.timedelta(minutes=90) and relative("2 weeks") == dt.timedelta(weeks=2)
    assert span({"range": "7d"}, now) == (now - dt.timedelta(days=7), None)
    assert span({}, now) == (now - dt.timedelta(hours=24), None)
    assert span({"range": "custom", "since": "2026-12-01T08:00"}, now)[0] == dt.datetime(
        2026, 12, 1, 8, tzinfo=dt.timezone.utc)
    for bad in ("yesterday", "0h", "24", "last -1 h"):
        with pytest.raises(QueryError):
            relative(bad)
    with pytest.raises(QueryError, match="custom"):
        span({"range": "custom"}, now)


def test_map_draws_positions_offline_and_tiles_when_configured():
    points = [geomap.Point(34.05, -118.24, "cam-1"), geomap.Point(34.06, -118.25, "<b>read</b>", "read")]
    svg = str(geomap.render(points))
    assert svg.startswith("<svg") and "<image" not in svg and "http" not in svg.replace(
        "http://www.w3.org/2000/svg", "")
    assert svg.count("<circle") == 1 and svg.count('class="pt pt-read"') == 1 and "&lt;b&gt;read" in svg
    xs = [float(v) for v in __import__("re").findall(r'cx="([\d.]+)"', svg)]
    assert all(0 <= x <= geomap.WIDTH for x in xs)
    tiled = str(geomap.render(points, tile_url="https://tiles.example/{z}/{x}/{y}.png"))
    assert "<image" in tiled and "https://tiles.example/" in tiled and "{z}" not in tiled
    assert "No positions" in str(geomap.render([]))


def test_user_passwd_reads_stdin_never_an_argument(env):
    result = env.cli("user", "passwd", "otto", "--stdin", input="a long enough passphrase\n", as_="otto")
    assert result.exit_code == 0, result.output
    assert "a long enough passphrase" not in result.output
    store, auth = _auth(env)
    try:
        assert auth.sign_in("otto", "a long enough passphrase")
    finally:
        store.close()
    refused = env.cli("user", "passwd", "sue", "--stdin", input="another long passphrase\n", as_="otto")
    assert refused.exit_code == 1 and "may not add, change or disable user accounts" in refused.output
    prompted = env.cli("user", "passwd", "sue", input="prompted passphrase!\nprompted passphrase!\n")
    assert prompted.exit_code == 0, prompted.output
    short = env.cli("user", "passwd", "sue", "--stdin", input="short\n")
    assert short.exit_code == 1 and "at least 12" in short.output
    assert env.cli("user", "passwd", "sue", "--password", "x").exit_code == 2   # no such option


def test_serve_answers_over_https_with_a_certificate_from_central_ca(env):
    port = free_port()
    with open(env.config, "a") as fh:
        fh.write(f'\n[console]\nport = {port}\nserver_names = ["localhost", "127.0.0.1"]\n')
    proc = subprocess.Popen([sys.executable, "-m", "central", "serve", "--config", str(env.config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ})
    try:
        ctx = ssl.create_default_context(cafile=str(env.data / "ca" / "ca.crt"))   # verifies name and chain
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/sign-in", context=ctx, timeout=5) as r:
                    body = r.read().decode()
                    headers = r.headers
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(proc.stderr.read1().decode() if proc.poll() is not None else "timeout")
                time.sleep(0.2)
        assert "Sign in" in body and "frame-ancestors" in headers["content-security-policy"]
        key = env.data / "ca" / "console.key"
        assert key.stat().st_mode & 0o077 == 0
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert proc.returncode in (0, -15)


def test_serve_refuses_a_bad_console_config_with_exit_78(env):
    with open(env.config, "a") as fh:
        fh.write("\n[console]\nport = 99999\n")
    result = env.cli("serve", as_=None)
    assert result.exit_code == 78 and "console.port" in result.output


def test_run_serves_the_console_when_enabled(env):
    port = free_port()
    with open(env.config, "a") as fh:
        fh.write(f"\n[console]\nenabled = true\nport = {port}\n")
    proc = subprocess.Popen([sys.executable, "-m", "central", "run", "--config", str(env.config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ctx = ssl.create_default_context(cafile=str(env.data / "ca" / "ca.crt"))
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"https://localhost:{port}/sign-in", context=ctx, timeout=5) as r:
                    assert r.status == 200
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read1().decode()
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0
