"""A real, throwaway PostgreSQL cluster for tests: initdb + pg_ctl on a free loopback port.

Postgres refuses to run as root, so when the tests run as root the server runs as the `postgres` user.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from types import TracebackType

import psycopg2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_available() -> str | None:
    """None when a cluster can be started here, else the reason it cannot."""
    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) are not on PATH"
    if os.getuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser to switch to the postgres user"
    return None


class PostgresServer:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="codelupe-pg-"))
        self.port = _free_port()
        self._as_owner: list[str] = []
        if os.getuid() == 0:
            import pwd

            owner = pwd.getpwnam("postgres")
            os.chmod(self.base, 0o755)
            for sub in ("data", "sock"):
                (self.base / sub).mkdir()
                os.chown(self.base / sub, owner.pw_uid, owner.pw_gid)
            self._as_owner = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as_owner, *args], check=True, capture_output=True, timeout=120)

    def __enter__(self) -> PostgresServer:
        data, sock = self.base / "data", self.base / "sock"
        sock.mkdir(exist_ok=True)
        self._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync")
        options = f"-p {self.port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
        self._run("pg_ctl", "-D", str(data), "-o", options, "-l", str(self.base / "sock" / "log"), "-w", "start")
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.base / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "test") -> str:
        """A new empty database; returns its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        con = psycopg2.connect(self.url())
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        con.close()
        return self.url(name)
