"""A real PostgreSQL cluster for the tests: initdb in a temporary directory, a free loopback port.

    with running_postgres(tmp_path) as pg:
        url = pg.create_database("t1")      # a fresh, empty database
        pg.restart()                         # stop (fast) and start again, same data
        pg.kill()                            # SIGKILL the postmaster, like a crash

The server binaries come from Debian's postgresql package (deploy/install.sh installs it).
initdb refuses to run as root, so as root the cluster is made and run as the ``postgres`` user
(``runuser``), in a directory that user owns. Readiness is ``pg_ctl start -w`` (it waits until
the server accepts connections), not a sleep. fsync stays on: the failover tests depend on
what a commit promises.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from helpers.mosquitto import free_port


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL server not installed (apt-get install postgresql)")
    return Path(found[-1]).parent


@dataclass
class Postgres:
    datadir: Path
    port: int
    user: str
    bindir: Path = field(default_factory=_bindir)

    def _as_owner(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", self.user, "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(f"{Path(argv[0]).name} failed ({done.returncode}): "
                               f"{done.stderr.strip() or done.stdout.strip()}")
        return done

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def init(self) -> None:
        self._as_owner(str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", self.user,
                       "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8")
        with (self.datadir / "postgresql.conf").open("a") as conf:
            conf.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.datadir}'\nmax_connections = 200\n"
                       "shared_buffers = 64MB\n")

    def start(self) -> None:
        self._as_owner(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-w", "-t", "60",
                       "-l", str(self.datadir / "server.log"), "start")

    def stop(self, mode: str = "fast") -> None:
        self._as_owner(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w",
                       "stop", check=False)

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        pid_file = self.datadir / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        return self._as_owner(str(self.bindir / "psql"), "-h", self.host, "-p", str(self.port),
                              "-U", self.user, "-d", dbname, "-Atc", sql).stdout

    def create_database(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextlib.contextmanager
def running_postgres(base: Path | None = None) -> Iterator[Postgres]:
    """A started cluster, stopped and removed on exit."""
    root = Path(tempfile.mkdtemp(prefix="sealtrail-pg-", dir=base))
    user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.getuid()).pw_name
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    pg = Postgres(root / "data", free_port(), user)
    try:
        pg.init()
        pg.start()
        yield pg
    finally:
        pg.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
