"""firmware/: what goes onto the camera image. The image itself cannot be
built here (ARM, pi-gen, L4T); these tests check its files: shell syntax
(bash -n, shellcheck), units (systemd-analyze verify in a throwaway root),
RAUC (a real bundle built and verified with the shipped system.conf and
manifest), that every path agrees with the units and the agent's config, and
the first-boot hook itself, run in a temporary root with a recording
``alpr-edge`` on PATH (the only fake: the external command)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
FW = ROOT / "firmware"
COMMON = FW / "common" / "rootfs"
HOOK = COMMON / "usr/lib/alpr/firstboot.sh"
TRYBOOT = COMMON / "usr/lib/alpr/rauc-tryboot-backend.sh"
SCRIPTS = sorted(p for p in FW.rglob("*.sh"))
UNITS = sorted((COMMON / "etc/systemd/system").glob("*.service"))


def layout() -> dict:
    values = {}
    for line in (FW / "common/layout.env").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


class Section(dict):
    """A unit file section: the last value of a key, ``all(key)`` for every one
    (ExecStart= may repeat; an empty assignment resets the list, as in systemd)."""

    def __init__(self):
        super().__init__()
        self.values: dict[str, list[str]] = {}

    def add(self, key: str, value: str) -> None:
        self.values[key] = [] if value == "" else [*self.values.get(key, []), value]
        self[key] = value

    def all(self, key: str) -> list[str]:
        return self.values.get(key, [])


def unit(path: Path) -> dict[str, Section]:
    sections: dict[str, Section] = {}
    current = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), Section())
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not KEY=VALUE: {line}"
        current.add(key.strip(), value.strip())
    return sections


def test_every_script_is_valid_bash():
    assert len(SCRIPTS) >= 7, SCRIPTS
    for script in SCRIPTS:
        r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert r.returncode == 0, f"{script}: {r.stderr}"
        assert os.stat(script).st_mode & stat.S_IXUSR, f"{script} is not executable"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (Debian: shellcheck)")
def test_shellcheck_is_clean():
    r = subprocess.run(["shellcheck", "-s", "bash", "-S", "warning", *map(str, SCRIPTS)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_units_verify_in_an_image_like_root(tmp_path):
    """The image's units (and the agent's unit with the firmware drop-in) as
    systemd would load them from the image's root."""
    root = tmp_path / "root"
    shutil.copytree(COMMON, root, symlinks=True)
    shutil.copy(ROOT / "systemd/alpr-edge.service", root / "etc/systemd/system/alpr-edge.service")
    for name in UPDATE_UNITS:  # the root-side step of updates offered over MQTT, with their drop-ins
        shutil.copy(ROOT / "systemd" / name, root / "etc/systemd/system" / name)
    shutil.copytree("/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True, dirs_exist_ok=True)
    for exe in ("var/lib/alpr/app/current/bin/alpr-edge", "usr/bin/rauc", "opt/alpr/.venv/bin/alpr-edge"):
        (root / exe).parent.mkdir(parents=True, exist_ok=True)
        (root / exe).write_text("#!/bin/sh\n")
        (root / exe).chmod(0o755)
    names = ([f"etc/systemd/system/{u.name}" for u in UNITS] + ["etc/systemd/system/alpr-edge.service"]
             + [f"etc/systemd/system/{n}" for n in UPDATE_UNITS])
    r = subprocess.run(["systemd-analyze", "verify", f"--root={root}", *names], capture_output=True, text=True,
                       cwd=root, timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    for complaint in ("Unknown key", "Unknown section", "Failed to parse", "not executable", "Invalid"):
        assert complaint not in out, out


UPDATE_UNITS = ("alpr-edge-update.service", "alpr-edge-update.path")


def test_the_update_units_watch_and_write_the_data_partition():
    lay = layout()
    path = unit(COMMON / "etc/systemd/system/alpr-edge-update.path.d/10-firmware.conf")["Path"]
    # reset (the base unit's /var/lib/alpr-edge), then the data partition's
    assert path.all("PathExistsGlob") == [f"{lay['ALPR_STATE_DIR']}/update/spool/*.alpr"]
    svc = unit(COMMON / "etc/systemd/system/alpr-edge-update.service.d/10-firmware.conf")["Service"]
    assert svc.all("ReadWritePaths") == [f"{lay['ALPR_STATE_DIR']} {lay['ALPR_APP_DIR']}"]
    base = unit(ROOT / "systemd/alpr-edge-update.service")["Service"]
    argv = base["ExecStart"].split()
    assert argv[0] == f"{lay['ALPR_FACTORY_VENV']}/bin/alpr-edge"  # the image's updater, never a release's
    assert argv[argv.index("--app-dir") + 1] == lay["ALPR_APP_DIR"] and lay["ALPR_CONFIG"] in argv
    for script in (ROOT / "firmware/rpi/stage-alpr/01-alpr/01-run-chroot.sh", ROOT / "firmware/jetson/customize-rootfs.sh"):
        assert "alpr-edge-update.path" in script.read_text()


def test_paths_agree_with_the_units_and_the_agent_config(tmp_path):
    lay = layout()
    agent = unit(ROOT / "systemd/alpr-edge.service")["Service"]
    # the system user the image creates is the one the unit runs as, in the camera group
    sysusers = (COMMON / "usr/lib/sysusers.d/alpr.conf").read_text().split("\n")
    users = [line.split() for line in sysusers if line.startswith("u ")]
    assert users[0][1] == agent["User"] == lay["ALPR_USER"] == agent["Group"]
    assert ["m", agent["User"], agent["SupplementaryGroups"]] in [line.split() for line in sysusers]
    # the drop-in runs the `current` release with the unit's config, on the data partition
    drop = unit(COMMON / "etc/systemd/system/alpr-edge.service.d/10-firmware.conf")["Service"]
    assert drop.values["ExecStart"] and len(drop.all("ExecStart")) == 1  # reset, then one command
    argv = drop.all("ExecStart")[0].split()
    assert argv[0] == f"{lay['ALPR_APP_DIR']}/current/bin/alpr-edge"
    assert argv[1:] == ["run", "--config", lay["ALPR_CONFIG"]]
    assert agent["ExecStart"].split()[1:] == argv[1:]
    assert agent["Environment"] == f"ALPR_EDGE_CONFIG={lay['ALPR_CONFIG']}"
    assert drop["ReadWritePaths"] == lay["ALPR_STATE_DIR"]
    assert agent["LoadCredential"].split(":", 1)[1] == f"{lay['ALPR_CREDENTIALS_DIR']}/device.key"
    # tmpfiles makes every directory the layout names, on the data partition, with the right owner
    tmpfiles = {parts[1]: parts for parts in (line.split() for line in
                (COMMON / "usr/lib/tmpfiles.d/alpr.conf").read_text().splitlines())
                if parts and not parts[0].startswith("#")}
    for key in ("ALPR_ETC_DIR", "ALPR_STATE_DIR", "ALPR_APP_DIR"):
        assert lay[key] in tmpfiles and lay[key].startswith(lay["ALPR_DATA_MOUNT"] + "/"), key
    assert tmpfiles[lay["ALPR_STATE_DIR"]][2:5] == ["0700", lay["ALPR_USER"], lay["ALPR_GROUP"]]
    assert tmpfiles[lay["ALPR_CREDENTIALS_DIR"].replace("/etc/alpr", lay["ALPR_ETC_DIR"])][2:5] == \
        ["0700", "root", "root"]
    assert tmpfiles[f"{lay['ALPR_APP_DIR']}/current"][-1] == lay["ALPR_FACTORY_VENV"]
    # /etc/alpr is the data partition's etc/ (made by both image builds)
    for script in (FW / "rpi/stage-alpr/01-alpr/01-run-chroot.sh", FW / "jetson/customize-rootfs.sh"):
        assert f"ln -s {lay['ALPR_ETC_DIR']} /etc/alpr" in script.read_text(), script
    # both fstabs mount the data partition where the layout says, writable; the token's FAT partition
    for fstab in (FW / "rpi/fstab", FW / "jetson/fstab"):
        mounts = {f[1]: f for f in (line.split() for line in fstab.read_text().splitlines())
                  if f and not f[0].startswith("#")}
        assert mounts[lay["ALPR_DATA_MOUNT"]][0] == f"LABEL={lay['ALPR_DATA_LABEL']}"
        assert "ro" not in mounts[lay["ALPR_DATA_MOUNT"]][3].split(",")
        assert mounts[str(Path(lay["ALPR_ENROLL_FILE"]).parent)][2] == "vfat"
    # the first-boot hook's defaults are the layout's
    hook = HOOK.read_text()
    for key in ("ALPR_ENROLL_FILE", "ALPR_CONFIG", "ALPR_CREDENTIALS_DIR", "ALPR_STATE_DIR", "ALPR_USER"):
        assert f"${{{key}:-{lay[key]}}}" in hook, key
    first = unit(COMMON / "etc/systemd/system/alpr-firstboot.service")
    assert first["Unit"]["ConditionPathExists"] == lay["ALPR_ENROLL_FILE"]
    assert first["Service"]["ExecStart"] == "/usr/lib/alpr/firstboot.sh"
    assert lay["ALPR_DATA_MOUNT"] in first["Service"]["ReadWritePaths"].split()
    assert first["Service"]["Environment"].startswith(f"PATH={lay['ALPR_APP_DIR']}/current/bin:")
    # the state dir is a data_dir the agent's config accepts
    from edge_agent import config as config_mod
    cfg = config_mod.parse({"device": {"id": "cam-1", "data_dir": lay["ALPR_STATE_DIR"]},
                            "cameras": [{"id": "lane-1", "source": "picamera2"}],
                            "sync": {"tls": False, "central_public_key": "k.pem"}}, tmp_path)
    assert str(cfg.data_dir) == lay["ALPR_STATE_DIR"]


def test_unit_commands_exist():
    """Every alpr-edge command a firmware unit runs is a real command."""
    from edge_agent.cli import main
    for path in UNITS:
        for line in unit(path)["Service"].all("ExecStart"):
            argv = line.split()
            if argv and argv[0].endswith("/alpr-edge"):
                words = [w for w in argv[1:] if not w.startswith("-") and not w.startswith("/") and
                         not w.isdigit()]
                r = CliRunner().invoke(main, [*words, "--help"])
                assert r.exit_code == 0, f"{path.name}: alpr-edge {' '.join(words)}: {r.output}"


def test_watchdog_and_time_sync():
    wd = unit(COMMON / "etc/systemd/system.conf.d/10-alpr-watchdog.conf")["Manager"]
    assert 0 < int(wd["RuntimeWatchdogSec"].rstrip("s")) <= 15  # the Pi's watchdog allows 15 s at most
    boot = (FW / "rpi/boot/config.txt.append").read_text()
    assert "dtparam=watchdog=on" in boot and "camera_auto_detect=1" in boot
    chrony = (COMMON / "etc/chrony/conf.d/10-alpr.conf").read_text()
    assert "makestep" in chrony
    agent = unit(ROOT / "systemd/alpr-edge.service")["Unit"]
    assert "time-sync.target" in agent["After"]
    assert "chrony-wait.service" in (FW / "rpi/stage-alpr/01-alpr/01-run-chroot.sh").read_text()
    assert "overlayroot=tmpfs:recurse=0" in (FW / "rpi/stage-alpr/01-alpr/00-run.sh").read_text()


# -- RAUC ----------------------------------------------------------------------------------------
RAUC_CONF = COMMON / "etc/rauc/system.conf"


def test_rauc_system_conf_slots():
    for path, compatible in ((RAUC_CONF, "alpr-edge-rpi"), (FW / "jetson/rauc-system.conf", "alpr-edge-jetson")):
        cp = unit(path)
        assert cp["system"]["compatible"] == compatible
        assert cp["keyring"]["path"] == "/etc/rauc/keyring.pem"
        roots = {s: cp[s] for s in cp if s.startswith("slot.rootfs.")}
        assert sorted(r["bootname"] for r in roots.values()) == ["A", "B"]
        backend = cp["handlers"]["bootloader-custom-backend"]
        shipped = {"/usr/lib/alpr/" + p.name for p in FW.rglob("rauc-*-backend.sh")}
        assert backend in shipped
    manifest = unit(FW / "rauc/manifest.raucm.in")
    assert manifest["update"]["compatible"] == unit(RAUC_CONF)["system"]["compatible"]
    images = {s.split(".", 1)[1] for s in manifest if s.startswith("image.")}
    slots = {s.split(".")[1] for s in unit(RAUC_CONF) if s.startswith("slot.")}
    assert images == slots


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("rauc") is None or shutil.which("mksquashfs") is None,
                    reason="rauc / squashfs-tools not installed (Debian: rauc squashfs-tools)")
def test_rauc_bundle_builds_and_verifies_with_the_shipped_config(tmp_path):
    """build-bundle.sh makes a real verity bundle from the shipped manifest;
    RAUC with the shipped system.conf accepts it against the keyring made as
    keyring/README.md says, and refuses it against another CA."""
    for name in ("ca", "other"):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30",
                 "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.pem",
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
                 cwd=tmp_path)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=signer",
             "-keyout", "s.key", "-out", "s.csr", cwd=tmp_path)
    (tmp_path / "ext").write_text("keyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n")
    _openssl("x509", "-req", "-in", "s.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-days", "10",
             "-extfile", "ext", "-out", "s.pem", cwd=tmp_path)
    (tmp_path / "rootfs.ext4").write_bytes(os.urandom(256 * 1024))
    (tmp_path / "boot.vfat").write_bytes(os.urandom(64 * 1024))
    r = subprocess.run(["bash", str(FW / "rauc/build-bundle.sh"), "--version", "1.4.0", "--rootfs", "rootfs.ext4",
                        "--boot", "boot.vfat", "--cert", "s.pem", "--key", "s.key", "--keyring", "ca.pem",
                        "--out", "os.raucb"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    info = subprocess.run(["rauc", "-c", str(RAUC_CONF), "--keyring", "ca.pem", "info", "os.raucb"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert info.returncode == 0, info.stderr
    assert "'alpr-edge-rpi'" in info.stdout and "'1.4.0'" in info.stdout and "verity" in info.stdout
    assert "[rootfs]" in info.stdout and "[boot]" in info.stdout
    wrong = subprocess.run(["rauc", "-c", str(RAUC_CONF), "--keyring", "other.pem", "info", "os.raucb"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert wrong.returncode != 0


def test_tryboot_backend_tries_the_new_slot_once_then_commits(tmp_path):
    autoboot = tmp_path / "autoboot.txt"
    autoboot.write_text("[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n")
    env = {**os.environ, "ALPR_AUTOBOOT": str(autoboot), "ALPR_RAUC_STATE": str(tmp_path / "state"),
           "ALPR_BOOT_PARTITION_NUMBER": "2"}

    def backend(*args):
        r = subprocess.run(["bash", str(TRYBOOT), *args], env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    assert backend("get-primary") == "A" and backend("get-current") == "A"
    backend("set-primary", "B")
    assert backend("get-primary") == "A"       # B is only tried (tryboot), A stays the fallback
    assert "[tryboot]\nboot_partition=3" in autoboot.read_text()
    assert backend("get-state", "B") == "bad"
    env["ALPR_BOOT_PARTITION_NUMBER"] = "3"
    assert backend("get-current") == "B"
    backend("set-state", "B", "good")
    assert backend("get-primary") == "B" and backend("get-state", "B") == "good"
    assert "[all]\ntryboot_a_b=1\nboot_partition=3\n[tryboot]\nboot_partition=2" in autoboot.read_text()


# -- the first-boot hook -------------------------------------------------------------------------
TOKEN = "alpr1.tokenid.SECRETSECRETSECRET"


@pytest.fixture
def firstboot(tmp_path):
    root = tmp_path / "root"
    lay = layout()
    for key in ("ALPR_STATE_DIR", "ALPR_CREDENTIALS_DIR"):
        (root / lay[key].lstrip("/")).mkdir(parents=True)
    (root / "boot/firmware").mkdir(parents=True)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "calls"
    fake = bindir / "alpr-edge"
    # records its argv and the token it received through the environment; exits as told
    fake.write_text('#!/bin/bash\nprintf "%s\\n" "$@" > "$CALLS.args"\n'
                    'printf "%s" "${ALPR_ENROLLMENT_TOKEN:-}" > "$CALLS.token"\nexit "${FAKE_RC:-0}"\n')
    fake.chmod(0o755)
    enroll = root / lay["ALPR_ENROLL_FILE"].lstrip("/")

    def run(content: str | None, rc: int = 0):
        if content is not None:
            enroll.write_text(content)
        env = {"PATH": f"{bindir}:/usr/bin:/bin", "ALPR_ROOT": str(root), "CALLS": str(calls),
               "FAKE_RC": str(rc)}
        r = subprocess.run(["bash", str(HOOK)], env=env, capture_output=True, text=True, timeout=30)
        args = Path(f"{calls}.args").read_text().split("\n")[:-1] if Path(f"{calls}.args").exists() else None
        token = Path(f"{calls}.token").read_text() if Path(f"{calls}.token").exists() else None
        for p in (Path(f"{calls}.args"), Path(f"{calls}.token")):
            p.unlink(missing_ok=True)
        return r, args, token

    run.root, run.enroll, run.layout = root, enroll, lay
    return run


def test_firstboot_provisions_then_erases_the_token(firstboot):
    lay, root = firstboot.layout, firstboot.root
    r, args, token = firstboot(f"# from the tech\r\nALPR_CENTRAL=https://central.example:8443\r\n"
                               f"ALPR_ENROLLMENT_TOKEN={TOKEN}\r\n"
                               "ALPR_CAMERA_URI=lane-2=rtsp://u:p@10.1.1.20/s\r\n")
    assert r.returncode == 0, r.stderr
    assert token == TOKEN                         # through the environment...
    assert TOKEN not in " ".join(args)            # ...never the command line
    assert TOKEN not in r.stdout + r.stderr and "rtsp://" not in r.stderr
    assert args[0] == "provision"
    opts = dict(zip(args[1::2], args[2::2]))
    assert opts["--central"] == "https://central.example:8443"
    assert opts["--config"] == f"{root}{lay['ALPR_CONFIG']}"
    assert opts["--data-dir"] == f"{root}{lay['ALPR_STATE_DIR']}"
    assert opts["--credentials-dir"] == f"{root}{lay['ALPR_CREDENTIALS_DIR']}"
    assert opts["--user"] == lay["ALPR_USER"]
    assert opts["--camera-uri"] == "lane-2=rtsp://u:p@10.1.1.20/s"
    assert not firstboot.enroll.exists()
    assert (root / lay["ALPR_STATE_DIR"].lstrip("/") / ".enrolled-by-firstboot").exists()
    # every option the hook passes is one `alpr-edge provision` has
    from edge_agent.cli import main
    help_text = CliRunner().invoke(main, ["provision", "--help"]).output
    for opt in opts:
        assert opt in help_text
    # the next boot finds nothing to do and calls nothing
    r, args, _ = firstboot(None)
    assert r.returncode == 0 and args is None


def test_firstboot_keeps_the_token_while_central_is_unreachable(firstboot):
    content = f"ALPR_CENTRAL=https://central.example:8443\nALPR_ENROLLMENT_TOKEN={TOKEN}\n"
    r, args, _ = firstboot(content, rc=75)
    assert r.returncode == 75 and firstboot.enroll.read_text() == content
    assert TOKEN not in r.stderr
    r, args, _ = firstboot(None, rc=0)             # the unit's retry, once central answers
    assert r.returncode == 0 and not firstboot.enroll.exists()


@pytest.mark.parametrize("content,rc", [
    (f"ALPR_CENTRAL=https://c:8443\nALPR_ENROLLMENT_TOKEN={TOKEN}\n", 1),      # central refused the token
    (f"ALPR_CENTRAL=https://c:8443\nALPR_ENROLLMENT_TOKEN={TOKEN}\n", 78),
    (f"ALPR_CENTRAL=http://c:8443\nALPR_ENROLLMENT_TOKEN={TOKEN}\n", 0),       # not https: never sent
    (f"ALPR_CENTRAL=https://c:8443\nALPR_ENROLLMENT_TOKEN={TOKEN}\nrm -rf /\n", 0),  # not KEY=VALUE we know
    ("ALPR_CENTRAL=https://c:8443\n", 0),
])
def test_firstboot_erases_a_refused_or_bad_file(firstboot, content, rc):
    marker = firstboot.root / "pwned"
    content = content.replace("rm -rf /", f"touch {marker}")
    r, args, _ = firstboot(content, rc=rc)
    assert r.returncode == 1, r.stderr
    assert not firstboot.enroll.exists()
    assert TOKEN not in r.stdout + r.stderr
    assert not marker.exists()                      # the file is parsed, never sourced
    if "http://" in content or "touch" in content or TOKEN not in content:
        assert args is None                         # a bad file never reaches alpr-edge


# -- committing an OS update -------------------------------------------------------------------
COMMIT = COMMON / "usr/lib/alpr/rauc-commit.sh"


@pytest.fixture
def commit(tmp_path):
    """rauc-commit.sh with the real tryboot backend on a temp autoboot.txt;
    `alpr-edge`, `rauc` and `systemctl` are recording stand-ins on PATH."""
    conf = tmp_path / "system.conf"
    conf.write_text(RAUC_CONF.read_text().replace("/usr/lib/alpr/rauc-tryboot-backend.sh", str(TRYBOOT)))
    autoboot = tmp_path / "autoboot.txt"
    autoboot.write_text("[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "calls"
    for name in ("alpr-edge", "rauc", "systemctl"):
        (bindir / name).write_text(f'#!/bin/bash\necho "{name} $*" >> "{log}"\n'
                                   + ('exit "${HEALTH_RC:-0}"\n' if name == "alpr-edge" else "exit 0\n"))
        (bindir / name).chmod(0o755)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "ALPR_RAUC_CONF": str(conf), "ALPR_AUTOBOOT": str(autoboot),
           "ALPR_RAUC_STATE": str(tmp_path / "state"), "ALPR_BOOT_PARTITION_NUMBER": "2",
           "ALPR_COMMIT_TIMEOUT": "5"}

    def run(*backend_args, booted="2", health_rc=0):
        if backend_args:
            subprocess.run(["bash", str(TRYBOOT), *backend_args], env=env, check=True)
        log.unlink(missing_ok=True)
        r = subprocess.run(["bash", str(COMMIT)], env={**env, "ALPR_BOOT_PARTITION_NUMBER": booted,
                                                       "HEALTH_RC": str(health_rc)},
                           capture_output=True, text=True, timeout=30)
        return r, (log.read_text().splitlines() if log.exists() else [])

    return run


def test_a_committed_slot_is_left_alone(commit):
    r, calls = commit(health_rc=1)            # an unhealthy agent on a committed slot: no reboot loop
    assert r.returncode == 0 and calls == []


def test_a_tried_slot_is_committed_when_healthy(commit):
    r, calls = commit("set-primary", "B", booted="3")
    assert r.returncode == 0, r.stderr
    assert calls[0].startswith("alpr-edge update health --config /etc/alpr/edge.toml --timeout 5")
    assert calls[1:] == ["rauc status mark-good booted"]


def test_a_tried_slot_that_is_unhealthy_falls_back(commit):
    r, calls = commit("set-primary", "B", booted="3", health_rc=1)
    assert r.returncode == 1
    assert calls[1:] == ["rauc status mark-bad booted", "systemctl reboot"]


def test_scripts_call_real_alpr_edge_options():
    from edge_agent.cli import main
    health = CliRunner().invoke(main, ["update", "health", "--help"]).output
    for opt in ("--config", "--timeout"):
        assert opt in health
    assert "alpr-edge update health --config" in COMMIT.read_text()
