"""Central configuration: TOML into frozen dataclasses; unknown keys are errors
naming the key path. Secrets (TLS key, data private keys) are files; relative
key paths are looked up in ``$CREDENTIALS_DIRECTORY`` first, then beside the
config file."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path

from .errors import ConfigError

DEFAULT_PURPOSES = (
    "criminal-investigation", "stolen-vehicle", "missing-person", "amber-alert", "wanted-person",
    "hit-and-run", "homeland-security",
)


@dataclasses.dataclass(frozen=True)
class Store:
    """Where central keeps its data. ``path`` is the SQLite file (the default
    store of everything). ``url = "postgresql://..."`` moves the reads and their
    images to PostgreSQL; the governance tables (users, access log, devices,
    holds, sharing) stay in the SQLite file at ``path`` until they move too."""
    type: str = "sqlite"
    path: str = "central.sqlite"
    url: str = ""


def check_postgres_url(url: str, name: str = "store.url") -> str:
    """A libpq URL without a password (secrets never in TOML or on a command
    line: use a password file, PGPASSFILE, or client certificates)."""
    import urllib.parse
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"{name}: expected a postgresql:// URL")
    query = urllib.parse.parse_qs(parts.query)
    if parts.password or "password" in query:
        raise ConfigError(f"{name}: put no password in the URL; use a password file (passfile=... in the URL, "
                          "PGPASSFILE or ~/.pgpass) or client certificates (sslcert=, sslkey=)")
    return url


@dataclasses.dataclass(frozen=True)
class Mqtt:
    host: str = "localhost"
    port: int = 8883
    tls: bool = True
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    client_id: str = "collector-1"
    share_group: str = "collectors"
    topic_prefix: str = "alpr/v1/devices"
    max_message_bytes: int = 8 << 20
    keepalive: int = 30


@dataclasses.dataclass(frozen=True)
class Keys:
    data_private_keys: tuple[str, ...] = ("data-key.pem",)


@dataclasses.dataclass(frozen=True)
class Query:
    purposes: tuple[str, ...] = DEFAULT_PURPOSES
    max_results: int = 1000


@dataclasses.dataclass(frozen=True)
class Retention:
    """Days to keep each category (see central/governance/retention.py). Defaults follow
    LAPD: 2 years for reads, 5 years for access logs."""
    non_hit_days: int = 730
    hit_days: int = 730
    image_days: int = 730
    hotlist_days: int = 365          # after a hotlist entry expires
    access_log_days: int = 1825
    device_log_days: int = 1825


@dataclasses.dataclass(frozen=True)
class Sharing:
    """Who may receive data (Civ. Code 1798.90.55(b): public agencies only)."""
    eligible_agency_types: tuple[str, ...] = ("public-agency",)
    eligible_jurisdictions: tuple[str, ...] = ("CA",)
    signing_key: str = "signing-key.pem"
    max_reads_per_export: int = 10000


@dataclasses.dataclass(frozen=True)
class Policy:
    """Published usage and privacy policy facts (transparency report)."""
    agency: str = "City Police Department"
    custodian: str = "ALPR Program Custodian"
    custodian_contact: str = ""
    policy_url: str = ""


@dataclasses.dataclass(frozen=True)
class Ca:
    """Central's certificate authority (central/fleet/ca.py). Paths relative to data_dir."""
    key_file: str = "ca/ca.key"
    cert_file: str = "ca/ca.crt"
    passphrase_file: str = ""        # a 0600 file holding the CA key's passphrase; empty = key not encrypted
    device_cert_days: int = 365


@dataclasses.dataclass(frozen=True)
class Enrollment:
    """The HTTPS enrollment endpoint (central/fleet/enrollment.py) and what new devices are told."""
    bind: str = "0.0.0.0"
    port: int = 8443
    server_names: tuple[str, ...] = ("localhost", "127.0.0.1")
    cert_file: str = "ca/enrollment.crt"
    key_file: str = "ca/enrollment.key"
    max_token_hours: int = 72
    broker_host: str = "localhost"   # how devices reach the broker
    broker_port: int = 8883
    data_public_key: str = ""        # central's data public key (PEM); empty = derived from keys.data_private_keys[0]


@dataclasses.dataclass(frozen=True)
class BrokerSection:
    """Mosquitto configuration generated from the registry (central/fleet/broker.py)."""
    dir: str = "broker"
    bind: str = "0.0.0.0"
    port: int = 8883
    cert_file: str = "ca/broker.crt"
    key_file: str = "ca/broker.key"
    pid_file: str = ""               # SIGHUP goes here after a revocation; empty = reload it yourself
    run_as: str = ""


def _device_sections(doc: dict, data_dir: Path) -> dict:
    ca = _section(Ca, doc.get("ca", {}), "ca")
    ca = dataclasses.replace(ca, key_file=str(resolve(ca.key_file, data_dir, credential=True)),
                             cert_file=str(resolve(ca.cert_file, data_dir)),
                             passphrase_file=str(resolve(ca.passphrase_file, data_dir, credential=True))
                             if ca.passphrase_file else "")
    if not 1 <= ca.device_cert_days <= 3650:
        raise ConfigError("ca.device_cert_days: 1-3650")
    enrollment = _section(Enrollment, doc.get("enrollment", {}), "enrollment")
    enrollment = dataclasses.replace(
        enrollment, cert_file=str(resolve(enrollment.cert_file, data_dir)),
        key_file=str(resolve(enrollment.key_file, data_dir, credential=True)),
        data_public_key=str(resolve(enrollment.data_public_key, data_dir)) if enrollment.data_public_key else "")
    if not 1 <= enrollment.max_token_hours <= 24 * 30:
        raise ConfigError("enrollment.max_token_hours: 1-720")
    broker = _section(BrokerSection, doc.get("broker", {}), "broker")
    broker = dataclasses.replace(
        broker, dir=str(resolve(broker.dir, data_dir)), cert_file=str(resolve(broker.cert_file, data_dir)),
        key_file=str(resolve(broker.key_file, data_dir, credential=True)),
        pid_file=str(resolve(broker.pid_file, data_dir)) if broker.pid_file else "")
    return {"ca": ca, "enrollment": enrollment, "broker": broker}


@dataclasses.dataclass(frozen=True)
class CentralConfig:
    data_dir: str
    store: Store = Store()
    mqtt: Mqtt = Mqtt()
    keys: Keys = Keys()
    query: Query = Query()
    retention: Retention = Retention()
    sharing: Sharing = Sharing()
    policy: Policy = Policy()
    ca: Ca = Ca()
    enrollment: Enrollment = Enrollment()
    broker: BrokerSection = BrokerSection()


_TYPES = {str: "a string", int: "an integer", bool: "true or false", float: "a number"}


def _section(cls, table, name: str):
    if not isinstance(table, dict):
        raise ConfigError(f"{name}: expected a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in table:
        if key not in fields:
            raise ConfigError(f"{name}.{key}: unknown key")
    values = {}
    for key, value in table.items():
        default = getattr(cls(), key)
        kind = type(default)
        if kind is tuple:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or not value:
                raise ConfigError(f"{name}.{key}: expected a non-empty list of strings")
            value = tuple(value)
        elif kind is float and type(value) is int:
            value = float(value)
        elif type(value) is not kind:
            raise ConfigError(f"{name}.{key}: expected {_TYPES.get(kind, kind.__name__)}")
        values[key] = value
    return cls(**values)


def resolve(path: str, base: Path, *, credential: bool = False) -> Path:
    p = Path(path)
    if p.is_absolute():
        return p
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if credential and creds and (Path(creds) / p).exists():
        return Path(creds) / p
    return base / p


def parse(doc: dict, base: Path) -> CentralConfig:
    allowed = {"data_dir", "store", "mqtt", "keys", "query", "retention", "sharing", "policy", "ca", "enrollment", "broker"}
    for key in doc:
        if key not in allowed:
            raise ConfigError(f"{key}: unknown key")
    if not isinstance(doc.get("data_dir"), str):
        raise ConfigError("data_dir: required (a folder path)")
    data_dir = resolve(doc["data_dir"], base)
    store = _section(Store, doc.get("store", {}), "store")
    if store.type not in ("sqlite", "postgresql"):
        raise ConfigError("store.type: 'sqlite' or 'postgresql'")
    if store.url:
        store = dataclasses.replace(store, type="postgresql", url=check_postgres_url(store.url))
    elif store.type == "postgresql":
        raise ConfigError("store.url: required for the postgresql store (postgresql://user@host/db)")
    mqtt = _section(Mqtt, doc.get("mqtt", {}), "mqtt")
    if mqtt.tls and not (mqtt.ca_file and mqtt.cert_file and mqtt.key_file):
        raise ConfigError("mqtt.ca_file, mqtt.cert_file and mqtt.key_file are required when mqtt.tls is true")
    mqtt = dataclasses.replace(
        mqtt, ca_file=str(resolve(mqtt.ca_file, base)) if mqtt.ca_file else "",
        cert_file=str(resolve(mqtt.cert_file, base)) if mqtt.cert_file else "",
        key_file=str(resolve(mqtt.key_file, base, credential=True)) if mqtt.key_file else "")
    keys = _section(Keys, doc.get("keys", {}), "keys")
    keys = Keys(tuple(str(resolve(k, data_dir, credential=True)) for k in keys.data_private_keys))
    query = _section(Query, doc.get("query", {}), "query")
    retention = _section(Retention, doc.get("retention", {}), "retention")
    for f in dataclasses.fields(Retention):
        if getattr(retention, f.name) < 1:
            raise ConfigError(f"retention.{f.name}: must be at least 1 day")
    sharing = _section(Sharing, doc.get("sharing", {}), "sharing")
    sharing = dataclasses.replace(sharing, signing_key=str(resolve(sharing.signing_key, data_dir, credential=True)))
    policy = _section(Policy, doc.get("policy", {}), "policy")
    return dataclasses.replace(CentralConfig(str(data_dir), dataclasses.replace(store, path=str(resolve(store.path, data_dir))),
                         mqtt, keys, query, retention, sharing, policy), **_device_sections(doc, data_dir))


def load(path) -> CentralConfig:
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read ({exc.strerror})") from None
    return parse(doc, p.resolve().parent)
