"""The demo pipeline end to end into the console: ``alpr-central demo`` (real
Mosquitto, collector, an edge agent replaying a generated clip) also serves
the console; its printed demo operator signs in over HTTPS (verified against
the demo CA) and finds the reads the edge agent sent, crops included."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time

import httpx


def test_demo_serves_the_console_with_the_pipelines_reads(tmp_path, mosquitto_bin):
    proc = subprocess.Popen([sys.executable, "-m", "central", "demo", "--dir", str(tmp_path / "demo"),
                             "--vehicles", "3", "--duration", "40", "--recognizer", "sidecar-oracle"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any(line[:4].isdigit() for line in lines):   # a read line: the pipeline stored one
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            time.sleep(0.2)
        text = "".join(lines)
        url = re.search(r"console +(https://127\.0\.0\.1:\d+)", text).group(1)
        password = re.search(r"sign in as demo-operator / (\S+)", text).group(1)
        with httpx.Client(base_url=url, verify=str(tmp_path / "demo" / "pki" / "ca.crt")) as c:
            page = c.get("/sign-in")
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
            assert c.post("/sign-in", data={"name": "demo-operator", "password": password,
                                            "csrf": csrf}).status_code == 303
            found = c.get("/api/v1/search", params={"range": "24h", "purpose": "stolen-vehicle",
                                                    "case": "DEMO-1"}).json()["results"]
            assert found["matched"] >= 1
            first = found["reads"][0]
            assert first["device_id"] == "demo-cam-1" and first["has_crop"]
            crop = c.get(first["crop_url"])
            assert crop.status_code == 200 and crop.content[:2] == b"\xff\xd8"
    finally:
        proc.send_signal(signal.SIGINT)   # the demo's Ctrl-C: it stops everything and says so
        proc.wait(timeout=60)
        reader.join(timeout=5)
    assert "stopped. central stored" in "".join(lines)
