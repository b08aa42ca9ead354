"""Edge configuration: strict parsing that names the key path; `config check`
exits 78; `status` reports the buffer."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edge_agent import config
from edge_agent.cli import main
from edge_agent.errors import ConfigError

GOOD = """
[device]
id = "cam-1"
data_dir = "data"

[[cameras]]
id = "front"
source = "file"
uri = "clip.avi"

[sync]
host = "broker.example"
ca_file = "ca.crt"
cert_file = "cam.crt"
key_file = "cam.key"
central_public_key = "central.pub.pem"
"""


def write(tmp_path, text):
    p = tmp_path / "edge.toml"
    p.write_text(text)
    return p


def test_good_config_resolves_paths_relative_to_the_file(tmp_path):
    cfg = config.load(write(tmp_path, GOOD))
    assert cfg.device.data_dir == str(tmp_path / "data")
    assert cfg.cameras[0].uri == str(tmp_path / "clip.avi")
    assert cfg.sync.port == 8883 and cfg.sync.tls and cfg.buffer.max_age_days == 730


def test_backlog_batches_default_to_500_reads_8_in_flight(tmp_path):
    """A 50,000-read backlog drained in 6-7.6 s with 200-read batches (central
    committed them in small groups) and 3.9 s with 500 (bench/bench_catchup.py,
    docs/scaling.md); the live lane keeps its own small batches."""
    from edge_agent.sync import SyncSettings

    cfg = config.load(write(tmp_path, GOOD))
    assert (cfg.sync.batch_size, cfg.sync.max_in_flight) == (500, 8)
    s = SyncSettings(host="h", port=1, device_id="cam-1")
    assert (s.batch_size, s.max_in_flight, s.live_batch_size) == (500, 8, 50)


def test_key_file_comes_from_the_systemd_credentials_directory(tmp_path, monkeypatch):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "cam.key").write_text("x")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert config.load(write(tmp_path, GOOD)).sync.key_file == str(creds / "cam.key")


@pytest.mark.parametrize("change, message", [
    (("[sync]", "[sync]\nbatchsize = 3"), "sync.batchsize: unknown key"),
    (('id = "front"', 'id = "front"\nfps = "fast"'), "cameras[0].fps: expected float, got str"),
    (('source = "file"', 'source = "webcam"'), "cameras[0].source: one of"),
    (('id = "cam-1"', 'id = "Cam 1"'), "device.id:"),
    (('central_public_key = "central.pub.pem"', ''), "sync.central_public_key: required"),
    (("[sync]", "[sink]"), "sink: unknown section"),
    (('host = "broker.example"', 'host = "broker.example"\nbatch_size = 5000'), "sync.batch_size: 1-1000"),
    # values that passed `config check` and then dropped every read, crashed `run` or stopped sync
    (('id = "front"', 'id = "a/b"'), "cameras[0].id:"),
    (('id = "front"', 'id = "#"'), "cameras[0].id:"),
    (('id = "front"', 'id = "front"\nlatitude = 91.0'), "cameras[0].latitude: must be in -90..90"),
    (('id = "front"', 'id = "front"\nheading = 400.0'), "cameras[0].heading"),
    (('id = "front"', 'id = "front"\nfps = nan'), "cameras[0].fps: must be a finite number"),
    (('id = "front"', 'id = "front"\nfps = inf'), "cameras[0].fps: must be a finite number"),
    (("[sync]", "[recognition]\nmotion_threshold = 2.0\n[sync]"), "recognition.motion_threshold"),
    (("[sync]", "[tracking]\nwindow_seconds = nan\n[sync]"), "tracking.window_seconds: must be a finite"),
    (("[sync]", "[tracking]\nwindow_seconds = 0.0\n[sync]"), "tracking: the times must be > 0"),
    (("[sync]", "[buffer]\nmax_megabytes = nan\n[sync]"), "buffer.max_megabytes: must be a finite"),
    (("[sync]", "[images]\ncontext_max_bytes = 10000000\n[sync]"), "images.context_max_bytes: 1024-"),
    (('host = "broker.example"', 'host = "broker.example"\nkeepalive = -1'), "sync: keepalive must be >= 5"),
    (('host = "broker.example"', 'host = "broker.example"\nport = 70000'), "sync.port: 1-65535"),
])
def test_bad_configs_name_the_key(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config.load(write(tmp_path, GOOD.replace(*change)))


def test_config_check_exit_codes(tmp_path):
    runner = CliRunner()
    good = write(tmp_path, GOOD)
    missing = runner.invoke(main, ["config", "check", "--config", str(good)])   # the files sync needs: not there
    assert missing.exit_code == 78 and f"sync.ca_file: {tmp_path / 'ca.crt'} cannot be read (no such file or " \
        "directory)" in missing.output and "sync.key_file" in missing.output, missing.output
    assert "from 'alpr-edge provision'" in missing.output and "Errno" not in missing.output
    for line in GOOD.splitlines():
        if line.startswith(("ca_file", "cert_file", "key_file", "central_public_key")):
            (tmp_path / line.split('"')[1]).write_text("pem\n")
    ok = runner.invoke(main, ["config", "check", "--config", str(good)])
    assert ok.exit_code == 0 and ok.output.startswith("ok: device cam-1"), ok.output
    bad = runner.invoke(main, ["config", "check", "--config", str(write(tmp_path, GOOD + "\n[tracking]\nwindow = 1\n"))])
    assert bad.exit_code == 78 and "tracking.window: unknown key" in bad.output
    broken = runner.invoke(main, ["config", "check", "--config", str(write(tmp_path, "[device\n"))])
    assert broken.exit_code == 78 and "not valid TOML" in broken.output


def test_status_reports_buffer_depth_and_age(tmp_path):
    from test_outbox import sealed

    from edge_agent.outbox import Outbox
    path = write(tmp_path, GOOD)
    ob = Outbox(tmp_path / "data" / "outbox.sqlite")
    ob.add(sealed(7))
    ob.close()
    result = CliRunner().invoke(main, ["status", "--config", str(path), "--json"])
    assert result.exit_code == 3, result.output      # no agent ran here: cannot tell
    doc = json.loads(result.output)
    assert doc["device_id"] == "cam-1" and doc["buffer_depth"] == 7 and doc["oldest_read_day"] == "2023-11-14"  # sealed() reads: 1.7e9 s
    assert doc["agent_running"] is False
