"""Central configuration: TOML into frozen dataclasses; unknown keys are errors
naming the key path.

One rule for relative paths: ``data_dir`` resolves beside the config file;
every other relative path resolves under ``data_dir`` (secrets, i.e. private
keys and passphrase / webhook secret files, are looked up in
``$CREDENTIALS_DIRECTORY`` first, where systemd's ``LoadCredential=`` puts
them). Until 2026-12 the ``[mqtt]`` files resolved beside the config file; a
config that relied on that still works when the file exists only there, and
says once how to fix it (:attr:`CentralConfig.notices`, ``config check``).

The ``[mqtt]`` files default to what ``alpr-central ca init`` issues: the CA
certificate (``[ca] cert_file``) and the first collector's certificate and
key beside it (``ca/collector.<name>.crt``), so a config needs no ``[mqtt]``
paths at all."""

from __future__ import annotations

import dataclasses
import os
import re
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
    store of everything). ``url = "postgresql://..."`` moves everything (reads,
    images and every governance table) to that PostgreSQL database; ``path`` is
    then unused."""
    type: str = "sqlite"
    path: str = "central.sqlite"
    url: str = ""

    @property
    def database(self) -> str:
        """Where the governance tables are: the SQLite file, or the PostgreSQL URL
        (what :func:`central.store.database.connect` and ``open_governance`` take)."""
        return self.url if self.type == "postgresql" else self.path


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
    ca_file: str = ""      # empty = [ca] cert_file
    cert_file: str = ""    # empty = ca/collector.<first of [broker] collectors>.crt beside the CA certificate
    key_file: str = ""     # empty = that certificate's key (.key)
    client_id: str = "collector-1"
    share_group: str = "collectors"
    topic_prefix: str = "alpr/v1/devices"
    max_message_bytes: int = 8 << 20
    keepalive: int = 30


@dataclasses.dataclass(frozen=True)
class Keys:
    data_private_keys: tuple[str, ...] = ("data-key.pem",)


# A case or incident number: 2-64 letters, digits, spaces or ._/:#-, with at least one
# digit, so placeholders ("n/a", "none", "test", "unknown") are refused.
DEFAULT_CASE_PATTERN = r"^(?=.*[0-9])[A-Za-z0-9][A-Za-z0-9 _./:#-]{1,63}$"


@dataclasses.dataclass(frozen=True)
class Query:
    purposes: tuple[str, ...] = DEFAULT_PURPOSES
    max_results: int = 1000
    case_number_pattern: str = DEFAULT_CASE_PATTERN   # a Python regular expression the whole number must match
    max_range_days: int = 31         # a search without a plate names a time range at most this long


@dataclasses.dataclass(frozen=True)
class Retention:
    """Days to keep each category (see central/governance/retention.py). Defaults follow
    LAPD: 2 years for reads, 5 years for access logs."""
    non_hit_days: int = 730
    hit_days: int = 730
    image_days: int = 730
    hotlist_days: int = 365          # hotlist entries, from their expiry or removal
    labelled_example_days: int = 730  # the labelled set, at most (an example goes with its read or its crop)
    access_log_days: int = 1825
    device_log_days: int = 1825


DEFAULT_CATEGORIES = (("stolen-vehicle", 365), ("stolen-plate", 365), ("missing-person", 30),
                      ("felony-vehicle", 180), ("bolo", 30))


@dataclasses.dataclass(frozen=True)
class Webhook:
    """An outbound receiver of hits (dispatch / CAD): JSON POSTed to ``url``,
    signed with HMAC-SHA256 under the secret in ``secret_file`` (mode 0600)."""
    name: str
    url: str
    secret_file: str
    categories: tuple[str, ...] = ()    # empty = every category
    timeout: float = 5.0
    max_attempts: int = 8
    retry_seconds: float = 2.0          # first retry after this; doubled each time, at most 10 minutes
    ca_file: str = ""                   # CA bundle for an https receiver with a private CA; empty = system CAs


@dataclasses.dataclass(frozen=True)
class Hotlist:
    """Hotlist categories (name -> the longest an entry may stay valid, days),
    hit de-duplication and outbound webhooks (central/hotlist/)."""
    categories: tuple[tuple[str, int], ...] = DEFAULT_CATEGORIES
    dedupe_seconds: int = 300           # one hit per entry and camera within this window (one vehicle pass)
    webhooks: tuple[Webhook, ...] = ()
    matcher: bool = True                # run the matcher and webhook senders in this collector process

    def max_days(self, category: str) -> int | None:
        return dict(self.categories).get(category)


_CATEGORY_RE = re.compile(r"^[a-z][a-z0-9-]{1,39}\Z")


def _hotlist(table, base: Path) -> Hotlist:
    if not isinstance(table, dict):
        raise ConfigError("hotlist: expected a table")
    for key in table:
        if key not in ("categories", "dedupe_seconds", "webhooks", "matcher"):
            raise ConfigError(f"hotlist.{key}: unknown key")
    categories = DEFAULT_CATEGORIES
    if "categories" in table:
        cats = table["categories"]
        if not isinstance(cats, dict) or not cats:
            raise ConfigError("hotlist.categories: expected a table of name = maximum days")
        for name, days in cats.items():
            if not _CATEGORY_RE.match(name):
                raise ConfigError(f"hotlist.categories.{name}: a name is 2-40 lower-case letters, digits and -")
            if type(days) is not int or not 1 <= days <= 3650:
                raise ConfigError(f"hotlist.categories.{name}: the maximum expiry is 1-3650 days")
        categories = tuple(cats.items())
    dedupe = table.get("dedupe_seconds", 300)
    if type(dedupe) is not int or not 0 <= dedupe <= 86400:
        raise ConfigError("hotlist.dedupe_seconds: 0-86400")
    hooks = table.get("webhooks", [])
    if not isinstance(hooks, list):
        raise ConfigError("hotlist.webhooks: expected an array of tables ([[hotlist.webhooks]])")
    webhooks, names = [], set()
    for i, hook in enumerate(hooks):
        where = f"hotlist.webhooks[{i}]"
        fields = _webhook_fields(hook, where, base, Webhook, names)
        cats = hook.get("categories", [])
        if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
            raise ConfigError(f"{where}.categories: a list of category names")
        webhooks.append(Webhook(**fields, categories=tuple(cats)))
    matcher = table.get("matcher", True)
    if type(matcher) is not bool:
        raise ConfigError("hotlist.matcher: true or false")
    return Hotlist(categories, dedupe, tuple(webhooks), matcher)


def _webhook_fields(hook, where: str, base: Path, cls, names: set) -> dict:
    """The fields every outbound webhook has (hotlist hits, fleet alerts),
    checked; ``cls``'s other fields are the caller's."""
    if not isinstance(hook, dict):
        raise ConfigError(f"{where}: expected a table")
    for key in ("name", "url", "secret_file"):
        if not isinstance(hook.get(key), str) or not hook[key]:
            raise ConfigError(f"{where}.{key}: required (a string)")
    fields = {f.name for f in dataclasses.fields(cls)}
    for key in hook:
        if key not in fields:
            raise ConfigError(f"{where}.{key}: unknown key")
    if not hook["url"].startswith(("https://", "http://")):
        raise ConfigError(f"{where}.url: an http(s) URL")
    if hook["name"] in names:
        raise ConfigError(f"{where}.name: {hook['name']} is used twice")
    names.add(hook["name"])
    timeout, attempts, retry = hook.get("timeout", 5.0), hook.get("max_attempts", 8), hook.get("retry_seconds", 2.0)
    if type(retry) not in (int, float) or not 0.1 <= retry <= 600:
        raise ConfigError(f"{where}.retry_seconds: 0.1-600")
    if type(timeout) not in (int, float) or not 0.1 <= timeout <= 60:
        raise ConfigError(f"{where}.timeout: 0.1-60 seconds")
    if type(attempts) is not int or not 1 <= attempts <= 50:
        raise ConfigError(f"{where}.max_attempts: 1-50")
    ca_file = hook.get("ca_file", "")
    if not isinstance(ca_file, str):
        raise ConfigError(f"{where}.ca_file: a file path")
    return {"name": hook["name"], "url": hook["url"],
            "secret_file": str(resolve(hook["secret_file"], base, credential=True)), "timeout": float(timeout),
            "max_attempts": attempts, "retry_seconds": float(retry),
            "ca_file": str(resolve(ca_file, base)) if ca_file else ""}


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
    bind: str = "127.0.0.1"          # loopback unless configured: set the address cameras reach central at
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
    bind: str = "127.0.0.1"          # loopback unless configured: set the camera network's address
    port: int = 8883
    cert_file: str = "ca/broker.crt"
    key_file: str = "ca/broker.key"
    pid_file: str = ""               # SIGHUP goes here after a revocation; empty = reload it yourself
    run_as: str = ""
    # One name per collector process; each has its own certificate (central.collector.<name>,
    # ca/collector.<name>.crt), so no collector can take over another's MQTT session.
    collectors: tuple[str, ...] = ("main",)


@dataclasses.dataclass(frozen=True)
class Console:
    """The browser console (central/console/, ``alpr-central serve``). Paths relative to data_dir;
    with no cert/key files there, ``serve`` issues a server certificate from central's CA."""
    enabled: bool = False            # alpr-central run serves it too
    bind: str = "127.0.0.1"          # loopback by default: put a reverse proxy or a firewall rule in front
    port: int = 8444
    server_names: tuple[str, ...] = ("localhost", "127.0.0.1")
    cert_file: str = "ca/console.crt"
    key_file: str = "ca/console.key"
    session_idle_minutes: int = 15
    session_max_hours: int = 12
    lockout_failures: int = 5        # failed sign-ins within the window that lock the account
    lockout_window_minutes: int = 15
    lockout_minutes: int = 30
    sign_in_per_minute: int = 10     # failed sign-ins per client address per minute before HTTP 429
    min_password_length: int = 12
    page_size: int = 25
    tile_url: str = ""               # e.g. "https://tiles.example.org/{z}/{x}/{y}.png"; empty = plain basemap


def _console(doc: dict, data_dir: Path) -> Console:
    c = _section(Console, doc.get("console", {}), "console")
    for name, low, high in (("port", 1, 65535), ("session_idle_minutes", 1, 24 * 60), ("session_max_hours", 1, 72),
                            ("lockout_failures", 1, 100), ("lockout_window_minutes", 1, 24 * 60),
                            ("lockout_minutes", 1, 7 * 24 * 60), ("sign_in_per_minute", 1, 10_000),
                            ("min_password_length", 8, 128), ("page_size", 5, 200)):
        if not low <= getattr(c, name) <= high:
            raise ConfigError(f"console.{name}: {low}-{high}")
    if c.tile_url and not (c.tile_url.startswith(("https://", "http://")) and all(
            k in c.tile_url for k in ("{z}", "{x}", "{y}"))):
        raise ConfigError("console.tile_url: an http(s) URL holding {z}, {x} and {y}, or empty")
    return dataclasses.replace(c, cert_file=str(resolve(c.cert_file, data_dir)),
                               key_file=str(resolve(c.key_file, data_dir, credential=True)))


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
    from .fleet.pki import collector_identity
    for name in broker.collectors:
        try:
            collector_identity(name)
        except ValueError as exc:
            raise ConfigError(f"broker.collectors: {exc}") from None
    return {"ca": ca, "enrollment": enrollment, "broker": broker, "console": _console(doc, data_dir)}


ALERT_KINDS = ("offline", "buffer-growing", "disk-low", "clock-off", "certificate-expiring", "camera-tampered")


@dataclasses.dataclass(frozen=True)
class AlertWebhook(Webhook):
    """A receiver of fleet alerts (raised and cleared), signed like hotlist
    webhooks. ``owner``: only this owner's devices ('department' or a business
    id; empty = every device); ``kinds``: only these alerts (empty = all)."""
    owner: str = ""
    kinds: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Alerts:
    """Fleet alert thresholds (central/fleet/alerts.py, ``alpr-central device
    alerts``), how often ``alpr-central run`` evaluates them, how long ended
    alerts are kept, and webhooks that receive them (central/fleet/alert_feed.py)."""
    offline_minutes: float = 15.0
    buffer_growing_minutes: float = 30.0
    buffer_growing_reads: int = 100
    disk_free_megabytes: float = 512.0
    clock_offset_seconds: float = 2.0
    certificate_days: float = 14.0
    check_seconds: float = 30.0
    keep_days: int = 90
    webhooks: tuple[AlertWebhook, ...] = ()


@dataclasses.dataclass(frozen=True)
class RemoteConfigSection:
    """Remote device configuration (central/fleet/remote_config.py). The signing key is its own
    Ed25519 key, in a folder of its own (``alpr-central device config init-key``)."""
    signing_key: str = "config-signing/config-key.pem"


def _alerts(table, base: Path) -> Alerts:
    if not isinstance(table, dict):
        raise ConfigError("alerts: expected a table")
    table = dict(table)
    hooks = table.pop("webhooks", [])
    a = _section(Alerts, table, "alerts")
    for f in dataclasses.fields(Alerts):
        if f.name != "webhooks" and getattr(a, f.name) <= 0:
            raise ConfigError(f"alerts.{f.name}: must be positive")
    if not 1 <= a.check_seconds <= 3600:
        raise ConfigError("alerts.check_seconds: 1-3600")
    if not isinstance(hooks, list):
        raise ConfigError("alerts.webhooks: expected an array of tables ([[alerts.webhooks]])")
    webhooks, names = [], set()
    for i, hook in enumerate(hooks):
        where = f"alerts.webhooks[{i}]"
        if isinstance(hook, dict) and "categories" in hook:   # hotlist categories do not apply to alerts
            raise ConfigError(f"{where}.categories: unknown key (an alert webhook takes kinds and owner)")
        fields = _webhook_fields(hook, where, base, AlertWebhook, names)
        kinds = hook.get("kinds", [])
        if not isinstance(kinds, list) or any(k not in ALERT_KINDS for k in kinds):
            raise ConfigError(f"{where}.kinds: a list of alert kinds ({', '.join(ALERT_KINDS)})")
        owner = hook.get("owner", "")
        if not isinstance(owner, str):
            raise ConfigError(f"{where}.owner: 'department' or a business id")
        webhooks.append(AlertWebhook(**fields, owner=owner, kinds=tuple(kinds)))
    return dataclasses.replace(a, webhooks=tuple(webhooks))


@dataclasses.dataclass(frozen=True)
class Release:
    """Application releases (central/fleet/rollout.py): the release *public* key (PEM, from
    `alpr-central release init-key`; the private key never lives at central). Central checks
    offered bundles with it and hands it to newly enrolled devices. Relative to data_dir."""
    public_key: str = ""


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
    hotlist: Hotlist = Hotlist()
    console: Console = Console()
    alerts: Alerts = Alerts()
    # What the admin should change although the config works (a path found only by the old rule);
    # 'config check' lists them, every command prints them once.
    notices: tuple[str, ...] = ()
    remote_config: RemoteConfigSection = RemoteConfigSection()
    release: Release = Release()


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
    allowed = {"data_dir", "store", "mqtt", "keys", "query", "retention", "sharing", "policy", "ca", "enrollment", "broker",
               "hotlist", "console", "alerts", "remote_config", "release"}
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
    keys = _section(Keys, doc.get("keys", {}), "keys")
    keys = Keys(tuple(str(resolve(k, data_dir, credential=True)) for k in keys.data_private_keys))
    query = _section(Query, doc.get("query", {}), "query")
    try:
        re.compile(query.case_number_pattern)
    except re.error as exc:
        raise ConfigError(f"query.case_number_pattern: not a regular expression ({exc})") from None
    if not 1 <= query.max_range_days <= 3660:
        raise ConfigError("query.max_range_days: 1-3660")
    retention = _section(Retention, doc.get("retention", {}), "retention")
    for f in dataclasses.fields(Retention):
        if getattr(retention, f.name) < 1:
            raise ConfigError(f"retention.{f.name}: must be at least 1 day")
    sharing = _section(Sharing, doc.get("sharing", {}), "sharing")
    sharing = dataclasses.replace(sharing, signing_key=str(resolve(sharing.signing_key, data_dir, credential=True)))
    policy = _section(Policy, doc.get("policy", {}), "policy")
    devices = _device_sections(doc, data_dir)
    mqtt, notices = _mqtt_files(mqtt, devices["ca"], devices["broker"], base, data_dir)
    return dataclasses.replace(CentralConfig(str(data_dir), dataclasses.replace(store, path=str(resolve(store.path, data_dir))),
                         mqtt, keys, query, retention, sharing, policy), **devices,
                               hotlist=_hotlist(doc.get("hotlist", {}), data_dir),
                               alerts=_alerts(doc.get("alerts", {}), data_dir), notices=notices,
                               remote_config=_remote_config(doc.get("remote_config", {}), data_dir),
                               release=_release(doc, data_dir))


def _mqtt_files(mqtt: Mqtt, ca: Ca, broker: BrokerSection, base: Path, data_dir: Path) -> tuple[Mqtt, tuple[str, ...]]:
    """The collector's TLS files: empty = what ``ca init`` issues; relative =
    under data_dir, or, for a config written for the old rule, beside the
    config file when the file exists only there (with a notice saying the fix)."""
    if not mqtt.tls:
        return mqtt, ()
    ca_dir = Path(ca.cert_file).parent
    default = {"ca_file": Path(ca.cert_file), "cert_file": ca_dir / f"collector.{broker.collectors[0]}.crt",
               "key_file": ca_dir / f"collector.{broker.collectors[0]}.key"}
    files, notices = {}, []
    for name, fallback in default.items():
        given = getattr(mqtt, name)
        if not given:
            files[name] = str(fallback)
            continue
        new = resolve(given, data_dir, credential=name == "key_file")
        old = base / given
        if not Path(given).is_absolute() and not new.exists() and old.exists() and old != new:
            new = old
            try:
                fix = str(old.relative_to(data_dir))
            except ValueError:
                fix = str(old)
            notices.append(f"mqtt.{name} = \"{given}\" was found beside the config file ({old}), by the old rule; "
                           f"relative paths now resolve under data_dir ({data_dir}): set mqtt.{name} = \"{fix}\"")
        files[name] = str(new)
    return dataclasses.replace(mqtt, **files), tuple(notices)


def _remote_config(table, data_dir: Path) -> RemoteConfigSection:
    rc = _section(RemoteConfigSection, table, "remote_config")
    return RemoteConfigSection(str(resolve(rc.signing_key, data_dir, credential=True)))


def _release(doc: dict, data_dir: Path) -> Release:
    r = _section(Release, doc.get("release", {}), "release")
    return Release(str(resolve(r.public_key, data_dir))) if r.public_key else r


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
