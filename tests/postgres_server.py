"""A throwaway PostgreSQL server for tests: Debian's `postgresql` package (scripts/system-deps.sh installs
it), a fresh cluster from its initdb in a temporary folder, listening on a free port of 127.0.0.1 only,
password authentication, removed at the end. No system service is used or touched.

PostgreSQL refuses to run as root, so under root the cluster belongs to the package's `postgres` user.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PostgresServer:
    url: str  # SQLAlchemy's form, as NEXA_DAGSTER_PG_URL takes it: postgresql+psycopg2://user:password@127.0.0.1:port/db
    dsn: str  # libpq's form, for psycopg2.connect: postgresql://user:password@127.0.0.1:port/db
    password: str
    port: int
    data_dir: Path
    log: Path


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def available() -> str | None:
    """Why no server can be started here, or None."""
    if _bin_dir() is None:
        return "Debian's postgresql is not installed (make test installs it: scripts/system-deps.sh)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to own the cluster"
    return None


@contextmanager
def postgres_server(db: str = "nexa_dagster", timeout: float = 60.0) -> Iterator[PostgresServer]:
    """Start a fresh cluster; yield its URL (with a random password) once it accepts connections; stop it
    (fast shutdown, then kill) and delete it."""
    import psycopg2

    why = available()
    if why:
        raise RuntimeError(why)
    bin_dir = _bin_dir()
    assert bin_dir is not None
    as_user: dict[str, object] = {}
    owner = None
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        as_user = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
    # Under root the cluster's folder must be reachable by the postgres user: /tmp, whatever TMPDIR says.
    base = Path(tempfile.mkdtemp(prefix="nexa-pg-", dir="/tmp" if owner is not None else None))
    data, log, pwfile = base / "data", base / "postgres.log", base / "pw"
    password = secrets.token_urlsafe(16)
    pwfile.write_text(password + "\n")
    if owner is not None:
        for path in (base, pwfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    proc: subprocess.Popen | None = None
    try:
        subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", "nexa", f"--pwfile={pwfile}", "--auth=scram-sha-256",
             "--encoding=UTF8", "--locale=C", "--no-sync"],
            check=True, capture_output=True, cwd=base, timeout=120, **as_user,
        )
        pwfile.unlink()
        port = _free_port()
        with log.open("wb") as out:
            if owner is not None:
                os.chown(log, owner.pw_uid, owner.pw_gid)
            proc = subprocess.Popen(
                [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port),
                 "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={base}",
                 "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                 "-c", "max_connections=100", "-c", "shared_buffers=32MB"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=base,
                start_new_session=True, **as_user,
            )
        admin = f"postgresql://nexa:{password}@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"postgres exited with code {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
            try:
                conn = psycopg2.connect(admin, connect_timeout=2)
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not accept connections within {timeout:.0f}s") from None
                time.sleep(0.2)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{db}"')
        conn.close()
        yield PostgresServer(
            url=f"postgresql+psycopg2://nexa:{password}@127.0.0.1:{port}/{db}",
            dsn=f"postgresql://nexa:{password}@127.0.0.1:{port}/{db}", password=password, port=port,
            data_dir=data, log=log,
        )
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(2)  # SIGINT: fast shutdown (disconnect clients, stop)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)
