"""The live path with a real Mosquitto, the real agent process and real
SQLite or PostgreSQL: a demo vehicle whose plate is listed raises exactly one hit with its
crop; webhook receivers on loopback get a correctly signed payload; a receiver
that hangs and fails is retried while ingest goes on."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import http.server
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading

import pytest

from central.config import Hotlist, Webhook
from central.governance.users import Role, UserDirectory
from central.hotlist.csvimport import EntryInput
from central.hotlist.hits import HitBook
from central.hotlist.lists import Hotlists
from central.hotlist.service import HotlistProcess
from central.hotlist.webhooks import verify_signature, write_secret
from conftest import edge_config, wait_for

pytestmark = pytest.mark.slow


class Receiver:
    """A loopback HTTP receiver; ``fail_first`` requests answer 500, the first
    after waiting for ``release`` (a hung dispatcher)."""

    def __init__(self, *, fail_first: int = 0, hang: threading.Event | None = None) -> None:
        self.requests: list[tuple[dict, bytes]] = []
        self.fail_first = fail_first
        self.hang = hang
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.requests.append((self.headers, body))  # case-insensitive names
                if len(owner.requests) == 1 and owner.hang is not None:
                    owner.hang.wait(30)
                code = 500 if len(owner.requests) <= owner.fail_first else 204
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hits"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        if self.hang is not None:
            self.hang.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    made = []
    yield lambda **kw: made.append(Receiver(**kw)) or made[-1]
    for r in made:
        r.close()


def run_agent(config):
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "edge_agent", "run", "--config", str(config), "--log-level",
                             "warning", "--exit-when-drained"], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.seek(0)
    return proc.returncode, log.read().decode(errors="replace")


def test_listed_demo_plate_raises_one_hit_and_signed_webhooks(tmp_path, pki_dir, broker, collector_factory,
                                                              sample_clip, receivers, store_factory):
    video, sidecar = sample_clip
    plates = json.loads(sidecar.read_text())["plates"]
    store = store_factory(tmp_path / "central.sqlite")   # each backend (PostgreSQL: matched through read_feed)
    central = collector_factory(broker.port, store=store)
    conn = central.store.db.conn
    users = UserDirectory(conn)
    admin, _ = users.bootstrap("ada", "City PD")
    operator, _ = users.add(admin, "otto", "City PD", Role.OPERATOR)
    good, hang = receivers(), threading.Event()
    bad = receivers(fail_first=2, hang=hang)
    secrets = {}
    for name in ("cad", "flaky"):
        secrets[name] = write_secret(tmp_path / f"{name}.secret")
    cfg = Hotlist(webhooks=(Webhook("cad", good.url, str(tmp_path / "cad.secret")),
                            Webhook("flaky", bad.url, str(tmp_path / "flaky.secret"), timeout=40.0,
                                    retry_seconds=0.3)))
    lists = Hotlists(conn, cfg)
    lists.create(admin, "demo", "stolen-vehicle")
    now = dt.datetime.now(dt.timezone.utc)
    entry = lists.add(admin, "demo", EntryInput(plates[0], "stolen (test)", "City PD", "SVS-1",
                                                now + dt.timedelta(days=3), "CA", "24-0001"))
    # as 'alpr-central run' does: matcher and webhook senders in a child process
    service = HotlistProcess(getattr(store, "url", "") or store.path, cfg).attach(central.collector).start()
    try:
        code, out = run_agent(edge_config(tmp_path, pki_dir, broker.port, uri=str(video), sidecar=str(sidecar)))
        assert code == 0, out
        # Ingest finished while the flaky receiver still hangs on its first delivery.
        assert len(central.read_ids()) == len(plates)
        book = HitBook(conn)
        hits = wait_for(lambda: book.after(operator), 10, message="the hit")
        assert len(hits) == 1
        hit = book.get(operator, hits[0].hit_id)
        assert (hit.entry_id, hit.match_kind, hit.read_plate, hit.status) == \
            (entry.entry_id, "exact", plates[0], "unverified")
        assert hit.crop_jpeg and hit.crop_jpeg[:2] == b"\xff\xd8"
        wait_for(lambda: good.requests, 10, message="the webhook delivery")
        headers, body = good.requests[0]
        assert verify_signature(secrets["cad"], headers["X-ALPR-Timestamp"], body, headers["X-ALPR-Signature"])
        assert not verify_signature(secrets["flaky"], headers["X-ALPR-Timestamp"], body,
                                    headers["X-ALPR-Signature"])
        assert not verify_signature(secrets["cad"], headers["X-ALPR-Timestamp"], body + b" ",
                                    headers["X-ALPR-Signature"])
        payload = json.loads(body)
        assert payload["hit_id"] == hit.hit_id and payload["match_kind"] == "exact"
        assert base64.b64decode(payload["read"]["crop_jpeg_base64"]) == hit.crop_jpeg
        assert payload["read"]["camera_id"] == "lane-1" and payload["read"]["device_id"] == "cam-a"
        assert payload["entry"]["plate"] == plates[0] and payload["entry"]["source_ref"] == "SVS-1"
        assert payload["entry"]["category"] == "stolen-vehicle" and payload["entry"]["case_number"] == "24-0001"
        assert headers["X-ALPR-Delivery"] == str(payload["delivery_id"])
        assert len(bad.requests) == 1      # still hanging on it
        hang.set()
        rows = wait_for(lambda: [r for r in conn.execute(
            "SELECT status, attempts FROM webhook_deliveries WHERE endpoint = 'flaky'").fetchall()
            if r[0] == "delivered"], 30, message="the retried delivery")
        assert rows == [("delivered", 3)] and len(bad.requests) == 3
        attempts = conn.execute("SELECT a.attempt, a.status_code FROM webhook_attempts a JOIN webhook_deliveries d "
                                "USING (delivery_id) WHERE d.endpoint = 'flaky' ORDER BY a.attempt").fetchall()
        assert attempts == [(1, 500), (2, 500), (3, 204)]
        from central.hotlist.webhooks import deliveries
        shown = {d["endpoint"]: d for d in deliveries(conn, operator, hit.hit_id)}
        assert shown["cad"]["status"] == "delivered" and len(shown["cad"]["history"]) == 1
        assert [a["status_code"] for a in shown["flaky"]["history"]] == [500, 500, 204]
        assert shown["flaky"]["history"][0]["seconds"] > 0
        assert [json.loads(b)["delivery_id"] for _, b in bad.requests] == [json.loads(bad.requests[0][1])
                                                                           ["delivery_id"]] * 3
    finally:
        service.stop()
    assert dataclasses.asdict(cfg.webhooks[0])["secret_file"].endswith("cad.secret")
