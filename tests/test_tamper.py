"""Camera tamper detection on generated frames: a street-like view, then the
same view covered (black), smeared (Gaussian blur), and turned away (shifted),
and the ordinary changes that must not raise anything (a car passing, dusk,
sensor noise, a one-frame lorry). Also end to end: a camera whose frames go
black reports it in the agent's status and heartbeat."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_agent.tamper import TamperDetector, TamperSettings


def street(seed: int = 3, size=(480, 640)) -> np.ndarray:
    """A textured view: road, kerbs, buildings' edges (rectangles and lines)."""
    rng = np.random.default_rng(seed)
    h, w = size
    img = np.full((h, w, 3), 90, np.uint8)
    for _ in range(60):
        x, y = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
        bw, bh = int(rng.integers(10, 120)), int(rng.integers(10, 80))
        cv2.rectangle(img, (x, y), (x + bw, y + bh), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    for _ in range(12):
        p = tuple(int(v) for v in rng.integers(0, w, 2))
        q = tuple(int(v) for v in rng.integers(0, h, 2))
        cv2.line(img, (p[0], q[0]), (p[1], q[1]), (240, 240, 240), 2)
    return img


def shifted(img: np.ndarray, dx: int, dy: int) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REFLECT)


def _detector(**kw) -> TamperDetector:
    d = TamperDetector(TamperSettings(check_seconds=1.0, confirm_checks=2, **kw))
    d.check(street())      # the reference
    return d


def _run(d: TamperDetector, frame: np.ndarray, n: int = 2) -> tuple[str, ...]:
    for _ in range(n):
        d.check(frame)
    return d.flags


@pytest.mark.parametrize("name, frame, expected", [
    ("covered", np.full((480, 640, 3), 3, np.uint8), ("black",)),
    ("covered with a dark cloth", cv2.GaussianBlur((street() * 0.05).astype(np.uint8), (0, 0), 3), ("black",)),
    ("sprayed", cv2.GaussianBlur(street(), (0, 0), 5), ("blurred",)),
    ("turned away", shifted(street(), 140, 60), ("moved",)),
    ("pointed elsewhere", street(seed=99), ("moved",)),
])
def test_tampered_views_are_reported(name, frame, expected):
    assert _run(_detector(), frame) == expected, name


def test_ordinary_changes_are_not_tamper():
    base = street()
    d = _detector()
    car = base.copy()
    cv2.rectangle(car, (200, 250), (420, 400), (30, 30, 200), -1)
    dusk = (base * 0.45).astype(np.uint8)
    noisy = np.clip(base + np.random.default_rng(1).normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    for frame in (car, dusk, noisy, shifted(base, 3, 2)):
        assert _run(d, frame, 4) == ()
    lorry = np.full_like(base, 160)    # one flat frame: seen once, not confirmed
    d.check(lorry)
    d.check(base)
    assert d.flags == ()


def test_a_condition_clears_once_the_view_is_back_and_only_after_confirmation():
    d = _detector()
    black = np.zeros((480, 640, 3), np.uint8)
    d.check(black)
    assert d.flags == ()                       # one check is not enough
    d.check(black)
    assert d.flags == ("black",)
    d.check(street())
    assert d.flags == ("black",)               # clearing is confirmed too
    d.check(street())
    assert d.flags == ()


def test_checks_follow_the_interval_and_a_black_start_waits_for_a_reference():
    d = TamperDetector(TamperSettings(check_seconds=5.0, confirm_checks=1))
    black = np.zeros((120, 160), np.uint8)      # grey frames too
    d.observe(black, now=0.0)
    assert d.flags == ("black",)
    d.observe(street()[:, :, 0], now=1.0)      # not due yet: ignored
    assert d.flags == ("black",)
    d.observe(street()[:, :, 0], now=5.0)      # the first usable view becomes the reference
    assert d.flags == ()
    d.observe(cv2.GaussianBlur(street()[:, :, 0], (0, 0), 5), now=10.0)
    assert d.flags == ("blurred",)
    off = TamperDetector(TamperSettings(check_seconds=0))
    off.observe(black, now=0.0)
    assert off.flags == () and off.last is None


def test_a_black_camera_is_reported_in_status_and_heartbeat(tmp_path, pki_dir):
    """The agent's camera worker feeds the detector: a folder of black frames
    after street frames shows up in status.json and in the heartbeat."""
    import threading

    from conftest import edge_config, wait_for
    from edge_agent import config as edge_config_mod
    from edge_agent.agent import Agent
    from edge_agent.wire.health import decode_health, encode_health
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"a{i:03d}.png"), street())
    for i in range(40):
        cv2.imwrite(str(frames / f"b{i:03d}.png"), np.zeros((480, 640, 3), np.uint8))
    sidecar = tmp_path / "none.json"
    sidecar.write_text('{"frames": [[]]}')      # no plates: this test is about the view
    cfg_path = edge_config(tmp_path, pki_dir, 1, source="folder", uri=str(frames), fps=20.0, sidecar=str(sidecar),
                           extra="[health]\ntamper_check_seconds = 1\nconfirm_checks = 2\n")
    cfg = edge_config_mod.load(cfg_path)
    agent = Agent(cfg)
    stop = threading.Event()
    runner = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    runner.start()
    try:
        wait_for(lambda: agent.workers[0].tamper.flags == ("black",), 30, message="black reported")
        assert agent.status()["cameras"][0]["tamper"] == ["black"]
        health = decode_health(encode_health(agent.health.build()))
        assert health.cameras[0].tamper == ("black",)
        agent.write_status()
        from click.testing import CliRunner

        from edge_agent.cli import main as edge_main
        out = CliRunner().invoke(edge_main, ["status", "--no-probe", "--config", str(cfg_path)]).output
        assert "TAMPER: view black" in out, out
    finally:
        stop.set()
        runner.join(30)
