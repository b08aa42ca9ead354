"""Signed application updates: `alpr-central release init-key / build`, and
`alpr-edge update apply` refusing tampered, unsigned, foreign-key and
downgrading bundles, rolling back a release whose agent fails its health
check, and switching to a good one: a real agent (built from this checkout
as version 0.2.0) started from the new release, reading a clip and connected
to a real Mosquitto broker. The agent is restarted by a small script that
plays systemd's part (`--restart-command`)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from central.cli import main as central_main
from central.errors import ReleaseError
from central.fleet import release as rel
from edge_agent import __version__
from edge_agent.auditlog import DeviceAuditLog
from edge_agent.cli import main as edge_main
from edge_agent.update.health import StatusFileHealth
from edge_agent.wire import release as fmt

ROOT = Path(__file__).resolve().parents[1]


def make_wheel(out_dir: Path, version: str, main_code: str) -> Path:
    """A real, installable wheel of a tiny `edge_agent` package (a broken or
    stand-in agent release)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"alpr_platform-{version}.dist-info"
    files = {
        "edge_agent/__init__.py": f'__version__ = "{version}"\n',
        "edge_agent/__main__.py": main_code,
        f"{name}/METADATA": f"Metadata-Version: 2.1\nName: alpr-platform\nVersion: {version}\n",
        f"{name}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    path = out_dir / f"alpr_platform-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for arc, text in files.items():
            data = text.encode()
            zf.writestr(arc, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{arc},sha256={digest},{len(data)}")
        record.append(f"{name}/RECORD,,")
        zf.writestr(f"{name}/RECORD", "\n".join(record) + "\n")
    return path


@pytest.fixture
def keys(tmp_path):
    k = tmp_path / "keys"
    private, public, _ = rel.init_key(k / "release-key.pem")
    other, other_pub, _ = rel.init_key(tmp_path / "other" / "release-key.pem")
    return {"private": private, "public": public, "other": other, "other_pub": other_pub}


@pytest.fixture
def device(tmp_path, keys, pki_dir):
    """An edge config (TLS identity from the test PKI: the audit log signs with
    it) and a data folder trusting the release key."""
    data = tmp_path / "edge-data"
    data.mkdir(mode=0o700)                      # the agent's data folder (the audit log lives there)
    cfg = tmp_path / "edge.toml"
    cfg.write_text(f"""
[device]
id = "cam-a"
data_dir = "{data}"
[[cameras]]
id = "lane-1"
source = "file"
uri = "clip.mp4"
[sync]
host = "127.0.0.1"
port = 1
ca_file = "{pki_dir / 'ca.crt'}"
cert_file = "{pki_dir / 'cam-a.crt'}"
key_file = "{pki_dir / 'cam-a.key'}"
central_public_key = "{pki_dir / 'data-key.pub.pem'}"
""")
    r = CliRunner().invoke(edge_main, ["update", "trust", "--config", str(cfg), str(keys["public"])])
    assert r.exit_code == 0, r.output
    return {"config": cfg, "data": data, "app": tmp_path / "app"}


def build(tmp_path, keys, wheel: Path, *, name="r.alpr", allow_downgrade=False, key="private") -> Path:
    out = tmp_path / "bundles" / name
    rel.build(out, rel.load_key(keys[key]), wheel=wheel, models_dir=ROOT / "models", allow_downgrade=allow_downgrade)
    return out


def events(data_dir: Path) -> list[tuple[str, dict]]:
    import sqlite3
    conn = sqlite3.connect(data_dir / "audit.sqlite")
    rows = [json.loads(r[0]) for r in conn.execute("SELECT record FROM records ORDER BY seq")]
    conn.close()
    return [(r["event"], r["detail"]) for r in rows]


def apply(device, bundle, *extra):
    return CliRunner().invoke(edge_main, ["update", "apply", "--config", str(device["config"]), "--app-dir",
                                          str(device["app"]), str(bundle), "--restart-command", "true", *extra])


# -- central side ------------------------------------------------------------------------------
def test_release_key_is_kept_apart_and_private(tmp_path):
    central_data = tmp_path / "central-data"
    central_data.mkdir()
    with pytest.raises(ReleaseError, match="data folder"):
        rel.init_key(central_data / "keys" / "release-key.pem", forbidden_dirs=[central_data])
    crowded = tmp_path / "crowded"
    crowded.mkdir()
    (crowded / "ca.key").write_text("x")
    with pytest.raises(ReleaseError, match="other keys"):
        rel.init_key(crowded / "release-key.pem")
    env = {"XDG_CONFIG_HOME": str(tmp_path / "home-config")}
    r = CliRunner().invoke(central_main, ["release", "init-key", "--config", str(tmp_path / "none.toml")], env=env)
    assert r.exit_code == 0, r.output
    private = tmp_path / "home-config/alpr-release/release-key.pem"
    assert private.stat().st_mode & 0o777 == 0o600
    r = CliRunner().invoke(central_main, ["release", "init-key"], env=env)
    assert r.exit_code == 1 and "refusing to overwrite" in r.output


def test_release_build_signs_wheel_and_models(tmp_path, keys):
    wheel = make_wheel(tmp_path / "w", "0.2.0", "raise SystemExit(0)\n")
    out = tmp_path / "r.alpr"
    r = CliRunner().invoke(central_main, ["release", "build", "--key", str(keys["private"]), "--out", str(out),
                                          "--wheel", str(wheel), "--models", str(ROOT / "models"), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["version"] == "0.2.0" and doc["models_version"] == json.loads(
        (ROOT / "models/manifest.json").read_text())["version"]
    paths = {f["path"]: f["sha256"] for f in doc["files"]}
    assert paths["models/plate_ocr.tflite"] == hashlib.sha256((ROOT / "models/plate_ocr.tflite").read_bytes()
                                                              ).hexdigest()
    assert paths[wheel.name] == hashlib.sha256(wheel.read_bytes()).hexdigest()
    ok = CliRunner().invoke(central_main, ["release", "verify", str(out), "--public-key", str(keys["public"])])
    assert ok.exit_code == 0 and "version 0.2.0" in ok.output
    bad = CliRunner().invoke(central_main, ["release", "verify", str(out), "--public-key", str(keys["other_pub"])])
    assert bad.exit_code == 1 and "does not verify" in bad.output


# -- refusals: nothing is installed, nothing switched, each refusal audited -----------------------
def _rewrite(bundle: Path, out: Path, change) -> Path:
    """Copy a bundle's tar members through ``change(name, data) -> data | None`` (None drops it)."""
    with tarfile.open(bundle) as src, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
        for m in src.getmembers():
            data = change(m.name, src.extractfile(m).read())
            if data is None:
                continue
            info = tarfile.TarInfo(m.name)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    return out


def _flip(data: bytes) -> bytes:
    return data[:100] + bytes([data[100] ^ 1]) + data[101:]


@pytest.mark.parametrize("case", ["tampered-wheel", "tampered-model", "tampered-manifest", "unsigned",
                                  "foreign-key", "extra-member", "missing-member", "not-a-tar"])
def test_a_bad_bundle_is_refused_and_changes_nothing(tmp_path, keys, device, case):
    wheel = make_wheel(tmp_path / "w", "0.2.0", "raise SystemExit(0)\n")
    good = build(tmp_path, keys, wheel)
    bad = tmp_path / f"{case}.alpr"
    if case == "tampered-wheel":
        _rewrite(good, bad, lambda n, d: _flip(d) if n.endswith(".whl") else d)
    elif case == "tampered-model":
        _rewrite(good, bad, lambda n, d: _flip(d) if n == "models/plate_detector.tflite" else d)
    elif case == "tampered-manifest":
        _rewrite(good, bad, lambda n, d: d.replace(b'"allow_downgrade":false', b'"allow_downgrade":true')
                 if n == fmt.MANIFEST else d)
    elif case == "unsigned":
        _rewrite(good, bad, lambda n, d: None if n == fmt.SIGNATURE else d)
    elif case == "foreign-key":
        bad = build(tmp_path, keys, wheel, name="foreign.alpr", key="other")
    elif case == "extra-member":
        _rewrite(good, bad, lambda n, d: d)
        with tarfile.open(bad, "a") as tar:
            info = tarfile.TarInfo("models/evil.tflite")
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))
    elif case == "missing-member":
        _rewrite(good, bad, lambda n, d: None if n == "models/plate_ocr.tflite" else d)
    else:
        bad.write_bytes(b"not a bundle at all" * 100)
    r = apply(device, bad)
    assert r.exit_code == 1, r.output
    assert "refused" in r.output
    assert not (device["app"] / "current").exists() and not list((device["app"] / "releases").glob("*"))
    refused = [d for e, d in events(device["data"]) if e == "update-refused"]
    assert len(refused) == 1 and refused[0]["reason"]
    assert not [e for e, _ in events(device["data"]) if e in ("update-installed", "update-switched")]


def test_downgrade_refused_unless_the_signed_manifest_allows_it(tmp_path, keys, device):
    old = make_wheel(tmp_path / "w", "0.0.9", "raise SystemExit(0)\n")
    assert fmt.parse_version(__version__) > (0, 0, 9)
    r = apply(device, build(tmp_path, keys, old))
    assert r.exit_code == 1 and "older than the running" in r.output
    same = make_wheel(tmp_path / "w2", __version__, "raise SystemExit(0)\n")
    r = apply(device, build(tmp_path, keys, same, name="same.alpr"))
    assert r.exit_code == 1 and "is the running version" in r.output
    # allowed downgrade: verified and installed (the stand-in agent then fails its health check)
    r = apply(device, build(tmp_path, keys, old, name="down.alpr", allow_downgrade=True), "--health-timeout", "1")
    assert "update-installed" in [e for e, _ in events(device["data"])], r.output


def test_no_trusted_key_refuses(tmp_path, keys, device):
    (device["config"].parent / "release-key.pub.pem").unlink()
    r = apply(device, build(tmp_path, keys, make_wheel(tmp_path / "w", "0.2.0", "")))
    assert r.exit_code == 1 and "no release key is trusted" in r.output
    r = CliRunner().invoke(edge_main, ["update", "trust", "--config", str(device["config"]), str(keys["public"])])
    assert r.exit_code == 0
    r = CliRunner().invoke(edge_main, ["update", "trust", "--config", str(device["config"]), str(keys["other_pub"])])
    assert r.exit_code == 1 and "--replace" in r.output


# -- health check (the real one, on status files) -------------------------------------------------
def test_status_file_health(tmp_path):
    path = tmp_path / "status.json"
    now = [1000.0]

    def write(frames, connected=True, state="running", version="0.2.0", at=None):
        import datetime as dt
        path.write_text(json.dumps({
            "updated_at": dt.datetime.fromtimestamp(at or now[0], dt.timezone.utc).isoformat(),
            "agent_version": version, "broker": {"connected": connected},
            "cameras": [{"id": "lane-1", "state": state, "frames": frames}]}))

    check = StatusFileHealth(path, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert not check.wait(since=999, expect_version="0.2.0", timeout=0).ok           # no status at all
    write(5, at=990)
    r = check.wait(since=999, expect_version="0.2.0", timeout=0)                      # the old agent's status
    assert not r.ok and "not running" in r.summary()
    write(5)
    assert not check.wait(since=999, expect_version="0.2.0", timeout=0).ok           # frames must advance
    first = json.loads(path.read_text())
    write(9)
    doc = json.loads(path.read_text())
    assert check.check(doc, first, since=999, expect_version="0.2.0").ok
    assert "not 0.3.0" in check.check(doc, first, since=999, expect_version="0.3.0").summary()
    write(9, connected=False)
    assert "not connected" in check.check(json.loads(path.read_text()), first, since=999,
                                          expect_version=None).summary()
    write(9, state="failed")
    assert "lane-1 is failed" in check.check(json.loads(path.read_text()), first, since=999,
                                             expect_version=None).summary()


# -- apply with a real restart and a real agent ---------------------------------------------------
RESTART = """#!/bin/bash
# plays systemd: stop the agent that runs, start what `current` points at
set -u
if [ -f "$DIR/agent.pid" ]; then
  pid=$(cat "$DIR/agent.pid")
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
fi
setsid "$APP/current/bin/alpr-edge" run --config "$CFG" >>"$DIR/agent.log" 2>&1 < /dev/null &
echo $! > "$DIR/agent.pid"
"""


@pytest.fixture
def live_device(tmp_path, keys, pki_dir, broker, sample_clip):
    """A device whose agent runs for real (the test venv is the factory
    release) under the restart script, against a real broker."""
    video, sidecar = sample_clip
    data = tmp_path / "live-data"
    cfg = tmp_path / "live.toml"
    cfg.write_text(f"""
[device]
id = "cam-a"
data_dir = "{data}"
[[cameras]]
id = "lane-1"
source = "file"
uri = "{video}"
fps = 8.0
loop = true
[recognition]
type = "sidecar-oracle"
[recognition.options]
sidecar = "{sidecar}"
[sync]
host = "127.0.0.1"
port = {broker.port}
ca_file = "{pki_dir / 'ca.crt'}"
cert_file = "{pki_dir / 'cam-a.crt'}"
key_file = "{pki_dir / 'cam-a.key'}"
central_public_key = "{pki_dir / 'data-key.pub.pem'}"
""")
    app = tmp_path / "app"
    app.mkdir()
    os.symlink(sys.prefix, app / "current")      # the factory release: this venv
    script = tmp_path / "restart.sh"
    script.write_text(RESTART)
    script.chmod(0o755)
    r = CliRunner().invoke(edge_main, ["update", "trust", "--config", str(cfg), str(keys["public"])])
    assert r.exit_code == 0, r.output
    env = {"DIR": str(tmp_path), "APP": str(app), "CFG": str(cfg)}
    os.environ.update(env)
    subprocess.run([str(script)], check=True, timeout=30)
    yield {"config": cfg, "data": data, "app": app, "restart": str(script), "dir": tmp_path}
    pid = int((tmp_path / "agent.pid").read_text())
    with __import__("contextlib").suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.killpg(pid, signal.SIGKILL)
    for key in ("DIR", "APP", "CFG"):
        os.environ.pop(key, None)


def _apply_live(dev, bundle, timeout="60"):
    return subprocess.run([sys.executable, "-m", "edge_agent", "update", "apply", "--config", str(dev["config"]),
                           "--app-dir", str(dev["app"]), "--restart-command", dev["restart"],
                           "--health-timeout", timeout, "--json", str(bundle)],
                          capture_output=True, text=True, timeout=240)


def _healthy_now(dev) -> bool:
    return StatusFileHealth(dev["data"] / "status.json").wait(since=0, expect_version=None, timeout=30).ok


def test_a_release_whose_agent_fails_is_rolled_back(tmp_path, keys, live_device):
    dev = live_device
    assert _healthy_now(dev), (dev["dir"] / "agent.log").read_text()[-3000:]
    broken = make_wheel(tmp_path / "w", "0.3.0", "import sys\nsys.exit(1)  # this release's agent dies at start\n")
    r = _apply_live(dev, build(tmp_path, keys, broken), timeout="8")
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    assert out["outcome"] == "rolled-back" and out["previous_version"] == __version__
    # the old agent's last status, or none fresh: either way not the new release running
    assert any("not 0.3.0" in p or "not running" in p for p in out["problems"]), out
    assert Path(os.readlink(dev["app"] / "current")) == Path(sys.prefix)
    assert not (dev["app"] / "releases/0.3.0").exists()
    assert _healthy_now(dev)                                          # the previous release runs again
    seq = [e for e, _ in events(dev["data"]) if e.startswith("update-")]
    assert seq[-3:] == ["update-installed", "update-switched", "update-rolled-back"]
    detail = [d for e, d in events(dev["data"]) if e == "update-rolled-back"][0]
    assert detail["version"] == "0.3.0" and detail["previous_healthy"] is True


def _project_wheel(tmp_path, version: str) -> Path:
    """This checkout's real wheel, as version ``version``."""
    src = tmp_path / "src"
    for name in ("edge_agent", "central", "models"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "training", "synth"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for path, old in ((src / "setup.cfg", "version = "), (src / "edge_agent/__init__.py", "__version__ = ")):
        text = path.read_text()
        line = next(x for x in text.splitlines() if x.startswith(old))
        path.write_text(text.replace(line, f'{old}"{version}"' if path.suffix == ".py" else f"{old}{version}"))
    return rel.build_wheel(src, tmp_path / "wheel")


def test_a_good_release_switches(tmp_path, keys, live_device):
    dev = live_device
    assert _healthy_now(dev), (dev["dir"] / "agent.log").read_text()[-3000:]
    bundle = build(tmp_path, keys, _project_wheel(tmp_path, "0.2.0"))
    r = _apply_live(dev, bundle)
    assert r.returncode == 0, r.stdout + r.stderr + (dev["dir"] / "agent.log").read_text()[-3000:]
    assert json.loads(r.stdout)["outcome"] == "switched"
    assert Path(os.readlink(dev["app"] / "current")) == dev["app"] / "releases/0.2.0"
    status = json.loads((dev["data"] / "status.json").read_text())
    assert status["agent_version"] == "0.2.0" and status["broker"]["connected"]
    # the running agent's code and models are the release's
    pid = int((dev["dir"] / "agent.pid").read_text())
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert f"PYTHONPATH={dev['app']}/releases/0.2.0/lib".encode() in environ
    assert (dev["app"] / "releases/0.2.0/lib/models/plate_ocr.tflite").read_bytes() == \
        (ROOT / "models/plate_ocr.tflite").read_bytes()
    seq = [e for e, _ in events(dev["data"]) if e.startswith("update-")]
    assert seq[-3:] == ["update-installed", "update-switched", "update-healthy"]
    st = CliRunner().invoke(edge_main, ["update", "status", "--config", str(dev["config"]), "--app-dir",
                                        str(dev["app"]), "--json"])
    doc = json.loads(st.output)
    assert doc["current"] == "0.2.0" and doc["last"]["result"] == "switched"


def test_one_update_at_a_time(tmp_path, keys, device):
    import fcntl
    bundle = build(tmp_path, keys, make_wheel(tmp_path / "w", "0.2.0", "raise SystemExit(0)\n"))
    device["app"].mkdir()
    with open(device["app"] / ".update.lock", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        r = apply(device, bundle)
    assert r.exit_code == 1 and "another update is running" in r.output
    assert not (device["app"] / "releases").exists()
