"""One rule for relative paths in central.toml (issue 23): data_dir beside the
config file, every other relative path under data_dir, the [mqtt] files too.
A config written for the old [mqtt] rule (beside the config file) keeps
working when the file exists only there, and says once how to fix it.
``ca init`` runs on a config that names no [mqtt] files; the enrollment
endpoint listens on loopback unless configured."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from central import config as config_mod
from central.cli import main


def test_every_relative_path_resolves_under_data_dir(tmp_path):
    cfg = config_mod.parse({
        "data_dir": "d",
        "mqtt": {"ca_file": "ca/ca.crt", "cert_file": "ca/c.crt", "key_file": "ca/c.key"},
        "keys": {"data_private_keys": ["data-key.pem"]},
        "sharing": {"signing_key": "signing.pem"},
        "broker": {"dir": "broker", "pid_file": "broker/m.pid"},
        "hotlist": {"webhooks": [{"name": "cad", "url": "https://127.0.0.1:1/", "secret_file": "cad.secret"}]},
    }, tmp_path)
    d = tmp_path / "d"
    assert cfg.data_dir == str(d)
    assert (cfg.mqtt.ca_file, cfg.mqtt.cert_file, cfg.mqtt.key_file) == (
        str(d / "ca/ca.crt"), str(d / "ca/c.crt"), str(d / "ca/c.key"))
    assert cfg.keys.data_private_keys == (str(d / "data-key.pem"),)
    assert cfg.sharing.signing_key == str(d / "signing.pem")
    assert cfg.store.path == str(d / "central.sqlite")
    assert (cfg.ca.key_file, cfg.broker.dir, cfg.broker.pid_file) == (
        str(d / "ca/ca.key"), str(d / "broker"), str(d / "broker/m.pid"))
    assert cfg.hotlist.webhooks[0].secret_file == str(d / "cad.secret")
    assert cfg.console.cert_file == str(d / "ca/console.crt")
    assert cfg.notices == ()


def test_mqtt_files_default_to_what_ca_init_issues(tmp_path):
    cfg = config_mod.parse({"data_dir": str(tmp_path / "d"), "broker": {"collectors": ["north", "south"]},
                            "ca": {"cert_file": "pki/root.crt"}}, tmp_path)
    pki = tmp_path / "d" / "pki"
    assert (cfg.mqtt.ca_file, cfg.mqtt.cert_file, cfg.mqtt.key_file) == (
        str(pki / "root.crt"), str(pki / "collector.north.crt"), str(pki / "collector.north.key"))


def test_enrollment_listens_on_loopback_unless_configured(tmp_path):
    assert config_mod.parse({"data_dir": "d"}, tmp_path).enrollment.bind == "127.0.0.1"
    assert config_mod.parse({"data_dir": "d", "enrollment": {"bind": "10.0.0.5"}}, tmp_path).enrollment.bind == \
        "10.0.0.5"


@pytest.fixture
def home():
    """A folder Mosquitto's account can pass through (as root, init sets run_as;
    pytest's tmp_path sits under a 0700 folder)."""
    path = Path(tempfile.mkdtemp(prefix="alpr-paths-", dir="/tmp"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _init(tmp_path) -> Path:
    home = tmp_path / "c"
    result = CliRunner().invoke(main, ["init", str(home), "--token-out", str(tmp_path / "ada.token")])
    assert result.exit_code == 0, result.output
    return home / "central.toml"


def test_init_writes_the_one_rule_and_its_config_checks_clean(home):
    config = _init(home)
    text = config.read_text()
    assert 'ca_file = "ca/ca.crt"' in text and "every other relative" in text and "beside this file" in text
    result = CliRunner().invoke(main, ["config", "check", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok:") and "warning" not in result.stderr


def test_a_config_written_for_the_old_mqtt_rule_works_and_says_the_exact_fix(home):
    config = _init(home)
    old = config.read_text()
    for name in ("ca.crt", "collector.main.crt", "collector.main.key"):   # as init wrote it before the one rule
        old = old.replace(f'"ca/{name}"', f'"data/ca/{name}"', 1)
    config.write_text(old)
    cfg = config_mod.load(config)
    home = config.parent
    assert cfg.mqtt.key_file == str(home / "data/ca/collector.main.key")   # the file it has always used
    assert len(cfg.notices) == 3
    result = CliRunner().invoke(main, ["config", "check", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "3 warning(s)" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3, result.stderr
    assert ('mqtt.key_file = "data/ca/collector.main.key" was found beside the config file '
            f'({home}/data/ca/collector.main.key), by the old rule; relative paths now resolve under data_dir '
            f'({home}/data): set mqtt.key_file = "ca/collector.main.key"') in result.stderr
    # the fix, applied literally, silences it
    fixed = old
    for line in warnings:
        key, value = line.split("set mqtt.")[1].split(" = ")
        fixed = fixed.replace(f'{key} = "data/', f'{key} = "', 1)
        assert f'{key} = {value}' in fixed
    config.write_text(fixed)
    result = CliRunner().invoke(main, ["config", "check", "--config", str(config)])
    assert result.exit_code == 0 and "warning" not in result.stderr, result.output


def test_an_old_rule_file_outside_data_dir_gets_an_absolute_fix(tmp_path):
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "ca.crt").write_text("x")
    cfg = config_mod.parse({"data_dir": "d", "mqtt": {"ca_file": "tls/ca.crt"}}, tmp_path)
    assert cfg.mqtt.ca_file == str(tmp_path / "tls/ca.crt")
    assert cfg.notices[0].endswith(f'set mqtt.ca_file = "{tmp_path / "tls/ca.crt"}"')
    # a file at the new place wins, with nothing to say
    (tmp_path / "d" / "tls").mkdir(parents=True)
    (tmp_path / "d" / "tls" / "ca.crt").write_text("x")
    cfg = config_mod.parse({"data_dir": "d", "mqtt": {"ca_file": "tls/ca.crt"}}, tmp_path)
    assert cfg.mqtt.ca_file == str(tmp_path / "d/tls/ca.crt") and cfg.notices == ()


def test_ca_init_needs_no_mqtt_section_and_creates_its_files(tmp_path):
    """Without 'init': a config holding only data_dir; ca init issues the
    collector's files the [mqtt] defaults name, and config check then passes."""
    config = tmp_path / "central.toml"
    config.write_text('data_dir = "data"\n')
    runner = CliRunner()
    result = runner.invoke(main, ["ca", "init", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "collector   " + str(tmp_path / "data/ca/collector.main.crt") in result.stdout
    result = runner.invoke(main, ["config", "check", "--config", str(config)])
    assert result.exit_code == 78
    data_key = tmp_path / "data" / "data-key.pem"
    assert (f"keys.data_private_keys[0]: {data_key} does not exist (create it: alpr-central keys init "
            f"--private {data_key} --public {tmp_path / 'data/data-key.pub.pem'})") in result.stderr
    assert runner.invoke(main, ["keys", "init", "--private", str(data_key),
                                "--public", str(tmp_path / "data/data-key.pub.pem")]).exit_code == 0
    result = runner.invoke(main, ["config", "check", "--config", str(config)])
    assert result.exit_code == 0, result.output
    again = runner.invoke(main, ["ca", "init", "--config", str(config)])
    assert again.exit_code == 1 and "refusing to replace the CA" in again.stderr


def test_init_host_puts_the_camera_network_name_on_both_certificates(home):
    from cryptography import x509
    result = CliRunner().invoke(main, ["init", str(home / "c"), "--host", "central.pd.example", "--host", "10.0.0.5",
                                       "--token-out", str(home / "ada.token")])
    assert result.exit_code == 0, result.output
    cfg = config_mod.load(home / "c" / "central.toml")
    assert cfg.enrollment.server_names == ("central.pd.example", "10.0.0.5", "localhost", "127.0.0.1")
    assert cfg.enrollment.broker_host == "central.pd.example"
    assert cfg.enrollment.bind == cfg.broker.bind == "127.0.0.1"    # opened only by the admin
    for name in ("broker.crt", "enrollment.crt"):
        cert = x509.load_pem_x509_certificate((home / "c" / "data" / "ca" / name).read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = set(san.get_values_for_type(x509.DNSName)) | {str(a) for a in san.get_values_for_type(x509.IPAddress)}
        assert {"central.pd.example", "10.0.0.5", "127.0.0.1"} <= names, (name, names)


def test_the_old_rule_warning_is_printed_once_per_process(tmp_path, capsys):
    from central.cli import common
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "ca.crt").write_text("x")
    config = tmp_path / "central.toml"
    config.write_text('data_dir = "d"\n[mqtt]\nca_file = "tls/ca.crt"\n')
    common._told.clear()
    for _ in range(3):   # e.g. 'broker run' loads the config again through 'broker config'
        assert common.load_config(str(config)).mqtt.ca_file == str(tmp_path / "tls/ca.crt")
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and 'set mqtt.ca_file = "' in err
