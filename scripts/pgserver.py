"""A throwaway PostgreSQL server: a cluster in a temporary folder on a free local port, for the bench
(``scripts/bench_labeling.py --db postgres``), the tests (``tests/conftest.py``) and trying a
multi-server setup on one machine. Never for a real campaign: trust authentication, and the folder is
removed on :meth:`ThrowawayPostgres.stop`."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from labeling_ui.serving import free_port

#: A PostgreSQL server the tests may create databases on (CI starts one and sets it); without it the
#: tests and the bench start a throwaway cluster of their own (:class:`ThrowawayPostgres`).
POSTGRES_URL_ENV = "LABEL_TEST_POSTGRES_URL"


def postgres_bin() -> Path | None:
    """The folder of PostgreSQL's server programs (``initdb`` on PATH, else Debian's newest version)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
                      if p.parent.parent.name.isdigit() else 0)
    return versions[-1].parent if versions else None


class ThrowawayPostgres:
    """A PostgreSQL cluster in a temporary folder on a free local port, trust auth, for tests and the
    bench; :meth:`stop` removes it. initdb refuses to run as root: as root the cluster runs as the
    ``postgres`` system user (which Debian's package creates)."""

    def __init__(self, *, durable: bool = True, max_connections: int = 300) -> None:
        self.durable = durable
        self.max_connections = max_connections
        self.dir: Path | None = None
        self.url = ""

    def _run(self, *cmd: str) -> None:
        if os.getuid() == 0:
            cmd = ("runuser", "-u", "postgres", "--", *cmd)
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {(result.stderr or result.stdout)[-2000:]}")

    def start(self) -> ThrowawayPostgres:
        bindir = postgres_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (no initdb): apt-get install postgresql")
        self.dir = Path(tempfile.mkdtemp(prefix="label-pg-"))
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        data, port = self.dir / "data", free_port()
        self._run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--no-sync")
        options = [f"-p {port}", f"-k {self.dir}", "-c listen_addresses=127.0.0.1",
                   f"-c max_connections={self.max_connections}"]
        if not self.durable:            # tests: nothing here must survive a power cut
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "server.log"), "-w", "-t", "60",
                  "-o", " ".join(options), "start")
        self._bindir = bindir
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        return self

    def stop(self) -> None:
        if self.dir is None:
            return
        try:
            self._run(str(self._bindir / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


def create_database(server_url: str, name: str | None = None) -> str:
    """A new, empty database on the server of ``server_url`` (a URL of any database there, as a
    superuser or a role that may create databases); returns its URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = name or f"label_{uuid.uuid4().hex[:12]}"
    url = make_url(server_url)
    with psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False),
                         autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False)
