"""The [hotlist] config section and webhook secrets: unknown keys and bad
values name the key path; a secret readable by others is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from central.config import parse
from central.errors import ConfigError
from central.hotlist.webhooks import backoff, read_secret, sign, verify_signature, write_secret


def cfg(hotlist: dict):
    return parse({"data_dir": "/srv/alpr", "mqtt": {"tls": False}, "hotlist": hotlist}, Path("/etc/alpr"))


def test_hotlist_section():
    c = cfg({"categories": {"stolen-vehicle": 365, "amber": 7}, "dedupe_seconds": 120,
             "webhooks": [{"name": "cad", "url": "https://cad.example/hits", "secret_file": "cad.secret",
                           "categories": ["amber"]}]}).hotlist
    assert c.max_days("amber") == 7 and c.max_days("bolo") is None and c.dedupe_seconds == 120
    assert c.webhooks[0].secret_file == "/srv/alpr/cad.secret" and c.webhooks[0].categories == ("amber",)
    assert cfg({}).hotlist.max_days("missing-person") == 30 and cfg({}).hotlist.matcher
    assert not cfg({"matcher": False}).hotlist.matcher
    for bad, where in (({"colour": 1}, "hotlist.colour: unknown key"),
                       ({"categories": {"stolen-vehicle": 0}}, "hotlist.categories.stolen-vehicle"),
                       ({"categories": {"Bad Name": 3}}, "hotlist.categories.Bad Name"),
                       ({"dedupe_seconds": -1}, "hotlist.dedupe_seconds"),
                       ({"matcher": "no"}, "hotlist.matcher"),
                       ({"webhooks": [{"name": "x", "url": "ftp://x"}]}, "hotlist.webhooks[0].secret_file"),
                       ({"webhooks": [{"name": "x", "url": "ftp://x", "secret_file": "s"}]}, "webhooks[0].url"),
                       ({"webhooks": [{"name": "x", "url": "http://x", "secret_file": "s", "tries": 1}]},
                        "webhooks[0].tries: unknown key")):
        with pytest.raises(ConfigError, match=where.replace("[", r"\[").replace("]", r"\]")):
            cfg(bad)


def test_secret_file_and_signature(tmp_path):
    path = tmp_path / "s.secret"
    secret = write_secret(path)
    assert path.stat().st_mode & 0o777 == 0o600 and read_secret(path) == secret
    os.chmod(path, 0o640)
    with pytest.raises(ConfigError, match="readable by others"):
        read_secret(path)
    sig = sign(secret, 1_800_000_000, b"{}")
    assert verify_signature(secret, "1800000000", b"{}", sig, now=1_800_000_100)
    assert not verify_signature(secret, "1800000000", b"{}", sig, now=1_800_001_000)   # too old: a replay
    assert not verify_signature(b"other-secret-0123456789", "1800000000", b"{}", sig, now=1_800_000_000)
    assert [backoff(n, 2.0) for n in (1, 2, 3)] == [2.0, 4.0, 8.0] and backoff(30) == 600.0
