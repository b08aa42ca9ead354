"""The application releases installed on a device, beside each other:

::

    <app_dir>/                       /var/lib/alpr/app on the firmware image
      releases/<version>/            one per installed release
        lib/                         the agent's wheel, installed (pip --target)
        lib/models/                  the bundle's models, checked against the signed manifest
        bin/alpr-edge                launcher: the factory Python with lib/ first on its path
        alpr-release.json            the signed manifest and when it was installed
      current -> releases/<version>  what the agent's unit runs (or the factory venv)
      state.json                     current, previous, the last update's outcome

The dependencies (OpenCV, TFLite, cryptography, paho) come from the factory
venv on the read-only root, which OS updates replace; an application release
carries the agent's own code and models. ``current`` is switched with one
``rename`` of a symlink, so a power cut leaves either the old or the new
release, never a half.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from .. import __version__
from ..errors import UpdateError
from ..wire import release as fmt

logger = logging.getLogger(__name__)

RELEASE_FILE = "alpr-release.json"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, doc: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as fh:
        json.dump(doc, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class Releases:
    def __init__(self, app_dir: str | os.PathLike, *, factory: str | os.PathLike | None = None,
                 python: str | None = None) -> None:
        """``factory``: the image's own venv (``current`` points there before any
        update); ``python``: the interpreter releases run on (the factory's)."""
        self.app_dir = Path(app_dir)
        self.releases_dir = self.app_dir / "releases"
        self.current_link = self.app_dir / "current"
        self.factory = Path(factory) if factory else Path(sys.prefix)
        self.python = python or sys.executable

    # -- what is there -------------------------------------------------------------------
    def state(self) -> dict:
        try:
            return json.loads((self.app_dir / "state.json").read_text())
        except (OSError, ValueError):
            return {}

    def save_state(self, **changes) -> dict:
        doc = {**self.state(), **changes}
        self.app_dir.mkdir(parents=True, exist_ok=True)
        _write_json(self.app_dir / "state.json", doc)
        return doc

    def current_target(self) -> Path:
        try:
            return Path(os.readlink(self.current_link))
        except FileNotFoundError:
            return self.factory
        except OSError as exc:
            raise UpdateError(f"{self.current_link} is not a symlink ({exc.strerror}); fix it by hand") from None

    def version_of(self, target: Path) -> str:
        """The release version installed at ``target`` (the factory venv: this code's)."""
        try:
            return str(json.loads((target / RELEASE_FILE).read_text())["version"])
        except (OSError, ValueError, KeyError):
            return __version__

    def current_version(self) -> str:
        return self.version_of(self.current_target())

    def installed(self) -> list[str]:
        if not self.releases_dir.is_dir():
            return []
        return sorted((p.name for p in self.releases_dir.iterdir() if (p / RELEASE_FILE).exists()),
                      key=lambda v: fmt.parse_version(v) if fmt.VERSION_RE.match(v) else (-1, -1, -1))

    # -- changing it -----------------------------------------------------------------------
    def install(self, staged: Path, manifest: fmt.ReleaseManifest) -> Path:
        """Install a verified, extracted bundle (``staged``) as releases/<version>;
        the running release is untouched. Returns the release folder."""
        self.releases_dir.mkdir(parents=True, exist_ok=True)
        final = self.releases_dir / manifest.version
        if final.resolve() == self.current_target().resolve():
            raise UpdateError(f"release {manifest.version} is the running one")
        work = self.releases_dir / f".{manifest.version}.installing"
        shutil.rmtree(work, ignore_errors=True)
        (work / "bin").mkdir(parents=True)
        lib = work / "lib"
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # not the running release's code
        r = subprocess.run([self.python, "-m", "pip", "install", "--no-deps", "--no-index", "--no-compile",
                            "--disable-pip-version-check", "--quiet", "--target", str(lib),
                            str(staged / manifest.wheel.path)], capture_output=True, text=True, timeout=600,
                           env=env)
        if r.returncode != 0:
            shutil.rmtree(work, ignore_errors=True)
            raise UpdateError(f"installing the wheel failed: {r.stderr.strip()[-1500:]}")
        if manifest.models:
            models = lib / "models"
            models.mkdir(exist_ok=True)
            for f in manifest.models:
                shutil.copyfile(staged / f.path, models / Path(f.path).name)
        launcher = work / "bin" / "alpr-edge"
        launcher.write_text(
            "#!/bin/sh\n# Written by alpr-edge update: release "
            f"{manifest.version} on the factory Python.\n"
            f"PYTHONPATH={shlex.quote(str(final / 'lib'))}\nexport PYTHONPATH\n"
            # -P: the working directory is not put first on the path (a checkout there would shadow lib/)
            f"exec {shlex.quote(self.python)} -P -m edge_agent \"$@\"\n")
        launcher.chmod(0o755)
        doc = json.loads(manifest.to_bytes())
        doc["installed_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        _write_json(work / RELEASE_FILE, doc)
        if final.exists():  # an earlier, failed or superseded install of this version
            shutil.rmtree(final)
        os.replace(work, final)
        _fsync_dir(self.releases_dir)
        return final

    def switch(self, target: Path) -> None:
        """Point ``current`` at ``target`` with one rename."""
        self.app_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.app_dir / ".current.new"
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, self.current_link)
        _fsync_dir(self.app_dir)

    def prune(self, keep: set[Path], keep_count: int = 3) -> None:
        """Remove old releases beyond the newest ``keep_count`` (never one in ``keep``)."""
        keep = {p.resolve() for p in keep}
        versions = self.installed()
        for version in versions[:-keep_count] if len(versions) > keep_count else []:
            path = self.releases_dir / version
            if path.resolve() not in keep:
                shutil.rmtree(path, ignore_errors=True)
