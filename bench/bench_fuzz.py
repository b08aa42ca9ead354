"""Fuzz central's ingest from an enrolled device: mutated and random messages
through a real Mosquitto (TLS, client certificates, the generated ACL) into a
real `alpr-central run` process over a real SQLite store, with a valid canary
batch from ANOTHER enrolled device after every 1,000 messages.

Reports: collector crashes (process death, unexpected exceptions in its log),
hangs (a canary not acknowledged within --hang-seconds), canaries acknowledged
and stored, their latency (p50 / worst), every 1,000-message window whose
canary took longer than --delay-seconds (with what the window held: replay it with --seed and
--only-window), reads stored under the canary device that it did not send (a
forged read), stored fuzz reads that no longer pass the wire contract, and the
store's integrity check. Seeded: the same seed sends the same messages (the
sealing's random nonces and session keys aside).

    .venv/bin/python bench/bench_fuzz.py [--messages 100000] [--seed 1] [--json]

What is sent (kind: what), drawn at random per message:
  batch-mutated      a valid batch of sealed reads with 1-12 random byte edits
  batch-truncated    a valid batch cut at a random length
  batch-forged       a batch frame whose magic, count or length fields lie
  envelope-mutated   valid batch framing; one envelope's header or ciphertext edited
  sealed-json        a read whose JSON is mutated (types, ranges, missing or extra keys,
                     NaN, 5,000-digit numbers, bad times, image sizes that lie) and then
                     sealed with central's real public key, so it reaches the schema check
  sealed-unencodable a sealed read with a lone surrogate / invalid UTF-8 in a text field
  sealed-nested      a sealed read whose JSON is nested 1,000-200,000 levels deep
  wrong-key          a valid read sealed to a key central does not hold
  other-device       envelopes naming (or sealed as) the canary device, on the fuzz device's topic
  topic              valid or random payloads on random topic levels (ACL-denied, odd, long)
  random-bytes       random payloads of random sizes
  audit              mutated device-audit messages on the fuzz device's audit topic
  replay             a valid batch sent again (must be stored once)
  valid              a valid batch of the fuzz device (stored)
  oversized          a message just over central's size limit (rare)
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import random
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import Rig, percentile  # noqa: E402

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from edge_agent.wire import (  # noqa: E402
    PlateRead, Sealer, Topics, decode_ack, encode_batch, encode_read, generate_keypair, load_public_key,
    new_read_id,
)

FUZZ, CANARY = "fuzz-a", "canary-b"
WINDOW = 1000
KINDS = {  # kind: weight
    "batch-mutated": 12, "batch-truncated": 6, "batch-forged": 6, "envelope-mutated": 12, "sealed-json": 20,
    "sealed-unencodable": 8, "sealed-nested": 2, "wrong-key": 4, "other-device": 5, "topic": 8,
    "random-bytes": 6, "audit": 6, "replay": 2, "valid": 3,
}
TOPICS = Topics()


# -- message makers ------------------------------------------------------------
class Maker:
    """Makes the fuzz messages: (kind, topic, payload)."""

    def __init__(self, rng: random.Random, central_pub, fuzz_key_file: Path) -> None:
        self.rng = rng
        self.sealer = Sealer(central_pub, FUZZ)
        self.canary_sealer = Sealer(central_pub, CANARY)
        _, other_pem = generate_keypair()
        self.wrong_sealer = Sealer(load_public_key(other_pem), FUZZ)
        self.fuzz_key_file = fuzz_key_file
        self.sent_valid: list[bytes] = []
        self._audit: list[dict] | None = None

    # valid material
    def read(self, device: str = FUZZ) -> PlateRead:
        r = self.rng
        now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=r.randint(0, 86400))
        return PlateRead(new_read_id(), device, "lane-1", now,
                         "".join(r.choice("ABCDEFGHJKLMNPRSTUVWXYZ0123456789") for _ in range(r.randint(1, 10))),
                         round(r.random(), 3), (r.randint(0, 1000), r.randint(0, 1000), 150, 75),
                         crop_jpeg=b"\xff\xd8" + r.randbytes(r.randint(1, 300)) if r.random() < 0.5 else None,
                         model_version="fuzz 1.0")

    def envelope(self, device: str = FUZZ) -> bytes:
        read = self.read(device)
        sealer = self.sealer if device == FUZZ else self.canary_sealer
        return sealer.seal(read.read_id, encode_read(read))

    def batch(self, n: int | None = None, device: str = FUZZ) -> bytes:
        n = n or self.rng.choice((1, 1, 2, 5, 20))
        return encode_batch(new_read_id(), [self.envelope(device) for _ in range(n)])

    def doc(self) -> dict:
        read = self.read()
        plain = encode_read(read)
        (n,) = struct.unpack_from(">I", plain)
        return json.loads(plain[4:4 + n])

    def seal_raw(self, json_bytes: bytes, read_id: str | None = None, images: bytes = b"") -> bytes:
        plain = struct.pack(">I", len(json_bytes)) + json_bytes + images
        return self.sealer.seal(read_id or new_read_id(), plain)

    def reads_topic(self) -> str:
        return TOPICS.reads(FUZZ)

    # byte mutations
    def mutate(self, data: bytes, edits: int | None = None) -> bytes:
        r, b = self.rng, bytearray(data)
        for _ in range(edits or r.randint(1, 12)):
            op = r.random()
            pos = r.randrange(len(b) + 1)
            if op < 0.5 and b:
                b[min(pos, len(b) - 1)] = r.randrange(256)
            elif op < 0.7:
                b[pos:pos] = r.randbytes(r.randint(1, 8))
            elif op < 0.9 and b:
                del b[pos:pos + r.randint(1, 8)]
            else:
                b[pos:pos] = b[max(0, pos - 16):pos] * r.randint(1, 4)  # repeat a run
        return bytes(b)

    # kinds
    def make(self, kind: str) -> tuple[str, bytes]:
        return getattr(self, "k_" + kind.replace("-", "_"))()

    def k_batch_mutated(self):
        return self.reads_topic(), self.mutate(self.batch())

    def k_batch_truncated(self):
        b = self.batch()
        return self.reads_topic(), b[:self.rng.randrange(len(b))]

    def k_batch_forged(self):
        r = self.rng
        envs = [self.envelope() for _ in range(r.randint(1, 5))]
        head_magic = r.choice([b"ALB1", b"ALB2", b"\x00\x00\x00\x00", b"ALE1"])
        count = r.choice([0, len(envs) + 1, len(envs) - 1, 1001, 65535, len(envs)])
        parts = [struct.pack(">4s16sH", head_magic, uuid.uuid4().bytes, count)]
        for env in envs:
            n = r.choice([len(env), len(env), 0, len(env) + 1, len(env) - 1, 0xFFFFFFFF, r.randrange(1 << 32)])
            parts.append(struct.pack(">I", n) + env)
        if r.random() < 0.3:
            parts.append(r.randbytes(r.randint(1, 64)))  # trailing bytes
        return self.reads_topic(), b"".join(parts)

    def k_envelope_mutated(self):
        r = self.rng
        envs = [self.envelope() for _ in range(r.randint(1, 5))]
        i = r.randrange(len(envs))
        env = bytearray(envs[i])
        where = r.choice(["magic", "key_id", "eph", "read_id", "dev_len", "device", "nonce", "ct", "tag", "any"])
        spans = {"magic": (0, 4), "key_id": (4, 12), "eph": (12, 44), "read_id": (44, 60), "dev_len": (60, 61),
                 "device": (61, 61 + len(FUZZ)), "nonce": (61 + len(FUZZ), 73 + len(FUZZ)),
                 "ct": (73 + len(FUZZ), len(env) - 16), "tag": (len(env) - 16, len(env)), "any": (0, len(env))}
        lo, hi = spans[where]
        if hi > lo:
            for _ in range(r.randint(1, 4)):
                env[r.randrange(lo, hi)] = r.randrange(256)
        if where == "any" and r.random() < 0.5:
            env = bytearray(self.mutate(bytes(env)))
        envs[i] = bytes(env) or b"\x00"
        return self.reads_topic(), encode_batch(new_read_id(), envs)

    _BAD_VALUES = [None, True, False, 0, -1, 1.5, -0.0, 1e308, "", "x" * 5000, [], {}, [1, 2, 3, 4],
                   "2026-01-01T00:00:00.000000Z", 2 ** 64, -(2 ** 63), "\u0000", "\u202e", "A\nB", "🚓"]

    def k_sealed_json(self):
        r = self.rng
        doc = self.doc()
        rid = doc["read_id"]
        images = b""
        for _ in range(r.randint(1, 3)):
            op = r.random()
            key = r.choice(sorted(doc))
            if op < 0.4:
                doc[key] = r.choice(self._BAD_VALUES)
            elif op < 0.5:
                del doc[key]
            elif op < 0.55:
                doc[r.choice(["extra", "V", "plate ", "\u00e9"])] = 1
            elif op < 0.65:
                doc["captured_at"] = r.choice([
                    "2026-13-01T00:00:00.000000Z", "0001-01-01T00:00:00.000000Z", "9999-12-31T23:59:59.999999Z",
                    "1999-12-31T23:59:59.999999Z", "2099-12-31T23:59:59.999999Z", "2026-01-01T00:00:00+00:00",
                    "2026-01-01T00:00:00.000000+05:00", "2026-02-30T00:00:00.000000Z", "x" * 27])
            elif op < 0.72:
                doc[r.choice(["crop_bytes", "context_bytes"])] = r.choice([-1, 1, 10 ** 6, 2 ** 40, 512 * 1024 + 1])
                images = r.randbytes(r.randint(0, 64))
            elif op < 0.8:
                doc[r.choice(["box", "alternates", "location"])] = r.choice([
                    [1, 2, 3], [1, 2, 3, 100000], [-1, 0, 0, 0], [1.5, 2, 3, 4], [True, 1, 1, 1],
                    [{"plate": "ABC", "confidence": 2}], [{"plate": "abc", "confidence": 0.5}] * 6,
                    {"lat": 91, "lon": 0, "heading": None}, {"lat": 0, "lon": 0, "heading": 360},
                    {"lat": float("nan"), "lon": 0, "heading": None}, {"lat": 0, "lon": 0}])
            elif op < 0.9:
                doc[r.choice(["read_id", "device_id", "camera_id", "plate", "model_version"])] = r.choice([
                    rid.upper(), "{" + rid + "}", "urn:uuid:" + rid, new_read_id(), CANARY, "FUZZ-A", "fuzz-a\n",
                    "abc", "ABC 123", "A" * 11, "lane 1", "m" * 65, "\t", ""])
            else:
                doc["v"] = r.choice([0, 2, "1", 1.0, None])
        text = json.dumps(doc, allow_nan=True).encode()
        if r.random() < 0.2:  # numbers JSON allows but Python refuses (over 4,300 digits) or overflows
            text = text.replace(b'"confidence": ', b'"confidence": ' + r.choice([b"9" * 5000 + b" ", b"1e999 + ",
                                                                                   b"NaN, \"_\": "]), 1)
        return self.reads_topic(), encode_batch(new_read_id(), [self.seal_raw(text, rid, images)])

    def k_sealed_unencodable(self):
        r = self.rng
        doc = self.doc()
        key = r.choice(["plate", "camera_id", "device_id", "read_id", "model_version", "captured_at", "alternates",
                        "extra"])
        bad = r.choice(["\\ud800", "\\udfff", "\\udc00\\ud800", "A\\ud83d", "\\u0000", "\\ud800\\udc00"])
        text = json.dumps(doc).encode()
        if key == "alternates":
            text = text.replace(b'"alternates": []', b'"alternates": [{"plate": "A' + bad.encode()
                                + b'", "confidence": 0.5}]')
        elif key == "extra":
            text = text[:-1] + b', "' + bad.encode() + b'": 1}'
        else:
            old = json.dumps(doc[key]).encode()
            new = b'"' + (doc[key][:5].encode() if r.random() < 0.5 else b"") + bad.encode() + b'"'
            text = text.replace(b'"' + key.encode() + b'": ' + old, b'"' + key.encode() + b'": ' + new, 1)
        if r.random() < 0.15:
            text = text.replace(b'"lane-1"', b'"lane-\xff\xfe"')  # invalid UTF-8 bytes
        return self.reads_topic(), encode_batch(new_read_id(), [self.seal_raw(text, doc["read_id"])])

    def k_sealed_nested(self):
        r = self.rng
        doc = self.doc()
        depth = r.choice([1000, 5000, 50_000, 200_000])
        key = r.choice(["location", "box", "alternates", "model_version", "extra"])
        nested = b"[" * depth + b"]" * depth if r.random() < 0.7 else b'{"a":' * depth + b"1" + b"}" * depth
        text = json.dumps({**doc, key: "@@"}).encode().replace(b'"@@"', nested)
        return self.reads_topic(), encode_batch(new_read_id(), [self.seal_raw(text, doc["read_id"])])

    def k_wrong_key(self):
        read = self.read()
        return self.reads_topic(), encode_batch(new_read_id(), [self.wrong_sealer.seal(read.read_id, encode_read(read))])

    def k_other_device(self):
        r = self.rng
        choice = r.random()
        if choice < 0.4:  # the canary's envelopes, replayed or made, on our topic
            envs = [self.envelope(CANARY) for _ in range(r.randint(1, 3))]
        elif choice < 0.7:  # our read, sealed in an envelope naming the canary
            read = self.read()
            envs = [self.canary_sealer.seal(read.read_id, encode_read(read))]
        else:  # the canary's read, sealed in our envelope
            read = self.read(CANARY)
            envs = [self.sealer.seal(read.read_id, encode_read(read))]
        topic = self.reads_topic() if r.random() < 0.8 else TOPICS.reads(CANARY)  # the ACL refuses the latter
        return topic, encode_batch(new_read_id(), envs)

    def k_topic(self):
        r = self.rng
        p = "alpr/v1/devices"
        topic = r.choice([
            f"{p}/{FUZZ}/reads/extra", f"{p}/{FUZZ}", f"{p}/{CANARY}/reads", f"{p}/{CANARY}/audit", f"{p}//reads",
            f"{p}/FUZZ-A/reads", f"{p}/{FUZZ}/ack", f"{p}/{CANARY}/ack", f"{p}/{FUZZ}/status", "$SYS/broker/x",
            f"{p}/{FUZZ}/reads/" + "x" * 5000, f"{p}/{FUZZ}/r\u00e9ads", "alpr/v2/devices/fuzz-a/reads", "/" * 50,
            f"{p}/{FUZZ}/" + "/".join(str(r.randrange(10)) for _ in range(r.randint(1, 40))), f"{p}/{FUZZ}/audit",
            f"{p}/{FUZZ}/reads"])
        payload = self.batch() if r.random() < 0.5 else r.randbytes(r.randint(0, 2000))
        return topic, payload

    def k_random_bytes(self):
        r = self.rng
        size = r.choice([0, 1, 4, 21, 22, 100, 1000, 100_000])
        head = r.choice([b"", b"ALB1", b"ALB1" + uuid.uuid4().bytes])
        return self.reads_topic(), head + r.randbytes(size)

    def audit_docs(self) -> list[dict]:
        if self._audit is None:
            from edge_agent.auditlog import DeviceAuditLog
            with tempfile.TemporaryDirectory() as tmp:
                log = DeviceAuditLog(Path(tmp) / "audit.sqlite", FUZZ, self.fuzz_key_file)
                for i in range(5):
                    log.append("cli", {"command": f"status {i}"})
                self._audit = [rec.to_dict() for rec in log.records()]
                log.close()
        return self._audit

    def k_audit(self):
        r = self.rng
        records = [dict(d) for d in self.audit_docs()]
        rec = r.choice(records)
        key = r.choice(sorted(rec))
        rec[key] = r.choice(self._BAD_VALUES + [2 ** 63, 2 ** 70, -5, 0, "\ud800", {"a": "\ud800"}, "y" * 5000])
        doc = {"v": 1, "device_id": r.choice([FUZZ, FUZZ, CANARY, "FUZZ"]), "records": records}
        text = json.dumps(doc).encode()
        if r.random() < 0.3:
            text = self.mutate(text)
        elif r.random() < 0.1:
            text = b'{"v":1,"device_id":"fuzz-a","records":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        return TOPICS.audit(FUZZ), text

    def k_replay(self):
        if not self.sent_valid:
            return self.k_valid()
        return self.reads_topic(), self.rng.choice(self.sent_valid)

    def k_valid(self):
        b = self.batch()
        if len(self.sent_valid) < 100:
            self.sent_valid.append(b)
        return self.reads_topic(), b

    def k_oversized(self):
        return self.reads_topic(), b"ALB1" + self.rng.randbytes((8 << 20) + 100)


# -- MQTT clients --------------------------------------------------------------
class Client:
    def __init__(self, rig: Rig, device: str, *, acks: bool) -> None:
        self.device = device
        self.connected = threading.Event()
        self.disconnects = 0
        self.acks: dict[str, object] = {}
        self.ack_event = threading.Condition()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{device}-bench", protocol=mqtt.MQTTv5)
        c.tls_set(ca_certs=str(rig.pki / "ca.crt"), certfile=str(rig.pki / f"{device}.crt"),
                  keyfile=str(rig.pki / f"{device}.key"))
        c.max_inflight_messages_set(100)
        c.reconnect_delay_set(0.1, 2)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        if acks:
            c.on_message = self._on_message
        self.want_acks = acks
        self.client = c
        c.connect_async("127.0.0.1", rig.port)
        c.loop_start()
        if not self.connected.wait(15):
            raise RuntimeError(f"{device} could not connect")

    def _on_connect(self, client, userdata, flags, rc, props):
        if not rc.is_failure:
            if self.want_acks:
                client.subscribe(TOPICS.ack(self.device), qos=1)
            self.connected.set()

    def _on_disconnect(self, client, userdata, flags, rc, props):
        self.connected.clear()
        self.disconnects += 1

    def _on_message(self, client, userdata, message):
        try:
            ack = decode_ack(message.payload)
        except Exception:
            return
        with self.ack_event:
            self.acks[ack.batch_id] = ack
            self.ack_event.notify_all()

    def wait_ack(self, batch_id: str, timeout: float):
        deadline = time.monotonic() + timeout
        with self.ack_event:
            while batch_id not in self.acks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.ack_event.wait(left)
            return self.acks.pop(batch_id)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- the run -------------------------------------------------------------------
def collector_log_findings(log: Path) -> dict:
    text = log.read_text(errors="replace") if log.exists() else ""
    lines = text.splitlines()
    unexpected = [i for i, line in enumerate(lines) if "unexpected error" in line]
    store_failed = sum("store failed" in line for line in lines)
    first = []
    if unexpected:
        i = unexpected[0]
        first = [lines[i]]
        for line in lines[i + 1:i + 40]:
            if line[:2].isdigit():  # the next log record
                break
            first.append(line)
    return {"unexpected_exceptions": len(unexpected), "store_failures": store_failed,
            "first_unexpected": "\n".join(first)}


def run(args) -> dict:
    rng = random.Random(args.seed)
    kinds = list(KINDS)
    weights = [KINDS[k] for k in kinds]
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        rig = Rig(root, [FUZZ, CANARY])
        rig.start_broker()
        logs = []
        for i in range(args.collectors):
            log = root / f"collector-{i}.log"
            logs.append(log)
            rig.collectors.append(subprocess.Popen(
                [sys.executable, "-m", "central", "run", "--config", str(rig.central_config(i)),
                 "--log-level", "warning"], stderr=open(log, "wb")))
        central_pub = load_public_key((root / "data-key.pub.pem").read_bytes())
        maker = Maker(rng, central_pub, rig.pki / f"{FUZZ}.key")
        canary_maker = Maker(random.Random(args.seed + 1), central_pub, rig.pki / f"{CANARY}.key")
        time.sleep(1.0)
        fuzz = Client(rig, FUZZ, acks=False)
        canary = Client(rig, CANARY, acks=True)
        by_kind: collections.Counter[str] = collections.Counter()
        refused_by_client = 0
        latencies: list[float] = []
        canary_ids: list[str] = []
        hangs, crashes, delayed = [], [], []
        canaries_sent = canaries_acked = 0
        windows = (args.messages + WINDOW - 1) // WINDOW
        started = time.monotonic()
        oversized_every = args.oversized_every
        sent = 0
        try:
            # warm-up canary: the collector is subscribed once this is acked
            for _ in range(30):
                batch_id = new_read_id()
                canary.client.publish(TOPICS.reads(CANARY), encode_batch(batch_id, [canary_maker.envelope(CANARY)]),
                                      qos=1)
                ack = canary.wait_ack(batch_id, 2.0)
                if ack is not None:
                    canary_ids.extend(ack.stored)
                    break
            else:
                raise RuntimeError("the collector never acknowledged a valid batch")
            for w in range(windows):
                window_kinds: collections.Counter[str] = collections.Counter()
                infos = []
                n = min(WINDOW, args.messages - sent)
                for _ in range(n):
                    sent += 1
                    kind = "oversized" if oversized_every and sent % oversized_every == 0 else \
                        rng.choices(kinds, weights)[0]
                    topic, payload = maker.make(kind)
                    qos = 1 if rng.random() < 0.9 else 0
                    if args.only_window is not None and w != args.only_window:
                        continue
                    by_kind[kind] += 1
                    window_kinds[kind] += 1
                    if not fuzz.connected.wait(15):
                        raise RuntimeError("the fuzz client cannot reconnect")
                    try:
                        infos.append(fuzz.client.publish(topic, payload, qos=qos))
                    except (ValueError, UnicodeEncodeError):
                        refused_by_client += 1  # a topic paho will not send (e.g. too long)
                if args.only_window is not None and w != args.only_window:
                    continue
                for info in infos:
                    try:
                        info.wait_for_publish(timeout=10)
                    except RuntimeError:
                        pass  # dropped by a disconnect (an oversized message): the broker said no
                batch_id = new_read_id()
                envs = [canary_maker.envelope(CANARY) for _ in range(args.canary_reads)]
                t0 = time.monotonic()
                canary.client.publish(TOPICS.reads(CANARY), encode_batch(batch_id, envs), qos=1)
                canaries_sent += 1
                ack = canary.wait_ack(batch_id, args.hang_seconds)
                if ack is None:
                    hangs.append({"window": w, "kinds": dict(window_kinds)})
                else:
                    latencies.append(time.monotonic() - t0)
                    if len(ack.stored) == len(envs):
                        canaries_acked += 1
                    canary_ids.extend(ack.stored)
                    if latencies[-1] > args.delay_seconds:
                        delayed.append({"window": w, "latency_s": round(latencies[-1], 3), "kinds": dict(window_kinds)})
                for i, p in enumerate(rig.collectors):
                    if p.poll() is not None and not any(c["collector"] == i for c in crashes):
                        crashes.append({"collector": i, "exit_code": p.returncode, "window": w})
                if not args.json and (w + 1) % 10 == 0:
                    print(f"  {sent:,} messages, {canaries_sent} canaries, worst {max(latencies):.2f} s",
                          file=sys.stderr)
            elapsed = time.monotonic() - started
        finally:
            disconnects = fuzz.disconnects  # before our own disconnect below
            fuzz.close()
            canary.close()
            alive = [p.poll() is None for p in rig.collectors]
            rig.stop()
        exit_codes = [p.returncode for p in rig.collectors]
        with sqlite3.connect(rig.db) as conn:
            canary_stored = {r[0] for r in conn.execute("SELECT read_id FROM reads WHERE device_id = ?", [CANARY])}
            fuzz_stored = conn.execute("SELECT count(*) FROM reads WHERE device_id = ?", [FUZZ]).fetchone()[0]
            other = conn.execute("SELECT count(*) FROM reads WHERE device_id NOT IN (?, ?)", [FUZZ, CANARY]).fetchone()[0]
            integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
            audit_rows = conn.execute("SELECT count(*) FROM device_audit").fetchone()[0]
        from central.store import Search
        from central.store.sqlite import SQLiteStore
        store = SQLiteStore(rig.db)
        revalidate_failures = 0
        try:
            store.search(Search(device_id=FUZZ, limit=100_000))  # rebuilds every PlateRead: the wire's checks again
        except Exception as exc:  # noqa: BLE001 - a stored read the contract refuses
            revalidate_failures = 1
            print(f"a stored fuzz read no longer passes the wire contract: {type(exc).__name__}", file=sys.stderr)
        store.close()
        findings = [collector_log_findings(log) for log in logs]
    lat_ms = [x * 1000 for x in latencies]
    return {
        "seed": args.seed, "messages": sum(by_kind.values()), "by_kind": dict(sorted(by_kind.items())),
        "refused_by_client_library": refused_by_client, "fuzz_client_disconnects": disconnects,
        "collectors": args.collectors, "crashes": crashes, "collectors_alive_at_end": alive,
        "collector_exit_codes_on_sigterm": exit_codes,
        "unexpected_exceptions": sum(f["unexpected_exceptions"] for f in findings),
        "store_failures": sum(f["store_failures"] for f in findings),
        "first_unexpected": next((f["first_unexpected"] for f in findings if f["first_unexpected"]), ""),
        "hangs": hangs, "canaries_sent": canaries_sent, "canaries_acked": canaries_acked,
        "canary_reads_acked": len(set(canary_ids)), "canary_reads_stored": len(canary_stored & set(canary_ids)),
        "canary_device_reads_not_sent_by_it": len(canary_stored - set(canary_ids)),
        "canary_latency_ms": {"p50": round(percentile(lat_ms, 50), 1), "p99": round(percentile(lat_ms, 99), 1),
                              "worst": round(max(lat_ms), 1) if lat_ms else None},
        "delayed_windows": delayed, "fuzz_reads_stored": fuzz_stored, "reads_of_unknown_devices": other,
        "stored_reads_failing_revalidation": revalidate_failures, "integrity_check": integrity,
        "audit_records_stored": audit_rows, "elapsed_s": round(elapsed, 1),
    }


def report(f: dict) -> None:
    print(f"fuzz messages: {f['messages']:,} from enrolled device {FUZZ} (seed {f['seed']}); "
          f"{f['collectors']} collector process(es); canary device {CANARY} every {WINDOW:,}")
    print("  by kind: " + ", ".join(f"{k} {v:,}" for k, v in f["by_kind"].items()))
    print(f"  not sent (the client library refused the topic): {f['refused_by_client_library']}; "
          f"fuzz client disconnected by the broker: {f['fuzz_client_disconnects']}")
    print(f"crashes (collector process died): {len(f['crashes'])}   alive at the end: {f['collectors_alive_at_end']}"
          f"   exit codes on SIGTERM: {f['collector_exit_codes_on_sigterm']} (None: still running 10 s later, killed)")
    print(f"unexpected exceptions in the collectors' logs: {f['unexpected_exceptions']}   "
          f"store failures: {f['store_failures']}")
    if f["first_unexpected"]:
        print("  first one:\n    " + f["first_unexpected"].replace("\n", "\n    "))
    print(f"hangs (canary not acknowledged within the limit): {len(f['hangs'])}")
    print(f"canaries: {f['canaries_sent']} batches sent, {f['canaries_acked']} acknowledged in full; "
          f"{f['canary_reads_acked']} reads acknowledged, {f['canary_reads_stored']} of them stored")
    lat = f["canary_latency_ms"]
    print(f"canary latency (backlog of its window included): p50 {lat['p50']} ms, p99 {lat['p99']} ms, "
          f"worst {lat['worst']} ms")
    print(f"windows whose canary was delayed: {len(f['delayed_windows'])}"
          + "".join(f"\n  window {d['window']}: {d['latency_s']} s; held {d['kinds']}" for d in f["delayed_windows"]))
    print(f"reads stored as {CANARY} that it never sent (forged): {f['canary_device_reads_not_sent_by_it']}; "
          f"of unknown devices: {f['reads_of_unknown_devices']}")
    print(f"fuzz reads stored: {f['fuzz_reads_stored']:,} (re-validation failures: "
          f"{f['stored_reads_failing_revalidation']}); device audit records stored: {f['audit_records_stored']}")
    print(f"store integrity_check: {f['integrity_check']}   elapsed: {f['elapsed_s']} s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--collectors", type=int, default=1)
    ap.add_argument("--canary-reads", type=int, default=5, help="reads in each canary batch")
    ap.add_argument("--hang-seconds", type=float, default=30.0, help="a canary not acked within this is a hang")
    ap.add_argument("--delay-seconds", type=float, default=3.0,
                    help="a canary acknowledged later than this marks its window as delayed")
    ap.add_argument("--oversized-every", type=int, default=25_000, help="0: never send an oversized message")
    ap.add_argument("--only-window", type=int, help="replay one window of the seed's sequence (with its canary)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    figures = run(args)
    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        report(figures)
    bad = (figures["crashes"] or figures["hangs"] or figures["unexpected_exceptions"]
           or figures["canary_device_reads_not_sent_by_it"] or figures["stored_reads_failing_revalidation"]
           or figures["integrity_check"] != "ok" or figures["canary_reads_stored"] != figures["canary_reads_acked"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
