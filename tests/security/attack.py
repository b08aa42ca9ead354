"""Tools the attacks share: a raw MQTT client holding some certificate, and a
sealed read as a device (or an attacker holding a device's key) would send it."""

from __future__ import annotations

import datetime as dt
import ssl
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.wire import PlateRead, Sealer, encode_batch, encode_read, load_public_key, new_read_id


class Client:
    """A paho client with ``cert`` (a path stem: ``<stem>.crt`` / ``<stem>.key``)
    that records connects, disconnects, publish results and messages."""

    def __init__(self, port: int, ca: Path, cert: Path | None, key: Path | None, *, client_id: str = "",
                 host: str = "127.0.0.1") -> None:
        self.port, self.host = port, host
        self.connected = threading.Event()
        self.refused: str | None = None
        self.disconnects: list[str] = []
        self.published: dict[int, bool] = {}
        self.messages: list[tuple[str, bytes]] = []
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        c.tls_set(ca_certs=str(ca), certfile=str(cert) if cert else None, keyfile=str(key) if key else None,
                  cert_reqs=ssl.CERT_REQUIRED)
        c.reconnect_delay_set(30, 60)  # an attack measures one connection, not paho's retries
        c.on_connect = self._on_connect
        c.on_disconnect = lambda cl, u, f, rc, p: (self.connected.clear(), self.disconnects.append(str(rc)))
        c.on_publish = lambda cl, u, mid, rc, p: self.published.__setitem__(mid, not rc.is_failure)
        c.on_message = lambda cl, u, msg: self.messages.append((msg.topic, msg.payload))
        self.client = c

    def _on_connect(self, client, userdata, flags, rc, props):
        if rc.is_failure:
            self.refused = str(rc)
        else:
            self.connected.set()

    def start(self) -> "Client":
        self.client.connect_async(self.host, self.port, keepalive=10)
        self.client.loop_start()
        return self

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self.connected.wait(timeout)

    def publish(self, topic: str, payload: bytes) -> int:
        return self.client.publish(topic, payload, qos=1).mid

    def stop(self) -> None:
        self.client.loop_stop()
        try:
            self.client.disconnect()
        except Exception:
            pass


def handshake_fails(port: int, ca: Path, cert: Path | None, key: Path | None, timeout: float = 3.0) -> bool:
    """True when the broker will not let a client with ``cert`` in (TLS
    handshake or CONNECT refused), judged over ``timeout`` seconds."""
    c = Client(port, ca, cert, key).start()
    try:
        return not c.wait_connected(timeout)
    finally:
        c.stop()


def sealed_batch(public_key_pem: bytes, device: str, *, camera: str = "lane-1", plate: str = "ATK123",
                 captured_at: dt.datetime | None = None, read_id: str | None = None) -> tuple[str, bytes]:
    """(read id, batch payload) of one sealed read."""
    read = PlateRead(read_id or new_read_id(), device, camera, captured_at or dt.datetime.now(dt.timezone.utc),
                     plate, 0.9, (1, 2, 30, 10))
    sealer = Sealer(load_public_key(public_key_pem), device)
    return read.read_id, encode_batch(new_read_id(), [sealer.seal(read.read_id, encode_read(read))])


def settle(seconds: float = 1.0) -> None:
    """Give the broker time to do what an attack would make it do."""
    time.sleep(seconds)
