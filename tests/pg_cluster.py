"""A throwaway PostgreSQL cluster from the installed Debian binaries, for tests
and benchmarks: ``initdb`` into a fresh folder, ``pg_ctl start`` on a free
loopback port (Unix socket in the same folder), trust authentication for the
role ``alpr``.

PostgreSQL refuses to run as root: when we are root the cluster runs as the
``postgres`` account the Debian package creates (or ``nobody``), owning its
folder. Nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from central.fleet.broker import free_port

ROLE = "alpr"


def find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<ver>/bin holding initdb (or $ALPR_PG_BINDIR)."""
    if os.environ.get("ALPR_PG_BINDIR"):
        path = Path(os.environ["ALPR_PG_BINDIR"])
        return path if (path / "initdb").exists() else None
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4])
                   if Path(p).parts[4].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and no unprivileged account (postgres, nobody) to run PostgreSQL as")


class PgCluster:
    def __init__(self, bindir: Path, *, fsync: bool = False, settings: dict[str, str] | None = None) -> None:
        self.bindir = bindir
        self.user = _run_as()
        self.root = Path(tempfile.mkdtemp(prefix="alpr-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.fsync = fsync
        self.settings = settings or {}
        self._dbs = 0
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._pg(["initdb", "-D", str(self.data), "-U", ROLE, "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8",
                  *([] if fsync else ["--no-sync"])], timeout=120)

    def _pg(self, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        kw = {}
        if self.user:
            pw = pwd.getpwnam(self.user)
            kw = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        env = {"PATH": f"{self.bindir}:/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": str(self.root)}
        proc = subprocess.run([str(self.bindir / args[0]), *args[1:]], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=self.root, **kw)
        if proc.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}\n"
                               f"{self.log.read_text()[-2000:] if self.log.exists() else ''}")
        return proc

    def start(self) -> "PgCluster":
        opts = {"listen_addresses": "127.0.0.1", "port": str(self.port), "unix_socket_directories": str(self.root),
                "fsync": "on" if self.fsync else "off", "max_connections": "300", **self.settings}
        self._pg(["pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "-o", " ".join(f"-c {k}={v}" for k, v in opts.items()), "start"], timeout=90)
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._pg(["pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"], timeout=90)

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{dbname}"

    def new_database(self, prefix: str = "t") -> str:
        """A fresh, empty database; its URL."""
        import psycopg
        self._dbs += 1
        name = f"{prefix}{os.getpid()}_{self._dbs}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
