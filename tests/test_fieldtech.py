"""The field tech's commands on the device: ``alpr-edge status`` says OK or
lists each problem with what to do, with exit 0 / 1 / 3 (cannot tell), and
``alpr-edge test-camera`` grabs frames from a configured camera (a generated
clip, a folder of generated frames) and shows what it read, plate text
masked unless asked."""

from __future__ import annotations

import datetime as dt
import json
import threading

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import edge_config, wait_for
from edge_agent.checkup import diagnose
from edge_agent.cli import main as edge_main
from test_tamper import street

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def _facts(**changes) -> dict:
    """What a healthy running device's status gathers."""
    doc = {"device_id": "cam-a", "tls": True, "certificate_expires": (NOW + dt.timedelta(days=300)).isoformat(),
           "broker": "central:8883", "broker_reachable": True, "broker_error": None, "agent_running": True,
           "status_updated_at": (NOW - dt.timedelta(seconds=1)).isoformat(), "status_unreadable": False,
           "connected": True, "last_ack_at": (NOW - dt.timedelta(seconds=20)).timestamp(), "buffer_depth": 3,
           "oldest_read_day": NOW.date().isoformat(), "reads_lost_unbufferable": 0, "disk_full": False,
           "disk_free_bytes": 20 << 30, "disk_reserve_held": True, "audit_open": True, "audit_unrecorded": {},
           "clock_offset_s": 0.01, "watchdog_stalled": [],
           "cameras": [{"id": "lane-1", "state": "running", "fps": 9.8, "last_error": None, "tamper": []}]}
    doc.update(changes)
    return doc


def _codes(**changes) -> tuple[str, list[str]]:
    v = diagnose(_facts(**changes), now=NOW, agent_locked=True)
    return v.state, [p.code for p in v.problems]


def test_a_healthy_device_is_ok():
    v = diagnose(_facts(), now=NOW, agent_locked=True)
    assert v.state == "ok" and v.problems == () and v.exit_code == 0


@pytest.mark.parametrize("changes, expected", [
    ({"certificate_expires": (NOW + dt.timedelta(days=5)).isoformat()}, ["certificate-expiring"]),
    ({"certificate_expires": (NOW - dt.timedelta(days=1)).isoformat()}, ["certificate-expired"]),
    ({"certificate_expires": None}, ["certificate-unreadable"]),
    ({"broker_reachable": False, "broker_error": "connection refused"}, ["broker-unreachable"]),
    ({"connected": False}, ["not-connected"]),
    ({"last_ack_at": (NOW - dt.timedelta(hours=1)).timestamp()}, ["sync-stalled"]),
    ({"last_ack_at": (NOW - dt.timedelta(hours=1)).isoformat()}, ["sync-stalled"]),     # as status --json gives it
    ({"broker_reachable": False, "broker_error": "cannot load the device's TLS files (sync.ca_file, cert_file, "
      "key_file: no such file or directory)"}, ["broker-unreachable"]),
    ({"oldest_read_day": (NOW - dt.timedelta(days=3)).date().isoformat()}, ["buffer-old"]),
    ({"disk_full": True}, ["disk-full"]),
    ({"disk_free_bytes": 100 << 20}, ["disk-low"]),
    ({"disk_reserve_held": False}, ["reserve-released"]),
    ({"reads_lost_unbufferable": 4}, ["reads-lost"]),
    ({"audit_unrecorded": {"cli": 2}}, ["audit-unrecorded"]),
    ({"clock_offset_s": -3.5}, ["clock-off"]),
    ({"watchdog_stalled": ["capture:lane-1"]}, ["watchdog-stalled"]),
    ({"cameras": [{"id": "lane-1", "state": "failed", "fps": 0, "last_error": "cannot open rtsp://cam/x"}]},
     ["camera-failed"]),
    ({"cameras": [{"id": "lane-1", "state": "stopped", "fps": 0.0, "last_error": None}]}, ["camera-not-running"]),
    ({"cameras": [{"id": "lane-1", "state": "running", "fps": 9.0, "tamper": ["black", "moved"]}]},
     ["camera-tampered", "camera-tampered"]),
])
def test_each_problem_is_named(changes, expected):
    state, codes = _codes(**changes)
    assert (state, codes) == ("problem", expected)


def test_unreadable_tls_files_send_the_tech_to_config_check_not_the_network():
    v = diagnose(_facts(broker_reachable=False, broker_error="cannot load the device's TLS files (sync.ca_file, "
                        "cert_file, key_file: no such file or directory)"), now=NOW, agent_locked=True)
    [problem] = v.problems
    assert "alpr-edge config check" in problem.action and "network" not in problem.action


def test_thresholds_are_not_hair_triggers():
    assert _codes(clock_offset_s=1.9)[1] == []
    assert _codes(certificate_expires=(NOW + dt.timedelta(days=15)).isoformat())[1] == []
    assert _codes(disk_free_bytes=600 << 20)[1] == []
    assert _codes(oldest_read_day=(NOW - dt.timedelta(days=1)).date().isoformat())[1] == []
    assert _codes(buffer_depth=0, last_ack_at=(NOW - dt.timedelta(days=1)).timestamp())[1] == []  # nothing waits
    assert _codes(tls=False, certificate_expires=None)[1] == []
    # a camera just (re)started has no frame rate yet: not a problem (the watchdog names a stalled one)
    assert _codes(cameras=[{"id": "lane-1", "state": "running", "fps": 0.0, "frames": 0, "tamper": []}])[1] == []
    assert _codes(cameras=[{"id": "lane-1", "state": "starting", "fps": 0.0, "frames": 0}])[1] == []


def test_an_agent_that_is_not_running_means_cannot_tell():
    stale = (NOW - dt.timedelta(minutes=5)).isoformat()
    v = diagnose(_facts(status_updated_at=stale), now=NOW, agent_locked=False)
    assert v.state == "unknown" and v.exit_code == 3 and [p.code for p in v.problems] == ["agent-not-running"]
    assert "systemctl start alpr-edge" in v.problems[0].action
    # stale status but the lock is held: running and stuck, a problem (the watchdog acts)
    v = diagnose(_facts(status_updated_at=stale), now=NOW, agent_locked=True)
    assert v.state == "problem" and [p.code for p in v.problems] == ["agent-hung"]
    # never ran; and other problems it can see are still listed
    v = diagnose(_facts(status_updated_at=None, disk_full=True), now=NOW, agent_locked=False)
    assert v.state == "unknown" and [p.code for p in v.problems] == ["agent-not-running", "disk-full"]


def _config(tmp_path, pki_dir, **kw):
    return edge_config(tmp_path, pki_dir, 1, **kw)


def test_status_without_an_agent_exits_3_and_says_what_to_do(tmp_path, pki_dir, sample_clip):
    video, sidecar = sample_clip
    cfg = _config(tmp_path, pki_dir, uri=str(video), sidecar=str(sidecar))
    res = CliRunner().invoke(edge_main, ["status", "--config", str(cfg), "--no-probe"])
    assert res.exit_code == 3, res.output
    assert "CANNOT TELL whether this device is healthy" in res.output
    assert "what to do: start it (systemctl start alpr-edge)" in res.output
    res = CliRunner().invoke(edge_main, ["status", "--config", str(cfg), "--no-probe", "--json"])
    doc = json.loads(res.output)
    assert res.exit_code == 3 and doc["verdict"] == "unknown"
    assert [p["code"] for p in doc["problems"]] == ["agent-not-running"]
    help_text = CliRunner().invoke(edge_main, ["status", "--help"]).output
    assert "0 healthy; 1 one or more problems" in help_text and "3 cannot tell" in help_text


def test_status_of_a_running_agent_with_a_covered_camera(tmp_path, pki_dir, broker):
    """A real agent on a folder of street frames that go black: status lists
    the tampered camera with what to do and exits 1 (then OK once it runs a
    clean view: exit 0), never showing plate text."""
    from edge_agent import config as edge_config_mod
    from edge_agent.agent import Agent
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(4):
        cv2.imwrite(str(frames / f"a{i:03d}.png"), street())
    for i in range(400):
        cv2.imwrite(str(frames / f"b{i:03d}.png"), np.zeros((120, 160, 3), np.uint8))
    sidecar = tmp_path / "plates.json"
    sidecar.write_text(json.dumps({"frames": [[{"plate": "7XYZ123", "box": [10, 10, 60, 20]}]]}))
    cfg_path = edge_config(tmp_path, pki_dir, broker.port, source="folder", uri=str(frames), fps=20.0,
                           sidecar=str(sidecar), extra="[health]\ntamper_check_seconds = 1\nconfirm_checks = 2\n")
    agent = Agent(edge_config_mod.load(cfg_path))
    stop = threading.Event()
    runner = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    runner.start()
    try:
        wait_for(lambda: agent.workers[0].tamper.flags == ("black",), 30, message="black reported")
        wait_for(lambda: agent.sync.connected, 30, message="connected")
        agent.write_status()
        res = CliRunner().invoke(edge_main, ["status", "--config", str(cfg_path)])
        assert res.exit_code == 1, res.output
        assert "1 PROBLEM:" in res.output or "PROBLEMS:" in res.output
        assert "camera lane-1: view black (covered, or no light at all)" in res.output
        assert "what to do: look at the camera: remove what covers it" in res.output
        assert "broker reachable         yes" in res.output and "agent running            yes" in res.output
        assert "7XYZ123" not in res.output
        doc = json.loads(CliRunner().invoke(edge_main, ["status", "--config", str(cfg_path), "--json"]).output)
        assert doc["verdict"] == "problem" and "camera-tampered" in [p["code"] for p in doc["problems"]]
        assert "7XYZ123" not in json.dumps(doc)
    finally:
        stop.set()
        runner.join(30)


def test_status_ok_exit_0(tmp_path, pki_dir, broker, sample_clip):
    from edge_agent import config as edge_config_mod
    from edge_agent.agent import Agent
    video, sidecar = sample_clip
    cfg_path = edge_config(tmp_path, pki_dir, broker.port, uri=str(video), sidecar=str(sidecar), fps=10.0)
    cfg_path.write_text(cfg_path.read_text().replace("fps = 10.0", "fps = 10.0\nloop = true"))
    agent = Agent(edge_config_mod.load(cfg_path))
    stop = threading.Event()
    runner = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    runner.start()
    try:
        wait_for(lambda: agent.sync.connected and agent.workers[0].fps > 0, 40, message="running")
        agent.write_status()
        res = CliRunner().invoke(edge_main, ["status", "--config", str(cfg_path)])
        assert res.exit_code == 0, res.output
        assert res.output.rstrip().endswith("OK: nothing needs doing."), res.output
    finally:
        stop.set()
        runner.join(30)


def test_test_camera_reads_frames_and_masks_plate_text(tmp_path, pki_dir, sample_clip):
    video, sidecar = sample_clip
    cfg = _config(tmp_path, pki_dir, uri=str(video), sidecar=str(sidecar))
    plates = {e["plate"] for f in json.loads(sidecar.read_text())["frames"] for e in f}
    (tmp_path / "edge-cam-a").mkdir()          # the device's data folder (the audit log goes there)
    res = CliRunner().invoke(edge_main, ["test-camera", "--config", str(cfg), "--frames", "40"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("camera lane-1 (file): 40 of 40 frames; plate text masked")
    assert sum(1 for x in lines if x.startswith("  frame ")) == 40
    assert any(x.strip().startswith("plate ***") for x in lines), res.output
    assert not any(p in res.output for p in plates)
    assert lines[1].startswith("  recognizer sidecar-oracle") and "camera opened in" in lines[1]
    first = next(x for x in lines if x.startswith("  frame 1:"))
    assert "brightness" in first and "grab" in first and "recognize" in first and "tamper none" in first
    assert lines[-1] == "OK"
    shown = CliRunner().invoke(edge_main, ["test-camera", "--config", str(cfg), "--frames", "40", "--show-text",
                                           "--json"])
    doc = json.loads(shown.output)
    assert doc["text_shown"] is True and doc["summary"]["frames_read"] == 40
    seen = {p["text"] for f in doc["frames"] for p in f["plates"]}
    assert seen and seen <= plates
    f = doc["frames"][0]
    assert (f["width"], f["height"]) == tuple(cv2.VideoCapture(str(video)).read()[1].shape[1::-1])
    masked = json.loads(CliRunner().invoke(edge_main, ["test-camera", "--config", str(cfg), "--frames", "40",
                                                        "--json"]).output)
    assert all("text" not in p and p["length"] > 0 for f in masked["frames"] for p in f["plates"])
    # the audit log says text was shown, never which
    from edge_agent import config as edge_config_mod
    from edge_agent.auditlog import DeviceAuditLog
    c = edge_config_mod.load(cfg)
    log = DeviceAuditLog(c.data_dir / "audit.sqlite", c.device.id, c.sync.key_file)
    records = [(r.event, r.detail) for r in log.records() if r.event == "test-camera"]
    log.close()
    assert {"frames": 40, "read": 40, "show_text": True} in [d for _e, d in records]
    assert not any(p in json.dumps(records) for p in plates)


def test_test_camera_reports_black_frames_and_a_short_source(tmp_path, pki_dir):
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "a.png"), street())
    cv2.imwrite(str(frames / "b.png"), np.zeros((480, 640, 3), np.uint8))
    cv2.imwrite(str(frames / "c.png"), cv2.GaussianBlur(street(), (0, 0), 5))
    sidecar = tmp_path / "none.json"
    sidecar.write_text('{"frames": [[]]}')
    cfg = _config(tmp_path, pki_dir, source="folder", uri=str(frames), sidecar=str(sidecar))
    res = CliRunner().invoke(edge_main, ["test-camera", "--config", str(cfg), "--frames", "5", "--json"])
    assert res.exit_code == 1, res.output
    doc = json.loads(res.output)
    tampers = [f["tamper"] for f in doc["frames"]]
    assert tampers[:3] == [[], ["black"], ["blurred"]]
    assert doc["frames"][3]["error"].startswith("the source ended")
    assert doc["summary"]["frames_read"] == 3
    assert any("black" in p for p in doc["summary"]["problems"])
    # an unknown camera is a usage error naming the ones there are
    bad = CliRunner().invoke(edge_main, ["test-camera", "--config", str(cfg), "--camera", "nope"])
    assert bad.exit_code == 2 and "lane-1" in bad.output
    # a camera that cannot be opened says what to check
    gone = _config(tmp_path, pki_dir, source="file", uri=str(tmp_path / "missing.avi"), sidecar=str(sidecar))
    res = CliRunner().invoke(edge_main, ["test-camera", "--config", str(gone)])
    assert res.exit_code == 1 and "cannot be opened" in res.output, res.output


def test_status_names_the_remote_configuration_and_the_update_offered(tmp_path):
    """What central set and offered is on the tech's screen: the remote
    configuration the device runs (and why the last one was rolled back) and
    the update in progress, from status.json and the fetcher's job file. A
    rolled-back configuration is not a device problem: it runs the previous."""
    from edge_agent.cli_status import _update_job, render
    (tmp_path / "update").mkdir()
    (tmp_path / "update" / "job.json").write_text(json.dumps(
        {"version": "1.4.0", "rollout_id": 7, "state": "downloading", "reason": "", "sha256": "ab" * 32}))
    facts = _facts(remote_config={"device_id": "cam-a", "applied_version": 3, "state": "rolled-back",
                                  "offered_version": 4, "reason": "camera lane-1 delivered no frames", "at": ""},
                   update=_update_job(tmp_path))
    verdict = diagnose(facts, now=NOW, agent_locked=True)
    assert verdict.state == "ok"
    text = "\n".join(render(facts, verdict, NOW))
    assert "remote configuration     version 3, rolled-back (version 4 rolled-back: camera lane-1 delivered no " \
           "frames)" in text
    assert "update offered           1.4.0: downloading" in text
    assert _update_job(tmp_path / "nowhere") is None
    (tmp_path / "update" / "job.json").write_text("{cut sh")
    assert _update_job(tmp_path) is None
